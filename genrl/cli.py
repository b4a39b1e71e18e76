"""The ``genrl`` command: collect, fit, dream, train, eval, anomaly, plan, generate and synthesize.

Each subcommand is one small function that calls the public Python API and prints a summary.
Bad input (a ``GenrlError`` or a Gymnasium error) ends the command with one line on stderr and
exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from rich.console import Console
from rich.table import Table
from torch.utils.tensorboard import SummaryWriter

from genrl import __version__
from genrl.anomaly.detector import SurpriseDetector, windowed_mean
from genrl.data.collect import collect
from genrl.data.dataset import RolloutDataset
from genrl.data.envs import make_env
from genrl.dream.env import DreamEnv
from genrl.dream.latent import LatentPolicy
from genrl.errors import GenrlError
from genrl.evaluation.evaluate import evaluate
from genrl.evaluation.report import write_report
from genrl.evaluation.video import write_gif
from genrl.guidance.generate import GUIDES, generate
from genrl.guidance.planner import METHODS, Planner
from genrl.guidance.synthesis import synthesize
from genrl.model.world_model import WorldModel
from genrl.training.config import resolve_config
from genrl.training.loop import default_run_dir, resume, train_in_imagination
from genrl.training.package import train_on_package
from genrl.training.run import load_agent, load_run, read_config
from genrl.training.sweep import parse_setting, sweep
from genrl.util.device import resolve_device
from genrl.util.files import write_json
from genrl.util.progress import progress_enabled

console = Console()


# ---- subcommands ---------------------------------------------------------------------------------


def cmd_train(args: argparse.Namespace) -> int:
    """Run the whole loop (or continue a killed run) and print one row per iteration."""
    if args.env_package is not None:
        return cmd_train_package(args)
    if args.resume is not None:
        flags = {"env": "ENV", "agent": "--agent", "seed": "--seed", "run_dir": "--run-dir"}
        flags["dream_steps"] = "--dream-steps"
        given = [flag for key, flag in flags.items() if getattr(args, key) is not None]
        if given:
            raise GenrlError(
                f"--resume takes the run's own settings: expected only --iterations beside it, got {given}"
            )
        run_dir = Path(args.resume)
        extra = {"iterations": args.iterations} if args.iterations is not None else {}
        call = lambda: resume(run_dir, progress=args.progress, **extra)  # noqa: E731
    elif args.env is None:
        raise GenrlError("expected an ENV to train on, or --resume RUN_DIR to continue a run")
    else:
        overrides = {"iterations": args.iterations, "dream_steps": args.dream_steps}
        args.seed = 0 if args.seed is None else args.seed
        cfg = resolve_config(args.env, agent=args.agent, seed=args.seed, **overrides)
        run_dir = Path(args.run_dir) if args.run_dir is not None else default_run_dir(cfg)
        call = lambda: train_in_imagination(  # noqa: E731
            args.env, agent=args.agent, seed=args.seed, run_dir=run_dir, progress=args.progress, **overrides
        )
    try:
        result = call()
    except KeyboardInterrupt:
        print(f"genrl: interrupted; `genrl train --resume {run_dir}` continues the run", file=sys.stderr)
        return 130
    table = Table(title=f"genrl train {result.config.env_id}")
    for name in ("iter", "real steps", "real return", "dream return", "dream-real", "time (s)"):
        table.add_column(name, justify="right", no_wrap=True)
    for row in result.history:
        table.add_row(
            str(row["iteration"]),
            str(row["real_steps"]),
            f"{row['eval_return_mean']:.1f} ± {row['eval_return_std']:.1f}",
            f"{row['dream_return_mean']:.1f}",
            f"{row['dream_real_gap']:+.1f}",
            f"{row['wall_time_s']:.0f}",
        )
    console.print(table)
    episodes = result.config.train.eval_episodes
    final = result.final
    print(
        f"Trained on {result.dataset.num_steps} real env steps; final real return "
        f"{final['eval_return_mean']:.1f} ± {final['eval_return_std']:.1f} over {episodes} episodes; "
        f"run folder: {result.run_dir}"
    )
    return 0


def cmd_train_package(args: argparse.Namespace) -> int:
    """Train an agent in a synthesised environment package; evaluate it in its source env."""
    flags = {"env": "ENV", "resume": "--resume", "iterations": "--iterations"}
    given = [flag for key, flag in flags.items() if getattr(args, key) is not None]
    if given:
        raise GenrlError(f"--env-package trains on the package alone: expected none of {given} beside it")
    extra = {"steps": args.dream_steps} if args.dream_steps is not None else {}
    result = train_on_package(
        args.env_package,
        agent=args.agent,
        out=args.run_dir,
        seed=0 if args.seed is None else args.seed,
        progress=args.progress,
        **extra,
    )
    r = result.results
    print(f"Dream return {r['dream_return']:.1f} ± {r['dream_return_std']:.1f} (deterministic policy).")
    if "real_return" in r:
        print(f"{r['source_env']}: real return {r['real_return']:.1f} ± {r['real_return_std']:.1f}.")
    else:
        print(f"Not evaluated in a real env: {r['real_note']}.")
    print(f"Agent folder: {result.out}")
    return 0


def cmd_synthesize(args: argparse.Namespace) -> int:
    """Write an environment package from a model folder or a run folder; print its card's line."""
    source = Path(args.model)
    run = load_run(source) if (source / "config.json").is_file() else None
    model = run.model if run is not None else WorldModel.load(source)
    agent_run = load_run(args.agent) if args.agent is not None else None
    if args.adversarial and agent_run is None:
        raise GenrlError("--adversarial: expected --agent RUN_DIR, the run whose agent to search against")
    dataset = RolloutDataset.load(args.dataset) if args.dataset is not None else None
    if dataset is None and run is not None:
        dataset = run.dataset
    env = resolve_config(args.env).env_id if args.env is not None else None
    if env is None and (run or agent_run) is not None:
        env = (run or agent_run).config.env_id
    result = synthesize(
        model,
        args.out,
        dataset=dataset,
        env=env,
        horizon=args.horizon,
        temperature=args.temperature,
        start=args.start,
        perturbation=args.perturbation,
        n_starts=args.starts,
        reward=args.reward,
        agent=agent_run.agent if agent_run is not None else None,
        adversarial=args.adversarial,
        overwrite=args.overwrite,
        seed=args.seed,
        progress=args.progress,
    )
    print(result.summary)
    print(
        f"Wrote {result.path} (card: {result.path / 'CARD.md'}); open it with "
        f"gymnasium.make('genrl/Dream-v0', model={str(result.path)!r}) or "
        f"`genrl train --env-package {result.path}`."
    )
    return 0


