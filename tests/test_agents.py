import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
from stable_baselines3.common.vec_env import VecMonitor

import genrl
from genrl import DreamVecEnv, FitConfig, GenrlError, TrainConfig, WorldModel, WorldModelConfig
from genrl.data.envs import make_env
from genrl.training.agents import (
    ALGORITHMS,
    LinearPerLearn,
    agent_preset,
    load_policy,
    make_agent,
    restart_schedules,
    save_policy,
)
from genrl.training.presets import available, find_env_preset, load_preset, preset_dirs

CONTINUOUS_ONLY = {"sac", "td3", "ddpg"}
DISCRETE_ONLY = {"dqn"}


def _dream_for(algorithm: str, request, n_envs: int = 8) -> VecMonitor:
    env = "pendulum" if algorithm in CONTINUOUS_ONLY else "cartpole"
    model = request.getfixturevalue(f"{env}_model")
    return VecMonitor(DreamVecEnv(model, n_envs, horizon=20, device="cpu", seed=0))


def test_agent_presets_exist():
    names = available("agents")
    assert "ppo" in names
    assert all(d.is_dir() for d in preset_dirs("agents"))


@pytest.mark.parametrize("name", available("agents"))
def test_every_agent_preset_builds_and_runs_in_a_dream(name, request):
    preset = agent_preset(name)
    assert preset["algorithm"] in ALGORITHMS
    venv = _dream_for(preset["algorithm"], request)
    agent = make_agent(preset, venv, seed=0)
    assert isinstance(agent, ALGORITHMS[preset["algorithm"]])
    agent.learn(300)
    assert agent.num_timesteps >= 300
    obs = venv.reset()
    action, _ = agent.predict(obs, deterministic=True)
    assert action.shape[0] == venv.num_envs
    assert all(venv.action_space.contains(np.asarray(a, dtype=venv.action_space.dtype)) for a in action)


@pytest.mark.parametrize("algorithm", sorted(ALGORITHMS))
def test_every_algorithm_runs_on_a_matching_dream(algorithm, request):
    hyper = {"device": "cpu"}
    if issubclass(ALGORITHMS[algorithm], OffPolicyAlgorithm):
        hyper.update(learning_starts=16, buffer_size=1000, batch_size=16)
    else:
        hyper.update(n_steps=8, **({"batch_size": 16} if algorithm == "ppo" else {}))
    venv = _dream_for(algorithm, request, n_envs=2)
    agent = make_agent({"algorithm": algorithm.upper(), "hyperparameters": hyper}, venv, seed=0)
    agent.learn(64)
    assert agent.num_timesteps >= 64


def test_unknown_preset_lists_available_ones():
    with pytest.raises(
        GenrlError, match=r"unknown agent preset 'no-such-agent': expected one of \[.*'ppo'.*\]"
    ):
        agent_preset("no-such-agent")
    with pytest.raises(GenrlError, match=r"unknown env preset 'atlantis'"):
        load_preset("envs", "atlantis")


def test_unknown_algorithm_is_rejected():
    with pytest.raises(
        GenrlError, match=r"unknown algorithm 'rainbow': expected one of \['a2c', 'ddpg', 'dqn'"
    ):
        agent_preset({"algorithm": "rainbow"})


def test_wrong_action_space_for_algorithm_is_a_genrl_error(request):
    with pytest.raises(GenrlError, match="cannot build DQN"):
        make_agent({"algorithm": "dqn"}, _dream_for("sac", request), seed=0)
    with pytest.raises(GenrlError, match="cannot build PPO"):
        make_agent({"algorithm": "ppo", "hyperparameters": {"no_such_option": 1}}, _dream_for("ppo", request))


def test_linear_schedule_strings(request):
    agent = make_agent(
        {
            "algorithm": "ppo",
            "hyperparameters": {"learning_rate": "lin_0.01", "n_steps": 8, "batch_size": 32, "device": "cpu"},
        },
        _dream_for("ppo", request),
        seed=0,
    )
    assert isinstance(agent.learning_rate, LinearPerLearn)
    assert agent.lr_schedule(1.0) == pytest.approx(0.01)
    assert agent.lr_schedule(0.0) == pytest.approx(0.0)
    # A loop's agent keeps its step count across learn() calls; each call anneals from the start
    # again, where SB3's progress alone would begin the second call at 100 / (N + 100) of it.
    agent.learn(200)
    restart_schedules(agent, 100)
    rates = []

    class Record(BaseCallback):
        def _on_rollout_start(self) -> None:  # the rate the update before this rollout used
            rates.append(self.model.policy.optimizer.param_groups[0]["lr"])

        def _on_step(self) -> bool:
            return True

    agent.learn(100, reset_num_timesteps=False, callback=Record())
    first = 1 - agent.n_steps * agent.n_envs / 100  # the call's progress after its first rollout
    assert rates[1] == pytest.approx(0.01 * first)  # SB3 alone: 0.01 * first * 100 / (N + 100)


