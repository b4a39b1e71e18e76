import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import genrl
from genrl import DreamEnv, GenrlError


@pytest.fixture(params=["cartpole", "pendulum"])
def model_and_data(request):
    return (
        request.getfixturevalue(f"{request.param}_model"),
        request.getfixturevalue(f"{request.param}_dataset"),
    )


def _rollout(env: gym.Env, actions, seed: int, **reset_kwargs):
    obs, _ = env.reset(seed=seed, **reset_kwargs)
    trajectory = [obs]
    for action in actions:
        obs, reward, terminated, truncated, info = env.step(action)
        trajectory.append((obs, reward, terminated, truncated, info["uncertainty"]))
        if terminated or truncated:
            break
    return trajectory


def _assert_same_trajectory(a, b):
    assert len(a) == len(b)
    np.testing.assert_array_equal(a[0], b[0])
    for x, y in zip(a[1:], b[1:], strict=True):
        np.testing.assert_array_equal(x[0], y[0])
        assert x[1:] == y[1:]


# The checker's advice (unbounded latents, asymmetric Pendulum torques) is not a failure.
@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("obs_mode", ["decoded", "latent"])
def test_gymnasium_env_checker(model_and_data, obs_mode):
    model, dataset = model_and_data
    env = DreamEnv(model, dataset, horizon=50, obs_mode=obs_mode, render_mode="rgb_array")
    gym_check_env(env, skip_render_check=False)
    assert env.observation_space.shape == (
        model.observation_space.shape if obs_mode == "decoded" else (model.config.latent_dim,)
    )


@pytest.mark.parametrize("obs_mode", ["decoded", "latent"])
def test_sb3_env_checker(model_and_data, obs_mode):
    model, _ = model_and_data
    env = DreamEnv(model, horizon=50, obs_mode=obs_mode)
    sb3_check_env(env, warn=False)
    assert env.action_space == model.action_space


def test_decoded_dream_has_the_real_spaces(cartpole_model, pendulum_model):
    for model, env_id in ((cartpole_model, "CartPole-v1"), (pendulum_model, "Pendulum-v1")):
        real = gym.make(env_id)
        dream = DreamEnv(model)
        assert dream.observation_space == real.observation_space
        assert dream.action_space == real.action_space
        obs, _ = dream.reset(seed=0)
        assert real.observation_space.contains(obs)


def test_horizon_truncates_and_never_terminates(pendulum_model):
    env = DreamEnv(pendulum_model, horizon=7)
    for episode in range(3):
        env.reset(seed=episode)
        for t in range(1, 8):
            _, reward, terminated, truncated, _ = env.step(np.array([0.5], dtype=np.float32))
            assert isinstance(reward, float)
            assert terminated is False  # Pendulum never terminates, and neither does its dream
            assert truncated is (t == 7)


def test_termination_excludes_truncation(cartpole_model, cartpole_dataset):
    env = DreamEnv(cartpole_model, cartpole_dataset, horizon=15)
    env.action_space.seed(0)
    ends = []
    for episode in range(12):
        env.reset(seed=episode)
        for t in range(1, 16):
            _, _, terminated, truncated, _ = env.step(env.action_space.sample())
            assert not (terminated and truncated)
            if terminated or truncated:
                ends.append((t, terminated))
                # Before the horizon only the model ends a dream; at it, a dream the model does not
                # end is truncated (one the model ends there is terminated: the pole really fell).
                assert truncated == (t == 15 and not terminated)
                break
    assert len(ends) == 12
    assert any(terminated for _, terminated in ends), "a random policy drops the dreamed pole sometimes"


def test_reset_without_seed_continues_the_random_stream(pendulum_model):
    env = DreamEnv(pendulum_model, horizon=5)
    env.reset(seed=0)
    starts = [env.reset()[0] for _ in range(8)]
    assert len({s.tobytes() for s in starts}) > 1