def _model_and_data(source: str) -> tuple[WorldModel, RolloutDataset | None, str | None]:
    """A model folder, or a run folder (its model, its real data and its env id)."""
    path = Path(source)
    if (path / "config.json").is_file():
        run = load_run(path)
        return run.model, run.dataset, run.config.env_id
    return WorldModel.load(path), None, None


def cmd_plan(args: argparse.Namespace) -> int:
    """Act in the real env with a planner in a saved model; print the return of each episode."""
    model, dataset, run_env = _model_and_data(args.model)
    if args.dataset is not None:
        dataset = RolloutDataset.load(args.dataset)
    env_id = resolve_config(args.env).env_id if args.env is not None else run_env
    if env_id is None:
        raise GenrlError("--env: expected the real env to plan in (a preset name or Gymnasium id)")
    settings = {k: getattr(args, k) for k in ("horizon", "population", "elites", "iterations")}
    planner = Planner(model, method=args.method, support=dataset, seed=args.seed, **settings)
    env = make_env(env_id)
    model.check_env_spaces(env.observation_space, env.action_space)
    writer = SummaryWriter(args.tensorboard) if args.tensorboard else None
    returns = []
    for episode in range(args.episodes):
        obs, _ = env.reset(seed=args.seed + episode)
        planner.reset()
        total, steps, done, start = 0.0, 0, False, time.perf_counter()
        while not done:
            action, _ = planner.predict(obs, deterministic=True)
            obs, reward, terminated, truncated, _ = env.step(action)
            total, steps, done = total + float(reward), steps + 1, terminated or truncated
        rate = steps / (time.perf_counter() - start)
        returns.append(total)
        print(f"episode {episode}: return {total:.1f} over {steps} steps ({rate:.1f} actions/s)")
        if writer is not None:
            writer.add_scalar("plan/return", total, episode)
            writer.add_scalar("plan/actions_per_second", rate, episode)
    env.close()
    if writer is not None:
        writer.close()
    print(
        f"{args.method} in {env_id}: return {np.mean(returns):.1f} ± {np.std(returns):.1f} "
        f"over {len(returns)} episodes."
    )
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    """Write imagined episodes steered by a guide to a dataset folder; print their returns."""
    model, dataset, _ = _model_and_data(args.model)
    agent = load_run(args.agent).agent if args.agent is not None else None
    writer = SummaryWriter(args.tensorboard) if args.tensorboard else None
    data = generate(
        model,
        args.episodes,
        args.guide,
        agent=agent,
        candidates=args.candidates,
        horizon=args.horizon,
        temperature=args.temperature,
        starts=dataset,
        seed=args.seed,
        path=args.out,
        writer=writer,
    )
    if writer is not None:
        writer.close()
    predicted = [e.info["predicted_return"] for e in data.episodes]
    print(
        f"{len(data)} episodes ({data.num_steps} steps) guided by {args.guide} into {args.out}: "
        f"predicted return {np.mean(predicted):.1f} ± {np.std(predicted):.1f}, "
        f"{data.episodes[0].info['model_steps']} model steps each."
    )
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    """Train over seeds and a settings grid as Ray tasks; print the combined table."""
    grid = dict(parse_setting(text, grid=True) for text in args.grid)
    settings = {k: v[0] for k, v in (parse_setting(text, grid=False) for text in args.settings)}
    result = sweep(
        args.env,
        args.seeds,
        grid,
        out=args.out,
        settings=settings,
        address=args.address,
        workers=args.workers,
        progress=args.progress,
    )
    table = Table(title=f"genrl sweep {args.env} (seeds {args.seeds})")
    columns = ("setting", "trials", "return median", "return IQM [95% CI]", "real steps", "reached target")
    for name in columns:
        table.add_column(name, justify="left" if name == "setting" else "right")
    for row in result.table:
        if not row["trials"]:
            table.add_row(row["setting"], f"0 ({row['failed']} failed)", "-", "-", "-", "-")
            continue
        low, high = row["return_iqm_ci95"]
        reached = f"{row['reached_target']}/{row['trials']}"
        if row["steps_to_target_median"] is not None:
            reached += f" (median {row['steps_to_target_median']:.0f} steps)"
        table.add_row(
            row["setting"],
            str(row["trials"]) + (f" ({row['failed']} failed)" if row["failed"] else ""),
            f"{row['return_median']:.1f}",
            f"{row['return_iqm']:.1f} [{low:.1f}, {high:.1f}]",
            f"{row['real_steps_median']:.0f}",
            reached,
        )
    console.print(table)
    failed = [t for t in result.trials if t.get("status") == "failed"]
    for trial in failed:
        print(
            f"genrl: trial {trial['setting']} seed {trial['seed']} failed: {trial['error']}", file=sys.stderr
        )
    print(f"Sweep of {len(result.trials)} trials; results in {result.out / 'sweep.json'}")
    return 1 if failed else 0