def test_overrides_win_over_preset(request):
    agent = make_agent(agent_preset("ppo"), _dream_for("ppo", request), seed=0, n_steps=16, batch_size=64)
    assert (agent.n_steps, agent.batch_size) == (16, 64)
    assert agent.gamma == agent_preset("ppo").get("hyperparameters", {}).get("gamma", 0.99)


def test_save_and_load_policy_round_trip(request, tmp_path):
    venv = _dream_for("ppo", request)
    trained = make_agent(agent_preset("ppo"), venv, seed=0)
    trained.learn(600)
    save_policy(trained, tmp_path / "policy.safetensors")
    assert [p.name for p in tmp_path.iterdir()] == ["policy.safetensors"]

    fresh = make_agent(agent_preset("ppo"), venv, seed=1)
    obs = np.random.default_rng(0).normal(size=(256, 4)).astype(np.float32)
    before, _ = fresh.predict(obs, deterministic=True)
    expected, _ = trained.predict(obs, deterministic=True)
    assert not np.array_equal(before, expected), "differently seeded agents act differently"
    load_policy(fresh, tmp_path / "policy.safetensors")
    after, _ = fresh.predict(obs, deterministic=True)
    np.testing.assert_array_equal(after, expected)


def test_save_and_load_continuous_policy(request, tmp_path):
    venv = _dream_for("sac", request)
    a = make_agent({"algorithm": "sac", "hyperparameters": {"device": "cpu"}}, venv, seed=0)
    b = make_agent({"algorithm": "sac", "hyperparameters": {"device": "cpu"}}, venv, seed=1)
    save_policy(a, tmp_path / "p.safetensors")
    load_policy(b, tmp_path / "p.safetensors")
    obs = np.random.default_rng(0).normal(size=(16, 3)).astype(np.float32)  # Pendulum observations
    np.testing.assert_array_equal(
        a.predict(obs, deterministic=True)[0], b.predict(obs, deterministic=True)[0]
    )


def test_load_policy_rejects_foreign_files(request, tmp_path):
    venv = _dream_for("ppo", request)
    agent = make_agent(agent_preset("ppo"), venv, seed=0)
    (tmp_path / "garbage.safetensors").write_bytes(b"not a tensor file")
    with pytest.raises(GenrlError, match="expected policy weights matching the agent preset"):
        load_policy(agent, tmp_path / "garbage.safetensors")
    other = make_agent({"algorithm": "sac", "hyperparameters": {"device": "cpu"}}, _dream_for("sac", request))
    save_policy(other, tmp_path / "sac.safetensors")
    with pytest.raises(GenrlError, match="expected policy weights matching the agent preset"):
        load_policy(agent, tmp_path / "sac.safetensors")


def test_env_presets_are_valid():
    names = available("envs")
    assert "cartpole" in names
    for name in names:
        preset = load_preset("envs", name)
        assert isinstance(preset.get("id"), str)
        assert find_env_preset(preset["id"])["id"] == preset["id"]
        # Every setting is one the loop and the world model know.
        cfg = TrainConfig.from_preset(preset)
        assert isinstance(cfg.world_model, WorldModelConfig) and isinstance(cfg.fit, FitConfig)
        env = make_env(cfg.env_id)  # and the model it describes can be built for that env
        WorldModel(env.observation_space, env.action_space, cfg.world_model, cfg.fit, seed=0)
        env.close()
        if "agent" in preset:
            assert agent_preset(preset["agent"])["algorithm"] in ALGORITHMS
    assert find_env_preset("NoSuchEnv-v9") is None


def test_preset_files_are_validated(tmp_path):
    (tmp_path / "broken.yaml").write_text("algorithm: [ppo\n")
    with pytest.raises(GenrlError, match="expected valid YAML"):
        load_preset("agents", tmp_path / "broken.yaml")
    (tmp_path / "list.yaml").write_text("- ppo\n")
    with pytest.raises(GenrlError, match="expected a mapping of settings, got list"):
        load_preset("agents", tmp_path / "list.yaml")
    with pytest.raises(GenrlError, match="found no such file"):
        load_preset("agents", tmp_path / "missing.yaml")
    (tmp_path / "mine.yaml").write_text("algorithm: a2c\nhyperparameters: {n_steps: 4}\n")
    assert agent_preset(load_preset("agents", tmp_path / "mine.yaml")) == {
        "algorithm": "a2c",
        "hyperparameters": {"n_steps": 4},
    }


