"""Run checkpoints: what a killed ``train_in_imagination`` run needs to continue exactly where it stopped.

A checkpoint is written after each phase of an iteration (``collected``, ``fitted``, ``done``) into
``<run>/checkpoints/<iteration>-<phase index>-<phase>/`` (format ``genrl.checkpoint`` v1)::

    checkpoint.json        {"format", "version", "iteration", "phase", "episodes", "real_steps",
                            "elapsed_s", "history": [...], "fit_losses": {...}, "agent": {SB3 counters}}
    model/                 the world model, as written by WorldModel.save
    model_optimizer.pt     the world model's optimizer state      (torch.load(weights_only=True))
    agent.pt               the SB3 agent's state dicts and tensors (torch.load(weights_only=True))
    replay_buffer.npz      off-policy agents only: the filled part of the buffer (allow_pickle=False)

The folder is assembled under a hidden temporary name and renamed into place, so a checkpoint is
either complete or absent. Only the newest ``keep`` checkpoints are kept. Loading reads JSON,
safetensors, ``weights_only`` torch files and pickle-free ``.npz`` only: it never executes code.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np
import torch
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm

from genrl.errors import GenrlError
from genrl.model.world_model import WorldModel
from genrl.util.checks import describe, one_line
from genrl.util.files import atomic_write, check_format, read_json, read_npz, write_json, write_npz

FORMAT = "genrl.checkpoint"
VERSION = 1


class Phase(str, Enum):
    """The phases of an iteration after which the loop writes a checkpoint, in order."""

    COLLECTED = "collected"
    FITTED = "fitted"
    DONE = "done"  # the agent trained in the dream and evaluated

    @property
    def index(self) -> int:
        return list(Phase).index(self)


PHASES = tuple(p.value for p in Phase)
# SB3 counters that schedules, target updates and exploration read; everything else is in state dicts.
AGENT_COUNTERS = ("num_timesteps", "_n_updates", "_episode_num", "_n_calls", "_current_progress_remaining")
BUFFER_ARRAYS = ("observations", "next_observations", "actions", "rewards", "dones", "timeouts")


@dataclass
class Checkpoint:
    """One checkpoint folder's metadata; :meth:`restore` loads its model and agent state."""

    path: Path
    iteration: int
    phase: Phase
    episodes: int  # dataset episodes recorded when it was written
    real_steps: int
    elapsed_s: float
    history: list[dict[str, Any]]
    agent_counters: dict[str, Any]
    fit_losses: dict[str, float]  # the last fit's held-out losses

    def restore(self, model: WorldModel, agent: BaseAlgorithm) -> None:
        """Load the saved world model (with its optimizer) and agent state into live objects."""
        saved = WorldModel.load(self.path / "model", device=model.device)
        # Their sizes vary, so they cannot load in place.
        model.start_states, model.trained_episodes = saved.start_states, saved.trained_episodes
        try:
            model.load_state_dict(saved.state_dict(), strict=True)
        except RuntimeError as exc:
            first = one_line(exc)
            raise GenrlError(
                f"{self.path}: expected a world model matching the run's config ({first})"
            ) from None
        model.trainer.load_state_dict(_load_torch(self.path / "model_optimizer.pt", model.device))
        _restore_agent(agent, self)