def test_start_states_come_from_the_dataset(pendulum_model, pendulum_dataset):
    env = DreamEnv(pendulum_model, pendulum_dataset, obs_mode="latent")
    with torch.no_grad():
        candidates = pendulum_model.encode(torch.as_tensor(pendulum_dataset.start_states())).numpy()
    for seed in range(5):
        obs, _ = env.reset(seed=seed)
        assert np.min(np.abs(candidates - obs).max(axis=1)) < 1e-6


def test_start_any_draws_from_all_recorded_states(pendulum_model, pendulum_dataset):
    env = DreamEnv(pendulum_model, pendulum_dataset, obs_mode="latent", start="any")
    with torch.no_grad():
        every = pendulum_model.encode(torch.as_tensor(pendulum_dataset.all_states())).numpy()
        initial = pendulum_model.encode(torch.as_tensor(pendulum_dataset.start_states())).numpy()
    starts = np.stack([env.reset(seed=seed)[0] for seed in range(10)])
    dist = lambda pool: np.abs(starts[:, None] - pool[None]).max(-1).min(-1)  # noqa: E731
    assert np.all(dist(every) < 1e-6)
    assert np.any(dist(initial) > 1e-3), "not only the episodes' first observations"


def test_initial_obs_option(cartpole_model, cartpole_dataset):
    real_obs = cartpole_dataset.episodes[3].obs[5]
    latent_env = DreamEnv(cartpole_model, obs_mode="latent")
    obs, _ = latent_env.reset(seed=0, options={"initial_obs": real_obs})
    with torch.no_grad():
        z = cartpole_model.encode(torch.as_tensor(real_obs[None]))
        decoded = cartpole_model.decode(z)[0].numpy()
    np.testing.assert_allclose(obs, z[0].numpy(), rtol=1e-6, atol=1e-6)

    env = DreamEnv(cartpole_model)
    obs, _ = env.reset(seed=0, options={"initial_obs": real_obs})
    np.testing.assert_allclose(obs, decoded, rtol=1e-5, atol=1e-6)
    # Reconstruction is good enough that the dream starts where the real env was.
    np.testing.assert_allclose(obs, real_obs, atol=0.25)
    # A random start from the dataset is somewhere else entirely.
    assert not np.allclose(env.reset(seed=0)[0], obs, atol=1e-3)


@pytest.mark.parametrize("bad", [np.zeros(3), np.array([0, 0, np.nan, 0]), [[0, 0, 0, 0]]])
def test_bad_initial_obs_is_rejected(cartpole_model, bad):
    env = DreamEnv(cartpole_model)
    with pytest.raises(GenrlError, match=r"initial_obs: expected a finite array of shape \(4,\)"):
        env.reset(options={"initial_obs": bad})


def test_info_has_float_uncertainty(cartpole_model):
    env = DreamEnv(cartpole_model)
    _, info = env.reset(seed=0)
    assert isinstance(info, dict)
    _, _, _, _, info = env.step(1)
    assert isinstance(info["uncertainty"], float)
    assert np.isfinite(info["uncertainty"]) and info["uncertainty"] >= 0


@pytest.mark.parametrize("obs_mode", ["decoded", "latent"])
def test_render_returns_rgb_image(cartpole_model, obs_mode):
    env = DreamEnv(cartpole_model, obs_mode=obs_mode, render_mode="rgb_array")
    env.reset(seed=0)
    env.step(0)
    image = env.render()
    assert isinstance(image, np.ndarray)
    assert image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.uint8
    assert image.min() < 255, "the picture shows something"
    assert DreamEnv(cartpole_model).render() is None  # no render_mode, no picture


@pytest.mark.parametrize("action", [2, -1, 0.5, [0, 1], "left", None])
def test_bad_discrete_actions_are_rejected(cartpole_model, action):
    env = DreamEnv(cartpole_model)
    env.reset(seed=0)
    with pytest.raises(GenrlError, match="invalid action"):
        env.step(action)


@pytest.mark.parametrize("action", [np.array(1), np.array([1]), np.int64(1)])
def test_a_scalar_or_one_element_discrete_action_is_accepted(cartpole_model, action):
    env = DreamEnv(cartpole_model)
    env.reset(seed=0)
    env.step(action)


