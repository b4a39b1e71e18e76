import sys

import gymnasium as gym
import numpy as np
import pytest
from stable_baselines3 import PPO

import genrl
from genrl import GenrlError, RolloutDataset

TAU = 0.02  # CartPole's Euler step


def assert_cartpole_transitions_are_real(ds: RolloutDataset) -> None:
    """CartPole integrates with explicit Euler: x' = x + tau * xdot and theta' = theta + tau * thetadot.

    A reset observation recorded as if it followed a step breaks this, so it catches reset steps.
    """
    assert len(ds) > 0
    for ep in ds.episodes:
        obs = ep.obs.astype(np.float64)
        np.testing.assert_allclose(obs[1:, 0], obs[:-1, 0] + TAU * obs[:-1, 1], atol=1e-5)
        np.testing.assert_allclose(obs[1:, 2], obs[:-1, 2] + TAU * obs[:-1, 3], atol=1e-5)


def assert_done_flags_only_at_end(ds: RolloutDataset) -> None:
    for ep in ds.episodes:
        done = ep.terminated | ep.truncated
        assert done[-1], "every stored episode ends terminated or truncated"
        assert not done[:-1].any()
        assert not (ep.terminated[-1] and ep.truncated[-1])


def assert_terminations_are_real(ds: RolloutDataset) -> None:
    # CartPole terminates exactly when |x| > 2.4 or |theta| > 12 degrees.
    limit = 12 * 2 * np.pi / 360
    for ep in ds.episodes:
        last = ep.obs[-1]
        fell = abs(last[0]) > 2.4 or abs(last[2]) > limit
        assert bool(ep.terminated[-1]) == fell
        assert not any(abs(o[0]) > 2.4 or abs(o[2]) > limit for o in ep.obs[:-1])


def test_collect_from_id_records_exact_steps():
    ds = genrl.collect("CartPole-v1", 300, seed=0, progress=False)
    assert ds.num_steps == 300
    assert len(ds) > 3  # random CartPole episodes are short
    assert_done_flags_only_at_end(ds)
    assert_cartpole_transitions_are_real(ds)
    assert_terminations_are_real(ds)
    # All but the last episode ended by the env; the last one was cut and marked truncated.
    assert all(ep.terminated[-1] for ep in ds.episodes[:-1])


class CloseSpy(gym.Wrapper):
    closed = False

    def close(self):
        self.closed = True
        super().close()


@pytest.mark.parametrize("num_envs", [1, 3])
def test_collect_whole_episodes(num_envs):
    env = gym.make_vec("CartPole-v1", num_envs=num_envs, vectorization_mode="sync")
    ds = genrl.collect(env, episodes=7, seed=0, progress=False)
    env.close()
    assert len(ds) == 7
    assert_done_flags_only_at_end(ds)
    assert_terminations_are_real(ds)
    # Whole episodes only: none was cut by the end of collection.
    for ep in ds.episodes:
        assert ep.terminated[-1] or len(ep.action) == 500


def test_collect_from_env_instance_keeps_it_open():
    env = CloseSpy(gym.make("CartPole-v1"))
    ds = genrl.collect(env, 150, seed=1, progress=False)
    assert ds.num_steps == 150
    assert not env.closed
    assert_cartpole_transitions_are_real(ds)
    assert_done_flags_only_at_end(ds)
    env.close()


def test_collect_from_time_limited_env_marks_truncation():
    env = gym.make("Pendulum-v1", max_episode_steps=20)
    ds = genrl.collect(env, 50, seed=0, progress=False)
    assert [len(ep.reward) for ep in ds.episodes] == [20, 20, 10]
    assert all(ep.truncated[-1] and not ep.terminated.any() for ep in ds.episodes)
    assert ds.episodes[0].action.shape == (20, 1)


@pytest.mark.parametrize(
    "vector_kwargs",
    [{}, {"autoreset_mode": gym.vector.AutoresetMode.SAME_STEP}],
    ids=["next_step", "same_step"],
)
def test_collect_from_vector_env_skips_reset_steps(vector_kwargs):
    venv = gym.make_vec("CartPole-v1", num_envs=4, vectorization_mode="sync", vector_kwargs=vector_kwargs)
    ds = genrl.collect(venv, 500, seed=0, progress=False)
    assert ds.num_steps == 500
    # Many episodes end inside 500 random steps over 4 envs: the autoreset path is exercised.
    assert sum(bool(ep.terminated[-1]) for ep in ds.episodes) >= 10
    assert_cartpole_transitions_are_real(ds)
    assert_done_flags_only_at_end(ds)
    assert_terminations_are_real(ds)
    # Every episode starts at a reset observation: CartPole resets uniformly in [-0.05, 0.05].
    assert np.all(np.abs(ds.start_states()) <= 0.05)
    venv.close()


def test_vector_autoreset_modes_record_the_same_kind_of_data():
    kwargs = {"num_envs": 2, "vectorization_mode": "sync"}
    next_step = genrl.collect(gym.make_vec("CartPole-v1", **kwargs), 200, seed=3, progress=False)
    same_step = genrl.collect(
        gym.make_vec(
            "CartPole-v1", **kwargs, vector_kwargs={"autoreset_mode": gym.vector.AutoresetMode.SAME_STEP}
        ),
        200,
        seed=3,
        progress=False,
    )
    # Same seeds, same random actions: the first episode of each env is identical in both modes.
    assert next_step.num_steps == same_step.num_steps == 200
    np.testing.assert_array_equal(next_step.episodes[0].obs, same_step.episodes[0].obs)
    np.testing.assert_array_equal(next_step.episodes[0].action, same_step.episodes[0].action)


