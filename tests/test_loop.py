import json

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import genrl
from genrl import FitConfig, GenrlError, RolloutDataset, TrainConfig, WorldModel, WorldModelConfig
from genrl.training.agents import agent_preset, load_policy, make_agent
from genrl.training.config import CollectSettings, DreamSettings, LoopSettings, resolve_config
from genrl.training.loop import steps_to_collect
from genrl.training.presets import load_preset


# The tests that use it are marked slow: the run takes about 10 s.
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
        # The VAE, explicitly: the cartpole preset's identity encoder has no reconstruction loss,
        # and every head's loss is logged below.
        world_model={"encoder": "vae", "hidden_dim": 32, "rnn_dim": 32},
    )
    return run_dir, result


@pytest.mark.slow
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


@pytest.mark.slow
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
    model = WorldModel.load(run_dir / "model", device="cpu")
    assert model.config.hidden_dim == 32 and int(model.trained_steps) == 150
    agent = make_agent(agent_preset("ppo"), genrl.DreamVecEnv(model, 16, device="cpu", seed=0), seed=1)
    load_policy(agent, run_dir / "policy.safetensors")
    obs = data.all_states()[:64]
    np.testing.assert_array_equal(
        agent.predict(obs, deterministic=True)[0], result.agent.predict(obs, deterministic=True)[0]
    )


@pytest.mark.slow
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


@pytest.mark.slow
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
    assert cfg.dream.horizon == preset.get("dream", {}).get("horizon", DreamSettings().horizon)
    assert resolve_config("CartPole-v1") == resolve_config("cartpole")  # an id finds its preset
    plain = resolve_config("MountainCar-v0", iterations=1)  # an id without a preset: defaults
    assert (plain.env_id, plain.train.iterations, plain.dream.horizon) == (
        "MountainCar-v0",
        1,
        DreamSettings().horizon,
    )
    with pytest.raises(GenrlError, match="unknown environment 'NoSuchEnv-v0'"):
        resolve_config("NoSuchEnv-v0")
    with pytest.raises(GenrlError, match=r"unknown training settings \['horizn'\]"):
        resolve_config("cartpole", horizn=3)


@pytest.mark.slow
def test_refuses_a_run_folder_with_other_settings(run):
    run_dir, result = run
    before = RolloutDataset.load(run_dir / "data").num_steps
    with pytest.raises(
        GenrlError, match=r"holds a run with other settings \(initial_steps: 300 there, 200 now"
    ):
        genrl.train_in_imagination("CartPole-v1", run_dir=run_dir, progress=False, iterations=1)
    assert RolloutDataset.load(run_dir / "data").num_steps == before == result.dataset.num_steps


def test_collect_fraction_makes_a_geometric_schedule():
    cfg = TrainConfig.from_dict(
        {"env_id": "CartPole-v1"}, initial_steps=100, steps_per_iteration=10, collect_fraction=0.1
    )
    totals = [0]
    for it in range(5):
        totals.append(totals[-1] + steps_to_collect(cfg, it, totals[-1]))
    assert totals[1:] == [100, 110, 121, 134, 148]
    # Each evaluation after the first comes at most 10% (plus rounding up) after the one before.
    assert all(later <= 1.1 * earlier + 1 for earlier, later in zip(totals[1:-1], totals[2:], strict=True))
    plain = TrainConfig.from_dict(
        {"env_id": "CartPole-v1", "collect": {"steps_per_iteration": 10, "collect_fraction": 0.0}}
    )
    assert steps_to_collect(plain, 3, 1000) == 10


@pytest.mark.parametrize(
    "fraction, given", [(-0.1, "-0.1"), ("a lot", "'a lot'"), (11, "11"), (True, "True")]
)
def test_collect_fraction_is_checked(fraction, given):
    message = f"^collect_fraction: expected a number >= 0 and <= 10, got {given}$"
    with pytest.raises(GenrlError, match=message):
        TrainConfig.from_dict({"env_id": "CartPole-v1"}, collect_fraction=fraction)
    with pytest.raises(GenrlError, match=message):
        TrainConfig(env_id="CartPole-v1", collect=CollectSettings(collect_fraction=fraction))


