"""Pictures of dreams whose observations are vectors: one bar per dimension."""

from __future__ import annotations

import numpy as np


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