def test_collect_rejects_disabled_autoreset():
    venv = gym.make_vec(
        "CartPole-v1",
        num_envs=2,
        vectorization_mode="sync",
        vector_kwargs={"autoreset_mode": gym.vector.AutoresetMode.DISABLED},
    )
    with pytest.raises(GenrlError, match="autoreset mode must be NEXT_STEP or SAME_STEP"):
        genrl.collect(venv, 10, seed=0, progress=False)
    venv.close()


def test_callable_policy_chooses_actions():
    def lean(obs: np.ndarray) -> np.ndarray:
        assert obs.shape == (1, 4)
        return (obs[:, 2] > 0).astype(np.int64)

    ds = genrl.collect("CartPole-v1", 200, policy=lean, seed=0, progress=False)
    assert ds.num_steps == 200
    for ep in ds.episodes:
        np.testing.assert_array_equal(ep.action, (ep.obs[:-1, 2] > 0).astype(np.int64))
    # Leaning into the fall keeps the pole up much longer than random actions do.
    random = genrl.collect("CartPole-v1", 200, seed=0, progress=False)
    assert len(ds) < len(random)


def test_sb3_model_policy_is_used():
    model = PPO("MlpPolicy", gym.make("CartPole-v1"), seed=0, device="cpu")
    ds = genrl.collect("CartPole-v1", 100, policy=model, deterministic=True, seed=0, progress=False)
    assert ds.num_steps == 100
    for ep in ds.episodes:
        expected, _ = model.predict(ep.obs[:-1], deterministic=True)
        np.testing.assert_array_equal(ep.action, expected)


def test_epsilon_one_replaces_policy_actions():
    ds = genrl.collect(
        "CartPole-v1", 300, policy=lambda obs: np.zeros(1, np.int64), epsilon=1.0, seed=0, progress=False
    )
    actions = np.concatenate([ep.action for ep in ds.episodes])
    assert 0.3 < actions.mean() < 0.7


def test_collect_appends_to_dataset_on_disk(tmp_path):
    genrl.collect("CartPole-v1", 50, seed=0, path=tmp_path, progress=False)
    genrl.collect("CartPole-v1", 70, seed=1, path=tmp_path, progress=False)
    loaded = RolloutDataset.load(tmp_path)
    assert loaded.num_steps == 120
    assert_cartpole_transitions_are_real(loaded)
    assert [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")] == []


def test_collect_into_dataset_of_other_env_is_refused(tmp_path):
    genrl.collect("CartPole-v1", 20, seed=0, path=tmp_path, progress=False)
    with pytest.raises(GenrlError, match="space mismatch"):
        genrl.collect("Pendulum-v1", 20, seed=0, path=tmp_path, progress=False)
    ds = genrl.collect("CartPole-v1", 10, seed=0, progress=False)
    with pytest.raises(GenrlError, match="space mismatch"):
        genrl.collect("Acrobot-v1", 10, dataset=ds, progress=False)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"env": "NoSuchEnv-v0", "steps": 10}, "unknown environment 'NoSuchEnv-v0'"),
        ({"env": 42, "steps": 10}, "env must be an env id"),
        ({"env": "CartPole-v1", "steps": 0}, "collect steps: expected an integer >= 1, got 0"),
        (
            {"env": "CartPole-v1", "steps": 10, "epsilon": 1.5},
            "collect epsilon: expected a number >= 0 and <= 1, got 1.5",
        ),
        ({"env": "CartPole-v1", "steps": 10, "policy": 3}, "policy must be None, an SB3 model or a callable"),
        ({"env": "CartPole-v1"}, "expected either steps or episodes, got steps=None and episodes=None"),
        ({"env": "CartPole-v1", "steps": 5, "episodes": 2}, "expected either steps or episodes"),
        ({"env": "CartPole-v1", "episodes": 0}, "collect episodes: expected an integer >= 1, got 0"),
        ({"env": "CartPole-v1", "episodes": 2.5}, "collect episodes: expected an integer >= 1, got 2.5"),
    ],
)
def test_collect_rejects_bad_input(kwargs, match):
    with pytest.raises(GenrlError, match=match):
        genrl.collect(progress=False, **kwargs)


def test_unsupported_env_is_rejected():
    with pytest.raises(GenrlError, match="unsupported"):
        genrl.collect("Blackjack-v1", 10, progress=False)


def test_collect_from_a_function_making_the_env():
    ds = genrl.collect(lambda: gym.make("CartPole-v1"), 50, seed=0, progress=False)
    assert ds.num_steps == 50
    with pytest.raises(GenrlError, match="must return a gymnasium.Env"):
        genrl.collect(lambda: "CartPole-v1", 10, progress=False)


def test_ray_backend_without_ray_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # as if the genrl[ray] extra were not installed
    with pytest.raises(GenrlError, match=r"pip install 'genrl\[ray\]'"):
        genrl.collect("CartPole-v1", 10, backend="ray", progress=False)
    assert genrl.collect("CartPole-v1", 10, seed=0, progress=False).num_steps == 10  # local: unchanged