def cmd_collect(args: argparse.Namespace) -> int:
    """Record random-policy episodes of a real env into a dataset folder (created or appended to)."""
    env_id = resolve_config(args.env).env_id
    env = make_env(env_id)
    try:
        dataset = RolloutDataset.open(args.path, env.observation_space, env.action_space)
    finally:
        env.close()
    before = len(dataset)
    source = env_id if args.backend == "ray" else make_env(env_id)
    try:
        collect(
            source,
            args.steps,
            seed=args.seed,
            dataset=dataset,
            progress=args.progress,
            backend=args.backend,
            workers=args.workers,
            address=args.address,
        )
    finally:
        if not isinstance(source, str):
            source.close()
    returns = dataset.episode_returns()[before:]
    new_steps = sum(ep.length for ep in dataset.episodes[before:])
    print(
        f"Collected {len(returns)} episodes ({new_steps} steps) of {env_id} with a random policy; "
        f"mean return {returns.mean():.1f} ± {returns.std():.1f}. "
        f"{args.path} now holds {len(dataset)} episodes ({dataset.num_steps} steps)."
    )
    return 0


def cmd_fit(args: argparse.Namespace) -> int:
    """Fit a world model on a dataset folder (or a Minari dataset), save it, and print its held-out losses."""
    if (args.data_dir is None) == (args.minari is None):
        given = "both" if args.data_dir is not None else "neither"
        raise GenrlError(f"fit: expected exactly one of DATA_DIR or --minari DATASET_ID, got {given}")
    if args.minari is not None:
        from genrl.data.minari import from_minari  # Minari is an optional extra, imported on use

        dataset = from_minari(args.minari)
    else:
        dataset = RolloutDataset.load(args.data_dir)
    preset = resolve_config(args.env) if args.env is not None else None
    config, fit = (preset.world_model, preset.fit) if preset is not None else (None, None)
    model = WorldModel(dataset.observation_space, dataset.action_space, config, fit, seed=args.seed)
    model.to(resolve_device("auto"))
    steps = args.steps
    out = Path(args.out)
    writer = SummaryWriter(str(out / "tb"))
    try:
        val = model.fit(dataset, steps, writer, args.progress)
    finally:
        writer.close()
    model.save(out)
    table = Table(title="held-out losses", caption=f"after {int(model.trained_steps)} steps")
    table.add_column("head")
    table.add_column("loss", justify="right")
    for name, value in val.items():
        table.add_row(name, f"{value:.4f}")
    console.print(table)
    print(
        f"Fitted on {len(dataset)} episodes ({dataset.num_steps} steps); saved to {out} "
        f"(TensorBoard logs in {out / 'tb'})."
    )
    return 0


