"""A run folder, read back: its settings, history, world model, dataset and agent.

A finished run of :func:`~genrl.train_in_imagination` holds::

    config.json          the TrainConfig (nested; genrl 0.1.0 wrote it flat: both load)
    summary.json         {"config": ..., "history": [one row per iteration]}
    data/                the RolloutDataset of every real step
    model/               the world model (WorldModel.save)
    policy.safetensors   the agent's policy weights (loads without executing code)
    agent.zip            SB3's own save of the agent (a pickle: never loaded by genrl)
    checkpoints/, tb/    resume state and TensorBoard logs

:func:`save_run` writes the same layout for an agent trained some other way (e.g. with the
:class:`~genrl.training.callbacks.DreamTraining` callback), so that ``genrl eval`` reads it too.
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.vec_env import DummyVecEnv

from genrl.data.dataset import RolloutDataset
from genrl.data.envs import make_env
from genrl.dream.latent import LatentObservation
from genrl.errors import GenrlError
from genrl.model.world_model import WorldModel
from genrl.training.agents import agent_preset, load_policy, make_agent, preset_of, save_policy
from genrl.training.config import FORMAT as CONFIG_FORMAT
from genrl.training.config import READS as CONFIG_READS
from genrl.training.config import TrainConfig
from genrl.util.checks import describe, is_int
from genrl.util.files import atomic_folder, atomic_write, check_format, read_json, write_json


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
    version = 1  # genrl 0.1.0 wrote neither format nor version
    if "format" in data or "version" in data:
        version = check_format(data, CONFIG_FORMAT, CONFIG_READS, path)
    try:
        return TrainConfig.from_dict(data, version)
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
    return TrainResult(run_dir, history, load_agent(cfg, weights, model), model, dataset, cfg)


def load_agent(
    cfg: TrainConfig, weights: str | os.PathLike, model: WorldModel | None = None
) -> BaseAlgorithm:
    """The run's agent, built from its preset on the real env, with the saved policy weights.

    An agent of latent mode acts on ``model``'s features: the real env is seen through
    :class:`~genrl.dream.latent.LatentObservation`, as during the run.
    """
    latent = model is not None and cfg.agent_obs_mode(model.image) == "latent"
    if model is None and cfg.dream.obs_mode == "latent":
        raise GenrlError(
            "load_agent: expected the run's world model, since its agent acts on latent features"
        )
    venv = DummyVecEnv(
        [lambda: LatentObservation(make_env(cfg.env_id), model) if latent else make_env(cfg.env_id)]
    )
    with warnings.catch_warnings():
        # Training-only settings (e.g. PPO's batch size vs. one env's rollout) warn here needlessly.
        warnings.simplefilter("ignore", UserWarning)
        agent = make_agent(agent_preset(cfg.agent), venv, seed=cfg.seed)
    venv.close()
    return load_policy(agent, weights)


def save_run(
    run_dir: str | os.PathLike,
    agent: BaseAlgorithm,
    model: WorldModel,
    dataset: RolloutDataset,
    env_id: str,
    history: list[dict[str, Any]] | None = None,
) -> Path:
    """Write a run folder that :func:`load_run` (and ``genrl eval RUN_DIR``) reads back.

    ``config.json`` holds a TrainConfig whose agent preset rebuilds the agent's policy
    architecture (:func:`~genrl.training.agents.preset_of`) and whose model settings are the
    model's; ``summary.json`` holds ``history`` (JSON rows). Each file and folder is replaced
    atomically, ``config.json`` last, so a folder with one is a whole run. Returns the folder.
    """
    if not isinstance(agent, BaseAlgorithm):
        raise GenrlError(f"save_run: expected an SB3 agent, got {type(agent).__name__}")
    if not isinstance(model, WorldModel):
        raise GenrlError(f"save_run: expected a WorldModel, got {type(model).__name__}")
    if not isinstance(dataset, RolloutDataset):
        raise GenrlError(f"save_run: expected a RolloutDataset, got {type(dataset).__name__}")
    dataset.check_spaces(model.observation_space, model.action_space)
    model.check_env_spaces(agent.observation_space, agent.action_space)
    env = make_env(env_id) if isinstance(env_id, str) else None  # TrainConfig refuses a non-string
    if env is not None:
        model.check_env_spaces(env.observation_space, env.action_space)  # what genrl eval will play
        env.close()
    seed = agent.seed if is_int(agent.seed) and 0 <= agent.seed < 2**32 else None
    cfg = TrainConfig(
        env_id=env_id,
        agent=preset_of(agent),
        seed=seed,
        world_model=model.config,
        fit=model.fit_config,
    )
    summary = {"config": cfg.to_dict(), "history": _json_rows(history)}
    run_dir = Path(run_dir)
    atomic_folder(run_dir / "data", lambda tmp: _copy_dataset(dataset, tmp), replace=True)
    atomic_folder(run_dir / "model", model.save, replace=True)
    save_policy(agent, run_dir / "policy.safetensors")
    atomic_write(run_dir / "agent.zip", lambda tmp: _save_agent(agent, tmp))
    write_json(run_dir / "summary.json", summary)
    write_json(run_dir / "config.json", cfg.to_dict())
    return run_dir


def _json_rows(history: Any) -> list[dict[str, Any]]:
    rows = [] if history is None else history
    if not isinstance(rows, list) or not all(isinstance(row, dict) for row in rows):
        raise GenrlError(f"save_run: expected history as a list of dicts, got {describe(history)}")
    try:
        return json.loads(json.dumps(rows))
    except (TypeError, ValueError) as exc:
        raise GenrlError(f"save_run: expected history rows of JSON values ({exc})") from None


def _copy_dataset(dataset: RolloutDataset, folder: Path) -> None:
    copy = RolloutDataset(dataset.observation_space, dataset.action_space, folder)
    for episode in dataset.episodes:
        copy.add(episode)


def _save_agent(agent: BaseAlgorithm, tmp: str) -> None:
    # A file object: given a path, SB3 would add ".zip" to the temporary file's name.
    with open(tmp, "wb") as f:
        agent.save(f)
