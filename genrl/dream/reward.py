"""Reward overrides: what a dream pays instead of its learned reward head.

An override is declarative, so an environment package holds it as JSON, never as code::

    {"type": "learned"}                                  the reward head, as learned (the default)
    {"type": "constant", "value": v}                     v on every step (1.0: a survival reward)
    {"type": "scale", "factor": f, "offset": o}          f * learned + o   (offset defaults to 0)
    {"type": "linear", "weights": [w, ...], "bias": b}   b + w . o', o' the next observation (decoded,
                                                         flattened), one weight per number; bias 0

From Python, a dream also takes a callable ``reward_fn(obs, action, next_obs, reward)`` of batched
torch tensors (observations decoded, ``reward`` the learned one, (B,)) returning the (B,) rewards.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from genrl.errors import GenrlError
from genrl.util.checks import check_float, describe

RewardFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
# Each type's fields, and the default of those that have one (None: required).
FIELDS: dict[str, dict[str, float | None]] = {
    "learned": {},
    "constant": {"value": None},
    "scale": {"factor": None, "offset": 0.0},
    "linear": {"weights": None, "bias": 0.0},
}
LEARNED = {"type": "learned"}


def check_reward(spec: Any, obs_size: int | None = None) -> dict[str, Any]:
    """A reward override with its defaults filled in; a one-line GenrlError if it is not one.

    :param obs_size: the number of observation values a ``linear`` override needs weights for
    """
    if spec is None:
        return dict(LEARNED)
    kind = spec.get("type") if isinstance(spec, dict) else None
    if kind not in FIELDS:
        raise GenrlError(
            f"reward: expected a mapping with a type among {list(FIELDS)} "
            f'(e.g. {{"type": "constant", "value": 1.0}}), got {describe(spec)}'
        )
    fields = FIELDS[kind]
    unknown = sorted(set(spec) - {"type", *fields}, key=str)
    missing = [k for k, default in fields.items() if default is None and k not in spec]
    if unknown or missing:
        expected = ", ".join(["type", *fields])
        raise GenrlError(f"reward {kind!r}: expected the fields {expected}, got {describe(spec)}")
    out: dict[str, Any] = {"type": kind}
    for name, default in fields.items():
        value = spec.get(name, default)
        out[name] = _weights(value, obs_size) if name == "weights" else check_float(value, f"reward {name}")
    return out


def _weights(value: Any, obs_size: int | None) -> list[float]:
    size = "one number" if obs_size is None else f"{obs_size} numbers"
    expected = f"reward weights: expected a list of {size} per observation value"
    if not isinstance(value, (list, tuple)) or not value:
        raise GenrlError(f"{expected}, got {describe(value)}")
    if obs_size is not None and len(value) != obs_size:
        raise GenrlError(f"{expected}, got {len(value)}")
    return [check_float(w, "reward weights") for w in value]


def reward_function(reward: dict[str, Any] | RewardFn | None, obs_size: int) -> RewardFn | None:
    """The override as a batched function, or None for the learned reward (nothing to change)."""
    if callable(reward):
        return reward
    spec = check_reward(reward, obs_size)
    kind = spec["type"]
    if kind == "learned":
        return None
    if kind == "constant":
        return lambda obs, action, next_obs, r: torch.full_like(r, spec["value"])
    if kind == "scale":
        return lambda obs, action, next_obs, r: r * spec["factor"] + spec["offset"]
    weights = torch.tensor(spec["weights"], dtype=torch.float32)

    def linear(obs: torch.Tensor, action: torch.Tensor, next_obs: torch.Tensor, r: torch.Tensor):
        flat = next_obs.reshape(len(next_obs), -1).float()
        return flat @ weights.to(flat.device) + spec["bias"]

    return linear


def checked_rewards(value: Any, n: int, device: torch.device) -> torch.Tensor:
    """A callable's rewards as a (n,) float tensor; a one-line GenrlError for anything else."""
    try:
        rewards = torch.as_tensor(value, dtype=torch.float32, device=device)
    except (TypeError, ValueError, RuntimeError):
        raise GenrlError(f"reward_fn: expected ({n},) rewards, got {describe(value)}") from None
    if rewards.shape != (n,):
        raise GenrlError(f"reward_fn: expected ({n},) rewards, got shape {tuple(rewards.shape)}")
    if not bool(torch.isfinite(rewards).all()):
        raise GenrlError(f"reward_fn: expected finite rewards, got {describe(rewards.cpu().numpy())}")
    return rewards


def describe_reward(spec: dict[str, Any]) -> str:
    """An override in a few words, for a card."""
    kind = spec["type"]
    if kind == "learned":
        return "learned"
    if kind == "constant":
        return f"constant {spec['value']:g}"
    if kind == "scale":
        return f"{spec['factor']:g} x learned {'+' if spec['offset'] >= 0 else '-'} {abs(spec['offset']):g}"
    return f"linear in the observation ({len(spec['weights'])} weights)"
