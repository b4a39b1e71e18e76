"""Seeds. One meaning everywhere in genrl, as in Gymnasium and stable-baselines3: ``seed=None``
draws fresh entropy from the OS, and an integer makes the result reproducible."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np
import torch

SEED_LIMIT = 2**31  # drawn seeds stay below it: numpy's legacy seeding, and so SB3, take < 2**32


def fresh_seed(seed: int | None) -> int:
    """``seed`` itself, or, for None, a new seed drawn from the OS's entropy."""
    return int(np.random.default_rng().integers(SEED_LIMIT)) if seed is None else int(seed)


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Run with torch's global RNG seeded, restoring the caller's RNG state afterwards."""
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield
