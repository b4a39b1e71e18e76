"""Stable-baselines3 agents by name, built from ``agents/*.yaml`` presets.

genrl never vendors an agent: these are SB3's own classes, unmodified.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from stable_baselines3 import A2C, DDPG, DQN, PPO, SAC, TD3
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.noise import NormalActionNoise
from stable_baselines3.common.utils import FloatSchedule
from stable_baselines3.common.vec_env import VecEnv
from torch import nn

from genrl.errors import GenrlError
from genrl.training.presets import load_preset
from genrl.util.checks import describe, one_line
from genrl.util.files import atomic_write, check_tensors

POLICY_FORMAT = "genrl.policy"
POLICY_VERSION = 1
ALGORITHMS: dict[str, type[BaseAlgorithm]] = {
    "ppo": PPO,
    "a2c": A2C,
    "dqn": DQN,
    "sac": SAC,
    "td3": TD3,
    "ddpg": DDPG,
}
ON_POLICY = ("ppo", "a2c")  # the rest learn from a replay buffer


def agent_preset(agent: str | dict[str, Any]) -> dict[str, Any]:
    """An agent preset as a dict: ``{"algorithm": "ppo", "policy": ..., "hyperparameters": {...}}``."""
    preset = dict(agent) if isinstance(agent, dict) else load_preset("agents", agent)
    algo = str(preset.get("algorithm", "")).lower()
    if algo not in ALGORITHMS:
        raise GenrlError(
            f"unknown algorithm {preset.get('algorithm')!r}: expected one of {sorted(ALGORITHMS)}"
        )
    preset["algorithm"] = algo
    return preset


def make_agent(
    preset: dict[str, Any], env: VecEnv, seed: int | None = None, **overrides: Any
) -> BaseAlgorithm:
    """Build the preset's SB3 algorithm on ``env``; ``lin_X`` values become linear schedules from X
    to 0 over each ``learn()`` call (:class:`LinearPerLearn`)."""
    preset = agent_preset(preset)
    cls = ALGORITHMS[preset["algorithm"]]
    kwargs = {k: _schedule(v) for k, v in {**preset.get("hyperparameters", {}), **overrides}.items()}
    if "action_noise" in kwargs:
        kwargs["action_noise"] = _action_noise(kwargs["action_noise"], env)
    if isinstance(kwargs.get("policy_kwargs"), dict):
        kwargs["policy_kwargs"] = _policy_kwargs(kwargs["policy_kwargs"])
    try:
        return cls(preset.get("policy", "MlpPolicy"), env, seed=seed, verbose=0, **kwargs)
    except (TypeError, AssertionError, ValueError) as exc:
        raise GenrlError(f"cannot build {cls.__name__} from preset: {exc}") from None


class LinearPerLearn:
    """From ``start`` to 0 over each ``learn()`` call, however many steps the agent took before.

    SB3's progress spans every ``learn()`` of an agent that keeps its step count
    (``reset_num_timesteps=False``, as the loop's does), so its own linear schedule would give
    iteration k a rate falling from start / (k + 1): later iterations would hardly learn.
    :func:`restart_schedules` rebases it before each call.
    """

    def __init__(self, start: float):
        self.start = start
        self.remaining_at_start = 1.0  # SB3's progress_remaining when the current learn() began

    def __call__(self, progress_remaining: float) -> float:
        return self.start * max(0.0, min(1.0, progress_remaining / self.remaining_at_start))

    def __repr__(self) -> str:
        return f"LinearPerLearn({self.start})"


def restart_schedules(agent: BaseAlgorithm, steps: int) -> None:
    """Rebase the agent's ``lin_X`` schedules so the next ``learn(steps)`` runs each from X to 0."""
    remaining = steps / (agent.num_timesteps + steps) if steps > 0 else 1.0
    for value in vars(agent).values():
        inner = value.value_schedule if isinstance(value, FloatSchedule) else value
        if isinstance(inner, LinearPerLearn):
            inner.remaining_at_start = remaining


def _schedule(value: Any) -> Any:
    if isinstance(value, str) and value.startswith("lin_"):
        return LinearPerLearn(float(value[4:]))
    return value


def _action_noise(spec: Any, env: VecEnv) -> NormalActionNoise:
    """``{type: normal, sigma: s}`` -> Gaussian noise of std ``s`` times the half-range of each action."""
    if not isinstance(spec, dict) or spec.get("type") != "normal":
        raise GenrlError(f"action_noise: expected {{type: normal, sigma: <float>}}, got {spec!r}")
    half_range = (env.action_space.high - env.action_space.low) / 2.0
    return NormalActionNoise(np.zeros_like(half_range), float(spec.get("sigma", 0.1)) * half_range)


def _policy_kwargs(given: dict[str, Any]) -> dict[str, Any]:
    """``activation_fn`` named (``"ReLU"``, as JSON and YAML can hold it) -> the torch.nn class."""
    kwargs = dict(given)  # SB3 writes into policy_kwargs: never the preset's own dict
    name = kwargs.get("activation_fn")
    if isinstance(name, str):
        activation = getattr(nn, name, None)
        if not (isinstance(activation, type) and issubclass(activation, nn.Module)):
            raise GenrlError(f"policy_kwargs activation_fn: expected a torch.nn module name, got {name!r}")
        kwargs["activation_fn"] = activation
    return kwargs


# Set by SB3 itself (A2C's RMSprop) or only about optimisation: no part of the policy's architecture.
_NOT_ARCHITECTURE = ("optimizer_class", "optimizer_kwargs")


def preset_of(agent: BaseAlgorithm) -> dict[str, Any]:
    """A preset that rebuilds ``agent``'s policy architecture, for :func:`load_policy` to fill in.

    It holds the algorithm, the policy's SB3 name and the ``policy_kwargs`` (net_arch...), not the
    training hyperparameters. A subclass of an SB3 agent is saved as its nearest one (a subclass of
    DDPG, itself a TD3 subclass, as ``ddpg``, whose ``policy_kwargs`` carry ``n_critics: 1``).
    """
    matches = [c for c in ALGORITHMS.values() if isinstance(agent, c)]
    cls = next((c for c in matches if not any(m is not c and issubclass(m, c) for m in matches)), None)
    if cls is None:
        raise GenrlError(
            f"expected an SB3 agent of {', '.join(c.__name__ for c in ALGORITHMS.values())}, "
            f"got {type(agent).__name__}"
        )
    names: dict[type, str] = {}
    for name, policy_cls in cls.policy_aliases.items():
        names.setdefault(policy_cls, name)
    policy = names.get(type(agent.policy))
    if policy is None:
        raise GenrlError(
            f"expected a policy {cls.__name__} names ({sorted(cls.policy_aliases)}), "
            f"got {type(agent.policy).__name__}"
        )
    hyperparameters = {"policy_kwargs": _json_policy_kwargs(agent.policy_kwargs), "device": "cpu"}
    if getattr(agent, "use_sde", False):  # gSDE changes the shape of the policy's log_std
        hyperparameters["use_sde"] = True
    algorithm = next(name for name, c in ALGORITHMS.items() if c is cls)
    return {"algorithm": algorithm, "policy": policy, "hyperparameters": hyperparameters}


def _json_policy_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    """An agent's policy_kwargs as JSON values; a torch.nn activation by its name."""
    out: dict[str, Any] = {}
    for key, value in kwargs.items():
        if key in _NOT_ARCHITECTURE:
            continue
        if key == "activation_fn" and isinstance(value, type) and getattr(nn, value.__name__, None) is value:
            value = value.__name__
        try:
            out[key] = json.loads(json.dumps(value, allow_nan=False))  # tuples become lists, as SB3 takes
        except (TypeError, ValueError):
            raise GenrlError(
                f"expected policy_kwargs of JSON values to rebuild the policy, got {key}={describe(value)}"
            ) from None
    return out


def save_policy(agent: BaseAlgorithm, path: str | Path) -> None:
    """Policy weights as safetensors: a file that loads without executing code (unlike a pickle)."""
    state = {k: v.detach().cpu().contiguous() for k, v in agent.policy.state_dict().items()}
    meta = {"format": POLICY_FORMAT, "version": str(POLICY_VERSION), "algorithm": type(agent).__name__}
    atomic_write(path, lambda tmp: save_file(state, tmp, metadata=meta))


def load_policy(agent: BaseAlgorithm, path: str | Path) -> BaseAlgorithm:
    """Load weights written by :func:`save_policy` into an agent built from the same preset.

    Every tensor is checked against the agent's policy first, so a bad file leaves the agent as it was.
    """
    path = Path(path)
    mismatch = f"{path}: expected policy weights matching the agent preset"
    if not path.is_file():
        raise GenrlError(f"{mismatch}, found no such file")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        state = load_file(str(path), device=str(agent.device))
    except Exception as exc:  # safetensors raises SafetensorError, OSError, ValueError... on a foreign file
        raise GenrlError(f"{mismatch}, got an unreadable file ({one_line(exc)})") from None
    # Files from genrl 0.1.0 carry no metadata; any other format or version is refused by name.
    if meta and (meta.get("format"), meta.get("version")) != (POLICY_FORMAT, str(POLICY_VERSION)):
        raise GenrlError(
            f"{path}: expected a {POLICY_FORMAT} file of version {POLICY_VERSION}, "
            f"got format {describe(meta.get('format'))} version {describe(meta.get('version'))}"
        )
    check_tensors(state, agent.policy.state_dict(), mismatch)
    agent.policy.load_state_dict(state)
    return agent
