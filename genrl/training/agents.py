"""Stable-baselines3 agents by name, built from ``agents/*.yaml`` presets.

genrl never vendors an agent: these are SB3's own classes, unmodified.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from stable_baselines3 import A2C, DQN, PPO, SAC, TD3
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.noise import NormalActionNoise
from stable_baselines3.common.utils import LinearSchedule
from stable_baselines3.common.vec_env import VecEnv

from genrl.errors import GenrlError
from genrl.training.presets import load_preset
from genrl.util.checks import describe, one_line
from genrl.util.files import atomic_write, check_tensors

POLICY_FORMAT = "genrl.policy"
POLICY_VERSION = 1
ALGORITHMS: dict[str, type[BaseAlgorithm]] = {"ppo": PPO, "a2c": A2C, "dqn": DQN, "sac": SAC, "td3": TD3}


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
    """Build the preset's SB3 algorithm on ``env``; ``lin_X`` values become linear schedules from X to 0."""
    preset = agent_preset(preset)
    cls = ALGORITHMS[preset["algorithm"]]
    kwargs = {k: _schedule(v) for k, v in {**preset.get("hyperparameters", {}), **overrides}.items()}
    if "action_noise" in kwargs:
        kwargs["action_noise"] = _action_noise(kwargs["action_noise"], env)
    try:
        return cls(preset.get("policy", "MlpPolicy"), env, seed=seed, verbose=0, **kwargs)
    except (TypeError, AssertionError, ValueError) as exc:
        raise GenrlError(f"cannot build {cls.__name__} from preset: {exc}") from None


def _schedule(value: Any) -> Any:
    if isinstance(value, str) and value.startswith("lin_"):
        return LinearSchedule(float(value[4:]), 0.0, 1.0)
    return value


def _action_noise(spec: Any, env: VecEnv) -> NormalActionNoise:
    """``{type: normal, sigma: s}`` -> Gaussian noise of std ``s`` times the half-range of each action."""
    if not isinstance(spec, dict) or spec.get("type") != "normal":
        raise GenrlError(f"action_noise: expected {{type: normal, sigma: <float>}}, got {spec!r}")
    half_range = (env.action_space.high - env.action_space.low) / 2.0
    return NormalActionNoise(np.zeros_like(half_range), float(spec.get("sigma", 0.1)) * half_range)


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
