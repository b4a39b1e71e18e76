"""The ``genrl`` command: collect, fit, dream, train and eval over the presets in ``envs/`` and ``agents/``.

Each subcommand is one small function that calls the public Python API and prints a summary.
Bad input (a ``GenrlError`` or a Gymnasium error) ends the command with one line on stderr and
exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from rich.console import Console
from rich.table import Table
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import DummyVecEnv
from torch.utils.tensorboard import SummaryWriter

from genrl import __version__
from genrl.agents import agent_preset, load_policy, make_agent
from genrl.collect import collect, make_env
from genrl.dataset import RolloutDataset
from genrl.dream_env import DreamEnv
from genrl.errors import GenrlError
from genrl.fileio import read_json
from genrl.loop import default_run_dir, resolve_config, resume, train_in_imagination
from genrl.world_model import WorldModel

console = Console()


# ---- subcommands ---------------------------------------------------------------------------------


def cmd_train(args: argparse.Namespace) -> int:
    """Run the whole loop (or continue a killed run) and print one row per iteration."""
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
    env_id = read_json(result.run_dir / "config.json", "the run's config").get("env_id")
    table = Table(title=f"genrl train {env_id}")
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
    episodes = read_json(result.run_dir / "config.json", "the run's config").get("eval_episodes")
    final = result.final
    print(
        f"Trained on {result.dataset.num_steps} real env steps; final real return "
        f"{final['eval_return_mean']:.1f} ± {final['eval_return_std']:.1f} over {episodes} episodes; "
        f"run folder: {result.run_dir}"
    )
    return 0


def cmd_collect(args: argparse.Namespace) -> int:
    """Record random-policy episodes of a real env into a dataset folder (created or appended to)."""
    env_id = resolve_config(args.env).env_id
    env = make_env(env_id)
    try:
        dataset = RolloutDataset.open(args.path, env.observation_space, env.action_space)
        before = len(dataset)
        collect(env, args.steps, seed=args.seed, dataset=dataset, progress=args.progress)
    finally:
        env.close()
    returns = dataset.episode_returns()[before:]
    new_steps = sum(len(ep["reward"]) for ep in dataset.episodes[before:])
    print(
        f"Collected {len(returns)} episodes ({new_steps} steps) of {env_id} with a random policy; "
        f"mean return {returns.mean():.1f} ± {returns.std():.1f}. "
        f"{args.path} now holds {len(dataset)} episodes ({dataset.num_steps} steps)."
    )
    return 0


def cmd_fit(args: argparse.Namespace) -> int:
    """Fit a world model on a dataset folder, save it, and print its held-out losses."""
    dataset = RolloutDataset.load(args.data_dir)
    config: dict[str, Any] = {}
    steps = args.steps
    if args.env is not None:
        preset = resolve_config(args.env)
        config = dict(preset.world_model)
        steps = steps if steps is not None else preset.fit_steps
    config["seed"] = args.seed
    torch.manual_seed(args.seed)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = WorldModel(dataset.observation_space, dataset.action_space, config).to(device)
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
    """Roll out a saved world model under random actions and report what it imagines."""
    env = DreamEnv(args.model_dir, horizon=args.horizon, temperature=args.temperature, device=None)
    env.action_space.seed(args.seed)
    table = Table(title=f"dreams of {args.model_dir} (random actions)")
    for name in ("episode", "return", "length", "mean uncertainty", "ended by"):
        table.add_column(name, justify="right")
    returns, lengths = [], []
    for episode in range(args.episodes):
        env.reset(seed=args.seed if episode == 0 else None)
        total, length, uncertainty, terminated, truncated = 0.0, 0, 0.0, False, False
        while not (terminated or truncated):
            _, reward, terminated, truncated, info = env.step(env.action_space.sample())
            total += reward
            length += 1
            uncertainty += info["uncertainty"]
        returns.append(total)
        lengths.append(length)
        ended = "termination" if terminated else "horizon"
        table.add_row(str(episode), f"{total:.1f}", str(length), f"{uncertainty / length:.4f}", ended)
    env.close()
    console.print(table)
    print(
        f"{args.episodes} dreams: return {np.mean(returns):.1f} ± {np.std(returns):.1f}, "
        f"length {np.mean(lengths):.1f} (horizon {args.horizon}, temperature {args.temperature})."
    )
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    """Evaluate a trained run's policy in the real env (weights from safetensors, never a pickle)."""
    run_dir = Path(args.run_dir)
    cfg = read_json(run_dir / "config.json", "a genrl run config (config.json)")
    env_id, agent = cfg.get("env_id"), cfg.get("agent")
    if not isinstance(env_id, str) or agent is None:
        raise GenrlError(f"{run_dir / 'config.json'}: expected 'env_id' and 'agent' settings")
    weights = run_dir / "policy.safetensors"
    if not weights.is_file():
        raise GenrlError(f"expected policy weights at {weights}, found no such file (did the run finish?)")
    venv = DummyVecEnv([lambda: Monitor(make_env(env_id))])
    venv.seed(args.seed)
    try:
        with warnings.catch_warnings():
            # Training-only settings (e.g. PPO's batch size vs. one env's rollout) warn here needlessly.
            warnings.simplefilter("ignore", UserWarning)
            learner = make_agent(agent_preset(agent), venv, seed=args.seed)
        load_policy(learner, weights)
        mean, std = evaluate_policy(learner, venv, n_eval_episodes=args.episodes, deterministic=True)
    finally:
        venv.close()
    print(
        f"{env_id}: real return {mean:.1f} ± {std:.1f} over {args.episodes} episodes "
        f"(deterministic policy from {weights})"
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


def _common(seed_default: int | None = 0) -> argparse.ArgumentParser:
    """Options every subcommand takes; a fresh parser each time, since parents share their actions."""
    common = argparse.ArgumentParser(add_help=False)
    seed_help = (
        "random seed (default: 0)" if seed_default is not None else "random seed (default: the preset's)"
    )
    common.add_argument("--seed", type=int, default=seed_default, help=seed_help)
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
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("collect", parents=[_common()], help="record random-policy episodes of a real env")
    p.add_argument("env", metavar="ENV", help=env_help)
    p.add_argument("--steps", type=_positive_int, required=True, help="transitions to record")
    p.add_argument("--path", required=True, help="dataset folder to create or append to")
    p.set_defaults(func=cmd_collect)

    p = sub.add_parser("fit", parents=[_common()], help="fit a world model on a dataset folder")
    p.add_argument("data_dir", metavar="DATA_DIR", help="dataset folder written by `genrl collect`")
    p.add_argument("--out", required=True, metavar="MODEL_DIR", help="folder to save the model in")
    p.add_argument(
        "--steps", type=_positive_int, help="gradient steps (default: the preset's fit_steps, else 1000)"
    )
    p.add_argument("--env", metavar="PRESET", help="take the world-model settings from this env preset")
    p.set_defaults(func=cmd_fit)

    p = sub.add_parser("dream", parents=[_common()], help="roll out a saved world model with random actions")
    p.add_argument("model_dir", metavar="MODEL_DIR", help="folder written by `genrl fit` or `genrl train`")
    p.add_argument("--episodes", type=_positive_int, default=5, help="dreams to roll out (default: 5)")
    p.add_argument(
        "--horizon", type=_positive_int, default=500, help="steps before truncation (default: 500)"
    )
    p.add_argument(
        "--temperature", type=_non_negative_float, default=1.0, help="dynamics temperature (default: 1)"
    )
    p.set_defaults(func=cmd_dream)

    p = sub.add_parser("eval", parents=[_common()], help="evaluate a trained run's policy in the real env")
    p.add_argument("run_dir", metavar="RUN_DIR", help="run folder written by `genrl train`")
    p.add_argument("--episodes", type=_positive_int, default=20, help="real episodes (default: 20)")
    p.set_defaults(func=cmd_eval)
    return parser


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
    if os.environ.get("GENRL_PROGRESS", "1") == "0":
        args.progress = False  # also hides SB3's own progress bar, which does not read the variable
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