def test_yaml_presets_never_construct_python_objects(tmp_path):
    (tmp_path / "evil.yaml").write_text("algorithm: !!python/object/apply:os.system ['echo hi']\n")
    with pytest.raises(GenrlError, match="expected valid YAML"):
        load_preset("agents", tmp_path / "evil.yaml")
    assert spaces.Discrete(2).n == 2  # the process is still fine


def test_policy_files_carry_a_checked_version(request, tmp_path):
    venv = _dream_for("ppo", request)
    agent = make_agent(agent_preset("ppo"), venv, seed=0)
    path = tmp_path / "policy.safetensors"
    save_policy(agent, path)
    with safe_open(str(path), framework="pt") as f:
        assert f.metadata() == {"format": "genrl.policy", "version": "1", "algorithm": "PPO"}
    state = load_file(str(path))
    save_file(state, str(tmp_path / "v9.safetensors"), metadata={"format": "genrl.policy", "version": "9"})
    with pytest.raises(
        GenrlError, match=r"expected a genrl.policy file of version 1, got format 'genrl.policy'"
    ):
        load_policy(agent, tmp_path / "v9.safetensors")
    save_file(state, str(tmp_path / "bare.safetensors"))  # genrl 0.1.0 wrote no metadata
    load_policy(agent, tmp_path / "bare.safetensors")


# ---- every agent preset learns in a dream, on every action space it supports ------------------


class ContinuousCartPole(gym.ActionWrapper):
    """CartPole with a ``Box(-1, 1, (1,))`` action: a positive one pushes right."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        self.action_space = spaces.Box(-1.0, 1.0, (1,), np.float32)

    def action(self, action):
        return int(np.asarray(action).reshape(-1)[0] > 0)


def _precise_model(env, steps: int, fit_steps: int, **settings) -> WorldModel:
    """A small model with the env presets' precise settings (envs/*.yaml): identity encoder, one mixture."""
    data = genrl.collect(env, steps, seed=0, progress=False)
    torch.manual_seed(0)
    model = WorldModel(
        data.observation_space,
        data.action_space,
        hidden_dim=32,
        rnn_dim=32,
        batch_size=16,
        seq_len=8,
        seed=0,
        encoder="identity",
        num_mixtures=1,
        nll_beta=1.0,
        prediction_weight=10.0,
        lr_schedule="cosine",
        **settings,
    )
    model.fit(data, steps=fit_steps, progress=False)
    return model.eval()


@pytest.fixture(scope="module")
def pendulum_dream_model() -> WorldModel:
    """Pendulum from 800 random steps, fitted 1,500 steps: as envs/pendulum.yaml starts (about 17 s).

    The session pendulum_model (VAE, 150 fit steps) is too poor to learn in: SAC's dream return
    (horizon 100) went from -441 to -349 in 4,000 steps, and at temperature 0.3 it dreamt
    positive returns, which Pendulum never pays. Fitted 600 steps, agents stalled at -831 to
    -1,053 from -1,312 after 6,000 steps (eval seed 123); fitted 1,500, -613 to -1,079 from -1,674.
    """
    return _precise_model("Pendulum-v1", 800, fit_steps=1500)


@pytest.fixture(scope="module")
def cartpole_box_model() -> WorldModel:
    """CartPole with a Box action, for PPO and A2C on Box: their presets are tuned for CartPole."""
    return _precise_model(
        ContinuousCartPole(gym.make("CartPole-v1")), 2000, fit_steps=600, termination_weight=10.0
    )


def _action_spaces(algorithm: str) -> list[str]:
    return [
        space
        for space, excluded in (("Discrete", CONTINUOUS_ONLY), ("Box", DISCRETE_ONLY))
        if algorithm not in excluded
    ]


