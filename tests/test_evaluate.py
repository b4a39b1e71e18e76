import json

import numpy as np
import pytest
from gymnasium import spaces
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch.utils.tensorboard import SummaryWriter

import genrl
from genrl import GenrlError, RolloutDataset
from genrl.evaluation.baselines import LinearDynamics, RepeatLast
from genrl.evaluation.critic import realism_critic
from genrl.evaluation.report import write_report


def balance(obs: np.ndarray) -> np.ndarray:
    """A CartPole controller that keeps episodes long, so that open-loop windows reach far."""
    return (obs[:, 2] + 0.5 * obs[:, 3] > 0).astype(np.int64)


@pytest.fixture(scope="module")
def report(cartpole_model, cartpole_dataset):
    return genrl.evaluate(
        cartpole_model, cartpole_dataset, balance, env="CartPole-v1", episodes=4, horizon=20, seed=0
    )


def test_report_uses_held_out_episodes_only(report, cartpole_model, cartpole_dataset):
    held = cartpole_model.held_out_episodes(cartpole_dataset)
    assert report.data["dataset_held_out_episodes"] == len(held) == len(cartpole_dataset) // 10
    assert report.data["fresh_episodes"] == 4
    assert report.data["seed"] == 0
    assert report.data["episodes"] == len(held) + 4
    held_steps = sum(len(cartpole_dataset.episodes[i].action) for i in held)
    assert report.data["steps"] == held_steps + 4 * 500  # the controller balances for all 500 steps
    training_only = cartpole_dataset.subset([i for i in range(len(cartpole_dataset)) if i not in held])
    with pytest.raises(
        GenrlError, match="expected held-out episodes to evaluate on, but the model trained on all"
    ):
        genrl.evaluate(cartpole_model, training_only)


def test_compounding_error_curves(report):
    for name in ("model", "repeat last", "linear"):
        curve, dims = report.curves[f"open_loop/{name}"], report.curves[f"open_loop_dims/{name}"]
        assert curve.shape == (20,) and dims.shape == (20, 4)
        np.testing.assert_allclose(curve, dims.mean(1))
        assert np.isfinite(curve).all() and (curve >= 0).all()
    # Errors compound: far predictions are worse than near ones, for every predictor.
    for name in ("model", "repeat last", "linear"):
        assert report.curves[f"open_loop/{name}"][-1] > report.curves[f"open_loop/{name}"][0]
    assert (np.diff(report.window_counts) <= 0).all() and report.window_counts[0] > 0
    assert report.beats_baselines() == bool(report.scalars["open_loop/model_beats_baselines"])


def test_heads_are_scored(report):
    s = report.scalars
    assert s["reward/mae"] < 0.1  # CartPole pays 1 per step; the head has learnt it
    assert s["termination/terminal_steps"] > 0
    assert s["termination/auroc"] > 0.9  # terminal steps are told apart from the others
    assert 0 <= s["termination/precision"] <= 1 and s["termination/recall"] > 0.5
    assert np.isfinite(s["nll/per_step"])
    per_dim = [s[f"reconstruction/mse_dim{d}"] for d in range(4)]
    assert s["reconstruction/mse"] == pytest.approx(np.mean(per_dim)) and min(per_dim) >= 0


def test_dream_gap_per_temperature(report):
    assert [row["temperature"] for row in report.gap] == [0.0, 0.5, 1.0, 1.15, 1.5]
    for row in report.gap:
        assert row["real_return"] == 500.0
        assert row["gap"] == pytest.approx(row["dream_return"] - row["real_return"])
        assert 0 < row["dream_return"] <= 500.0


def test_critic_accuracy_is_held_out(report):
    for name in ("transition", "clip"):
        assert 0.0 <= report.scalars[f"critic/{name}_accuracy"] <= 1.0
        assert report.scalars[f"critic/{name}_test_pairs"] > 0


