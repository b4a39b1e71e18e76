import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from stable_baselines3.common.utils import LinearSchedule
from stable_baselines3.common.vec_env import VecMonitor

from genrl import DreamVecEnv, FitConfig, GenrlError, TrainConfig, WorldModel, WorldModelConfig
from genrl.training.agents import ALGORITHMS, agent_preset, load_policy, make_agent, save_policy
from genrl.training.presets import available, find_env_preset, load_preset, preset_dirs

CONTINUOUS_ONLY = {"sac", "td3"}
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
    if algorithm in ("dqn", "sac", "td3"):
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
    with pytest.raises(GenrlError, match=r"unknown algorithm 'rainbow': expected one of \['a2c', 'dqn'"):
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
    assert isinstance(agent.learning_rate, LinearSchedule)
    assert agent.lr_schedule(1.0) == pytest.approx(0.01)
    assert agent.lr_schedule(0.0) == pytest.approx(0.0)


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
        env = gym.make(cfg.env_id)  # and the model it describes can be built for that env
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
