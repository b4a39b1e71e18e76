"""A run folder, read back: its settings, history, world model, dataset and agent.

A finished run of :func:`~genrl.train_in_imagination` holds::

    config.json          the TrainConfig (nested; genrl 0.1.0 wrote it flat: both load)
    summary.json         {"config": ..., "history": [one row per iteration]}
    data/                the RolloutDataset of every real step
    model/               the world model (WorldModel.save)
    policy.safetensors   the agent's policy weights (loads without executing code)
    agent.zip            SB3's own save of the agent (a pickle: never loaded by genrl)
    checkpoints/, tb/    resume state and TensorBoard logs
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.vec_env import DummyVecEnv

from genrl.data.dataset import RolloutDataset
from genrl.data.envs import make_env
from genrl.errors import GenrlError
from genrl.model.world_model import WorldModel
from genrl.training.agents import agent_preset, load_policy, make_agent
from genrl.training.config import FORMAT as CONFIG_FORMAT
from genrl.training.config import VERSION as CONFIG_VERSION
from genrl.training.config import TrainConfig
from genrl.util.files import check_format, read_json


@dataclass
class TrainResult:
    """A run: where it lives, its per-iteration history, and what it produced."""

    run_dir: Path
    history: list[dict[str, Any]]
    agent: BaseAlgorithm
    model: WorldModel
    dataset: RolloutDataset
    config: TrainConfig

    @property
    def final(self) -> dict[str, Any]:
        """The last iteration's row of history."""
        return self.history[-1]


def read_config(run_dir: str | os.PathLike) -> TrainConfig:
    """The settings of the run in ``run_dir``, from its ``config.json`` (any genrl version)."""
    path = Path(run_dir) / "config.json"
    data = read_json(path, "a genrl run folder (config.json)")
    if "format" in data or "version" in data:  # genrl 0.1.0 wrote neither
        check_format(data, CONFIG_FORMAT, CONFIG_VERSION, path)
    try:
        return TrainConfig.from_dict(data)
    except GenrlError as exc:
        raise GenrlError(f"{path}: {exc}") from None


def load_run(run_dir: str | os.PathLike, device: str = "auto") -> TrainResult:
    """Read a finished run back: settings, history, world model (on ``device``), dataset, agent.

    The agent is rebuilt from the run's agent preset and given the saved policy weights
    (``policy.safetensors``), so nothing in the folder is unpickled.
    """
    run_dir = Path(run_dir)
    cfg = read_config(run_dir)
    weights = run_dir / "policy.safetensors"
    if not weights.is_file():
        raise GenrlError(f"expected policy weights at {weights}, found no such file (did the run finish?)")
    summary = read_json(run_dir / "summary.json", "a finished genrl run (summary.json)")
    history = summary.get("history")
    if not isinstance(history, list):
        raise GenrlError(f"{run_dir / 'summary.json'}: expected a history list, got {type(history).__name__}")
    model = WorldModel.load(run_dir / "model", device=device)
    dataset = RolloutDataset.load(run_dir / "data")
    return TrainResult(run_dir, history, load_agent(cfg, weights), model, dataset, cfg)


def load_agent(cfg: TrainConfig, weights: str | os.PathLike) -> BaseAlgorithm:
    """The run's agent, built from its preset on the real env, with the saved policy weights."""
    venv = DummyVecEnv([lambda: make_env(cfg.env_id)])
    with warnings.catch_warnings():
        # Training-only settings (e.g. PPO's batch size vs. one env's rollout) warn here needlessly.
        warnings.simplefilter("ignore", UserWarning)
        agent = make_agent(agent_preset(cfg.agent), venv, seed=cfg.seed)
    venv.close()
    return load_policy(agent, weights)
