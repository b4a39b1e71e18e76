"""train_in_imagination(): collect, fit, train an SB3 agent in the dream, evaluate for real, repeat."""

from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.logger import configure
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import VecMonitor
from torch.utils.tensorboard import SummaryWriter

from genrl.agents import agent_preset, make_agent, save_policy
from genrl.collect import collect, make_env
from genrl.dataset import RolloutDataset
from genrl.dream_vec_env import DreamVecEnv
from genrl.errors import GenrlError
from genrl.fileio import write_json
from genrl.presets import available, find_env_preset, load_preset
from genrl.world_model import WorldModel


@dataclass
class TrainConfig:
    """Everything one run of the loop needs; an ``envs/*.yaml`` preset fills it in."""

    env_id: str
    agent: str | dict = "ppo"
    seed: int = 0
    iterations: int = 5
    initial_steps: int = 1000  # random real steps before the first fit
    steps_per_iteration: int = 1000  # real steps collected by the agent after each iteration
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

    :param env: env preset name (``"cartpole"``), preset YAML path, or Gymnasium id
    :param agent: agent preset name (``"ppo"``, ``"sac"``...) or dict; defaults to the env preset's
    :param seed: seeds data collection, the world model and the agent
    :param run_dir: run folder (dataset, model, agent, ``summary.json``, TensorBoard logs)
    :param overrides: any :class:`TrainConfig` field
    """
    cfg = resolve_config(env, agent=agent, seed=seed, **overrides)
    progress = progress and os.environ.get("GENRL_PROGRESS", "1") != "0"
    run_dir = Path(run_dir) if run_dir is not None else _default_run_dir(cfg)
    if (run_dir / "data" / "dataset.json").exists():
        # Appending to an earlier run's data would silently break the real-step budget.
        raise GenrlError(f"run folder {run_dir} already holds a run: expected a new or empty folder")
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json(run_dir / "config.json", dataclasses.asdict(cfg))
    torch.manual_seed(cfg.seed)
    writer = SummaryWriter(str(run_dir / "tb"))
    collect_env = make_env(cfg.env_id)
    eval_env = Monitor(make_env(cfg.env_id))  # its transitions never enter the dataset
    eval_env.reset(seed=cfg.seed + 10_000)  # later resets continue from this seed
    try:
        dataset = collect(
            collect_env, cfg.initial_steps, seed=cfg.seed, path=run_dir / "data", progress=progress
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
        preset = agent_preset(cfg.agent)
        learner = make_agent(preset, VecMonitor(dream), seed=cfg.seed)
        learner.set_logger(configure(str(run_dir / "tb"), ["tensorboard"]))
        history: list[dict[str, Any]] = []
        start_time = time.time()
        for it in range(cfg.iterations):
            if it > 0:
                collect(
                    collect_env,
                    cfg.steps_per_iteration,
                    learner,
                    dataset=dataset,
                    seed=cfg.seed + it,
                    epsilon=cfg.epsilon,
                    progress=progress,
                )
            val = model.fit(dataset, cfg.fit_steps if it == 0 else cfg.refit_steps, writer, progress)
            # The model changed under the dreams: restart them from real states with the new weights.
            learner._last_obs = None
            learner.learn(cfg.dream_steps, reset_num_timesteps=False, progress_bar=progress)
            row = _evaluate(learner, eval_env, model, dataset, cfg)
            row.update(
                iteration=it,
                real_steps=dataset.num_steps,
                wall_time_s=time.time() - start_time,
                world_model_val=val,
            )
            history.append(row)
            _log(writer, row)
            if cfg.target_return is not None and row["eval_return_mean"] >= cfg.target_return:
                break
        model.save(run_dir / "model")
        learner.save(run_dir / "agent.zip")
        save_policy(learner, run_dir / "policy.safetensors")
        write_json(run_dir / "summary.json", {"config": dataclasses.asdict(cfg), "history": history})
    finally:
        writer.close()
        collect_env.close()
        eval_env.close()
    return TrainResult(run_dir, history, learner, model, dataset)


def _default_run_dir(cfg: TrainConfig) -> Path:
    name = cfg.env_id.split("/")[-1].lower()
    algo = cfg.agent if isinstance(cfg.agent, str) else cfg.agent.get("algorithm", "agent")
    return Path("runs") / f"{name}-{algo}-seed{cfg.seed}-{time.strftime('%Y%m%d-%H%M%S')}"


def _evaluate(
    agent: BaseAlgorithm, eval_env: gym.Env, model: WorldModel, dataset: RolloutDataset, cfg: TrainConfig
) -> dict[str, Any]:
    """Deterministic returns in the real env and in the dream, and their gap."""
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
