"""Training an SB3 agent inside a synthesised environment package, then trying it for real.

``train_on_package(DIR, ...)`` trains on the package's dreams (a :class:`DreamVecEnv` opened on
it, with its start states, horizon, temperature and reward) and writes into one folder::

    agent.json           {"format": "genrl.package_agent", "version": 1, "package": DIR, "agent":
                          the preset, "steps", "n_envs", "seed", "results": {dream and real returns}}
    policy.safetensors   the policy's weights (genrl.training.agents.save_policy: no pickle)
    tb/                  SB3's TensorBoard scalars

When the card names a source env that Gymnasium can make, the agent is evaluated there too.
"""

from __future__ import annotations

import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.logger import configure
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import DummyVecEnv, VecMonitor

from genrl.data.envs import make_env
from genrl.dream.package import is_package
from genrl.dream.vec_env import DreamVecEnv
from genrl.errors import GenrlError
from genrl.training.agents import agent_preset, make_agent, save_policy
from genrl.training.presets import find_env_preset
from genrl.util.checks import check_int
from genrl.util.files import write_json
from genrl.util.progress import progress_enabled
from genrl.util.seeding import fresh_seed

FORMAT = "genrl.package_agent"
VERSION = 1


@dataclass
class PackageTrainResult:
    """An agent trained in a package: where it was saved, and its deterministic returns."""

    out: Path
    agent: BaseAlgorithm
    results: dict[str, Any]  # dream_return(_std); real_return(_std) and source_env, or real_note


def train_on_package(
    package: str | os.PathLike,
    *,
    agent: str | dict[str, Any] | None = None,
    steps: int = 100_000,
    n_envs: int = 64,
    out: str | os.PathLike | None = None,
    eval_episodes: int = 20,
    seed: int | None = None,
    device: str = "auto",
    progress: bool = True,
) -> PackageTrainResult:
    """Train an agent for ``steps`` dream steps in the package at ``package``; save and evaluate it.

    :param agent: an agent preset (name, YAML path or mapping); default: the source env's preset's
        agent, else ``ppo``
    :param out: the agent's folder; default ``runs/<package>-<algorithm>-seed<N>-<time>``
    :param seed: seeds the agent and the dreams; None draws one
    """
    package = Path(package)
    if not is_package(package):
        raise GenrlError(f"expected an environment package (package.json) at {package}, found none")
    steps, n_envs = check_int(steps, "steps", 1), check_int(n_envs, "n_envs", 1)
    episodes, seed = check_int(eval_episodes, "eval_episodes", 1), fresh_seed(seed)
    dreams = VecMonitor(DreamVecEnv(package, n_envs, device=device, seed=seed))
    source = dreams.venv.card.get("source_env")
    preset = agent_preset(agent if agent is not None else _default_agent(source))
    out = Path(out) if out is not None else _default_out(package, preset["algorithm"], seed)
    model = make_agent(preset, dreams, seed=seed)
    model.set_logger(configure(str(out / "tb"), ["tensorboard"]))
    model.learn(steps, progress_bar=progress_enabled(progress))
    save_policy(model, out / "policy.safetensors")
    test = DreamVecEnv(package, min(episodes, n_envs), device=device, seed=seed + 1)
    dream, _ = evaluate_policy(
        model, VecMonitor(test), episodes, deterministic=True, return_episode_rewards=True
    )
    results: dict[str, Any] = {
        "dream_return": float(np.mean(dream)),
        "dream_return_std": float(np.std(dream)),
    }
    results.update(_real_returns(model, source, episodes, seed))
    meta = {"format": FORMAT, "version": VERSION, "package": str(package.resolve()), "agent": preset}
    meta.update(steps=steps, n_envs=n_envs, seed=seed, results=results)
    write_json(out / "agent.json", meta)
    return PackageTrainResult(out, model, results)


def _default_agent(source_env: str | None) -> str | dict[str, Any]:
    preset = find_env_preset(source_env) if source_env else None
    return preset.get("agent", "ppo") if preset is not None else "ppo"


def _default_out(package: Path, algorithm: str, seed: int) -> Path:
    return Path("runs") / f"{package.resolve().name}-{algorithm}-seed{seed}-{time.strftime('%Y%m%d-%H%M%S')}"


def _real_returns(agent: BaseAlgorithm, source_env: str | None, episodes: int, seed: int) -> dict[str, Any]:
    """The agent's deterministic return in the source env, if it names one that Gymnasium can make."""
    if source_env is None:
        return {"real_note": "the card names no source env"}
    try:
        make_env(source_env).close()
    except GenrlError as exc:
        return {"real_note": str(exc)}
    env = DummyVecEnv([lambda: Monitor(make_env(source_env)) for _ in range(min(episodes, 32))])
    env.seed(seed + 2)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # SB3's advice on unwrapped envs
            real, _ = evaluate_policy(agent, env, episodes, deterministic=True, return_episode_rewards=True)
    finally:
        env.close()
    return {
        "source_env": source_env,
        "real_return": float(np.mean(real)),
        "real_return_std": float(np.std(real)),
    }
