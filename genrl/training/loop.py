"""train_in_imagination(): collect, fit, train an SB3 agent in the dream, evaluate for real, repeat."""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.logger import configure
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import DummyVecEnv, VecMonitor
from torch.utils.tensorboard import SummaryWriter

from genrl.data.collect import collect, make_env
from genrl.data.dataset import KEYS, RolloutDataset
from genrl.dream.vec_env import DreamVecEnv
from genrl.errors import GenrlError
from genrl.model.world_model import WorldModel
from genrl.training.agents import agent_preset, make_agent, save_policy
from genrl.training.checkpoint import CheckpointStore
from genrl.training.presets import available, find_env_preset, load_preset
from genrl.util.files import read_json, write_json

log = logging.getLogger("genrl")


@dataclass
class TrainConfig:
    """Everything one run of the loop needs; an ``envs/*.yaml`` preset fills it in."""

    env_id: str
    agent: str | dict = "ppo"
    seed: int = 0
    iterations: int = 5
    initial_steps: int = 1000  # random real steps before the first fit
    steps_per_iteration: int = 1000  # real steps collected by the agent after each iteration
    # Later iterations collect at least this fraction of the real steps so far: a geometric
    # schedule, so that "steps to reach a return" is resolved to that fraction of itself.
    collect_fraction: float = 0.0
    epsilon: float = 0.0  # chance of a random action while the agent collects
    fit_steps: int = 1000  # world-model gradient steps on the first fit
    refit_steps: int = 500  # ... and on each later fit
    world_model: dict = field(default_factory=dict)  # WorldModelConfig fields
    n_envs: int = 64  # parallel dreams
    horizon: int = 500
    temperature: float = 1.0
    start: str = "initial"
    dream_steps: int = 50_000  # agent steps in the dream per iteration
    eval_episodes: int = 20
    target_return: float | None = None  # stop once the real eval mean reaches this
    device: str | None = None  # world model and dreams; None picks CUDA when present
    keep_checkpoints: int = 2  # newest run checkpoints kept on disk

    def __post_init__(self) -> None:
        fraction = self.collect_fraction
        if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 <= fraction <= 10:
            raise GenrlError(
                f"collect_fraction: expected a number from 0 to 10, got {self.collect_fraction!r}"
            )

    @classmethod
    def from_preset(cls, preset: dict[str, Any], **overrides: Any) -> TrainConfig:
        """Flatten a nested env preset (sections collect/world_model/dream/train) and apply overrides."""
        flat: dict[str, Any] = {"env_id": preset.get("id")}
        sections = {"collect", "dream", "train"}
        for key, value in preset.items():
            if key in sections and isinstance(value, dict):
                flat.update(value)
            elif key == "world_model" and isinstance(value, dict):
                value = dict(value)
                for name in ("fit_steps", "refit_steps"):
                    if name in value:
                        flat[name] = value.pop(name)
                flat["world_model"] = value
            elif key not in ("id", "name", "description"):
                flat[key] = value
        flat.update({k: v for k, v in overrides.items() if v is not None})
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(flat) - names)
        if unknown:
            raise GenrlError(f"unknown training settings {unknown}; expected some of {sorted(names)}")
        if not flat.get("env_id"):
            raise GenrlError("the env preset has no 'id': expected a Gymnasium environment id")
        return cls(**flat)


@dataclass
class TrainResult:
    """What a run produced: per-iteration history and where it saved things."""

    run_dir: Path
    history: list[dict[str, Any]]
    agent: BaseAlgorithm
    model: WorldModel
    dataset: RolloutDataset

    @property
    def final(self) -> dict[str, Any]:
        return self.history[-1]


def resolve_config(env: str, **overrides: Any) -> TrainConfig:
    """A preset name (``cartpole``), a preset file, or an env id (using its preset when one exists)."""
    if env.endswith((".yaml", ".yml")):
        preset = load_preset("envs", env)
    else:
        preset = find_env_preset(env)
        if preset is None:
            try:
                preset = load_preset("envs", env)
            except GenrlError:
                try:
                    make_env(env).close()
                except GenrlError as exc:
                    raise GenrlError(
                        f"{exc}; expected a Gymnasium id or an env preset, one of {available('envs')}"
                    ) from None
                preset = {"id": env}
    return TrainConfig.from_preset(preset, **overrides)