# dream -> (model fixture, horizon). CartPole dreams of 100 steps: an untrained policy falls in
# about 8-33 steps, a balancing one lasts all 100. Pendulum dreams of 200 steps, its episode length.
DREAMS = {
    "cartpole": ("cartpole_model", 100),
    "cartpole_box": ("cartpole_box_model", 100),
    "pendulum": ("pendulum_dream_model", 200),
}
# (algorithm, action space) -> dream, agent seed, timesteps, overrides of budget-only settings.
# Measured dream returns, untrained -> trained (and at 0.8x and 1.2x the timesteps), with the
# seconds learn() took on one shared CPU thread.
LEARNING = {
    # Seed 0's untrained policy already balances the pole (86 of 100 in this dream, 418 in the
    # real env; seeds 1, 2, 4 and 5 fall in about 8 steps): seed 1 leaves room to show learning.
    ("ppo", "Discrete"): ("cartpole", 1, 20_000, {}),  # 8.2 -> 100.0 (98.9, 96.5), 5 s
    ("a2c", "Discrete"): ("cartpole", 1, 20_000, {}),  # 8.2 -> 96.6 (99.6, 99.0), 4 s
    # DQN is the least steady: on the dream of model format 6 (a terminal reward head, so other
    # initial weights) 4,000 steps gave 26.4, 100.0, 99.6 for seeds 0-2, and 8,000 gave 81.4,
    # 71.1, 100.0.
    ("dqn", "Discrete"): ("cartpole", 0, 8_000, {}),  # 12.6 -> 81.4, about 15 s
    # PPO and A2C's presets (tuned for CartPole) barely move on Pendulum's swing-up: PPO -746 ->
    # -620 in 80,000 dream steps, A2C no better after 100,000. Balancing CartPole by a Box action
    # is their Box test.
    ("ppo", "Box"): ("cartpole_box", 0, 20_000, {}),  # 28.0 -> 100.0 (84.0, 97.8), 4 s
    ("a2c", "Box"): ("cartpole_box", 0, 20_000, {}),  # 28.0 -> 97.6 (99.4, 99.9), 4 s
    # The presets' learning_starts=1000 random steps would be a fifth to a quarter of these
    # budgets; 256 (one batch) leaves the rest to learning.
    ("sac", "Box"): ("pendulum", 0, 4_000, {"learning_starts": 256}),  # -1674 -> -698 (-652, -670), 24 s
    ("td3", "Box"): ("pendulum", 0, 6_000, {"learning_starts": 256}),  # -1674 -> -1079 (-999, -794), 20 s
    ("ddpg", "Box"): ("pendulum", 0, 5_000, {"learning_starts": 256}),  # -1674 -> -613 (-808, -681), 16 s
}
LEARNING_CASES = [
    pytest.param(name, space, id=f"{name}-{space}")
    for name in available("agents")
    for space in _action_spaces(agent_preset(name)["algorithm"])
]


def _dream_return(agent, model: WorldModel, horizon: int, n: int = 16) -> float:
    """Mean return of the deterministic policy over the first episode of n dreams, seeded alike.

    Without the support limit, so every episode before and after training lasts the horizon.
    """
    venv = DreamVecEnv(model, n, horizon=horizon, device="cpu", seed=1, support=None)
    obs, total, finished = venv.reset(), np.zeros(n), np.zeros(n, dtype=bool)
    while not finished.all():
        action, _ = agent.predict(obs, deterministic=True)
        obs, reward, done, _ = venv.step(action)
        total += np.where(finished, 0.0, reward)
        finished |= done
    return float(total.mean())


def learn_in_dream(name: str, space: str, model: WorldModel, horizon: int) -> tuple[float, float]:
    """The preset's agent's dream return before and after training in a dream of ``model``."""
    preset = agent_preset(name)
    _, seed, steps, overrides = LEARNING[preset["algorithm"], space]
    venv = DreamVecEnv(model, 8, horizon=horizon, device="cpu", seed=0)
    agent = make_agent(preset, venv, seed=seed, **overrides)
    before = _dream_return(agent, model, horizon)
    agent.learn(steps)
    return before, _dream_return(agent, model, horizon)


@pytest.mark.slow
@pytest.mark.parametrize("name, space", LEARNING_CASES)
def test_every_agent_preset_learns_in_a_dream(name, space, request):
    dream = LEARNING[agent_preset(name)["algorithm"], space][0]
    fixture, horizon = DREAMS[dream]
    before, after = learn_in_dream(name, space, request.getfixturevalue(fixture), horizon)
    report = f"{name} on {space} in the {dream} dream: {before:.1f} untrained -> {after:.1f} trained"
    if dream == "pendulum":
        # Measured gains of 595 to 1,061 (TD3 the least): 400 is several hundred with a margin.
        assert after >= before + 400, report
    else:
        # Measured 80 to 100 of 100 after training, from 8 to 28: 60 leaves a margin of 20.
        assert after >= 60 and after >= before + 30, report
