"""Which spaces genrl supports, their JSON form, and how actions become model inputs.

Every module that touches a space goes through here, so "supported" means one thing.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from gymnasium import spaces

from genrl.errors import GenrlError
from genrl.util.checks import describe, is_int, one_line


def check_supported(observation_space: spaces.Space, action_space: spaces.Space) -> None:
    """Raise GenrlError unless observations are a Box and actions a Discrete or Box."""
    if not isinstance(observation_space, spaces.Box):
        raise GenrlError(
            f"unsupported observation space: expected a Box, got {describe_space(observation_space)}"
        )
    if not isinstance(action_space, (spaces.Discrete, spaces.Box)):
        raise GenrlError(
            f"unsupported action space: expected Discrete or Box, got {describe_space(action_space)}"
        )
    if isinstance(action_space, spaces.Box) and not np.all(
        np.isfinite(action_space.low) & np.isfinite(action_space.high)
    ):
        raise GenrlError(
            f"unsupported action space: expected a bounded Box, got {describe_space(action_space)}"
        )


def is_image(space: spaces.Space) -> bool:
    """Whether observations of ``space`` are pictures: a Box of shape (height, width, channels)."""
    return isinstance(space, spaces.Box) and len(space.shape) == 3


def is_binary(space: spaces.Space) -> bool:
    """Whether every value of ``space`` is 0 or 1 (MinAtar's grids of cells): a bool Box."""
    return isinstance(space, spaces.Box) and np.dtype(space.dtype) == np.bool_


def describe_space(space: Any) -> str:
    """A space on one line, however many dimensions its bounds have (numpy would wrap them)."""
    if isinstance(space, spaces.Box):

        def bound(values: np.ndarray) -> str:
            flat = np.asarray(values, dtype=np.float64).ravel()
            if flat.size and np.all(flat == flat[0]):
                return f"{flat[0]:.4g}"
            items = [f"{v:.4g}" for v in flat] if flat.size <= 6 else [f"{v:.4g}" for v in flat[:2]]
            if flat.size > 6:
                items += ["...", *(f"{v:.4g}" for v in flat[-2:])]
            return "[" + ", ".join(items) + "]"

        return f"Box({bound(space.low)}, {bound(space.high)}, {space.shape}, {space.dtype})"
    text = " ".join(repr(space).split())
    return text if len(text) <= 200 else text[:197] + "..."


def space_to_json(space: spaces.Space) -> dict[str, Any]:
    """A JSON-safe description of a supported space (no pickling)."""
    if isinstance(space, spaces.Discrete):
        return {"type": "Discrete", "n": int(space.n), "start": int(space.start)}
    if isinstance(space, spaces.Box):
        return {
            "type": "Box",
            "shape": list(space.shape),
            "dtype": np.dtype(space.dtype).name,
            "low": _finite_list(space.low),
            "high": _finite_list(space.high),
        }
    raise GenrlError(f"cannot serialise space: expected Discrete or Box, got {space!r}")


def space_from_json(data: Any) -> spaces.Space:
    """Inverse of :func:`space_to_json`; raises GenrlError on anything else.

    ``data`` comes from a file, so every field is checked before gymnasium sees it: a description
    can neither crash the constructor nor ask for a huge space (a Box's size is its list of bounds).
    """
    if not isinstance(data, dict):
        raise GenrlError(f"invalid space description: expected a JSON object, got {describe(data)}")
    kind = data.get("type")
    if kind == "Discrete":
        n, start = data.get("n"), data.get("start", 0)
        if not is_int(n) or not is_int(start) or not 1 <= n < 2**63 or not -(2**63) <= start < 2**63 - n:
            raise GenrlError(
                "invalid space description: expected a Discrete with integers n >= 1 and start (int64), "
                f"got n={describe(n)}, start={describe(start)}"
            )
        return spaces.Discrete(n, start=start)
    if kind != "Box":
        raise GenrlError(f"invalid space description: expected type Discrete or Box, got {describe(kind)}")
    shape, dtype = data.get("shape"), data.get("dtype")
    if not isinstance(shape, list) or not all(is_int(d) and d >= 1 for d in shape):
        raise GenrlError(
            f"invalid space description: expected a Box shape of integers >= 1, got {describe(shape)}"
        )
    try:
        dtype = np.dtype(dtype) if isinstance(dtype, str) else None
    except (TypeError, ValueError, SyntaxError):  # what numpy's dtype-string parser raises on garbage
        dtype = None
    if dtype is None or dtype.kind not in "biuf":
        given = describe(data.get("dtype"))
        raise GenrlError(f"invalid space description: expected a Box dtype of numbers or bools, got {given}")
    size = math.prod(shape)
    bounds = []
    for name in ("low", "high"):
        values = data.get(name)
        if not isinstance(values, list) or len(values) != size:
            raise GenrlError(
                f"invalid space description: expected Box {name} as a list of {size} numbers, "
                f"got {describe(values)}"
            )
        try:
            # Numbers, or the strings "inf"/"-inf" that space_to_json writes for unbounded sides.
            array = np.array([_bound(v) for v in values], dtype=np.float64)
        except (TypeError, ValueError, OverflowError):
            raise GenrlError(
                f"invalid space description: expected Box {name} as numbers or 'inf'/'-inf', "
                f"got {describe(values)}"
            ) from None
        bounds.append(_cast_bounds(array, dtype, name).reshape(shape))
    try:
        return spaces.Box(bounds[0], bounds[1], shape=tuple(shape), dtype=dtype)
    except ValueError as exc:  # gymnasium's own checks, e.g. low > high
        raise GenrlError(f"invalid space description: {one_line(exc)}") from None


def _bound(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise TypeError(f"not a number: {value!r}")
    return float(value)


def _cast_bounds(values: np.ndarray, dtype: np.dtype, name: str) -> np.ndarray:
    """Box bounds read as float64, in ``dtype``: only values the dtype holds (inf for floats)."""
    if dtype.kind == "f":
        info = np.finfo(dtype)
        ok = np.isinf(values) | ((values >= float(info.min)) & (values <= float(info.max)))
        expected = f"{dtype} numbers or 'inf'/'-inf'"
    else:
        low, end = (
            (0.0, 2.0) if dtype.kind == "b" else (float(np.iinfo(dtype).min), np.iinfo(dtype).max + 1.0)
        )
        ok = (values == np.round(values)) & (values >= low) & (values < end)
        expected = f"whole numbers that fit {dtype}"
    if not ok.all():  # NaN fails every comparison
        raise GenrlError(
            f"invalid space description: expected Box {name} as {expected}, got {describe(values.tolist())}"
        )
    return values.astype(dtype)


def spaces_equal(a: spaces.Space, b: spaces.Space) -> bool:
    """Equality through the JSON form, so float bounds and dtypes compare the same way everywhere."""
    return space_to_json(a) == space_to_json(b)


def check_spaces_match(
    mine: tuple[spaces.Space, spaces.Space], theirs: tuple[spaces.Space, spaces.Space], owner: str, other: str
) -> None:
    """Raise GenrlError naming the first of (observation, action) space that differs."""
    for name, a, b in zip(("observation", "action"), mine, theirs, strict=True):
        if not spaces_equal(a, b):
            raise GenrlError(
                f"{name} space mismatch: {owner} has {describe_space(a)}, {other} has {describe_space(b)}"
            )


def _finite_list(values: np.ndarray) -> list:
    # JSON has no inf; encode as strings that float() reads back.
    return [v if np.isfinite(v) else str(v) for v in np.asarray(values, dtype=np.float64).ravel().tolist()]


class ActionCodec:
    """Maps env actions to the vectors the world model consumes, in torch.

    Discrete actions become one-hot vectors; Box actions are rescaled to [-1, 1].
    """

    def __init__(self, action_space: spaces.Space):
        self.space = action_space
        if isinstance(action_space, spaces.Discrete):
            self.dim = int(action_space.n)
            self._start = int(action_space.start)
        else:
            self.dim = int(np.prod(action_space.shape))
            self._low = torch.as_tensor(action_space.low.ravel(), dtype=torch.float32)
            self._high = torch.as_tensor(action_space.high.ravel(), dtype=torch.float32)

    @property
    def discrete(self) -> bool:
        return isinstance(self.space, spaces.Discrete)

    def encode(self, actions: torch.Tensor) -> torch.Tensor:
        """(B, ...) env actions -> (B, dim) float vectors."""
        if self.discrete:
            index = actions.reshape(actions.shape[0]).long() - self._start
            return torch.nn.functional.one_hot(index, self.dim).float()
        low, high = self._low.to(actions.device), self._high.to(actions.device)
        flat = actions.reshape(actions.shape[0], self.dim).float().clamp(low, high)
        return 2.0 * (flat - low) / (high - low) - 1.0

    def check(self, action: Any) -> np.ndarray:
        """Validate one env action, returning it as an array; GenrlError says what was wrong."""
        arr = _as_array(action, "invalid action")
        if self.discrete:
            # A scalar, or a vector of one; never a batch or a column ([[1]]) in disguise.
            if arr.ndim > 1 or arr.size != 1 or not self._in_range(arr).all():
                raise GenrlError(
                    f"invalid action: expected an integer in {self.space}, got {describe(action)}"
                )
            return arr.reshape(()).astype(np.int64)
        if arr.shape != self.space.shape:
            given = f"shape {arr.shape} ({describe(action)})"
            raise GenrlError(f"invalid action: expected shape {self.space.shape}, got {given}")
        if arr.dtype.kind not in "iuf" or not np.all(np.isfinite(arr)):
            raise GenrlError(f"invalid action: expected finite numbers, got {describe(action)}")
        return arr.astype(np.float32)

    def check_batch(self, actions: np.ndarray, what: str = "actions") -> None:
        """Validate a batch of env actions at once (shape checked by the caller).

        Vectorised, as it runs on every step of a batched dream; the GenrlError names the first bad one.
        """
        arr = np.asarray(actions)
        if self.discrete:
            expected = f"integers in {self.space}"
            if arr.dtype.kind not in "iuf":
                raise GenrlError(f"invalid {what}: expected {expected}, got dtype {arr.dtype}")
            bad = ~self._in_range(arr)
        else:
            expected = "finite numbers"
            if arr.dtype.kind in "iu":
                return
            if arr.dtype.kind != "f":
                raise GenrlError(f"invalid {what}: expected {expected}, got dtype {arr.dtype}")
            bad = ~np.isfinite(arr)
        if bad.any():
            first = tuple(np.argwhere(bad)[0])
            where = f" at batch index {first[0]}" if first else ""
            raise GenrlError(f"invalid {what}: expected {expected}, got {arr[first].item()!r}{where}")

    def as_batch(self, actions: Any, n: int, what: str = "actions") -> np.ndarray:
        """Validate the actions of ``n`` envs at once; returns them as one array (n, *action_shape).

        A column (n, 1) of discrete actions is accepted, but actions are never regrouped across
        envs. Discrete actions come back as int64.
        """
        arr = _as_array(actions, f"invalid {what}")
        expected = (n,) if self.discrete else (n, *self.space.shape)
        if arr.shape != expected and arr.shape[:1] == expected[:1] and arr.size == int(np.prod(expected)):
            arr = arr.reshape(expected)
        if arr.shape != expected:
            given = f"shape {arr.shape} ({describe(actions)})"
            raise GenrlError(f"invalid {what}: expected shape {expected}, got {given}")
        self.check_batch(arr, what)
        return arr.astype(np.int64, copy=False) if self.discrete else arr

    def _in_range(self, arr: np.ndarray) -> np.ndarray:
        """Which entries are valid discrete actions: whole numbers in range (NaN and other dtypes are not)."""
        if arr.dtype.kind not in "iuf":
            return np.zeros(arr.shape, dtype=bool)
        ok = (arr >= self._start) & (arr < self._start + self.dim)
        return ok & (arr == np.round(arr)) if arr.dtype.kind == "f" else ok


def _as_array(value: Any, what: str) -> np.ndarray:
    try:
        return np.asarray(value)
    except (ValueError, TypeError):  # e.g. ragged nested lists
        raise GenrlError(f"{what}: expected an array, got {describe(value)}, which is not one") from None