def train_in_imagination(
    env: str,
    agent: str | dict | None = None,
    *,
    seed: int | None = None,
    run_dir: str | os.PathLike | None = None,
    progress: bool = True,
    **overrides: Any,
) -> TrainResult:
    """Train an SB3 agent in a learned model of ``env``, touching the real env only to collect and evaluate.

    A run folder that already holds a run with the same settings is resumed from its last
    checkpoint (see :func:`resume`), so re-running a killed command continues it.

    :param env: env preset name (``"cartpole"``), preset YAML path, or Gymnasium id
    :param agent: agent preset name (``"ppo"``, ``"sac"``...) or dict; defaults to the env preset's
    :param seed: seeds data collection, the world model and the agent
    :param run_dir: run folder (dataset, model, agent, ``summary.json``, TensorBoard logs, checkpoints)
    :param overrides: any :class:`TrainConfig` field
    """
    cfg = resolve_config(env, agent=agent, seed=seed, **overrides)
    run_dir = Path(run_dir) if run_dir is not None else default_run_dir(cfg)
    if (run_dir / "config.json").exists():
        _check_same_run(run_dir, cfg)
    elif (run_dir / "data" / "dataset.json").exists():
        # Appending to data of unknown origin would silently break the real-step budget.
        raise GenrlError(
            f"run folder {run_dir} holds data but no config.json: expected a new or empty folder"
        )
    return _run(cfg, run_dir, progress)


def resume(run_dir: str | os.PathLike, progress: bool = True, **overrides: Any) -> TrainResult:
    """Continue a run from its last checkpoint, with the settings in its ``config.json``.

    No recorded real transition is lost or recorded twice: episodes written after the checkpoint
    are kept, and the resumed collection replays them (same seeds, same agent) instead of adding
    them again. ``overrides`` may only change ``iterations`` (to extend a run) and ``device``.
    """
    run_dir = Path(run_dir)
    cfg = _read_config(run_dir)
    changed = sorted(set(overrides) - RESUMABLE_CHANGES)
    if changed:
        raise GenrlError(
            f"a resumed run keeps its settings: expected overrides among {sorted(RESUMABLE_CHANGES)}, "
            f"got {changed}"
        )
    return _run(dataclasses.replace(cfg, **overrides), run_dir, progress)


RESUMABLE_CHANGES = {"iterations", "device"}


def _read_config(run_dir: Path) -> TrainConfig:
    data = read_json(run_dir / "config.json", "a genrl run folder (config.json)")
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(data) - names)
    if unknown or "env_id" not in data:
        raise GenrlError(
            f"{run_dir / 'config.json'}: expected training settings with env_id, got unknown keys {unknown}"
        )
    return TrainConfig(**data)


def _check_same_run(run_dir: Path, cfg: TrainConfig) -> None:
    stored = dataclasses.asdict(_read_config(run_dir))
    wanted = dataclasses.asdict(cfg)
    differ = [k for k in wanted if k not in RESUMABLE_CHANGES and stored.get(k) != wanted[k]]
    if differ:
        shown = ", ".join(f"{k}: {stored.get(k)!r} there, {wanted[k]!r} now" for k in differ[:3])
        raise GenrlError(
            f"run folder {run_dir} holds a run with other settings ({shown}): "
            "expected the same settings to resume it, or a new --run-dir"
        )