def cmd_dream(args: argparse.Namespace) -> int:
    """Roll out a saved world model under random actions (or a run's agent) and report what it
    imagines; ``--record`` writes the dreams as an animated GIF."""
    record = Path(args.record) if args.record is not None else None
    if record is not None and record.suffix.lower() != ".gif":
        raise GenrlError(f"--record: expected a path ending in .gif, got {str(record)!r}")
    source = Path(args.model_dir)
    if (source / "config.json").is_file() and (source / "model").is_dir():  # a run folder: its model
        source = source / "model"
    settings = {"horizon": args.horizon, "temperature": args.temperature}
    settings["render_mode"] = "rgb_array" if record is not None else None
    env = DreamEnv(source, **settings)
    if args.agent is not None:
        cfg = read_config(args.agent)
        obs_mode = cfg.agent_obs_mode(env.model.image)
        if obs_mode != env.dream.obs_mode:  # the agent sees what it saw in its run's dreams
            env.close()
            env = DreamEnv(source, obs_mode=obs_mode, **settings)
    env.action_space.seed(args.seed)
    act, driver = _dream_driver(args.agent, env)
    table = Table(title=f"dreams of {args.model_dir} ({driver})")
    for name in ("episode", "return", "length", "mean uncertainty", "ended by"):
        table.add_column(name, justify="right")
    returns, lengths, frames, steps = [], [], [], 0
    # --steps N: dreams one after another for N steps in all (the last may be cut short).
    more = (lambda: steps < args.steps) if args.steps is not None else (lambda: len(lengths) < args.episodes)
    while more():
        obs, _ = env.reset(seed=args.seed if not lengths else None)
        if record is not None:
            frames.append(env.render())
        total, length, uncertainty, terminated, truncated = 0.0, 0, 0.0, False, False
        while not (terminated or truncated) and (args.steps is None or steps < args.steps):
            obs, reward, terminated, truncated, info = env.step(act(obs))
            total, length, steps = total + reward, length + 1, steps + 1
            uncertainty += info["uncertainty"]
            if record is not None:
                frames.append(env.render())
        returns.append(total)
        lengths.append(length)
        ended = "--steps" if not (terminated or truncated) else "termination" if terminated else "horizon"
        ended = "left support" if info.get("left_support") else ended
        table.add_row(
            str(len(lengths) - 1), f"{total:.1f}", str(length), f"{uncertainty / length:.4f}", ended
        )
    env.close()
    console.print(table)
    print(
        f"{len(lengths)} dreams: return {np.mean(returns):.1f} ± {np.std(returns):.1f}, "
        f"length {np.mean(lengths):.1f} (horizon {env.dream.horizon}, temperature {env.dream.temperature:g})."
    )
    if record is not None:
        write_gif(record, frames, args.fps)
        print(f"Recorded {len(frames)} frames ({steps} steps, {args.fps:g} fps) to {record}.")
    return 0


def _dream_driver(agent_dir: str | None, env: DreamEnv) -> tuple[Callable[[np.ndarray], Any], str]:
    """What acts in the dream: a run's saved agent (deterministic), else random actions.

    An agent of latent mode acts on the dream model's features: dream with the run's own model.
    """
    if agent_dir is None:
        return lambda obs: env.action_space.sample(), "random actions"
    run_dir = Path(agent_dir)
    weights = run_dir / "policy.safetensors"
    if not weights.is_file():
        raise GenrlError(
            f"--agent: expected policy weights at {weights}, found no such file (did the run finish?)"
        )
    agent = load_agent(read_config(run_dir), weights, env.model)
    shape, agent_shape = env.observation_space.shape, agent.observation_space.shape
    # SB3 feeds a CNN channels first (VecTransposeImage) and transposes observations itself.
    if agent_shape not in (shape, (shape[-1], *shape[:-1]) if len(shape) == 3 else shape):
        raise GenrlError(
            f"--agent {agent_dir}: expected an agent of the dream's observations {shape}, got one of "
            f"{agent_shape} (a run of another env?)"
        )
    return lambda obs: agent.predict(obs, deterministic=True)[0], f"the agent of {agent_dir}"


