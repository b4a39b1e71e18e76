"""Fault injection: gymnasium wrappers that break a real env from a given step of each episode on.

Each wrapper counts the ``step`` calls since the last reset (0-based). Steps ``onset``, ``onset + 1``,
... are faulty: their ``info["fault"]`` is True (False before), and what they return is affected.
Step ``t`` produces observation ``obs[t + 1]`` of the episode (``obs[0]`` is the reset's), so with
``onset=k`` the first faulty observation is ``obs[k + 1]`` and the first faulty transition is
``obs[k] -> obs[k + 1]``: the numbering of a :class:`~genrl.RolloutDataset` episode's steps.

Random faults draw from their own generator: ``seed`` at construction, combined with the seed of a
``reset(seed=...)`` when one is given, so a seeded run replays exactly.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from genrl.errors import GenrlError
from genrl.util.checks import check_float, check_int, describe, is_real


def _check_seed(seed: Any) -> int | None:
    return None if seed is None else check_int(seed, "seed", 0)


def _box_obs(env: gym.Env, wrapper: str) -> spaces.Box:
    space = env.observation_space
    if not isinstance(space, spaces.Box):
        raise GenrlError(f"{wrapper}: expected an env with a Box observation space, got {space}")
    return space


class _Fault(gym.Wrapper):
    """Counts steps since reset and marks ``info["fault"]``; subclasses inject the fault."""

    def __init__(self, env: gym.Env, onset: int, seed: int | None = None):
        if not isinstance(env, gym.Env):
            raise GenrlError(f"{type(self).__name__}: expected a gymnasium.Env, got {type(env).__name__}")
        super().__init__(env)
        self.onset = check_int(onset, "onset", 0)
        self._seed = _check_seed(seed)
        self._rng = np.random.default_rng(self._seed)
        self._t = 0

    def _reseed(self, seed: int | None) -> None:
        if seed is not None:  # reset(seed) replays the fault too, whatever was drawn before
            self._rng = np.random.default_rng([seed] if self._seed is None else [self._seed, seed])

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[Any, dict]:
        self._reseed(seed)
        self._t = 0
        obs, info = self.env.reset(seed=seed, options=options)
        info["fault"] = False
        return obs, info

    @property
    def active(self) -> bool:
        """Whether the next step is faulty."""
        return self._t >= self.onset

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict]:
        active = self.active
        obs, reward, terminated, truncated, info = self._step(action, active)
        self._t += 1
        info["fault"] = active
        return obs, reward, terminated, truncated, info

    def _step(self, action: Any, active: bool) -> tuple[Any, float, bool, bool, dict]:
        raise NotImplementedError


class SensorNoise(_Fault):
    """Gaussian noise added to observations from step ``onset`` on.

    :param std: the noise's standard deviation in the observation's own units (a scalar for every
        noisy dimension, or one value per dimension in ``dims``); e.g. pass ``0.1 * data_std`` for
        noise at a tenth of each dimension's spread in the data
    :param dims: indices into the flattened observation to corrupt (default: all)
    """

    def __init__(
        self,
        env: gym.Env,
        std: float | Sequence[float] | np.ndarray,
        onset: int = 0,
        dims: Sequence[int] | None = None,
        seed: int | None = None,
    ):
        super().__init__(env, onset, seed)
        size = int(np.prod(_box_obs(env, "SensorNoise").shape))
        if dims is None:
            self.dims = np.arange(size)
        else:
            dims_list = list(dims) if isinstance(dims, (list, tuple, np.ndarray, range)) else None
            if not dims_list:
                raise GenrlError(
                    f"SensorNoise dims: expected a non-empty list of indices, got {describe(dims)}"
                )
            self.dims = np.array([check_int(d, "SensorNoise dims", 0, size - 1) for d in dims_list])
        try:
            std_arr = np.asarray(std, dtype=np.float64)
        except (TypeError, ValueError):
            raise GenrlError(
                f"SensorNoise std: expected a number or one per dimension, got {describe(std)}"
            ) from None
        if std_arr.ndim > 1 or std_arr.size not in (1, len(self.dims)):
            raise GenrlError(
                f"SensorNoise std: expected a number or {len(self.dims)} numbers (one per noisy "
                f"dimension), got shape {std_arr.shape}"
            )
        if not np.all(np.isfinite(std_arr)) or np.any(std_arr < 0):
            raise GenrlError(f"SensorNoise std: expected finite numbers >= 0, got {describe(std)}")
        self.std = np.broadcast_to(std_arr, (len(self.dims),)).copy()

    def _step(self, action: Any, active: bool) -> tuple[Any, float, bool, bool, dict]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        if active:
            obs = np.array(obs, copy=True)
            flat = obs.reshape(-1)
            flat[self.dims] += (self._rng.standard_normal(len(self.dims)) * self.std).astype(obs.dtype)
        return obs, reward, terminated, truncated, info


class StuckSensor(_Fault):
    """One observation dimension freezes at the value it had when the fault began (``obs[onset]``).

    :param dim: index into the flattened observation
    """

    def __init__(self, env: gym.Env, dim: int, onset: int = 0):
        super().__init__(env, onset)
        self.dim = check_int(dim, "StuckSensor dim", 0, int(np.prod(_box_obs(env, "StuckSensor").shape)) - 1)
        self._last: float = 0.0

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[Any, dict]:
        obs, info = super().reset(seed=seed, options=options)
        self._last = float(np.asarray(obs).reshape(-1)[self.dim])
        return obs, info

    def _step(self, action: Any, active: bool) -> tuple[Any, float, bool, bool, dict]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        obs = np.array(obs, copy=True)
        if active:
            obs.reshape(-1)[self.dim] = self._last
        else:  # the value of the latest healthy reading, which becomes the stuck one at onset
            self._last = float(obs.reshape(-1)[self.dim])
        return obs, reward, terminated, truncated, info


class ChangedPhysics(_Fault):
    """Set attributes of ``env.unwrapped`` (e.g. ``gravity=15.0``) from step ``onset`` on.

    The original values come back on every reset. Envs may cache derived values: CartPole's
    ``polemass_length`` (``masspole * length``) and ``total_mass`` (``masspole + masscart``) must
    be passed consistently with the values they derive from.
    """

    def __init__(self, env: gym.Env, onset: int = 0, **attributes: Any):
        super().__init__(env, onset)
        if not attributes:
            raise GenrlError("ChangedPhysics: expected at least one attribute to change, e.g. gravity=15.0")
        base = env.unwrapped
        missing = sorted(name for name in attributes if not hasattr(base, name))
        if missing:
            raise GenrlError(
                f"ChangedPhysics: expected attributes of {type(base).__name__}, got unknown {missing}"
            )
        for name, value in attributes.items():
            old = getattr(base, name)
            if isinstance(old, numbers.Real) and not (is_real(value) and np.isfinite(value)):
                raise GenrlError(f"ChangedPhysics {name}: expected a finite number, got {describe(value)}")
        self.attributes = dict(attributes)
        self._original = {name: getattr(base, name) for name in attributes}

    def _restore(self) -> None:
        for name, value in self._original.items():
            setattr(self.env.unwrapped, name, value)

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[Any, dict]:
        self._restore()
        return super().reset(seed=seed, options=options)

    def close(self) -> None:
        self._restore()
        super().close()

    def _step(self, action: Any, active: bool) -> tuple[Any, float, bool, bool, dict]:
        if active and self._t == self.onset:
            for name, value in self.attributes.items():
                setattr(self.env.unwrapped, name, value)
        return self.env.step(action)


class ActionCorruption(_Fault):
    """From step ``onset`` on, with probability ``p`` the env receives a random different action.

    The caller's action is what the agent chose and what a log records; only the env sees the
    replacement: uniform over the other actions of a Discrete space, uniform over a Box.
    ``info["action_corrupted"]`` says whether this step's action was replaced.
    """

    def __init__(self, env: gym.Env, p: float, onset: int = 0, seed: int | None = None):
        super().__init__(env, onset, seed)
        p = check_float(p, "ActionCorruption p", 0.0, 1.0)
        space = env.action_space
        if isinstance(space, spaces.Discrete) and space.n < 2:
            raise GenrlError(f"ActionCorruption: expected at least two actions to swap, got {space}")
        if isinstance(space, spaces.Box) and not space.is_bounded():
            raise GenrlError(f"ActionCorruption: expected a bounded action space, got {space}")
        if not isinstance(space, (spaces.Discrete, spaces.Box)):
            raise GenrlError(f"ActionCorruption: expected a Discrete or Box action space, got {space}")
        self.p = float(p)

    def _random_action(self, action: Any) -> Any:
        space = self.env.action_space
        if isinstance(space, spaces.Discrete):
            other = int(self._rng.integers(space.n - 1))
            chosen = int(np.asarray(action).reshape(())) - int(space.start)
            return int(space.start) + other + int(other >= chosen)
        return self._rng.uniform(space.low, space.high).astype(space.dtype)

    def _step(self, action: Any, active: bool) -> tuple[Any, float, bool, bool, dict]:
        corrupt = active and self._rng.random() < self.p
        sent = self._random_action(action) if corrupt else action
        obs, reward, terminated, truncated, info = self.env.step(sent)
        info["action_corrupted"] = bool(corrupt)
        return obs, reward, terminated, truncated, info