def test_train_config_is_nested_and_reads_flat_names_and_sections_alike():
    flat = TrainConfig.from_dict(
        {"env_id": "CartPole-v1"},
        iterations=3,
        fit_steps=100,
        horizon=40,
        epsilon=0.1,
        world_model={"hidden_dim": 16, "batch_size": 8},  # a 0.1.0 world_model may hold fit settings
    )
    nested = TrainConfig.from_dict(
        {"env_id": "CartPole-v1"},
        train={"iterations": 3},
        fit={"steps": 100, "batch_size": 8},
        dream={"horizon": 40},
        collect={"epsilon": 0.1},
        world_model={"hidden_dim": 16},
    )
    assert flat == nested
    assert isinstance(flat.collect, CollectSettings) and isinstance(flat.train, LoopSettings)
    assert isinstance(flat.world_model, WorldModelConfig) and isinstance(flat.fit, FitConfig)
    assert (flat.train.iterations, flat.fit.steps, flat.dream.horizon) == (3, 100, 40)
    assert (flat.collect.epsilon, flat.world_model.hidden_dim, flat.fit.batch_size) == (0.1, 16, 8)
    # Frozen; replace() takes the same names and leaves the rest.
    with pytest.raises(AttributeError):
        flat.seed = 1
    longer = flat.replace(iterations=8, dream={"temperature": 0.5})
    assert (longer.train.iterations, longer.dream.temperature, longer.dream.horizon) == (8, 0.5, 40)
    assert flat.train.iterations == 3
    # to_dict() is the nested JSON form, and reads back.
    data = json.loads(json.dumps(flat.to_dict()))
    assert data["dream"]["horizon"] == 40 and data["fit"]["steps"] == 100 and "horizon" not in data
    assert TrainConfig.from_dict(data) == flat
    with pytest.raises(TypeError):
        TrainConfig(env_id="CartPole-v1", initial_steps=100)  # flat keywords: through from_dict
    with pytest.raises(GenrlError, match=r"unknown training settings \['horizn'\]"):
        TrainConfig.from_dict({"env_id": "CartPole-v1"}, horizn=3)


@pytest.mark.slow
def test_a_finished_run_loads_back(run):
    run_dir, result = run
    assert isinstance(result.config, TrainConfig)
    assert (result.config.seed, result.config.train.iterations, result.config.dream.horizon) == (0, 2, 100)
    loaded = genrl.load_run(run_dir, device="cpu")
    assert loaded.config == result.config
    assert loaded.history == json.loads(json.dumps(result.history))
    assert loaded.dataset.num_steps == result.dataset.num_steps == 500
    for name, value in result.model.state_dict().items():
        assert torch.equal(loaded.model.state_dict()[name], value.cpu()), name
    obs = loaded.dataset.all_states()[:64]
    np.testing.assert_array_equal(
        loaded.agent.predict(obs, deterministic=True)[0], result.agent.predict(obs, deterministic=True)[0]
    )


@pytest.mark.parametrize("explore", ["planner", "both"])
def test_the_loop_can_explore_with_a_planner_in_the_model(explore, tmp_path, monkeypatch):
    from stable_baselines3 import PPO

    import genrl.training.loop as loop_module
    from genrl.guidance.planner import Planner

    calls, agent_calls, evaluating = [], [], []
    real_predict, agent_predict, real_evaluate = Planner.predict, PPO.predict, loop_module._evaluate

    def spy(self, observation, *args, **kwargs):
        calls.append(self.value is not None)  # the agent's critic is the terminal value
        return real_predict(self, observation, *args, **kwargs)

    def agent_spy(self, observation, *args, **kwargs):
        if not evaluating:  # the real and dream evaluations act too: not collection
            agent_calls.append(len(observation))
        return agent_predict(self, observation, *args, **kwargs)

    def evaluate_spy(*args, **kwargs):
        evaluating.append(True)
        try:
            return real_evaluate(*args, **kwargs)
        finally:
            evaluating.pop()

    monkeypatch.setattr(Planner, "predict", spy)
    monkeypatch.setattr(PPO, "predict", agent_spy)
    monkeypatch.setattr(loop_module, "_evaluate", evaluate_spy)
    result = genrl.train_in_imagination(
        "CartPole-v1",
        agent={"algorithm": "ppo", "hyperparameters": {"n_steps": 16, "batch_size": 16, "device": "cpu"}},
        seed=0,
        run_dir=tmp_path / "run",
        progress=False,
        iterations=3,
        initial_steps=100,
        steps_per_iteration=30,
        fit_steps=20,
        refit_steps=10,
        dream_steps=64,
        eval_episodes=1,
        n_envs=4,
        horizon=20,
        world_model={"hidden_dim": 16, "rnn_dim": 16, "batch_size": 4, "seq_len": 4, "open_loop_steps": 2},
        collect={
            "explore": explore,
            "planner": {"horizon": 4, "population": 8, "elites": 2, "iterations": 1},
        },
    )
    # Iterations 1 and 2 collect 30 real steps each: all from the planner, or with "both" the
    # planner's on iteration 1 and the agent's on 2. Each policy is also asked once more per
    # episode end (the vector env's reset step, never recorded).
    agent_collect_calls = sum(1 for n in agent_calls if n == 1)
    if explore == "planner":
        assert len(calls) >= 60 and agent_collect_calls == 0
    else:
        assert 30 <= len(calls) < 60 and 30 <= agent_collect_calls < 60
    assert all(calls) and result.history[-1]["real_steps"] == 160


def test_planner_exploration_settings_are_checked():
    with pytest.raises(GenrlError, match=r"collect explore: expected one of \['agent', 'planner', 'both'\]"):
        CollectSettings(explore="plan")
