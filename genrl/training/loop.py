"""train_in_imagination(): collect, fit, train an SB3 agent in the dream, evaluate for real, repeat.

Each iteration runs four phases, and a checkpoint follows the collection, the fit, and the
training with its evaluation (:class:`~genrl.training.checkpoint.Phase`)::

    collect    real steps into the dataset: random at first, then the agent's
    fit        the world model on all the data so far
    train      the agent in dreams of the refitted model
    evaluate   the agent in the real env and in the dream; one row of history

A killed run resumes from its last checkpoint (:func:`resume`) and continues exactly as it would
have; :func:`~genrl.training.run.load_run` reads a finished one back.
"""

from __future__ import annotations

import logging
import math
import os
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.logger import configure
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import DummyVecEnv, VecMonitor
from torch.utils.tensorboard import SummaryWriter

from genrl.data.collect import collect
from genrl.data.dataset import RolloutDataset
from genrl.data.envs import make_env
from genrl.dream.latent import LatentObservation, LatentPolicy
from genrl.dream.vec_env import DreamVecEnv
from genrl.errors import GenrlError
from genrl.evaluation.video import add_gif, open_loop_video, video_frames
from genrl.guidance.planner import Planner
from genrl.model.world_model import WorldModel
from genrl.training.agents import agent_preset, make_agent, restart_schedules, save_policy
from genrl.training.checkpoint import Checkpoint, CheckpointStore, Phase
from genrl.training.config import TrainConfig, resolve_config
from genrl.training.defaults import off_support, with_env_defaults
from genrl.training.hparams import log_hparams
from genrl.training.run import TrainResult, read_config
from genrl.util.checks import one_line
from genrl.util.device import resolve_device
from genrl.util.files import write_json
from genrl.util.progress import progress_enabled
from genrl.util.seeding import fresh_seed