def _eval_inputs(
    path: Path, data: str | None
) -> tuple[WorldModel, RolloutDataset, Any, str | None, Path | None]:
    """(model, dataset, policy, env id, TensorBoard folder) of a run folder or a model folder."""
    if (path / "config.json").is_file():  # a run folder
        run = load_run(path, device="cpu")
        policy = run.agent
        if run.config.agent_obs_mode(run.model.image) == "latent":  # the agent acts on [z, h]
            policy = LatentPolicy(run.agent, run.model, deterministic=True)
        dataset = RolloutDataset.load(data) if data is not None else run.dataset
        return run.model, dataset, policy, run.config.env_id, path / "tb"
    if (path / "model.json").is_file():
        if data is None:
            raise GenrlError(f"{path} is a model folder: expected --data DATA_DIR with held-out episodes")
        return WorldModel.load(path, device="cpu"), RolloutDataset.load(data), None, None, None
    raise GenrlError(
        f"expected a run folder (config.json) or a model folder (model.json) at {path}, found no such file"
    )


def cmd_eval(args: argparse.Namespace) -> int:
    """Evaluate a run (its world model on held-out data, its policy in the real env) or a model."""
    path = Path(args.path)
    model, dataset, policy, env, writer_dir = _eval_inputs(path, args.data)
    report = evaluate(
        model, dataset, policy, env=env, episodes=args.episodes, horizon=args.horizon, seed=args.seed
    )
    out = Path(args.out) if args.out is not None else path / "eval"
    writer = SummaryWriter(str(writer_dir if writer_dir is not None else out / "tb"))
    try:
        markdown = write_report(report, out, writer)
    finally:
        writer.close()
    s = report.scalars
    table = Table(
        title=f"world model on {report.data['episodes']} held-out episodes ({report.data['steps']} steps)"
    )
    table.add_column("horizon", justify="right")
    for name in report.predictors:
        table.add_column(f"{name} error", justify="right")
    for key in sorted({k.rsplit("/h", 1)[1] for k in s if k.startswith("open_loop/model/h")}, key=int):
        table.add_row(key, *(f"{s[f'open_loop/{name}/h{key}']:.4g}" for name in report.predictors))
    console.print(table)
    verdict = "below" if report.beats_baselines() else "NOT below"
    baselines = "both baselines" if len(report.predictors) == 3 else "every baseline"
    print(
        f"Open-loop error {verdict} {baselines} at every horizon up to {args.horizon}; termination "
        f"AUROC {s['termination/auroc']:.3f}; critic accuracy {100 * s['critic/clip_accuracy']:.1f}% "
        f"(50% = indistinguishable)."
    )
    if report.gap:
        returns = np.array(report.data["real_returns"])
        print(
            f"{env}: real return {returns.mean():.1f} ± {returns.std():.1f} over {len(returns)} episodes "
            f"(deterministic policy); dream return at temperature 1: "
            + ", ".join(f"{r['dream_return']:.1f}" for r in report.gap if r["temperature"] == 1.0)
        )
    if report.video is not None:
        v, h = report.video, report.video.horizon
        print(
            f"Open-loop video ({v.context} steps observed, then {h} imagined): PSNR at h={h} "
            f"{v.psnr['model'][-1]:.1f} dB (repeat last: {v.psnr['repeat last'][-1]:.1f} dB); "
            f"{out / 'open_loop.gif'}"
        )
    print(f"Report: {markdown} (TensorBoard: {writer_dir if writer_dir is not None else out / 'tb'})")
    return 0


