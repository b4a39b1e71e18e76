"""Pictures of observations: images as they are, binary grids in colour, vectors as bars.

Every picture is an (H', W', 3) uint8 RGB array, what ``render_mode="rgb_array"`` returns and
what a GIF or TensorBoard shows.
"""

from __future__ import annotations

import colorsys
import math

import numpy as np
from gymnasium import spaces

from genrl.errors import GenrlError
from genrl.util.spaces import is_binary, is_image

# A binary grid (MinAtar's 10x10) is scaled up by a whole factor until its longer side reaches this.
GRID_SIZE = 160
# One colour per channel of a binary grid, on black (matplotlib's tab10, then two more); channels
# past these get evenly spaced hues.
PALETTE = (
    (31, 119, 180),
    (255, 127, 14),
    (44, 160, 44),
    (214, 39, 40),
    (148, 103, 189),
    (140, 86, 75),
    (227, 119, 194),
    (188, 189, 34),
    (23, 190, 207),
    (240, 240, 240),
    (255, 221, 0),
    (0, 255, 127),
)


def render_bars(obs: np.ndarray, scale: np.ndarray, size: int = 200) -> np.ndarray:
    """An RGB picture of a vector observation: one bar per dimension, zero in the middle."""
    values = np.clip(np.asarray(obs, dtype=np.float64).ravel() / (3.0 * scale.ravel()), -1.0, 1.0)
    image = np.full((size, size, 3), 255, dtype=np.uint8)
    width = max(1, size // max(1, len(values)))
    mid = size // 2
    image[mid, :] = 0
    for i, v in enumerate(values):
        top, bottom = sorted((mid, int(mid - v * (mid - 1))))
        image[top : bottom + 1, i * width + 1 : (i + 1) * width - 1] = (
            (40, 90, 200) if v >= 0 else (200, 70, 40)
        )
    return image


def render_observation(obs: np.ndarray, observation_space: spaces.Space) -> np.ndarray:
    """An (H', W', 3) uint8 RGB picture of one observation of ``observation_space``.

    Natural images (H, W, C) are shown as they are: one channel as grey, three as RGB, any other
    number side by side in grey (stacked frames). Binary grids (a bool Box, MinAtar's) get one
    colour per channel on black, the last set channel on top, scaled up by a whole factor to at
    least ``GRID_SIZE`` pixels. Vectors are bars (:func:`render_bars`), scaled to the space's
    bounds where they are finite. Decoded observations (floats of the space's values) render as
    the real ones do.
    """
    shape = tuple(observation_space.shape or ())
    arr = np.asarray(obs)
    if arr.shape != shape:
        raise GenrlError(
            f"render_observation: expected an observation of shape {shape}, got shape {arr.shape}"
        )
    if not is_image(observation_space):
        return render_bars(arr, _bar_scale(observation_space))
    if is_binary(observation_space):
        return _upscale(colour_grid(arr), grid_factor(shape))
    return _natural(arr, observation_space)


def grid_factor(shape: tuple[int, ...]) -> int:
    """The whole factor a binary grid of ``shape`` (H, W, C) is scaled up by."""
    return max(1, math.ceil(GRID_SIZE / max(shape[0], shape[1], 1)))


def channel_colours(channels: int) -> np.ndarray:
    """(C, 3) uint8: the colour of each channel of a binary grid."""
    colours = list(PALETTE[:channels])
    extra = channels - len(colours)
    for i in range(extra):
        r, g, b = colorsys.hsv_to_rgb(i / extra, 0.8, 1.0)
        colours.append((int(255 * r), int(255 * g), int(255 * b)))
    return np.array(colours, dtype=np.uint8).reshape(channels, 3)


def colour_grid(grid: np.ndarray) -> np.ndarray:
    """A binary grid (H, W, C) at its own size: each cell the colour of its last set channel."""
    on = np.asarray(grid) > 0.5
    top = on.shape[-1] - 1 - np.argmax(on[..., ::-1], axis=-1)  # the last set channel
    image = channel_colours(on.shape[-1])[top]
    image[~on.any(-1)] = 0
    return image


def _natural(arr: np.ndarray, space: spaces.Box) -> np.ndarray:
    low, high = _bounds(space)
    pixels = np.clip(np.rint((arr.astype(np.float64) - low) / (high - low) * 255.0), 0, 255).astype(np.uint8)
    channels = pixels.shape[-1]
    if channels == 3:
        return pixels
    if channels == 1:
        return np.repeat(pixels, 3, axis=-1)
    # Stacked frames (or any other count): each channel in grey, side by side.
    tiles = np.concatenate([pixels[..., c] for c in range(channels)], axis=1)
    return np.repeat(tiles[..., None], 3, axis=-1)


def _bounds(space: spaces.Box) -> tuple[np.ndarray, np.ndarray]:
    """The space's bounds as floats, 0..255 where they are not finite (an unbounded image)."""
    low = np.where(np.isfinite(space.low), space.low, 0.0).astype(np.float64)
    high = np.where(np.isfinite(space.high), space.high, 255.0).astype(np.float64)
    return low, np.where(high > low, high, low + 1.0)


def _bar_scale(space: spaces.Space) -> np.ndarray:
    shape = tuple(space.shape or ())
    if not isinstance(space, spaces.Box):
        return np.ones(shape)
    bound = np.maximum(np.abs(space.low), np.abs(space.high)).astype(np.float64)
    return np.where(np.isfinite(bound) & (bound > 0), bound / 3.0, 1.0)


def _upscale(image: np.ndarray, factor: int) -> np.ndarray:
    return np.repeat(np.repeat(image, factor, axis=0), factor, axis=1) if factor > 1 else image
