"""Sample efficiency: real env steps (and seconds) until the real-env evaluation reaches a threshold.

genrl and tuned stable-baselines3 baselines (rl-baselines3-zoo hyperparameters) run side by side,
in one invocation, on the same machine, each run in its own process at 1 thread:

- CartPole-v1, threshold 475: genrl vs PPO and DQN
- Pendulum-v1, threshold -200: genrl vs SAC and TD3
- MountainCar-v0 (-110, its preset explores) vs DQN; with no preset (genrl's defaults):
  LunarLander-v3 (200) vs DQN
  and LunarLanderContinuous-v3 (200) vs SAC (extra genrl[box2d]); InvertedPendulum-v5 (950),
  Hopper-v5 (2,500) and HalfCheetah-v5 (5,000) vs SAC (extra genrl[mujoco])

The evaluation is the same for every method: 20 deterministic episodes on a separate env that
never feeds training, run at real-step counts that grow by at most 10% (a geometric grid), so the
first crossing is resolved to 10% of itself. genrl's loop evaluates after each iteration, and its
presets collect 10% more real data per iteration (``collect_fraction: 0.1``). The first
evaluation of any method bounds its figure from above only; when genrl succeeds there, the
harness reruns that seed from 10% less random data until it fails (see ``run_genrl``).
Wall time to threshold excludes the evaluations themselves. Evaluation episodes never count as
real steps for any method: they measure the policy, they are not training data.

Usage::

    python benchmarks/sample_efficiency.py                      # 5 seeds, both tasks, 2 workers
    python benchmarks/sample_efficiency.py --tasks cartpole --methods genrl,ppo --seeds 3
    python benchmarks/sample_efficiency.py --quick              # a smoke run with tiny budgets

Per-run JSON goes to ``--out-dir`` (one file per task, method and seed; existing files are
reused, so an interrupted run continues); the summary goes to ``--out-dir/summary.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np

from genrl.util.files import write_json

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import command, commit, machine, table  # noqa: E402

EVAL_EPISODES = 20
GRID_RATIO = 1.1  # evaluations at most 10% apart in real steps
FIRST_EVAL = 100  # real steps before the first baseline evaluation
MAX_PROBES = 4  # genrl reruns from less data when it succeeds at its first evaluation


GENRL_METHODS = ("genrl", "genrl-no-preset")


@dataclass(frozen=True)
class Task:
    env_id: str
    threshold: float
    genrl: dict[str, Any]  # train_in_imagination overrides of the env preset (envs/<task>.yaml)
    baselines: dict[str, dict[str, Any]] = field(default_factory=dict)
    preset: bool = True  # False: no envs/<task>.yaml, genrl runs on the bare id (its defaults)
    extra: str | None = None  # the genrl extra the env needs (`pip install genrl[box2d]`)


# The zoo's SAC settings for the MuJoCo tasks (hyperparams/sac.yml, "mujoco-defaults").
ZOO_SAC_MUJOCO = {"algo": "sac", "budget": 1_000_000, "learning_starts": 10_000}


# rl-baselines3-zoo hyperparameters (hyperparams/{ppo,dqn,sac,td3}.yml, entries for these envs);
# "budget" is the zoo's n_timesteps, where a run that has not reached the threshold gives up.
TASKS = {
    "cartpole": Task(
        "CartPole-v1",
        475.0,
        genrl={},  # envs/cartpole.yaml as it is: 10% more real data per iteration
        baselines={
            "ppo": {
                "algo": "ppo",
                "budget": 100_000,
                "n_envs": 8,
                "n_steps": 32,
                "batch_size": 256,
                "gae_lambda": 0.8,
                "gamma": 0.98,
                "n_epochs": 20,
                "ent_coef": 0.0,
                "learning_rate": "lin_0.001",
                "clip_range": "lin_0.2",
            },
            "dqn": {
                "algo": "dqn",
                "budget": 50_000,
                "learning_rate": 2.3e-3,
                "batch_size": 64,
                "buffer_size": 100_000,
                "learning_starts": 1000,
                "gamma": 0.99,
                "target_update_interval": 10,
                "train_freq": 256,
                "gradient_steps": 128,
                "exploration_fraction": 0.16,
                "exploration_final_eps": 0.04,
                "policy_kwargs": {"net_arch": [256, 256]},
            },
        },
    ),
    "pendulum": Task(
        "Pendulum-v1",
        -200.0,
        genrl={},  # envs/pendulum.yaml as it is
        baselines={
            "sac": {"algo": "sac", "budget": 20_000, "learning_rate": 1e-3},
            "td3": {
                "algo": "td3",
                "budget": 20_000,
                "gamma": 0.98,
                "buffer_size": 200_000,
                "learning_starts": 10_000,
                # The zoo's noise_std 0.1, in genrl's units (a fraction of the half-range, 2 here).
                "action_noise": {"type": "normal", "sigma": 0.05},
                "gradient_steps": 1,
                "train_freq": 1,
                "learning_rate": 1e-3,
                "policy_kwargs": {"net_arch": [400, 300]},
            },
        },
    ),
}

# The suite beyond the two presets (issue 14): no preset, genrl's defaults only. Zoo entries as
# above; LunarLander's are the zoo's LunarLander-v2 ones (v3 changed only bug fixes).
TASKS |= {
    "mountaincar": Task(
        "MountainCar-v0",
        -110.0,
        genrl={},  # envs/mountaincar.yaml: exploration by a planner paid for novelty
        baselines={
            "dqn": {
                "algo": "dqn",
                "budget": 120_000,
                "learning_rate": 4e-3,
                "batch_size": 128,
                "buffer_size": 10_000,
                "learning_starts": 1000,
                "gamma": 0.98,
                "target_update_interval": 600,  # the zoo's; 5,000 until 2026-12-07 (never learned)
                "train_freq": 16,
                "gradient_steps": 8,
                "exploration_fraction": 0.2,
                "exploration_final_eps": 0.07,
                "policy_kwargs": {"net_arch": [256, 256]},
            },
        },
    ),
    "lunarlander": Task(
        "LunarLander-v3",
        200.0,
        genrl={},
        preset=False,
        extra="box2d",
        baselines={
            "dqn": {
                "algo": "dqn",
                "budget": 100_000,
                "learning_rate": 6.3e-4,
                "batch_size": 128,
                "buffer_size": 50_000,
                "learning_starts": 0,
                "gamma": 0.99,
                "target_update_interval": 250,
                "train_freq": 4,
                "gradient_steps": -1,
                "exploration_fraction": 0.12,
                "exploration_final_eps": 0.1,
                "policy_kwargs": {"net_arch": [256, 256]},
            },
        },
    ),
    "lunarlander-continuous": Task(
        "LunarLanderContinuous-v3",
        200.0,
        genrl={},
        preset=False,
        extra="box2d",
        baselines={
            "sac": {
                "algo": "sac",
                "budget": 500_000,
                "batch_size": 256,
                "learning_rate": "lin_7.3e-4",
                "buffer_size": 1_000_000,
                "gamma": 0.99,
                "tau": 0.01,
                "learning_starts": 10_000,
                "policy_kwargs": {"net_arch": [400, 300]},
            },
        },
    ),
    "inverted-pendulum": Task(
        "InvertedPendulum-v5",
        950.0,
        genrl={},
        preset=False,
        extra="mujoco",
        baselines={"sac": ZOO_SAC_MUJOCO},
    ),
    "hopper": Task(
        "Hopper-v5", 2500.0, genrl={}, preset=False, extra="mujoco", baselines={"sac": ZOO_SAC_MUJOCO}
    ),
    "halfcheetah": Task(
        "HalfCheetah-v5", 5000.0, genrl={}, preset=False, extra="mujoco", baselines={"sac": ZOO_SAC_MUJOCO}
    ),
}

# --quick: the whole pipeline at tiny budgets, to check that it runs (no threshold is reached).
QUICK_GENRL = {
    "initial_steps": 200,
    "iterations": 1,
    "fit_steps": 30,
    "refit_steps": 10,
    "dream_steps": 1024,
    "eval_episodes": 2,
}
QUICK_BUDGET = 1_000


def run_baseline(task_name: str, method: str, seed: int, quick: bool = False) -> dict[str, Any]:
    """Train one SB3 baseline, evaluating on the grid; stops at the threshold or the budget."""
    import torch
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_vec_env

    from genrl.training.agents import make_agent

    torch.set_num_threads(1)
    task = TASKS[task_name]
    spec = dict(task.baselines[method])
    algorithm, budget, n_envs = spec.pop("algo"), spec.pop("budget"), spec.pop("n_envs", 1)
    budget = QUICK_BUDGET if quick else budget
    env = make_vec_env(task.env_id, n_envs=n_envs, seed=seed)
    # genrl's agent presets read the zoo's notation too: "lin_X" schedules, Gaussian action noise.
    preset = {"algorithm": algorithm, "hyperparameters": {**spec, "device": "cpu"}}
    model = make_agent(preset, env, seed=seed)
    evaluator = Evaluator(task.env_id, seed, 2 if quick else EVAL_EPISODES)

    class OnGrid(BaseCallback):
        def _on_step(self) -> bool:
            return evaluator.maybe_evaluate(self.model, self.num_timesteps, task.threshold)

    evaluator.start()
    model.learn(budget, callback=OnGrid())
    env.close()
    # PPO collects whole rollouts, so it may overrun its budget by part of one.
    return evaluator.result(task_name, method, seed, max(budget, model.num_timesteps), task.threshold)


class Evaluator:
    """Evaluates on a geometric grid of real steps and keeps the clock without its own time."""

    def __init__(self, env_id: str, seed: int, episodes: int):
        from stable_baselines3.common.env_util import make_vec_env

        # One env per episode: the policy acts on all of them as one batch.
        self.env = make_vec_env(env_id, n_envs=episodes, seed=10_000 + seed)
        self.seed, self.episodes = seed, episodes
        self.next_eval, self.eval_time, self.t0 = FIRST_EVAL, 0.0, 0.0
        self.history: list[dict[str, float]] = []

    def start(self) -> None:
        self.t0 = time.perf_counter()

    def maybe_evaluate(self, model: Any, steps: int, threshold: float) -> bool:
        """Evaluate if ``steps`` reached the next grid point; False once the threshold is reached."""
        from stable_baselines3.common.evaluation import evaluate_policy

        if steps < self.next_eval:
            return True
        begin = time.perf_counter()
        self.env.seed(10_000 * (self.seed + 1) + len(self.history))
        returns, _ = evaluate_policy(
            model, self.env, self.episodes, deterministic=True, return_episode_rewards=True
        )
        now = time.perf_counter()
        self.history.append(
            {
                "real_steps": int(steps),
                "return_mean": float(np.mean(returns)),
                "return_std": float(np.std(returns)),
                "wall_time_s": begin - self.t0 - self.eval_time,
            }
        )
        self.eval_time += now - begin
        self.next_eval = max(steps + 1, math.ceil(steps * GRID_RATIO))
        return self.history[-1]["return_mean"] < threshold

    def result(self, task: str, method: str, seed: int, budget: int, threshold: float) -> dict[str, Any]:
        self.env.close()
        return summarize_run(task, method, seed, budget, threshold, self.history)


def run_genrl(
    task_name: str,
    seed: int,
    quick: bool = False,
    preset: bool = True,
    settings: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """genrl's loop on the env's preset (``preset=False``: on the bare env id, genrl's defaults
    only); its own real-env evaluation after each iteration.

    A run that reaches the threshold at its first evaluation is known only up to that figure, so
    the same seed is then rerun from 10% less random data, and again while it still succeeds
    (at most ``MAX_PROBES`` times): the figure is the least data on that grid that succeeded,
    resolved by the probe below it that failed.
    """
    task = TASKS[task_name]
    overrides = dict(QUICK_GENRL if quick else task.genrl if preset else {}) | (settings or {})
    source = task_name if preset and task.preset else task.env_id
    method = "genrl" if preset else "genrl-no-preset"
    history = _genrl_history(source, task_name, seed, overrides)
    record = summarize_run(task_name, method, seed, history[-1]["real_steps"], task.threshold, history)
    record["probes"], record["settings"] = [], settings or {}
    if quick or not record["reached"] or record["evaluations"] > 1:
        return record
    steps = record["real_steps"]
    for _ in range(MAX_PROBES):
        smaller = math.floor(steps / GRID_RATIO)
        (row,) = _genrl_history(
            source, task_name, seed, {**overrides, "initial_steps": smaller, "iterations": 1}
        )
        record["probes"].append(row)
        if row["return_mean"] < task.threshold:
            record["previous_eval_steps"] = smaller
            break
        steps = smaller
        record.update(real_steps=smaller, wall_time_s=row["wall_time_s"])
    return record


def _genrl_history(source: str, task_name: str, seed: int, overrides: dict[str, Any]) -> list[dict[str, Any]]:
    """One train_in_imagination run's evaluations, wall times without the evaluations' own time.

    ``source``: the preset's name (envs/<task>.yaml) or the bare env id; the task's threshold is
    the stopping rule either way.
    """
    import torch

    import genrl

    torch.set_num_threads(1)
    overrides = dict(overrides)
    with tempfile.TemporaryDirectory(prefix=f"genrl-bench-{task_name}-{seed}-") as run_dir:
        result = genrl.train_in_imagination(
            source,
            seed=seed,
            run_dir=run_dir,
            progress=False,
            target_return=TASKS[task_name].threshold,
            eval_episodes=overrides.pop("eval_episodes", EVAL_EPISODES),
            **overrides,
        )
    history, spent = [], 0.0
    for row in result.history:
        spent += row["eval_time_s"]
        history.append(
            {
                "real_steps": int(row["real_steps"]),
                "return_mean": float(row["eval_return_mean"]),
                "return_std": float(row["eval_return_std"]),
                "wall_time_s": float(row["wall_time_s"] - spent),
                "dream_return_mean": float(row["dream_return_mean"]),
            }
        )
    return history


def summarize_run(
    task: str, method: str, seed: int, budget: int, threshold: float, history: list[dict]
) -> dict[str, Any]:
    """One run's record: the evaluation history and the first evaluation at the threshold."""
    hit = next((row for row in history if row["return_mean"] >= threshold), None)
    before = [
        row["real_steps"] for row in history if hit is not None and row["real_steps"] < hit["real_steps"]
    ]
    return {
        "task": task,
        "method": method,
        "seed": seed,
        "threshold": threshold,
        "reached": hit is not None,
        "real_steps": hit["real_steps"] if hit else None,
        "wall_time_s": hit["wall_time_s"] if hit else None,
        # How finely the crossing is resolved: the step count of the evaluation before it.
        "previous_eval_steps": before[-1] if before else 0,
        "budget_steps": budget,
        "evaluations": len(history),
        "history": history,
    }