def cmd_anomaly(args: argparse.Namespace) -> int:
    """Score every step of a dataset's episodes by the model's surprise; flag them if calibrated."""
    model = WorldModel.load(args.model_dir, device="cpu")
    data = RolloutDataset.load(args.data_dir)
    detector = SurpriseDetector(model, window=args.window)
    if args.normal is not None:
        detector.calibrate(RolloutDataset.load(args.normal), fpr=args.fpr)
    scores = detector.score_dataset(data)
    table = Table(title=f"surprise of {args.data_dir} under {args.model_dir} (nats per step)")
    for name in ("episode", "steps", "mean", "max", "flagged steps", "first alarm"):
        table.add_column(name, justify="right")
    rows = []
    calibrated = detector.threshold is not None
    for i, score in enumerate(scores):
        flagged = (
            detector.alarms(windowed_mean(score, detector.window))
            if calibrated
            else np.zeros(len(score), bool)
        )
        first = int(np.argmax(flagged)) if flagged.any() else None
        rows.append(
            {"episode": i, "surprise": score.tolist(), "anomaly": flagged.tolist(), "first_alarm": first}
        )
        table.add_row(
            str(i), str(len(score)), f"{score.mean():.2f}", f"{score.max():.2f}",
            str(int(flagged.sum())) if calibrated else "-", "-" if first is None else str(first),
        )  # fmt: skip
    console.print(table)
    if args.out is not None:
        write_json(Path(args.out), {"detector": detector.to_dict(), "episodes": rows})
    if not calibrated:
        print(f"Scored {len(scores)} episodes; give --normal NORMAL_DIR to calibrate an alarm threshold.")
    else:
        alarmed = sum(r["first_alarm"] is not None for r in rows)
        print(
            f"Threshold {detector.threshold:.3f} (window {detector.window}, calibrated on {args.normal} "
            f"for a {100 * args.fpr:g}% false-positive rate): "
            f"{alarmed} of {len(rows)} episodes raise an alarm."
        )
    return 0


# ---- the parser ----------------------------------------------------------------------------------


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text!r}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a finite number > 0, got {text!r}")
    return value


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"expected a number between 0 and 1, got {text!r}")
    return value


def _reward(text: str) -> dict:
    try:
        value = json.loads(text)
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(
            f'expected a JSON object such as {{"type": "constant", "value": 1}}, got {text!r}'
        )
    return value