class CheckpointStore:
    """The checkpoint folders of one run: write new ones atomically, find the newest, prune old ones."""

    def __init__(self, path: str | os.PathLike, keep: int = 2):
        if int(keep) < 1:
            raise GenrlError(f"keep_checkpoints must be at least 1, got {keep!r}")
        self.path = Path(path)
        self.keep = int(keep)

    def names(self) -> list[str]:
        """Complete checkpoint folders, oldest first (temporary folders of a killed write excluded)."""
        if not self.path.is_dir():
            return []
        return sorted(p.name for p in self.path.iterdir() if p.is_dir() and not p.name.startswith("."))

    def latest(self) -> Checkpoint | None:
        """The newest checkpoint, or None for a run that never wrote one."""
        names = self.names()
        return read_checkpoint(self.path / names[-1]) if names else None

    def remove_partial(self) -> None:
        """Delete temporary folders left by a write that was killed before its rename."""
        if self.path.is_dir():
            for p in self.path.iterdir():
                if p.name.startswith(".tmp-"):
                    shutil.rmtree(p, ignore_errors=True)

    def save(
        self,
        iteration: int,
        phase: Phase | str,
        model: WorldModel,
        agent: BaseAlgorithm,
        episodes: int,
        real_steps: int,
        elapsed_s: float,
        history: list[dict[str, Any]],
        fit_losses: dict[str, float] | None = None,
    ) -> Path:
        """Write a checkpoint after ``phase`` of ``iteration``; returns its folder."""
        if phase not in PHASES:
            raise GenrlError(f"expected a phase in {PHASES}, got {phase!r}")
        phase = Phase(phase)
        name = f"{iteration:06d}-{phase.index}-{phase.value}"
        final = self.path / name
        tmp = self.path / f".tmp-{name}-{os.getpid()}"
        if tmp.exists():
            shutil.rmtree(tmp)
        model.save(tmp / "model")
        _save_torch(tmp / "model_optimizer.pt", model.trainer.state_dict())
        counters = _save_agent(tmp, agent)
        write_json(
            tmp / "checkpoint.json",
            {
                "format": FORMAT,
                "version": VERSION,
                "iteration": int(iteration),
                "phase": phase.value,
                "episodes": int(episodes),
                "real_steps": int(real_steps),
                "elapsed_s": float(elapsed_s),
                "history": history,
                "fit_losses": dict(fit_losses or {}),
                "agent": counters,
            },
        )
        if final.exists():  # left by an earlier attempt at this phase, which this one supersedes
            shutil.rmtree(final)
        os.rename(tmp, final)
        _fsync_dir(self.path)
        self.prune()
        return final

    def prune(self) -> None:
        """Delete all but the newest ``keep`` checkpoints (a kill right after a save can leave one more)."""
        for old in self.names()[: -self.keep]:
            shutil.rmtree(self.path / old, ignore_errors=True)


def read_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """Read and validate a checkpoint folder's ``checkpoint.json`` (weights load in ``restore``)."""
    path = Path(path)
    meta = read_json(path / "checkpoint.json", "a genrl run checkpoint (checkpoint.json)")
    check_format(meta, FORMAT, VERSION, path / "checkpoint.json")
    fields = {
        "iteration": int,
        "phase": str,
        "episodes": int,
        "real_steps": int,
        "elapsed_s": (int, float),
        "history": list,
        "fit_losses": dict,
        "agent": dict,
    }
    for key, kind in fields.items():
        value = meta.get(key)
        if not isinstance(value, kind) or isinstance(value, bool):
            raise GenrlError(f"{path / 'checkpoint.json'}: expected {key} of type {kind}, got {value!r}")
    if meta["phase"] not in PHASES or meta["iteration"] < 0 or meta["episodes"] < 0:
        raise GenrlError(
            f"{path / 'checkpoint.json'}: expected a phase in {PHASES} and non-negative counts, "
            f"got phase {meta['phase']!r}, iteration {meta['iteration']}, episodes {meta['episodes']}"
        )
    return Checkpoint(
        path,
        meta["iteration"],
        Phase(meta["phase"]),
        meta["episodes"],
        meta["real_steps"],
        float(meta["elapsed_s"]),
        meta["history"],
        meta["agent"],
        meta["fit_losses"],
    )


# ---- the agent -----------------------------------------------------------------------------------