def _run(cfg: TrainConfig, run_dir: Path, progress: bool) -> TrainResult:
    """The loop as phases (collect, fit, train+evaluate), each ending in a checkpoint."""
    progress = progress and os.environ.get("GENRL_PROGRESS", "1") != "0"
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json(run_dir / "config.json", dataclasses.asdict(cfg))
    store = CheckpointStore(run_dir / "checkpoints", cfg.keep_checkpoints)
    store.remove_partial()
    store.prune()
    for stale in run_dir.rglob(".*.tmp"):  # half-written files of a killed atomic write
        stale.unlink(missing_ok=True)
    last = store.latest()
    writer = SummaryWriter(str(run_dir / "tb"))
    collect_env = make_env(cfg.env_id)
    # Its transitions never enter the dataset; reseeded per iteration so a resumed run evaluates alike.
    # One env per episode (up to 32): the policy acts on them as one batch.
    eval_env = DummyVecEnv(
        [lambda: Monitor(make_env(cfg.env_id)) for _ in range(max(1, min(cfg.eval_episodes, 32)))]
    )
    try:
        dataset = RolloutDataset.open(
            run_dir / "data", collect_env.observation_space, collect_env.action_space
        )
        model = WorldModel(
            dataset.observation_space, dataset.action_space, {"seed": cfg.seed, **cfg.world_model}
        ).to(cfg.device or ("cuda" if torch.cuda.is_available() else "cpu"))
        dream = DreamVecEnv(
            model,
            cfg.n_envs,
            dataset,
            cfg.horizon,
            temperature=cfg.temperature,
            start=cfg.start,
            seed=cfg.seed,
        )
        learner = make_agent(agent_preset(cfg.agent), VecMonitor(dream), seed=cfg.seed)
        learner.set_logger(configure(str(run_dir / "tb"), ["tensorboard"]))
        history: list[dict[str, Any]] = []
        it, phase, kept = 0, None, 0
        val: dict[str, float] = {}  # the last fit's held-out losses
        if last is not None:
            if len(dataset) < last.episodes:
                raise GenrlError(
                    f"{dataset.path} holds {len(dataset)} episodes: expected at least the "
                    f"{last.episodes} recorded when checkpoint {last.path.name} was written"
                )
            last.restore(model, learner)
            history, it, phase, kept = list(last.history), last.iteration, last.phase, last.episodes
            val = last.fit_losses
            log.info("resuming %s after iteration %d's %s phase", run_dir, it, phase)
            if phase == "done":
                it, phase = it + 1, None
        if phase is not None and len(dataset) != kept:
            raise GenrlError(
                f"{dataset.path} holds {len(dataset)} episodes: expected {kept}, as recorded by "
                f"checkpoint {last.path.name}; episodes were added outside this run"
            )
        start_time = time.time() - (last.elapsed_s if last is not None else 0.0)

        def checkpoint(phase: str) -> None:
            elapsed = time.time() - start_time
            store.save(it, phase, model, learner, len(dataset), dataset.num_steps, elapsed, history, val)

        while not _finished(cfg, history, it):
            if phase is None:
                log.info("iteration %d: collecting real steps", it)
                learner.set_random_seed(_phase_seed(cfg.seed, it, 0))
                collect(
                    collect_env,
                    _steps_to_collect(cfg, it, _steps_in(dataset, kept)),
                    None if it == 0 else learner,
                    dataset=_Replay(dataset, kept),
                    seed=cfg.seed + it,
                    epsilon=0.0 if it == 0 else cfg.epsilon,
                    progress=progress,
                )
                kept = len(dataset)
                phase = "collected"
                checkpoint(phase)
            if phase == "collected":
                log.info("iteration %d: fitting the world model", it)
                val = model.fit(dataset, cfg.fit_steps if it == 0 else cfg.refit_steps, writer, progress)
                phase = "fitted"
                checkpoint(phase)
            if phase == "fitted":
                log.info("iteration %d: training the agent in the dream", it)
                learner.set_random_seed(_phase_seed(cfg.seed, it, 1))
                # The model changed under the dreams: restart them from real states with the new weights.
                learner._last_obs = None
                learner.learn(cfg.dream_steps, reset_num_timesteps=False, progress_bar=progress)
                eval_start = time.time()
                row = _evaluate(learner, eval_env, model, dataset, cfg, it)
                row.update(
                    iteration=it,
                    real_steps=dataset.num_steps,
                    wall_time_s=time.time() - start_time,
                    eval_time_s=time.time() - eval_start,
                    world_model_val=val,
                )
                history.append(row)
                _log(writer, row)
                log.info(
                    "iteration %d: real return %.1f ± %.1f after %d real steps (dream %.1f)",
                    it,
                    row["eval_return_mean"],
                    row["eval_return_std"],
                    row["real_steps"],
                    row["dream_return_mean"],
                )
                phase = "done"
                checkpoint(phase)
            it, phase = it + 1, None
        model.save(run_dir / "model")
        learner.save(run_dir / "agent.zip")
        save_policy(learner, run_dir / "policy.safetensors")
        write_json(run_dir / "summary.json", {"config": dataclasses.asdict(cfg), "history": history})
    finally:
        writer.close()
        collect_env.close()
        eval_env.close()
    return TrainResult(run_dir, history, learner, model, dataset)


def _finished(cfg: TrainConfig, history: list[dict[str, Any]], it: int) -> bool:
    if history and cfg.target_return is not None and history[-1]["eval_return_mean"] >= cfg.target_return:
        return True
    return it >= cfg.iterations