log = logging.getLogger("genrl")
MAX_EVAL_ENVS = 32  # real evaluation episodes played as one batch
RESUMABLE_CHANGES = {"iterations", "device"}  # what resume() may change of a run's settings
INITIAL_EPISODES_SEED = 1_000_003  # offsets the seed of the initial collection's extra episodes


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
    :param seed: seeds data collection, the world model, the dreams and the agent; None draws one
        (recorded in the run's ``config.json``)
    :param run_dir: run folder (dataset, model, agent, ``summary.json``, TensorBoard logs, checkpoints)
    :param overrides: settings of :class:`TrainConfig`, by name (``iterations=3``) or by section
    """
    existing = Path(run_dir) / "config.json" if run_dir is not None else None
    if seed is None and existing is not None and existing.exists():
        seed = read_config(existing.parent).seed  # the same command, re-run: the same run
    cfg = resolve_config(env, agent=agent, seed=seed, **overrides)
    probe = make_env(cfg.env_id)
    cfg = with_env_defaults(cfg, probe)
    probe.close()
    if cfg.seed is None:
        cfg = cfg.replace(seed=fresh_seed(None))
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
    cfg = read_config(run_dir)
    changed = sorted(set(overrides) - RESUMABLE_CHANGES)
    if changed:
        raise GenrlError(
            f"a resumed run keeps its settings: expected overrides among {sorted(RESUMABLE_CHANGES)}, "
            f"got {changed}"
        )
    return _run(cfg.replace(**overrides), run_dir, progress)


def default_run_dir(cfg: TrainConfig) -> Path:
    """``runs/<env>-<algorithm>-seed<N>-<time>``: a new folder for each new run."""
    name = cfg.env_id.split("/")[-1].replace(":", "-").lower()
    algo = cfg.agent if isinstance(cfg.agent, str) else cfg.agent.get("algorithm", "agent")
    return Path("runs") / f"{name}-{algo}-seed{cfg.seed}-{time.strftime('%Y%m%d-%H%M%S')}"


def steps_to_collect(cfg: TrainConfig, iteration: int, steps_so_far: int) -> int:
    """Real steps iteration ``iteration`` collects: the initial batch, then the per-iteration share."""
    c = cfg.collect
    if iteration == 0:
        return c.initial_steps
    return max(c.steps_per_iteration, math.ceil(round(c.collect_fraction * steps_so_far, 6)))


def _check_same_run(run_dir: Path, cfg: TrainConfig) -> None:
    stored, wanted = _flat(read_config(run_dir)), _flat(cfg)
    differ = [k for k in wanted if k not in RESUMABLE_CHANGES and stored.get(k) != wanted[k]]
    if differ:
        shown = ", ".join(f"{k}: {stored.get(k)!r} there, {wanted[k]!r} now" for k in differ[:3])
        raise GenrlError(
            f"run folder {run_dir} holds a run with other settings ({shown}): "
            "expected the same settings to resume it, or a new --run-dir"
        )


def _flat(cfg: TrainConfig) -> dict[str, Any]:
    """Settings by name (sections' fields flattened), to compare two runs' settings."""
    data = cfg.to_dict()
    flat = {k: v for k, v in data.items() if not isinstance(v, dict) or k == "agent"}
    for section in ("collect", "world_model", "fit", "dream", "train"):
        flat.update({f"{section}.{k}" if k == "steps" else k: v for k, v in data[section].items()})
    return flat


# ---- one run ---------------------------------------------------------------------------------


def _run(cfg: TrainConfig, run_dir: Path, progress: bool) -> TrainResult:
    """Open the run, then run its phases until it is finished, each ending in a checkpoint."""
    loop = _Loop(cfg, run_dir, progress_enabled(progress))
    try:
        while not loop.finished():
            for phase, step in PHASES:
                if loop.phase is None or loop.phase.index < phase.index:
                    step(loop)
                    loop.phase = phase
                    loop.checkpoint()
            loop.iteration, loop.phase = loop.iteration + 1, None
        loop.save_outputs()
    finally:
        loop.close()
    return TrainResult(run_dir, loop.history, loop.agent, loop.model, loop.dataset, cfg)


class _Loop:
    """The state of a run while it runs: its data, model, agent, history and checkpoints."""

    def __init__(self, cfg: TrainConfig, run_dir: Path, progress: bool):
        self.cfg, self.run_dir, self.progress = cfg, run_dir, progress
        run_dir.mkdir(parents=True, exist_ok=True)
        write_json(run_dir / "config.json", cfg.to_dict())
        self.store = CheckpointStore(run_dir / "checkpoints", cfg.train.keep_checkpoints)
        self.store.remove_partial()
        self.store.prune()
        for stale in run_dir.rglob(".*.tmp"):  # half-written files of a killed atomic write
            stale.unlink(missing_ok=True)
        last = self.store.latest()
        self.writer = SummaryWriter(str(run_dir / "tb"))
        self.collect_env = make_env(cfg.env_id)
        self.eval_env: DummyVecEnv | None = None
        self.history: list[dict[str, Any]] = []
        self.iteration, self.phase, self.kept = 0, None, 0
        self.fit_losses: dict[str, float] = {}
        self.dream_episodes: dict[str, int] = {}  # dream episodes of the last training phase
        self.dataset = self.model = self.agent = None
        try:
            self._build()
            # Its transitions never enter the dataset; reseeded per iteration so a resumed run
            # evaluates alike. One env per episode (up to 32): the policy acts on them as one batch.
            n_eval = max(1, min(cfg.train.eval_episodes, MAX_EVAL_ENVS))
            self.eval_env = DummyVecEnv([self._eval_env for _ in range(n_eval)])
            self._restore(last)
            if last is None:  # a new run: its settings as TensorBoard hparams, once
                log_hparams(self.writer, cfg)
        except BaseException:  # a run that cannot start still closes its writer and envs
            self.close()
            raise

    def _build(self) -> None:
        cfg = self.cfg
        env = self.collect_env
        self.dataset = RolloutDataset.open(self.run_dir / "data", env.observation_space, env.action_space)
        self.model = WorldModel(
            self.dataset.observation_space, self.dataset.action_space, cfg.world_model, cfg.fit, seed=cfg.seed
        ).to(resolve_device(cfg.device))
        d = cfg.dream
        self.obs_mode = cfg.agent_obs_mode(self.model.image)
        dream = DreamVecEnv(
            self.model,
            d.n_envs,
            self.dataset,
            d.horizon,
            obs_mode=self.obs_mode,
            temperature=d.temperature,
            start=d.start,
            seed=cfg.seed,
            exploration_bonus=d.exploration_bonus,
            reward_penalty=d.reward_penalty,
            **d.limits(),
        )
        self.dreams = dream.dream
        self.agent = make_agent(agent_preset(cfg.agent), VecMonitor(dream), seed=cfg.seed)
        self.agent.set_logger(configure(str(self.run_dir / "tb"), ["tensorboard"]))

    def _eval_env(self) -> Monitor:
        """A real env as the agent sees it: through the model's features in latent mode."""
        env = make_env(self.cfg.env_id)
        return Monitor(LatentObservation(env, self.model) if self.obs_mode == "latent" else env)

    def _restore(self, last: Checkpoint | None) -> None:
        """Continue after the last checkpoint, checking that the data on disk is what it recorded."""
        if last is not None:
            if len(self.dataset) < last.episodes:
                raise GenrlError(
                    f"{self.dataset.path} holds {len(self.dataset)} episodes: expected at least the "
                    f"{last.episodes} recorded when checkpoint {last.path.name} was written"
                )
            last.restore(self.model, self.agent)
            self.history, self.iteration, self.phase = list(last.history), last.iteration, last.phase
            self.kept, self.fit_losses = last.episodes, last.fit_losses
            log.info(
                "resuming %s after iteration %d's %s phase", self.run_dir, self.iteration, self.phase.value
            )
            if self.phase is Phase.DONE:
                self.iteration, self.phase = self.iteration + 1, None
        if self.phase is not None and len(self.dataset) != self.kept:
            raise GenrlError(
                f"{self.dataset.path} holds {len(self.dataset)} episodes: expected {self.kept}, as recorded "
                f"by checkpoint {last.path.name}; episodes were added outside this run"
            )
        self.start_time = time.time() - (last.elapsed_s if last is not None else 0.0)

    def finished(self) -> bool:
        target = self.cfg.train.target_return
        if self.history and target is not None and self.history[-1]["eval_return_mean"] >= target:
            return True
        return self.iteration >= self.cfg.train.iterations

    def checkpoint(self) -> None:
        elapsed = time.time() - self.start_time
        self.store.save(
            self.iteration,
            self.phase,
            self.model,
            self.agent,
            len(self.dataset),
            self.dataset.num_steps,
            elapsed,
            self.history,
            self.fit_losses,
        )

    def save_outputs(self) -> None:
        self.model.save(self.run_dir / "model")
        self.agent.save(self.run_dir / "agent.zip")
        save_policy(self.agent, self.run_dir / "policy.safetensors")
        write_json(self.run_dir / "summary.json", {"config": self.cfg.to_dict(), "history": self.history})

    def close(self) -> None:
        self.writer.close()
        self.collect_env.close()
        if self.eval_env is not None:
            self.eval_env.close()


# ---- the phases ------------------------------------------------------------------------------


def collect_phase(loop: _Loop) -> None:
    """Real steps into the dataset: random on the first iteration, then the agent's."""
    cfg, it = loop.cfg, loop.iteration
    log.info("iteration %d: collecting real steps", it)
    loop.agent.set_random_seed(_phase_seed(cfg.seed, it, 0))
    replay = _Replay(loop.dataset, loop.kept)
    collect(
        loop.collect_env,
        steps_to_collect(cfg, it, _steps_in(loop.dataset, loop.kept)),
        None if it == 0 else _explorer(loop),
        dataset=replay,
        seed=cfg.seed + it,
        epsilon=0.0 if it == 0 else cfg.collect.epsilon,
        progress=loop.progress,
    )
    recorded = len(loop.dataset) - loop.kept
    if it == 0 and recorded < cfg.collect.initial_episodes:
        # Long episodes (Pendulum's 200 steps): whole random episodes until there are that many.
        collect(
            loop.collect_env,
            episodes=cfg.collect.initial_episodes - recorded,
            dataset=replay,
            seed=cfg.seed + INITIAL_EPISODES_SEED,
            progress=loop.progress,
        )
    loop.kept = len(loop.dataset)


def _explorer(loop: _Loop) -> Any:
    """What collects real steps after the first iteration: the agent, or a planner in the model."""
    cfg = loop.cfg
    # "both": the planner on odd iterations, the agent on even ones, each with whole episodes
    # (exploring MountainCar's flag takes one), so the model also learns where the agent goes.
    if cfg.collect.explore == "agent" or (cfg.collect.explore == "both" and loop.iteration % 2 == 0):
        # The dataset records the real frames; the agent acts on the model's features of them.
        return LatentPolicy(loop.agent, loop.model) if loop.obs_mode == "latent" else loop.agent
    settings = {"value": loop.agent, "support": loop.dataset, **cfg.collect.planner}
    try:
        return Planner(loop.model, seed=_phase_seed(cfg.seed, loop.iteration, 2), **settings)
    except TypeError as exc:
        raise GenrlError(f"collect planner: {one_line(exc)}") from None


def fit_phase(loop: _Loop) -> None:
    """The world model on all the data so far: a first fit, or a shorter refit."""
    log.info("iteration %d: fitting the world model", loop.iteration)
    steps = loop.cfg.fit.steps if loop.iteration == 0 else loop.cfg.fit.refit_steps
    loop.fit_losses = loop.model.fit(loop.dataset, steps, loop.writer, loop.progress)


def train_phase(loop: _Loop) -> None:
    """The agent in dreams of the refitted model."""
    log.info("iteration %d: training the agent in the dream", loop.iteration)
    loop.agent.set_random_seed(_phase_seed(loop.cfg.seed, loop.iteration, 1))
    # The model changed under the dreams: restart them from real states with the new weights.
    loop.agent._last_obs = None
    dreams = loop.dreams
    ended, left, spread, charged, steps = (
        dreams.episodes_ended,
        dreams.episodes_left_support,
        dreams.disagreement_sum,
        dreams.reward_penalty_sum,
        dreams.steps_taken,
    )
    dreams.off_support = off_support(loop.cfg.dream.off_support, loop.dataset)
    restart_schedules(loop.agent, loop.cfg.train.dream_steps)
    loop.agent.learn(loop.cfg.train.dream_steps, reset_num_timesteps=False, progress_bar=loop.progress)
    loop.dream_episodes = {
        "dream_episodes": dreams.episodes_ended - ended,
        "dream_left_support": dreams.episodes_left_support - left,
        "dream_disagreement": (dreams.disagreement_sum - spread) / max(dreams.steps_taken - steps, 1),
    }
    if dreams.reward_penalty:
        taken = max(dreams.steps_taken - steps, 1)
        loop.dream_episodes["dream_reward_penalty"] = (dreams.reward_penalty_sum - charged) / taken


def evaluate_phase(loop: _Loop) -> None:
    """The agent's deterministic return in the real env and in the dream: one row of history."""
    eval_start = time.time()
    row = _evaluate(loop.agent, loop.eval_env, loop.model, loop.dataset, loop.cfg, loop.iteration)
    row.update(
        iteration=loop.iteration,
        real_steps=loop.dataset.num_steps,
        wall_time_s=time.time() - loop.start_time,
        eval_time_s=time.time() - eval_start,
        world_model_val=loop.fit_losses,
        **loop.dream_episodes,
    )
    loop.history.append(row)
    _log(loop.writer, row)
    if loop.model.image:
        _log_dreams(loop)
    log.info(
        "iteration %d: real return %.1f ± %.1f after %d real steps (dream %.1f)",
        loop.iteration,
        row["eval_return_mean"],
        row["eval_return_std"],
        row["real_steps"],
        row["dream_return_mean"],
    )


def _log_dreams(loop: _Loop) -> None:
    """An image model's open-loop report in TensorBoard: real | dream | error frames as a GIF,
    and its error against repeat-last-frame per horizon, so a run shows what the model imagines."""
    video = open_loop_video(loop.model, loop.dataset, windows=16, show=3, seed=loop.iteration)
    step = loop.dataset.num_steps
    add_gif(loop.writer, "dream/open_loop", video_frames(video), step)
    for name, value in video.scalars().items():
        loop.writer.add_scalar(name, value, step)


def _train_and_evaluate(loop: _Loop) -> None:
    # One checkpoint for both: an evaluation belongs to the training it measures.
    train_phase(loop)
    evaluate_phase(loop)


PHASES: tuple[tuple[Phase, Callable[[_Loop], None]], ...] = (
    (Phase.COLLECTED, collect_phase),
    (Phase.FITTED, fit_phase),
    (Phase.DONE, _train_and_evaluate),
)


def _evaluate(
    agent: BaseAlgorithm,
    eval_env: DummyVecEnv,
    model: WorldModel,
    dataset: RolloutDataset,
    cfg: TrainConfig,
    iteration: int,
) -> dict[str, Any]:
    """Deterministic returns in the real env and in the dream, and their gap."""
    episodes, d = cfg.train.eval_episodes, cfg.dream
    eval_env.seed(cfg.seed + 10_000 + iteration)
    real, real_lengths = evaluate_policy(
        agent, eval_env, episodes, deterministic=True, return_episode_rewards=True
    )
    n = min(episodes, d.n_envs)
    dream_env = VecMonitor(
        DreamVecEnv(
            model,
            n,
            dataset,
            d.horizon,
            obs_mode=cfg.agent_obs_mode(model.image),
            temperature=d.temperature,
            seed=cfg.seed + 12345,
            **d.limits(),
        )
    )
    dream, _ = evaluate_policy(agent, dream_env, episodes, deterministic=True, return_episode_rewards=True)
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
    writer.add_scalar("real/steps", step, step)
    if row.get("dream_episodes"):
        writer.add_scalar("dream/left_support", row["dream_left_support"] / row["dream_episodes"], step)
    if "dream_disagreement" in row:
        writer.add_scalar("dream/disagreement", row["dream_disagreement"], step)
    if "dream_reward_penalty" in row:
        writer.add_scalar("dream/reward_penalty", row["dream_reward_penalty"], step)
    writer.flush()


def _steps_in(dataset: RolloutDataset, episodes: int) -> int:
    """Transitions in the first ``episodes`` episodes: what a resumed collection started from."""
    return int(sum(ep.length for ep in dataset.episodes[:episodes]))


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
            np.array_equal(np.asarray(new, dtype=old.dtype), old)
            for new, old in zip(
                (obs, action, reward, terminated, truncated), recorded.arrays().values(), strict=True
            )
        )
        if not same and not self.diverged:
            # The recorded episode is real data and stays; only the replay's copy is dropped.
            warnings.warn(
                "the resumed collection differs from the episodes recorded before the interruption "
                "(is the env deterministic under seeding?); kept the recorded ones",
                stacklevel=2,
            )
        self.diverged += not same