def test_realism_critic_tells_apart_only_what_differs():
    rng = np.random.default_rng(0)
    real = rng.normal(size=(400, 6))
    groups = np.repeat(np.arange(20), 20)
    same = realism_critic(real, rng.normal(size=(400, 6)), groups, seed=0)
    shifted = realism_critic(real, rng.normal(size=(400, 6)) + 1.5, groups, seed=0)
    assert abs(same.accuracy - 0.5) < 0.1
    assert shifted.accuracy > 0.85
    assert same.train_pairs + same.test_pairs == 400
    with pytest.raises(GenrlError, match="at least 2 episodes"):
        realism_critic(real, real, np.zeros(400), seed=0)


def test_linear_baseline_recovers_linear_dynamics():
    obs_space = spaces.Box(-np.inf, np.inf, (2,), np.float32)
    act_space = spaces.Box(-1.0, 1.0, (1,), np.float32)
    data = RolloutDataset(obs_space, act_space)
    rng = np.random.default_rng(0)
    a_mat, b_vec = np.array([[0.9, 0.1], [-0.2, 0.95]]), np.array([0.5, -0.3])
    for _ in range(5):
        obs, actions = [rng.normal(size=2)], rng.uniform(-1, 1, size=(40, 1))
        for a in actions:
            obs.append(a_mat @ obs[-1] + b_vec * a[0])
        n = len(actions)
        data.add_episode(
            np.array(obs, np.float32), actions.astype(np.float32), np.zeros(n, np.float32),
            np.zeros(n, bool), np.arange(n) == n - 1,
        )  # fmt: skip
    ep = data.episodes[0]
    linear = LinearDynamics(obs_space, act_space, ridge=0.0).fit(data)
    pred = linear.rollout(ep.obs[:1], ep.action[None, :10])
    np.testing.assert_allclose(pred[0], ep.obs[1:11], atol=1e-3)
    np.testing.assert_array_equal(RepeatLast().rollout(ep.obs[:1], ep.action[None, :3])[0], ep.obs[[0, 0, 0]])


def test_write_report_files_and_tensorboard(report, tmp_path):
    writer = SummaryWriter(str(tmp_path / "tb"))
    path = write_report(report, tmp_path / "eval", writer)
    writer.close()
    text = path.read_text()
    for heading in (
        "Open-loop prediction error",
        "One-step heads",
        "Realism critic",
        "Dream against reality",
    ):
        assert heading in text
    for name in ("open_loop", "open_loop_dims", "open_loop_example", "dream_gap"):
        png = tmp_path / "eval" / f"{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f"({name}.png)" in text
    saved = json.loads((tmp_path / "eval" / "report.json").read_text())
    assert saved["scalars"]["reward/mae"] == pytest.approx(report.scalars["reward/mae"])
    # Every number of the report is in TensorBoard.
    events = EventAccumulator(str(tmp_path / "tb"), size_guidance={"scalars": 0, "images": 0}).Reload()
    tags = set(events.Tags()["scalars"])
    assert {f"eval/{name}" for name in report.scalars} <= tags
    assert "eval/open_loop/model" in tags and "eval/open_loop_dim3/linear" in tags
    curve = [e.value for e in events.Scalars("eval/open_loop/linear")]
    np.testing.assert_allclose(curve, report.curves["open_loop/linear"], rtol=1e-5)
    assert {"eval/open_loop", "eval/dream_gap"} <= set(events.Tags()["images"])
    assert "eval/report/text_summary" in events.Tags()["tensors"]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"dataset": "data"}, "expected a RolloutDataset to evaluate on, got str"),
        ({"policy": balance}, "expected env"),
        ({"horizon": 0}, "evaluate horizon: expected an integer >= 1, got 0"),
        ({"episodes": 2.5}, "evaluate episodes: expected an integer >= 1, got 2.5"),
        ({"policy": balance, "env": "Pendulum-v1"}, "space mismatch"),
        ({"policy": balance, "env": "CartPole-v1", "temperatures": (-1.0,)}, "temperatures >= 0, got -1.0"),
    ],
)
def test_evaluate_rejects_bad_input(cartpole_model, cartpole_dataset, kwargs, match):
    args = {"dataset": cartpole_dataset, **kwargs}
    with pytest.raises(GenrlError, match=match):
        genrl.evaluate(cartpole_model, **args)