def _common(seed_default: int | None = 0) -> argparse.ArgumentParser:
    """Options every subcommand takes; a fresh parser each time, since parents share their actions."""
    common = argparse.ArgumentParser(add_help=False)
    # Command lines are reproducible: seed 0 unless told otherwise (the library's None draws one).
    common.add_argument("--seed", type=int, default=seed_default, help="random seed (default: 0)")
    common.add_argument(
        "--no-progress",
        dest="progress",
        action="store_false",
        help="hide progress bars (as GENRL_PROGRESS=0)",
    )
    return common


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="genrl",
        description="Learn a generative copy of a Gymnasium environment and train SB3 agents inside it.",
    )
    parser.add_argument("--version", action="version", version=f"genrl {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    env_help = "env preset name (cartpole), preset YAML path, or Gymnasium id"

    # No default here, so that --resume can tell a given --seed; a new run takes 0.
    p = sub.add_parser(
        "train", parents=[_common(None)], help="collect, fit, train an agent in the dream, repeat"
    )
    p.add_argument("env", metavar="ENV", nargs="?", help=env_help)
    p.add_argument("--agent", help="agent preset name or YAML path (default: the env preset's)")
    p.add_argument(
        "--run-dir",
        help="run folder (default: runs/ENV-AGENT-seedN-TIME); one holding the same run is resumed",
    )
    p.add_argument("--resume", metavar="RUN_DIR", help="continue a killed run from its last checkpoint")
    p.add_argument("--iterations", type=_positive_int, help="loop iterations (default: the preset's)")
    p.add_argument("--dream-steps", type=_positive_int, help="agent steps in the dream per iteration")
    p.add_argument(
        "--env-package",
        metavar="DIR",
        help="train on a package of `genrl synthesize` instead (--dream-steps steps, default 100000)",
    )
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("collect", parents=[_common()], help="record random-policy episodes of a real env")
    p.add_argument("env", metavar="ENV", help=env_help)
    p.add_argument("--steps", type=_positive_int, required=True, help="transitions to record")
    p.add_argument("--path", required=True, help="dataset folder to create or append to")
    p.add_argument("--backend", choices=("local", "ray"), default="local", help="where envs run (local)")
    p.add_argument("--workers", type=_positive_int, help="Ray workers, with --backend ray (default: 2)")
    p.add_argument("--address", help="an existing Ray cluster, with --backend ray (default: a local Ray)")
    p.set_defaults(func=cmd_collect)

    p = sub.add_parser("fit", parents=[_common()], help="fit a world model on a dataset folder")
    p.add_argument(
        "data_dir", metavar="DATA_DIR", nargs="?", help="dataset folder written by `genrl collect`"
    )
    p.add_argument(
        "--minari", metavar="DATASET_ID", help="fit on a locally installed Minari dataset instead of DATA_DIR"
    )
    p.add_argument("--out", required=True, metavar="MODEL_DIR", help="folder to save the model in")
    p.add_argument(
        "--steps", type=_positive_int, help="gradient steps (default: the preset's fit_steps, else 1000)"
    )
    p.add_argument("--env", metavar="PRESET", help="take the world-model settings from this env preset")
    p.set_defaults(func=cmd_fit)

    p = sub.add_parser(
        "dream", parents=[_common()], help="roll out a saved world model (random actions or an agent)"
    )
    p.add_argument(
        "model_dir",
        metavar="MODEL_DIR",
        help="folder written by `genrl fit`, `genrl train` (a run folder: its model) or `genrl synthesize`",
    )
    p.add_argument("--episodes", type=_positive_int, default=5, help="dreams to roll out (default: 5)")
    # None: a package's own setting, else 500 steps and temperature 1.
    p.add_argument(
        "--horizon", type=_positive_int, help="steps before truncation (default: 500, or the package's)"
    )
    p.add_argument(
        "--temperature", type=_non_negative_float, help="dynamics temperature (default: 1, or the package's)"
    )
    p.add_argument("--record", metavar="FILE.gif", help="write the dreams' frames as an animated GIF")
    p.add_argument(
        "--agent", metavar="RUN_DIR", help="act with the agent of this `genrl train` run (default: random)"
    )
    p.add_argument(
        "--steps",
        type=_positive_int,
        help="dream steps in all, dreams one after another (instead of --episodes)",
    )
    p.add_argument(
        "--fps", type=_positive_float, default=10.0, help="frames a second of --record (default: 10)"
    )
    p.set_defaults(func=cmd_dream)

    p = sub.add_parser(
        "eval", parents=[_common()], help="report how good a world model is, on held-out data only"
    )
    p.add_argument(
        "path", metavar="RUN_DIR", help="run folder of `genrl train` (or a model folder with --data)"
    )
    p.add_argument("--data", metavar="DATA_DIR", help="episodes to evaluate on (default: the run's)")
    p.add_argument(
        "--episodes",
        type=_positive_int,
        default=20,
        help="fresh real episodes the policy plays (default: 20)",
    )
    p.add_argument(
        "--horizon", type=_positive_int, default=50, help="longest open-loop horizon (default: 50)"
    )
    p.add_argument("--out", metavar="DIR", help="folder for report.md and plots (default: RUN_DIR/eval)")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("anomaly", parents=[_common()], help="score a dataset's steps by the model's surprise")
    p.add_argument("model_dir", metavar="MODEL_DIR", help="folder written by `genrl fit` or `genrl train`")
    p.add_argument("data_dir", metavar="DATA_DIR", help="dataset folder to score")
    p.add_argument("--normal", metavar="DIR", help="held-out normal episodes to calibrate the alarm on")
    p.add_argument("--fpr", type=_fraction, default=0.01, help="target false-positive rate (default: 0.01)")
    p.add_argument("--window", type=_positive_int, default=20, help="steps the alarm averages (default: 20)")
    p.add_argument("--out", metavar="FILE", help="write every step's surprise and alarm as JSON")
    p.set_defaults(func=cmd_anomaly)
    _add_synthesize(sub)
    _add_guidance(sub)
    _add_sweep(sub, env_help)
    return parser


def _add_sweep(sub: argparse._SubParsersAction, env_help: str) -> None:
    p = sub.add_parser(
        "sweep", parents=[_common()], help="train over seeds and a grid of settings on Ray; one table"
    )
    p.add_argument("env", metavar="ENV", help=env_help)
    p.add_argument("--seeds", default="0-4", help="seeds as a range or list: 0-4, 0,3,7 (default: 0-4)")
    p.add_argument(
        "--grid",
        action="append",
        default=[],
        metavar="KEY=V1,V2",
        help="a setting to vary, e.g. dream_steps=20000,50000 or fit.steps=500,1500 (repeatable)",
    )
    p.add_argument(
        "--set",
        dest="settings",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a setting every trial shares, e.g. iterations=3 (repeatable)",
    )
    p.add_argument("--out", default="runs/sweep", help="sweep folder: sweep.json, one run folder per trial")
    p.add_argument("--address", help="an existing Ray cluster (default: a new local Ray)")
    p.add_argument("--workers", type=_positive_int, help="trials at a time on a local Ray (default: CPUs)")
    p.set_defaults(func=cmd_sweep)


def _add_guidance(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("plan", parents=[_common()], help="act in the real env with a planner in a model")
    p.add_argument("model", metavar="MODEL", help="a model folder or a run folder")
    p.add_argument("--env", help="the real env: preset name or Gymnasium id (default: the run's)")
    p.add_argument("--method", choices=METHODS, default="cem", help="search method (default: cem)")
    p.add_argument("--horizon", type=_positive_int, default=30, help="steps planned ahead (default: 30)")
    p.add_argument(
        "--population", type=_positive_int, default=100, help="candidates per iteration (default: 100)"
    )
    p.add_argument("--elites", type=_positive_int, default=10, help="elites refitted to (default: 10)")
    p.add_argument("--iterations", type=_positive_int, default=2, help="refits per action (default: 2)")
    p.add_argument("--dataset", help="real data whose support plans stay near (default: a run's own data)")
    p.add_argument("--episodes", type=_positive_int, default=5, help="real episodes (default: 5)")
    p.add_argument("--tensorboard", metavar="DIR", help="log each episode's return and speed here")
    p.set_defaults(func=cmd_plan)
    p = sub.add_parser("generate", parents=[_common()], help="write imagined episodes steered toward reward")
    p.add_argument("model", metavar="MODEL", help="a model folder or a run folder")
    p.add_argument("--out", required=True, help="dataset folder to create")
    p.add_argument("--guide", choices=GUIDES, default="best-of-n", help="how to steer (default: best-of-n)")
    p.add_argument("--episodes", type=_positive_int, default=100, help="episodes to generate (default: 100)")
    p.add_argument("--candidates", type=_positive_int, default=16, help="rollouts per episode (default: 16)")
    p.add_argument("--horizon", type=_positive_int, default=200, help="most steps per episode (default: 200)")
    p.add_argument("--temperature", type=_non_negative_float, default=1.0, help="dynamics temperature")
    p.add_argument("--agent", metavar="RUN_DIR", help="the run whose agent steers (guide policy)")
    p.add_argument("--tensorboard", metavar="DIR", help="log the generator's figures here")
    p.set_defaults(func=cmd_generate)


def _add_synthesize(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "synthesize", parents=[_common()], help="write a world model out as an environment package"
    )
    p.add_argument("model", metavar="MODEL", help="model folder (`genrl fit`) or run folder (`genrl train`)")
    p.add_argument("--out", required=True, metavar="DIR", help="the package folder to create")
    p.add_argument("--dataset", metavar="DATA_DIR", help="real episodes: start states and held-out data")
    p.add_argument("--env", metavar="ENV", help="the source env, to evaluate against (default: the run's)")
    p.add_argument("--horizon", type=_positive_int, default=500, help="steps before truncation (500)")
    p.add_argument("--temperature", type=_non_negative_float, default=1.0, help="difficulty (default: 1)")
    p.add_argument("--start", choices=("real", "perturbed", "prior"), default="real", help="start states")
    p.add_argument(
        "--perturbation", type=_non_negative_float, default=0.5, help="radius in data stds (default: 0.5)"
    )
    p.add_argument("--starts", type=_positive_int, default=256, help="number of start states (256)")
    p.add_argument(
        "--reward", type=_reward, help='reward override as JSON, e.g. \'{"type": "constant", "value": 1}\''
    )
    p.add_argument("--adversarial", action="store_true", help="search for starts where --agent does worst")
    p.add_argument("--agent", metavar="RUN_DIR", help="a run folder of `genrl train` whose agent to use")
    p.add_argument("--overwrite", action="store_true", help="replace a package already at --out")
    p.set_defaults(func=cmd_synthesize)


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is when a message comes (pytest and notebooks swap it)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def _log_to_stderr() -> None:
    """Show the loop's phase messages (``genrl: iteration 1: fitting ...``) once per process."""
    logger = logging.getLogger("genrl")
    if not any(isinstance(h, _StderrHandler) for h in logger.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("genrl: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``genrl`` command; returns the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits on --help and on usage errors; hand back its code
        return int(exc.code or 0)
    # genrl's networks are small: past a few threads torch spends more time synchronising than
    # computing, and on a shared machine it would claim every core. OMP_NUM_THREADS still wins.
    if "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
    _log_to_stderr()
    # As `python -m`: a user's env module in the working directory (`genrl train my_env:MyEnv`).
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    # Also hides SB3's own progress bar, which does not read GENRL_PROGRESS.
    args.progress = progress_enabled(args.progress)
    try:
        return args.func(args)
    except (GenrlError, gym.error.Error) as exc:
        message = " ".join(str(exc).split())
        print(f"genrl: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("genrl: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
