import gymnasium as gym
import numpy as np
import pytest
import torch
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv, VecMonitor

from genrl import DreamVecEnv, GenrlError
from genrl.training.agents import agent_preset, make_agent


def _start_candidates(model, dataset) -> np.ndarray:
    """Every observation a dream can start with: decoded real start states."""
    with torch.no_grad():
        return model.decode(model.encode(torch.as_tensor(dataset.start_states()))).numpy()


def _is_start(obs: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    dist = np.abs(obs[:, None, :] - candidates[None, :, :]).max(-1).min(-1)
    return dist < 1e-5


def _random_actions(venv: VecEnv, steps: int, seed: int = 0) -> list[np.ndarray]:
    venv.action_space.seed(seed)
    return [np.stack([venv.action_space.sample() for _ in range(venv.num_envs)]) for _ in range(steps)]


def test_is_an_sb3_vec_env(cartpole_model, cartpole_dataset):
    venv = DreamVecEnv(cartpole_model, 6, cartpole_dataset, device="cpu", seed=0)
    assert isinstance(venv, VecEnv)
    assert venv.num_envs == 6
    assert venv.observation_space == cartpole_model.observation_space
    assert venv.action_space == cartpole_model.action_space
    obs = venv.reset()
    assert obs.shape == (6, 4) and obs.dtype == np.float32
    assert _is_start(obs, _start_candidates(cartpole_model, cartpole_dataset)).all()
    obs, reward, done, infos = venv.step(np.ones(6, dtype=np.int64))
    assert obs.shape == (6, 4) and reward.shape == (6,) and reward.dtype == np.float32
    assert done.shape == (6,) and done.dtype == bool
    assert len(infos) == 6 and all(isinstance(info["uncertainty"], float) for info in infos)


def test_latent_obs_mode(pendulum_model):
    venv = DreamVecEnv(pendulum_model, 3, obs_mode="latent", device="cpu", seed=0)
    obs = venv.reset()
    assert obs.shape == (3, pendulum_model.config.latent_dim)
    with torch.no_grad():
        latents = pendulum_model.encode(pendulum_model.start_states).numpy()
    assert _is_start(obs, latents).all()


def test_horizon_auto_reset_contract(pendulum_model, pendulum_dataset):
    venv = DreamVecEnv(pendulum_model, 5, pendulum_dataset, horizon=3, device="cpu", seed=0)
    candidates = _start_candidates(pendulum_model, pendulum_dataset)
    obs = venv.reset()
    actions = _random_actions(venv, 7)
    for step, action in enumerate(actions, start=1):
        prev = obs
        obs, _, done, infos = venv.step(action)
        if step % 3:
            assert not done.any()
            assert all("terminal_observation" not in info for info in infos)
            assert not _is_start(obs, candidates).any(), "a running dream does not jump back to a start"
            continue
        assert done.all()
        assert venv.dream.t.tolist() == [0] * 5  # the time step restarts with the episode
        for i, info in enumerate(infos):
            assert info["TimeLimit.truncated"] is True
            terminal = info["terminal_observation"]
            assert terminal.shape == (3,) and terminal.dtype == np.float32
            assert pendulum_model.observation_space.contains(terminal)
            assert not np.array_equal(terminal, obs[i])
            assert not np.array_equal(terminal, prev[i])
        assert _is_start(obs, candidates).all(), "the returned obs is the new episode's first"


def test_time_limit_flag_only_for_horizon(cartpole_model, cartpole_dataset):
    horizon = 15
    venv = DreamVecEnv(cartpole_model, 16, cartpole_dataset, horizon=horizon, device="cpu", seed=0)
    candidates = _start_candidates(cartpole_model, cartpole_dataset)
    venv.reset()
    length = np.zeros(16, dtype=int)
    ends = {"terminated": 0, "truncated": 0}
    for action in _random_actions(venv, 40):
        obs, _, done, infos = venv.step(action)
        length += 1
        assert np.all(length <= horizon)
        for i in np.flatnonzero(done):
            flag = infos[i]["TimeLimit.truncated"]
            assert isinstance(flag, bool)
            if length[i] < horizon:
                assert flag is False, "ended before the horizon: a termination, not a time limit"
            ends["truncated" if flag else "terminated"] += 1
            assert "terminal_observation" in infos[i]
        assert _is_start(obs[done], candidates).all()
        for i in np.flatnonzero(~done):
            assert "terminal_observation" not in infos[i] and "TimeLimit.truncated" not in infos[i]
        length[done] = 0
    assert ends["terminated"] > 0 and ends["truncated"] > 0


def test_get_and_set_attr(cartpole_model):
    venv = DreamVecEnv(cartpole_model, 4, horizon=33, device="cpu", seed=0)
    assert venv.get_attr("horizon") == [33] * 4
    assert venv.get_attr("horizon", indices=[1, 2]) == [33, 33]
    assert venv.get_attr("render_mode") == ["rgb_array"] * 4
    venv.set_attr("temperature", 0.0)
    assert venv.get_attr("temperature") == [0.0] * 4
    assert venv.dream.temperature == 0.0
    venv.set_attr("horizon", 2)
    venv.reset()
    venv.step(np.zeros(4, dtype=np.int64))
    _, _, done, _ = venv.step(np.zeros(4, dtype=np.int64))
    assert done.all()
    with pytest.raises(GenrlError, match="dreams share settings"):
        venv.set_attr("temperature", 1.0, indices=[0])
    with pytest.raises(GenrlError, match="dreams have no setting 'nope'"):
        venv.set_attr("nope", 1)


def test_temperature_zero_makes_dreams_deterministic(cartpole_model):
    def run(seed):
        venv = DreamVecEnv(cartpole_model, 4, horizon=30, temperature=1.0, device="cpu", seed=0)
        venv.reset()
        venv.set_attr("temperature", 0.0)
        venv.dream.seed(seed)  # reseeding the noise changes nothing at temperature 0
        return [venv.step(np.ones(4, dtype=np.int64))[0] for _ in range(5)]

    for a, b in zip(run(1), run(2), strict=True):
        np.testing.assert_array_equal(a, b)


def test_env_method_and_wrappers(cartpole_model):
    venv = DreamVecEnv(cartpole_model, 3, device="cpu", seed=0)
    venv.reset()
    images = venv.env_method("render", indices=[0, 2])
    assert len(images) == 2
    assert all(im.ndim == 3 and im.shape[2] == 3 and im.dtype == np.uint8 for im in images)
    assert len(venv.get_images()) == 3
    assert venv.env_is_wrapped(Monitor) == [False] * 3
    observed = venv.env_method("observe", venv.dream.z)
    assert len(observed) == 3 and observed[0].shape == (3, 4)
    with pytest.raises(AttributeError, match="no method 'fly'"):
        venv.env_method("fly")
    # A batch method acts on every dream at once, so a subset of indices is refused, not run twice.
    with pytest.raises(GenrlError, match="share one batch"):
        venv.env_method("reset", indices=[0, 1])


def test_vec_monitor_records_episodes(pendulum_model):
    venv = VecMonitor(DreamVecEnv(pendulum_model, 4, horizon=6, device="cpu", seed=0))
    venv.reset()
    total = np.zeros(4)
    for step, action in enumerate(_random_actions(venv, 12), start=1):
        _, reward, done, infos = venv.step(action)
        total += reward
        if step % 6 == 0:
            assert done.all()
            for i, info in enumerate(infos):
                assert info["episode"]["l"] == 6
                assert info["episode"]["r"] == pytest.approx(total[i], abs=1e-3)
            total[:] = 0
        else:
            assert all("episode" not in info for info in infos)


@pytest.mark.parametrize("shape", [(3,), (4, 2), (3, 3), (), (2, 2), (1, 4)])
def test_wrong_action_shape_is_rejected(cartpole_model, shape):
    venv = DreamVecEnv(cartpole_model, 4, device="cpu", seed=0)
    venv.reset()
    with pytest.raises(GenrlError, match=r"actions: expected shape \(4,\)"):
        venv.step(np.zeros(shape, dtype=np.int64))


@pytest.mark.parametrize(
    "actions, match",
    [
        ([0, 1, 2, 0], r"expected integers in Discrete\(2\)"),
        ([0, -1, 1, 0], r"expected integers in Discrete\(2\)"),
        ([0.0, 0.5, 1.0, 0.0], r"expected integers in Discrete\(2\)"),
        ([0.0, np.nan, 1.0, 0.0], r"expected integers in Discrete\(2\)"),
    ],
)
def test_invalid_discrete_action_values_are_rejected(cartpole_model, actions, match):
    venv = DreamVecEnv(cartpole_model, 4, device="cpu", seed=0)
    venv.reset()
    with pytest.raises(GenrlError, match="invalid actions: " + match):
        venv.step(np.array(actions))
    obs, *_ = venv.step(np.array([0.0, 1.0, 1.0, 0.0]))  # whole floats are fine, and the env still works
    assert obs.shape == (4, 4)


def test_invalid_continuous_action_values_are_rejected(pendulum_model):
    venv = DreamVecEnv(pendulum_model, 2, device="cpu", seed=0)
    venv.reset()
    for bad in ([[np.nan], [0.0]], [[0.0], [np.inf]]):
        with pytest.raises(GenrlError, match="invalid actions: expected finite numbers"):
            venv.step(np.array(bad, dtype=np.float32))
    obs, *_ = venv.step(np.array([[5.0], [-5.0]], dtype=np.float32))  # beyond the bounds: clipped
    assert np.all(np.isfinite(obs))


def test_column_actions_are_accepted(cartpole_model, pendulum_model):
    venv = DreamVecEnv(cartpole_model, 4, device="cpu", seed=0)
    venv.reset()
    obs, *_ = venv.step(np.zeros((4, 1), dtype=np.int64))  # DQN-style column of indices
    assert obs.shape == (4, 4)
    cont = DreamVecEnv(pendulum_model, 2, device="cpu", seed=0)
    cont.reset()
    with pytest.raises(GenrlError, match=r"actions: expected shape \(2, 1\)"):
        cont.step(np.zeros((2, 3), dtype=np.float32))
    obs, *_ = cont.step(np.zeros((2, 1), dtype=np.float32))
    assert obs.shape == (2, 3)


def test_step_wait_without_actions_is_an_error(cartpole_model):
    venv = DreamVecEnv(cartpole_model, 2, device="cpu", seed=0)
    venv.reset()
    with pytest.raises(GenrlError, match=r"step_wait\(\) called without step_async\(\)"):
        venv.step_wait()


def test_bad_n_envs_is_rejected(cartpole_model):
    with pytest.raises(GenrlError, match="the number of dreams: expected an integer >= 1, got 0"):
        DreamVecEnv(cartpole_model, 0, device="cpu")
    with pytest.raises(GenrlError, match="the number of dreams: expected an integer >= 1, got 2.5"):
        DreamVecEnv(cartpole_model, 2.5, device="cpu")


def test_loads_a_saved_model(cartpole_model_path):
    venv = DreamVecEnv(str(cartpole_model_path), 2, device="cpu", seed=0)
    assert venv.reset().shape == (2, 4)


class _RandomPolicy:
    """The baseline: uniform random actions, with evaluate_policy's predict signature."""

    def __init__(self, action_space, seed: int):
        self.space = action_space
        self.space.seed(seed)

    def predict(self, obs, state=None, episode_start=None, deterministic=False):
        return np.array([self.space.sample() for _ in range(len(obs))]), state


@pytest.mark.slow  # 15,000 PPO steps
def test_ppo_learns_in_the_dream(cartpole_model, cartpole_dataset):
    def dream(seed: int) -> VecMonitor:
        return VecMonitor(
            DreamVecEnv(cartpole_model, 16, cartpole_dataset, horizon=200, device="cpu", seed=seed)
        )

    def real() -> DummyVecEnv:
        venv = DummyVecEnv([lambda: Monitor(gym.make("CartPole-v1"))])
        venv.seed(7)
        return venv

    def mean_return(policy, env: VecEnv, episodes: int) -> float:
        returns, _ = evaluate_policy(policy, env, episodes, deterministic=True, return_episode_rewards=True)
        return float(np.mean(returns))

    agent = make_agent(agent_preset("ppo"), dream(0), seed=0)
    random_policy = _RandomPolicy(cartpole_model.action_space, seed=0)
    random_dream, random_real = (
        mean_return(random_policy, dream(123), 48),
        mean_return(random_policy, real(), 10),
    )
    agent.learn(15_000)
    trained_dream, trained_real = mean_return(agent, dream(123), 48), mean_return(agent, real(), 10)
    # A model that ignores actions gives every policy about the same return; a faithful one does not.
    assert trained_dream > 3.0 * random_dream, (trained_dream, random_dream)
    # Decoded dreams share the real observation space: the policy runs unchanged in CartPole itself.
    assert trained_real > 2.0 * random_real, (trained_real, random_real)
