"""Environments seen through their rendered frames: :func:`pixel_env` and ``genrl/PixelCartPole-v1``.

``pixel_env("CartPole-v1")`` replaces CartPole's four numbers by its ``rgb_array`` frame (400x600
RGB), shrunk to 64x64 and made grayscale: ``Box(0, 255, (64, 64, 1), uint8)``. The task, its
actions, rewards and time limit are the env's own. Rendering is most of a step's cost.

Frames are shrunk with Pillow's box filter (area averaging, as OpenCV's ``INTER_AREA`` that
gymnasium's ``ResizeObservation`` uses), so that OpenCV is not a dependency; and shrunk before
they are made grayscale, since gymnasium's ``GrayscaleObservation`` multiplies every pixel in
float (5 ms on a 400x600 frame, four times the render itself).
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.wrappers import AddRenderObservation, GrayscaleObservation, TransformObservation

from genrl.errors import GenrlError
from genrl.util.checks import one_line

PIXEL_CARTPOLE_ID = "genrl/PixelCartPole-v1"


class ResizeFrames(TransformObservation, gym.utils.RecordConstructorArgs):
    """Shrinks (or grows) uint8 image observations to ``shape`` (height, width) with Pillow."""

    def __init__(self, env: gym.Env, shape: tuple[int, int]):
        from PIL import Image

        space = env.observation_space
        if not (
            isinstance(space, gym.spaces.Box)
            and space.dtype == np.uint8
            and (len(space.shape) == 2 or (len(space.shape) == 3 and space.shape[2] in (1, 3)))
        ):
            raise GenrlError(f"ResizeFrames: expected uint8 image observations (H, W[, 1|3]), got {space}")
        height, width = shape
        channels = space.shape[2:]
        gym.utils.RecordConstructorArgs.__init__(self, shape=(height, width))

        def resize(frame: np.ndarray) -> np.ndarray:
            image = Image.fromarray(frame.reshape(frame.shape[:2]) if channels == (1,) else frame)
            return np.asarray(image.resize((width, height), Image.Resampling.BOX)).reshape(
                (height, width, *channels)
            )

        TransformObservation.__init__(
            self,
            env=env,
            func=resize,
            observation_space=gym.spaces.Box(0, 255, (height, width, *channels), np.uint8),
        )


def pixel_env(
    env_id: str = "CartPole-v1",
    size: int | tuple[int, int] = 64,
    grayscale: bool = True,
    render_mode: str | None = None,
    **kwargs: Any,
) -> gym.Env:
    """``env_id`` whose observations are its rendered frames, ``size`` pixels square (or (h, w)).

    ``kwargs`` go to ``gymnasium.make``. The frames come from ``render_mode="rgb_array"``, the
    only render mode this env takes (render the observations to watch it).
    """
    if render_mode not in (None, "rgb_array"):
        raise GenrlError(
            f"pixel_env({env_id!r}): expected render_mode None or 'rgb_array' (the observations are "
            f"its rgb_array frames), got {render_mode!r}"
        )
    shape = (size, size) if isinstance(size, int) else tuple(size)
    if len(shape) != 2 or not all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in shape):
        raise GenrlError(f"pixel_env size: expected a positive int or (height, width), got {size!r}")
    env = gym.make(env_id, render_mode="rgb_array", **kwargs)
    try:
        env = AddRenderObservation(env, render_only=True)  # resets and renders once, to size the frames
    except gym.error.DependencyNotInstalled as exc:
        env.close()
        hint = "pip install genrl[pixels]" if "pygame" in str(exc) else "install what it names"
        raise GenrlError(
            f"{env_id} seen through pixels needs its renderer: {hint} ({one_line(exc)})"
        ) from None
    env = ResizeFrames(env, shape)
    if grayscale:
        env = GrayscaleObservation(env, keep_dim=True)
    return env


def register_envs() -> None:
    """Registers ``genrl/PixelCartPole-v1`` (CartPole's time limit and reward threshold)."""
    if PIXEL_CARTPOLE_ID not in gym.registry:
        cartpole = gym.spec("CartPole-v1")
        gym.register(
            PIXEL_CARTPOLE_ID,
            entry_point="genrl.data.pixels:pixel_env",
            kwargs={"env_id": "CartPole-v1", "size": 64, "grayscale": True},
            max_episode_steps=cartpole.max_episode_steps,  # 500
            reward_threshold=cartpole.reward_threshold,  # 475
        )