def run_one(job: tuple[str, str, int, bool, dict[str, Any]]) -> dict[str, Any]:
    task, method, seed, quick, settings = job
    os.environ.setdefault("GENRL_PROGRESS", "0")
    start = time.perf_counter()
    if method.startswith("genrl"):
        record = run_genrl(task, seed, quick, preset=method == "genrl", settings=settings)
    else:
        record = run_baseline(task, method, seed, quick)
    record["process_time_s"] = time.perf_counter() - start
    record.update(machine=machine(), commit=commit(), date=time.strftime("%Y-%m-%d"))
    return record


def aggregate(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (task, method): median and IQM (bootstrap 95% CI) of steps and seconds to threshold.

    A run that never reached the threshold counts at its budget, so the figures are then lower
    bounds; ``reached`` says how many seeds got there.
    """
    from genrl.evaluation.metrics import bootstrap_ci, iqm

    rows = []
    for task in TASKS:
        for method in [*GENRL_METHODS, *TASKS[task].baselines]:
            runs = sorted(
                (r for r in records if r["task"] == task and r["method"] == method), key=lambda r: r["seed"]
            )
            if not runs:
                continue
            steps = np.array([r["real_steps"] if r["reached"] else r["budget_steps"] for r in runs], float)
            walls = np.array([r["wall_time_s"] if r["reached"] else np.nan for r in runs], float)
            low, high = bootstrap_ci(steps)
            reached = sum(r["reached"] for r in runs)
            rows.append(
                {
                    "task": task,
                    "method": method,
                    "seeds": len(runs),
                    "reached": reached,
                    "median_steps": float(np.median(steps)),
                    "iqm_steps": iqm(steps),
                    "iqm_steps_ci95": [low, high],
                    "median_wall_s": float(np.nanmedian(walls)) if reached else None,
                    "per_seed_steps": [r["real_steps"] for r in runs],
                    # Issue 14: how far a dream's return strays from the real one, in units of
                    # the task's return scale, over every evaluation of every seed.
                    "max_dream_gap": max(
                        (
                            dream_gap(row, r["threshold"])
                            for r in runs
                            for row in r["history"]
                            if "dream_return_mean" in row
                        ),
                        default=None,
                    ),
                    "worst_resolution": max(
                        (r["real_steps"] - r["previous_eval_steps"]) / r["real_steps"]
                        for r in runs
                        if r["reached"]
                    )
                    if reached
                    else None,
                }
            )
    return rows


def dream_gap(row: dict[str, Any], threshold: float) -> float:
    """|dream return - real return| / max(|real return|, |threshold|, 1) of one evaluation.

    The threshold is the task's return scale: without it the ratio explodes wherever the real
    return crosses 0 (LunarLander's 63.5 of 2026-12-03 was a dream of 728 beside a real 11.3).
    """
    scale = max(abs(row["return_mean"]), abs(threshold), 1.0)
    return abs(row["dream_return_mean"] - row["return_mean"]) / scale


def targets(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The issue's targets against this run's figures."""
    by = {(r["task"], r["method"]): r for r in rows}
    out = []

    def check(name: str, value: float | None, goal: str, ok: bool) -> None:
        shown = "n/a" if value is None else f"{value:,.1f}"
        out.append({"target": name, "measured": shown, "goal": goal, "met": "yes" if ok else "NO"})

    for task, peer, factor in (("cartpole", "ppo", 10), ("pendulum", "sac", 3)):
        mine, theirs = by.get((task, "genrl")), by.get((task, peer))
        if mine is None:
            continue
        # Runs that missed count at their budget, above every run that reached the threshold: the
        # median is still exact while they are fewer than half; otherwise it is a lower bound.
        exact = 2 * (mine["seeds"] - mine["reached"]) < mine["seeds"]
        check(
            f"{task}: genrl median real steps",
            mine["median_steps"],
            "<= 1,000",
            exact and mine["median_steps"] <= 1000,
        )
        if theirs is not None:
            ratio = theirs["median_steps"] / mine["median_steps"]
            check(f"{task}: {peer} median / genrl median", ratio, f">= {factor}x", exact and ratio >= factor)
        if task == "cartpole":
            wall = mine["median_wall_s"]
            check(
                "cartpole: genrl median wall time to threshold (s)",
                wall,
                "<= 60",
                wall is not None and wall <= 60,
            )
    gaps = [
        r["max_dream_gap"] for r in rows if r["method"] in GENRL_METHODS and r["max_dream_gap"] is not None
    ]
    if gaps:
        check(
            "genrl: largest |dream - real| / max(|real|, |threshold|) of any evaluation",
            max(gaps),
            "<= 10",
            max(gaps) <= 10,
        )
    # Issue 14: the suite, at least 5x fewer real steps than the best model-free baseline run.
    for task in ("mountaincar", "lunarlander", "lunarlander-continuous", "inverted-pendulum"):
        mine = by.get((task, "genrl"))
        peers = [by[(task, m)] for m in TASKS[task].baselines if (task, m) in by]
        if mine is None or not peers:
            continue
        exact = 2 * (mine["seeds"] - mine["reached"]) < mine["seeds"]
        best = min(peers, key=lambda r: r["median_steps"])
        ratio = best["median_steps"] / mine["median_steps"]
        check(f"{task}: best baseline median / genrl median", ratio, ">= 5x", exact and ratio >= 5)
    for task in ("hopper", "halfcheetah"):
        mine = by.get((task, "genrl"))
        if mine is not None:
            exact = 2 * (mine["seeds"] - mine["reached"]) < mine["seeds"]
            check(
                f"{task}: genrl median real steps to {TASKS[task].threshold:,.0f}",
                mine["median_steps"],
                "<= 100,000",
                exact and mine["median_steps"] <= 100_000,
            )
    return out


def parse_settings(items: list[str]) -> dict[str, Any]:
    """``section.name=value`` or ``name=value`` items -> train_in_imagination's overrides."""
    import yaml

    settings: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"--set: expected KEY=VALUE, got {item!r}")
        section, _, name = key.rpartition(".")
        target = settings.setdefault(section, {}) if section else settings
        target[name] = yaml.safe_load(value)
    return settings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default="cartpole,pendulum", help=f"comma list among {sorted(TASKS)}")
    parser.add_argument("--methods", default="all", help="comma list among genrl,ppo,dqn,sac,td3, or all")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--workers", type=int, default=2, help="runs in parallel, one thread each")
    parser.add_argument("--out-dir", default="benchmarks/sample_efficiency")
    parser.add_argument("--quick", action="store_true", help="tiny budgets, one seed: a smoke run")
    parser.add_argument("--fresh", action="store_true", help="rerun runs whose JSON already exists")
    parser.add_argument(
        "--no-preset", action="store_true", help="also run genrl on the bare env id (its defaults only)"
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a genrl setting for every genrl run (train.iterations=60; a YAML value); recorded in its JSON",
    )
    args = parser.parse_args()
    tasks = [t for t in args.tasks.split(",") if t]
    unknown = sorted(set(tasks) - set(TASKS))
    if unknown:
        parser.error(f"unknown tasks {unknown}: expected some of {sorted(TASKS)}")
    seeds = 1 if args.quick else args.seeds
    out_dir = Path(args.out_dir) / ("quick" if args.quick else "")
    out_dir.mkdir(parents=True, exist_ok=True)
    settings = parse_settings(args.set)
    jobs = []
    for task in tasks:
        # A task without a preset runs on its bare id already: "genrl" is its no-preset figure.
        no_preset = args.no_preset and TASKS[task].preset
        methods = ["genrl", *(["genrl-no-preset"] if no_preset else []), *TASKS[task].baselines]
        if args.methods != "all":
            methods = [m for m in methods if m in args.methods.split(",")]
        jobs += [(task, m, s, args.quick, settings) for m in methods for s in range(seeds)]
    records, todo = [], []
    for job in jobs:
        path = out_dir / f"{job[0]}-{job[1]}-seed{job[2]}.json"
        if path.exists() and not args.fresh:
            records.append(json.loads(path.read_text()))
        else:
            todo.append(job)
    # genrl runs first: they are the longest, so the pool ends with short runs.
    todo.sort(key=lambda job: not job[1].startswith("genrl"))
    header = f"{time.strftime('%Y-%m-%d')}, {machine()}, commit {commit()}; one process and thread a run"
    print(header, flush=True)
    print(f"{len(todo)} runs to do, {len(records)} reused from {out_dir}", flush=True)
    with ProcessPoolExecutor(args.workers, mp_context=get_context("spawn"), max_tasks_per_child=1) as pool:
        futures = {pool.submit(run_one, job): job for job in todo}
        for future in as_completed(futures):
            record = future.result()
            write_json(out_dir / f"{record['task']}-{record['method']}-seed{record['seed']}.json", record)
            records.append(record)
            print(
                f"{record['task']} {record['method']} seed {record['seed']}: "
                + (
                    f"{record['real_steps']:,} real steps, {record['wall_time_s']:.0f} s"
                    if record["reached"]
                    else f"not reached in {record['budget_steps']:,} steps"
                )
                + f" ({record['process_time_s']:.0f} s in all)",
                flush=True,
            )
    rows = aggregate(records)
    checks = targets(rows)
    write_json(
        out_dir / "summary.json",
        {"header": header, "command": command(), "aggregate": rows, "targets": checks},
    )
    shown = [
        {
            **{k: v for k, v in r.items() if k not in ("iqm_steps_ci95", "per_seed_steps")},
            "iqm_steps_ci95": "[{:,.0f}, {:,.0f}]".format(*r["iqm_steps_ci95"]),
            "per_seed_steps": ", ".join("-" if s is None else f"{s:,}" for s in r["per_seed_steps"]),
        }
        for r in rows
    ]
    print("\nSample efficiency (real steps to the threshold)\n")
    print(table(shown))
    print("\nTargets\n")
    print(table(checks))


if __name__ == "__main__":
    main()
