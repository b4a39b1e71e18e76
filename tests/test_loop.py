import json

import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import genrl
from genrl import GenrlError, RolloutDataset, WorldModel
from genrl.training.agents import agent_preset, load_policy, make_agent
from genrl.training.loop import TrainConfig, _steps_to_collect, resolve_config
from genrl.training.presets import load_preset


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("run")
    result = genrl.train_in_imagination(
        "CartPole-v1",
        agent="ppo",
        seed=0,
        run_dir=run_dir,
        progress=False,
        iterations=2,
        initial_steps=300,
        steps_per_iteration=200,
        fit_steps=100,
        refit_steps=50,
        dream_steps=2048,
        eval_episodes=3,
        n_envs=16,
        horizon=100,
        world_model={"hidden_dim": 32, "rnn_dim": 32},
    )
    return run_dir, result


def test_history_and_real_steps(run):
    _, result = run
    assert len(result.history) == 2
    assert [row["iteration"] for row in result.history] == [0, 1]
    assert result.history[0]["real_steps"] == 300
    assert result.final["real_steps"] == 300 + 200
    assert result.dataset.num_steps == 500
    for row in result.history:
        assert np.isfinite(row["eval_return_mean"]) and row["eval_return_mean"] > 0
        assert row["dream_real_gap"] == pytest.approx(row["dream_return_mean"] - row["eval_return_mean"])
        assert 0 < row["eval_time_s"] < row["wall_time_s"]
        assert row["eval_steps"] >= 3 * 8  # three real CartPole episodes last at least 8 steps each
        assert set(row["world_model_val"]) >= {"reconstruction", "dynamics_nll", "reward", "termination"}
    assert int(result.model.trained_steps) == 100 + 50
    assert result.agent.num_timesteps >= 2 * 2048


def test_run_folder_contents(run):
    run_dir, result = run
    for name in (
        "data/dataset.json",
        "model/model.json",
        "model/weights.safetensors",
        "policy.safetensors",
        "summary.json",
        "config.json",
    ):
        assert (run_dir / name).is_file(), name
    assert list((run_dir / "tb").glob("events.out.tfevents.*"))
    assert [p for p in run_dir.rglob("*") if p.name.endswith(".tmp")] == []

    summary = json.loads((run_dir / "summary.json").read_text())
    assert len(summary["history"]) == 2
    assert summary["config"]["env_id"] == "CartPole-v1" and summary["config"]["seed"] == 0
    assert summary["history"][-1]["real_steps"] == 500

    # Everything saved loads back and is what the run used.
    data = RolloutDataset.load(run_dir / "data")
    assert data.num_steps == 500
    model = WorldModel.load(run_dir / "model")
    assert model.config.hidden_dim == 32 and int(model.trained_steps) == 150
    agent = make_agent(agent_preset("ppo"), genrl.DreamVecEnv(model, 16, device="cpu", seed=0), seed=1)
    load_policy(agent, run_dir / "policy.safetensors")
    obs = data.all_states()[:64]
    np.testing.assert_array_equal(
        agent.predict(obs, deterministic=True)[0], result.agent.predict(obs, deterministic=True)[0]
    )


def test_tensorboard_tags(run):
    run_dir, _ = run
    tags: set[str] = set()
    for events in (run_dir / "tb").glob("events.out.tfevents.*"):
        acc = EventAccumulator(str(events))
        acc.Reload()
        tags |= set(acc.Tags()["scalars"])
    expected = {
        "real/eval_return_mean",
        "dream/real_gap",
        "dream/eval_return_mean",
        "world_model/train/total",
        "world_model/val/reconstruction",
    }
    assert expected <= tags, expected - tags
    assert any(tag.startswith("train/") for tag in tags), "SB3's own scalars land in the same folder"


def test_tensorboard_eval_values_match_history(run):
    run_dir, result = run
    values = {}
    for events in (run_dir / "tb").glob("events.out.tfevents.*"):
        acc = EventAccumulator(str(events))
        acc.Reload()
        if "real/eval_return_mean" in acc.Tags()["scalars"]:
            values = {e.step: e.value for e in acc.Scalars("real/eval_return_mean")}
    assert values == {
        row["real_steps"]: pytest.approx(row["eval_return_mean"], rel=1e-6) for row in result.history
    }


def test_config_resolution():
    preset = load_preset("envs", "cartpole")
    cfg = resolve_config("cartpole", seed=3, horizon=None)
    assert isinstance(cfg, TrainConfig)
    assert cfg.env_id == preset["id"] == "CartPole-v1" and cfg.seed == 3
    # None overrides leave the preset's value.
    assert cfg.horizon == preset.get("dream", {}).get("horizon", TrainConfig.horizon)
    assert resolve_config("CartPole-v1") == resolve_config("cartpole")  # an id finds its preset
    plain = resolve_config("MountainCar-v0", iterations=1)  # an id without a preset: defaults
    assert (plain.env_id, plain.iterations, plain.horizon) == ("MountainCar-v0", 1, TrainConfig.horizon)
    with pytest.raises(GenrlError, match="unknown environment 'NoSuchEnv-v0'"):
        resolve_config("NoSuchEnv-v0")
    with pytest.raises(GenrlError, match=r"unknown training settings \['horizn'\]"):
        resolve_config("cartpole", horizn=3)


def test_refuses_a_run_folder_with_other_settings(run):
    run_dir, result = run
    before = RolloutDataset.load(run_dir / "data").num_steps
    with pytest.raises(
        GenrlError, match=r"holds a run with other settings \(initial_steps: 300 there, 200 now"
    ):
        genrl.train_in_imagination("CartPole-v1", run_dir=run_dir, progress=False, iterations=1)
    assert RolloutDataset.load(run_dir / "data").num_steps == before == result.dataset.num_steps


def test_collect_fraction_makes_a_geometric_schedule():
    cfg = TrainConfig(env_id="CartPole-v1", initial_steps=100, steps_per_iteration=10, collect_fraction=0.1)
    totals = [0]
    for it in range(5):
        totals.append(totals[-1] + _steps_to_collect(cfg, it, totals[-1]))
    assert totals[1:] == [100, 110, 121, 134, 148]
    # Each evaluation after the first comes at most 10% (plus rounding up) after the one before.
    assert all(later <= 1.1 * earlier + 1 for earlier, later in zip(totals[1:-1], totals[2:], strict=True))
    assert _steps_to_collect(TrainConfig(env_id="CartPole-v1", steps_per_iteration=10), 3, 1000) == 10


@pytest.mark.parametrize("fraction", [-0.1, "a lot", 11, True])
def test_collect_fraction_is_checked(fraction):
    with pytest.raises(GenrlError, match="collect_fraction: expected a number from 0 to 10"):
        TrainConfig(env_id="CartPole-v1", collect_fraction=fraction)