def test_a_discrete_action_of_two_dimensions_is_refused_in_one_line(cartpole_model):
    env = DreamEnv(cartpole_model)
    env.reset(seed=0)
    with pytest.raises(
        GenrlError, match=r"^invalid action: expected an integer in Discrete\(2\), got array\(\[\[1\]\]"
    ) as err:
        env.step(np.array([[1]]))
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("action", [np.zeros(2), np.array([np.nan]), np.array([np.inf]), 0.3])
def test_bad_continuous_actions_are_rejected(pendulum_model, action):
    env = DreamEnv(pendulum_model)
    env.reset(seed=0)
    with pytest.raises(GenrlError, match="invalid action"):
        env.step(action)


def test_step_before_reset_is_an_error(cartpole_model):
    with pytest.raises(GenrlError, match=r"step\(\) called before reset\(\)"):
        DreamEnv(cartpole_model).step(0)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"obs_mode": "pixels"}, r"obs_mode: expected one of \['decoded', 'latent'\], got 'pixels'"),
        ({"horizon": 0}, "horizon: expected an integer >= 1, got 0"),
        ({"horizon": 2.5}, "horizon: expected an integer >= 1, got 2.5"),
        ({"temperature": -1.0}, "temperature: expected a number >= 0, got -1.0"),
        ({"start": "middle"}, r"start: expected one of \['initial', 'any'\], got 'middle'"),
        ({"render_mode": "human"}, r"render_mode: expected one of \[None, 'rgb_array'\], got 'human'"),
    ],
)
def test_bad_settings_are_rejected(cartpole_model, kwargs, match):
    with pytest.raises(GenrlError, match=match) as err:
        DreamEnv(cartpole_model, **kwargs)
    assert "\n" not in str(err.value)


def test_dataset_of_other_env_is_rejected(cartpole_model, pendulum_dataset):
    with pytest.raises(GenrlError, match="space mismatch"):
        DreamEnv(cartpole_model, pendulum_dataset)


def test_model_without_start_states_needs_a_dataset(cartpole_dataset):
    fresh = genrl.WorldModel(cartpole_dataset.observation_space, cartpole_dataset.action_space, hidden_dim=8)
    with pytest.raises(GenrlError, match="no start states"):
        DreamEnv(fresh).reset(seed=0)
    obs, _ = DreamEnv(fresh, cartpole_dataset).reset(seed=0)
    assert obs.shape == (4,)


def test_gym_make_from_saved_model(cartpole_model_path, cartpole_model):
    # On the CPU, as the in-memory model it is compared with (a saved model loads onto "auto").
    env = gym.make("genrl/Dream-v0", model=str(cartpole_model_path), horizon=5, device="cpu")
    assert env.observation_space == cartpole_model.observation_space
    assert env.action_space == cartpole_model.action_space
    assert env.unwrapped.dream.horizon == 5
    obs, _ = env.reset(seed=0)
    assert env.observation_space.contains(obs)
    steps = 0
    while True:
        obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
        steps += 1
        assert isinstance(reward, float) and "uncertainty" in info
        if terminated or truncated:
            break
    assert steps <= 5
    # The same trajectory as a DreamEnv built from the in-memory model.
    direct = DreamEnv(cartpole_model, horizon=5)
    actions = [0, 1, 0, 1, 1]
    _assert_same_trajectory(_rollout(env, actions, seed=4), _rollout(direct, actions, seed=4))
    env.close()


def test_dream_env_loads_a_path(pendulum_model_path, pendulum_model):
    env = DreamEnv(pendulum_model_path, obs_mode="latent", device="cpu")
    obs, _ = env.reset(seed=0)
    assert obs.shape == (pendulum_model.config.latent_dim,)
    with pytest.raises(GenrlError, match="model must be a WorldModel or the path"):
        DreamEnv(42)
    with pytest.raises(GenrlError, match="found no such file"):
        DreamEnv(pendulum_model_path.parent / "missing")