def _save_agent(folder: Path, agent: BaseAlgorithm) -> dict[str, Any]:
    """Write the agent's state dicts, tensors and replay buffer; return its counters for the JSON."""
    state_dicts, variables = agent._get_torch_save_params()  # SB3's own list of what save() stores
    _save_torch(
        folder / "agent.pt",
        {
            "state_dicts": agent.get_parameters(),
            "variables": {name: _getattr(agent, name).detach().cpu() for name in variables},
        },
    )
    counters = {k: getattr(agent, k) for k in AGENT_COUNTERS if hasattr(agent, k)}
    buffer = getattr(agent, "replay_buffer", None) if isinstance(agent, OffPolicyAlgorithm) else None
    if buffer is not None:
        filled = buffer.buffer_size if buffer.full else buffer.pos
        arrays = {
            k: getattr(buffer, k)[:filled] for k in BUFFER_ARRAYS if getattr(buffer, k, None) is not None
        }
        write_npz(folder / "replay_buffer.npz", arrays)
        counters["replay_buffer"] = {"pos": int(buffer.pos), "full": bool(buffer.full)}
    return counters


def _restore_agent(agent: BaseAlgorithm, ckpt: Checkpoint) -> None:
    state = _load_torch(ckpt.path / "agent.pt", agent.device)
    if not isinstance(state, dict) or not {"state_dicts", "variables"} <= set(state):
        raise GenrlError(f"{ckpt.path / 'agent.pt'}: expected agent state dicts, got another object")
    try:
        agent.set_parameters(state["state_dicts"], exact_match=True, device=agent.device)
        for name, value in state["variables"].items():
            _getattr(agent, name).data.copy_(value)
    except (ValueError, KeyError, RuntimeError, AttributeError, TypeError) as exc:
        raise GenrlError(
            f"{ckpt.path / 'agent.pt'}: expected the state of this run's agent ({one_line(exc)})"
        ) from None
    counters = dict(ckpt.agent_counters)
    buffer_meta = counters.pop("replay_buffer", None)
    for key in AGENT_COUNTERS:
        if key in counters and hasattr(agent, key):
            setattr(agent, key, counters[key])
    if isinstance(agent, OffPolicyAlgorithm) and buffer_meta is not None:
        _restore_buffer(agent, ckpt.path / "replay_buffer.npz", buffer_meta)


def _restore_buffer(agent: OffPolicyAlgorithm, file: Path, meta: Any) -> None:
    buffer = agent.replay_buffer
    pos, full = (meta.get("pos"), meta.get("full")) if isinstance(meta, dict) else (None, None)
    if not (isinstance(pos, int) and isinstance(full, bool) and 0 <= pos < buffer.buffer_size):
        raise GenrlError(
            f"{file}: expected replay buffer counters {{pos in [0, {buffer.buffer_size}), full}}, "
            f"got {describe(meta)}"
        )
    filled = buffer.buffer_size if full else pos
    keys = [k for k in BUFFER_ARRAYS if getattr(buffer, k, None) is not None]
    arrays = read_npz(file, keys, "the run's replay buffer (.npz)")
    for key in keys:  # every array is checked before any is copied: no half-restored buffer
        want = (filled, *getattr(buffer, key).shape[1:])
        got = arrays[key].shape if key in arrays else "no such array"
        if got != want or not np.all(np.isfinite(arrays[key])):
            raise GenrlError(f"{file}: expected finite {key} of shape {want}, got {got}")
    for key in keys:
        getattr(buffer, key)[:filled] = arrays[key]
    buffer.pos, buffer.full = meta["pos"], meta["full"]


def _getattr(obj: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


# ---- files ---------------------------------------------------------------------------------------


def _save_torch(path: Path, obj: Any) -> None:
    atomic_write(path, lambda tmp: torch.save(obj, tmp))


def _load_torch(path: Path, device: torch.device | str) -> Any:
    """Tensors and plain containers only: ``weights_only`` refuses anything that would run code."""
    if not path.is_file():
        raise GenrlError(f"expected checkpoint tensors at {path}, found no such file")
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except Exception as exc:  # torch raises many types (UnpicklingError, RuntimeError...) on a foreign file
        raise GenrlError(
            f"{path}: expected a genrl checkpoint tensor file, got an unreadable one ({one_line(exc)})"
        ) from None


def _fsync_dir(path: Path) -> None:
    """Make a rename durable: without this a power cut can lose the new directory entry."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
