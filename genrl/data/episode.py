"""One recorded episode, and windows of episodes (clamped at their ends, padded, masked).

An episode of ``T`` steps holds::

    obs         (T+1, *obs_shape)   obs[0] is the reset observation, obs[t+1] follows action[t]
    action      (T, *action_shape)
    reward      (T,)                reward[t] of the transition obs[t] -> obs[t+1]
    terminated  (T,) bool           only the last step may be True
    truncated   (T,) bool           last step only (time limit, or collection stopped)
    info        a JSON object about the episode as a whole (empty for real episodes; generated
                ones record their guide and predicted return)

A window of ``L`` steps from step ``t0`` reads obs[t0 .. t0+L] and action[t0 .. t0+L-1]; steps
past the episode's end repeat its last observation and action and are masked out. Training
batches, open-loop evaluation and anomaly scoring all cut windows this way, through
:func:`window_index`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

FIELDS = ("obs", "action", "reward", "terminated", "truncated")


@dataclass(frozen=True, eq=False)
class Episode:
    """The arrays of one episode (see the module docstring for their shapes)."""

    obs: np.ndarray
    action: np.ndarray
    reward: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def length(self) -> int:
        """Its number of steps (transitions), T."""
        return len(self.reward)

    @property
    def episode_return(self) -> float:
        return float(self.reward.sum())

    def arrays(self) -> dict[str, np.ndarray]:
        """The arrays by name, as the dataset stores them."""
        return {name: getattr(self, name) for name in FIELDS}


class WindowIndex(NamedTuple):
    """Indices into episodes for a batch of windows of ``L`` steps, all (N, ...)."""

    obs: np.ndarray  # (N, L+1) observation indices, clamped to the episode's last observation
    action: np.ndarray  # (N, L) action indices, clamped to the episode's last action
    mask: np.ndarray  # (N, L) True where the step is inside the episode


def window_index(start: np.ndarray, length: np.ndarray, steps: int) -> WindowIndex:
    """Indices of windows of ``steps`` steps from ``start`` in episodes of ``length`` steps."""
    t = np.asarray(start)[:, None] + np.arange(steps + 1)[None, :]
    length = np.asarray(length)[:, None]
    return WindowIndex(np.minimum(t, length), np.minimum(t[:, :-1], length - 1), t[:, :-1] < length)


class Windows(NamedTuple):
    """Windows cut from episodes: obs (N, L+1, ...), action (N, L, ...), mask (N, L)."""

    obs: np.ndarray
    action: np.ndarray
    mask: np.ndarray


def cut_windows(
    episodes: Sequence[Episode], which: Sequence[int], start: Sequence[int], steps: int
) -> Windows:
    """Window ``k`` is ``steps`` steps of ``episodes[which[k]]`` from step ``start[k]``."""
    which, start = np.asarray(which, dtype=np.int64), np.asarray(start, dtype=np.int64)
    index = window_index(start, np.array([episodes[e].length for e in which]), steps)
    obs = np.stack([episodes[e].obs[index.obs[k]] for k, e in enumerate(which)])
    action = np.stack([episodes[e].action[index.action[k]] for k, e in enumerate(which)])
    return Windows(obs, action, index.mask)