def _steps_to_collect(cfg: TrainConfig, iteration: int, steps_so_far: int) -> int:
    """Real steps iteration ``iteration`` collects: the initial batch, then the per-iteration share."""
    if iteration == 0:
        return cfg.initial_steps
    return max(cfg.steps_per_iteration, math.ceil(round(cfg.collect_fraction * steps_so_far, 6)))


def _steps_in(dataset: RolloutDataset, episodes: int) -> int:
    """Transitions in the first ``episodes`` episodes: what a resumed collection started from."""
    return int(sum(len(ep["action"]) for ep in dataset.episodes[:episodes]))


def _phase_seed(seed: int, iteration: int, phase: int) -> int:
    """A seed per (iteration, phase), so a phase re-run after a resume draws the same numbers."""
    return (seed * 1_000_003 + iteration * 2 + phase) % 2**31


class _Replay:
    """Stands in for the dataset while a collection runs: episodes that an interrupted run of the
    same collection already wrote are checked against the replay, not written a second time."""

    def __init__(self, dataset: RolloutDataset, kept: int):
        self.dataset = dataset
        self.pending = list(dataset.episodes[kept:])
        self.diverged = 0
        if self.pending:
            log.info("replaying %d episodes recorded before the interruption", len(self.pending))

    def check_spaces(self, observation_space, action_space) -> None:
        self.dataset.check_spaces(observation_space, action_space)

    def add_episode(self, obs, action, reward, terminated, truncated) -> None:
        if not self.pending:
            self.dataset.add_episode(obs, action, reward, terminated, truncated)
            return
        recorded = self.pending.pop(0)
        same = all(
            np.array_equal(np.asarray(new, dtype=recorded[k].dtype), recorded[k])
            for k, new in zip(KEYS, (obs, action, reward, terminated, truncated), strict=True)
        )
        if not same and not self.diverged:
            # The recorded episode is real data and stays; only the replay's copy is dropped.
            warnings.warn(
                "the resumed collection differs from the episodes recorded before the interruption "
                "(is the env deterministic under seeding?); kept the recorded ones",
                stacklevel=2,
            )
        self.diverged += not same


def default_run_dir(cfg: TrainConfig) -> Path:
    """``runs/<env>-<algorithm>-seed<N>-<time>``: a new folder for each new run."""
    name = cfg.env_id.split("/")[-1].lower()
    algo = cfg.agent if isinstance(cfg.agent, str) else cfg.agent.get("algorithm", "agent")
    return Path("runs") / f"{name}-{algo}-seed{cfg.seed}-{time.strftime('%Y%m%d-%H%M%S')}"


def _evaluate(
    agent: BaseAlgorithm,
    eval_env: DummyVecEnv,
    model: WorldModel,
    dataset: RolloutDataset,
    cfg: TrainConfig,
    iteration: int,
) -> dict[str, Any]:
    """Deterministic returns in the real env and in the dream, and their gap."""
    eval_env.seed(cfg.seed + 10_000 + iteration)
    real, real_lengths = evaluate_policy(
        agent, eval_env, cfg.eval_episodes, deterministic=True, return_episode_rewards=True
    )
    n = min(cfg.eval_episodes, cfg.n_envs)
    dream_env = VecMonitor(
        DreamVecEnv(model, n, dataset, cfg.horizon, temperature=cfg.temperature, seed=cfg.seed + 12345)
    )
    dream, _ = evaluate_policy(
        agent, dream_env, cfg.eval_episodes, deterministic=True, return_episode_rewards=True
    )
    return {
        "eval_return_mean": float(np.mean(real)),
        "eval_return_std": float(np.std(real)),
        "eval_steps": int(np.sum(real_lengths)),
        "dream_return_mean": float(np.mean(dream)),
        "dream_real_gap": float(np.mean(dream) - np.mean(real)),
    }


def _log(writer: SummaryWriter, row: dict[str, Any]) -> None:
    step = row["real_steps"]
    writer.add_scalar("real/eval_return_mean", row["eval_return_mean"], step)
    writer.add_scalar("real/eval_return_std", row["eval_return_std"], step)
    writer.add_scalar("dream/eval_return_mean", row["dream_return_mean"], step)
    writer.add_scalar("dream/real_gap", row["dream_real_gap"], step)
    writer.flush()
