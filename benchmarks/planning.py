"""Planning in a world model fitted only on random real steps: return over 20 real episodes, and speed.

For each task: collect ``--steps`` random real steps, fit the preset's world model on them, then act
in the real env with ``genrl.Planner`` (each method) for 20 episodes. Reported per (task, method):
mean and std of the real return, actions per second (planning wall time only) and model steps per
action (the planner's compute). One JSON per (task, method, seed) in benchmarks/results/planning/,
written as each finishes, so a rerun resumes.

    OMP_NUM_THREADS=1 python benchmarks/planning.py [--tasks cartpole pendulum] [--methods cem icem mppi]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from common import REPO, command, commit, header, machine, table

import genrl
from genrl.guidance.planner import Planner
from genrl.training.presets import load_preset
from genrl.util.files import read_json, write_json

OUT = REPO / "benchmarks" / "results" / "planning"
EPISODES = 20
# Planner settings that meet the targets (benchmarks/RESULTS.md); shared by all three methods.
TASKS: dict[str, dict[str, Any]] = {
    "cartpole": {
        "env_id": "CartPole-v1",
        "target": 475.0,
        "planner": {"horizon": 30, "population": 100, "elites": 10, "iterations": 2, "support_penalty": 0.1},
    },
    "pendulum": {
        "env_id": "Pendulum-v1",
        "target": -200.0,
        "planner": {"horizon": 30, "population": 100, "elites": 10, "iterations": 2, "support_penalty": 0.0},
    },
}


def fitted_model(
    task: str, steps: int, seed: int, sizes: dict[str, int] | None = None
) -> tuple[genrl.WorldModel, genrl.RolloutDataset, float]:
    """The preset's world model (``sizes`` changed) fitted on ``steps`` random real steps; the fit's time."""
    spec = TASKS[task]
    preset = load_preset("envs", task)
    data = genrl.collect(spec["env_id"], steps, seed=seed, progress=False)
    settings = {**preset.get("world_model", {}), **preset.get("fit", {}), **(sizes or {})}
    model = genrl.WorldModel(data.observation_space, data.action_space, settings, seed=seed)
    start = time.perf_counter()
    model.fit(data, progress=False)
    return model.eval(), data, time.perf_counter() - start


def run(task: str, method: str, steps: int, seed: int, args: argparse.Namespace) -> dict[str, Any]:
    spec = TASKS[task]
    sizes = {"hidden_dim": args.hidden, "rnn_dim": args.hidden}
    model, data, fit_s = fitted_model(task, steps, seed, sizes)
    settings = {**spec["planner"], **json.loads(args.planner)}
    support = data if settings.get("support_penalty", 0.0) > 0 else None
    planner = Planner(model, method=method, support=support, seed=seed, **settings)
    env = gym.make(spec["env_id"])
    returns, actions, plan_s = [], 0, 0.0
    for episode in range(EPISODES):
        obs, _ = env.reset(seed=10_000 * (seed + 1) + episode)
        planner.reset()
        total, done = 0.0, False
        while not done:
            start = time.perf_counter()
            action, _ = planner.predict(obs, deterministic=True)
            plan_s += time.perf_counter() - start
            obs, reward, terminated, truncated, _ = env.step(action)
            total, actions, done = total + float(reward), actions + 1, terminated or truncated
        returns.append(total)
    return {
        "task": task,
        "method": method,
        "seed": seed,
        "real_steps": data.num_steps,
        "planner": settings,
        "model_sizes": sizes,
        "fit_seconds": round(fit_s, 1),
        "returns": returns,
        "mean_return": float(np.mean(returns)),
        "std_return": float(np.std(returns)),
        "actions_per_second": actions / plan_s,
        "model_steps_per_action": planner.model_steps / actions,
        "target": spec["target"],
        "met": bool(np.mean(returns) >= spec["target"]),
        "machine": machine(),
        "commit": commit(),
        "command": command(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    parser.add_argument(
        "--methods", nargs="+", default=["cem", "icem", "mppi"], choices=["cem", "icem", "mppi"]
    )
    parser.add_argument("--steps", type=int, default=1000, help="random real steps the model is fitted on")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--hidden", type=int, default=64, help="the model's hidden and recurrent sizes")
    parser.add_argument("--planner", default="{}", help="JSON of planner settings over the task's")
    parser.add_argument("--tag", default="", help="added to the result file names")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    for task in args.tasks:
        for method in args.methods:
            for seed in args.seeds:
                path = (
                    OUT
                    / f"{task}-{method}-{args.steps}-seed{seed}-t{args.threads}-h{args.hidden}{args.tag}.json"
                )
                record = read_json(path, "a benchmark record") if Path(path).exists() else None
                if record is None:
                    record = run(task, method, args.steps, seed, args)
                    write_json(path, record)
                rows.append(record)
                print(f"{task} {method} seed {seed}: {record['mean_return']:.1f}", flush=True)
    print(header())
    columns = {
        "task": "task",
        "method": "method",
        "seed": "seed",
        "real_steps": "real steps",
        "mean_return": "mean return (20 ep.)",
        "std_return": "std",
        "target": "target",
        "met": "met",
        "actions_per_second": "actions/s",
        "model_steps_per_action": "model steps/action",
    }
    print(table(rows, columns))


if __name__ == "__main__":
    main()
