"""Envs with image observations: MinAtar's ids, pixel CartPole and CarRacing, made by genrl.make_env."""

from __future__ import annotations

import sys

import gymnasium as gym
import numpy as np
import pytest

from genrl.data.envs import make_env
from genrl.data.pixels import PIXEL_CARTPOLE_ID, pixel_env
from genrl.errors import GenrlError
from genrl.training.config import TrainConfig
from genrl.training.presets import load_preset


def _one_line_error(excinfo: pytest.ExceptionInfo) -> str:
    message = str(excinfo.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize(
    ("env_id", "channels", "actions", "limit"),
    [("MinAtar/Breakout-v1", 4, 3, 1000), ("MinAtar/Freeway-v1", 7, 3, 2500)],
)
def test_minatar_ids_make_and_step(env_id, channels, actions, limit):
    pytest.importorskip("minatar")
    env = make_env(env_id)
    assert env.observation_space.shape == (10, 10, channels)
    assert env.observation_space.dtype == np.bool_
    assert env.action_space == gym.spaces.Discrete(actions)  # v1: the minimal action set
    assert env.spec.max_episode_steps == limit  # genrl's time limit: MinAtar registers none
    obs, _ = env.reset(seed=0)
    assert obs.dtype == np.bool_ and obs.shape == (10, 10, channels) and obs.any()
    obs, reward, terminated, truncated, _ = env.step(env.action_space.sample())
    assert obs.dtype == np.bool_ and obs.shape == (10, 10, channels)
    assert float(reward) in (0.0, 1.0) and not truncated
    env.close()


def test_freeway_clock_is_a_truncation():
    """Freeway's own clock would end it with terminated=True at step 2,501; the time limit comes first."""
    pytest.importorskip("minatar")
    env = make_env("MinAtar/Freeway-v1")
    env.reset(seed=0)
    steps, terminated, truncated = 0, False, False
    while not (terminated or truncated) and steps < 2501:
        _, _, terminated, truncated, _ = env.step(0)  # stand still: never crosses, never hit out
        steps += 1
    assert truncated and not terminated and steps == 2500
    env.close()


def test_unknown_minatar_game_is_one_line():
    pytest.importorskip("minatar")
    with pytest.raises(GenrlError, match="unknown environment 'MinAtar/Pong-v1'") as excinfo:
        make_env("MinAtar/Pong-v1")
    assert "MinAtar" in _one_line_error(excinfo)


def test_minatar_missing_names_the_extra(monkeypatch):
    for name in [n for n in gym.registry if n.startswith("MinAtar/")]:
        monkeypatch.delitem(gym.registry, name)
    monkeypatch.setitem(sys.modules, "minatar", None)
    monkeypatch.setitem(sys.modules, "minatar.gym", None)
    with pytest.raises(GenrlError, match=r"pip install genrl\[minatar\]") as excinfo:
        make_env("MinAtar/Breakout-v1")
    assert "'MinAtar/Breakout-v1'" in _one_line_error(excinfo)


def _dark_columns(frame: np.ndarray) -> float:
    """The mean column of the darkest pixels: the black cart."""
    return float(np.nonzero(frame[..., 0] < 64)[1].mean())


def test_pixel_cartpole_is_cartpole_in_frames():
    pytest.importorskip("pygame")
    env = make_env(PIXEL_CARTPOLE_ID)
    assert env.observation_space == gym.spaces.Box(0, 255, (64, 64, 1), np.uint8)
    assert env.action_space == gym.spaces.Discrete(2)
    assert env.spec.max_episode_steps == 500 and env.spec.reward_threshold == 475
    first, _ = env.reset(seed=0)
    assert first.shape == (64, 64, 1) and first.dtype == np.uint8
    frames = [first] + [env.step(1)[0] for _ in range(4)]  # push right: the cart speeds up
    assert all(env.observation_space.contains(f) for f in frames)
    assert not np.array_equal(frames[0], frames[-1])
    # The picture follows the state: the cart far left, then far right.
    columns = []
    for x in (-1.5, 1.5):
        env.unwrapped.state = np.array([x, 0.0, 0.0, 0.0])
        columns.append(_dark_columns(env.step(0)[0]))
    assert columns[0] < 20 < 44 < columns[1]
    env.close()


def test_pixel_env_options():
    pytest.importorskip("pygame")
    env = pixel_env("CartPole-v1", size=(32, 48), grayscale=False)
    assert env.observation_space == gym.spaces.Box(0, 255, (32, 48, 3), np.uint8)
    obs, _ = env.reset(seed=1)
    assert obs.shape == (32, 48, 3) and obs.max() == 255  # a white background
    assert env.spec.max_episode_steps == 500  # CartPole's own limit
    env.close()
    with pytest.raises(GenrlError, match="expected render_mode None or 'rgb_array'"):
        pixel_env("CartPole-v1", render_mode="human")
    with pytest.raises(GenrlError, match="pixel_env size"):
        pixel_env("CartPole-v1", size=0)


def test_pixel_cartpole_without_pygame_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "pygame", None)
    with pytest.raises(GenrlError, match=r"pip install genrl\[pixels\]") as excinfo:
        make_env(PIXEL_CARTPOLE_ID)
    assert "CartPole-v1" in _one_line_error(excinfo)


def test_carracing_makes():
    pytest.importorskip("Box2D")
    env = make_env("CarRacing-v3")
    assert env.observation_space == gym.spaces.Box(0, 255, (96, 96, 3), np.uint8)
    assert isinstance(env.action_space, gym.spaces.Box) and env.action_space.shape == (3,)
    assert env.spec.max_episode_steps == 1000
    obs, _ = env.reset(seed=0)
    obs, reward, terminated, truncated, _ = env.step(np.array([0.0, 1.0, 0.0], np.float32))
    assert obs.shape == (96, 96, 3) and obs.dtype == np.uint8 and np.isfinite(reward)
    env.close()


@pytest.mark.parametrize(
    ("name", "env_id", "needs"),
    [
        ("pixel_cartpole", PIXEL_CARTPOLE_ID, "pygame"),
        ("minatar_breakout", "MinAtar/Breakout-v1", "minatar"),
        ("minatar_freeway", "MinAtar/Freeway-v1", "minatar"),
        ("carracing", "CarRacing-v3", "Box2D"),
    ],
)
def test_image_presets(name, env_id, needs):
    preset = load_preset("envs", name)
    cfg = TrainConfig.from_preset(preset)
    assert cfg.env_id == env_id and cfg.train.target_return is not None
    pytest.importorskip(needs)
    make_env(cfg.env_id).close()  # the id makes on demand
