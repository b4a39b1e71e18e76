"""Guided generation at equal compute: each guide's imagined return, checked in the real env.

For each task, a world model is fitted on ``--steps`` random real steps (as benchmarks/planning.py
does). Each guide then generates ``--episodes`` episodes from the same real start states, each
episode allowed ``--candidates`` imagined rollouts (``none``: one). Every generated episode's
actions are replayed in the real env from the same start state (set through ``env.unwrapped``),
so the imagined return stands beside the real one. One JSON per (task, guide, seed) in
benchmarks/results/generation/, written as each finishes.

    OMP_NUM_THREADS=1 python benchmarks/generation.py [--tasks cartpole pendulum]
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from common import REPO, command, commit, header, machine, table
from planning import TASKS, fitted_model

import genrl
from genrl.util.files import read_json, write_json

OUT = REPO / "benchmarks" / "results" / "generation"
GUIDES = ("none", "best-of-n", "cem")
HORIZON = {"cartpole": 200, "pendulum": 200}


def real_state(task: str, obs: np.ndarray) -> np.ndarray:
    """The real env's internal state for an observation (both tasks observe their whole state)."""
    if task == "pendulum":
        return np.array([np.arctan2(obs[1], obs[0]), obs[2]], dtype=np.float64)
    return obs.astype(np.float64)


def replay(task: str, start: np.ndarray, actions: np.ndarray) -> float:
    env = gym.make(TASKS[task]["env_id"])
    env.reset(seed=0)
    env.unwrapped.state = real_state(task, start)
    total = 0.0
    for action in actions:
        _, reward, terminated, truncated, _ = env.step(action)
        total += float(reward)
        if terminated or truncated:
            break
    return total


def run(task: str, guide: str, args: argparse.Namespace, model: genrl.WorldModel) -> dict[str, Any]:
    data = genrl.generate(
        model,
        args.episodes,
        guide,
        candidates=args.candidates,
        horizon=HORIZON[task],
        temperature=0.0,
        seed=args.seed,
    )
    starts = model.start_states.cpu().numpy()
    predicted = [e.info["predicted_return"] for e in data.episodes]
    real = [replay(task, starts[e.info["start_index"]], e.action) for e in data.episodes]
    return {
        "task": task,
        "guide": guide,
        "seed": args.seed,
        "episodes": args.episodes,
        "candidates": 1 if guide == "none" else args.candidates,
        "model_steps_per_episode": data.episodes[0].info["model_steps"],
        "predicted_return": float(np.mean(predicted)),
        "real_return": float(np.mean(real)),
        "machine": machine(),
        "commit": commit(),
        "command": command(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--episodes", type=int, default=50)
    parser.add_argument("--candidates", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = []
    for task in args.tasks:
        model = None
        for guide in GUIDES:
            path = OUT / f"{task}-{guide}-k{args.candidates}-seed{args.seed}.json"
            if Path(path).exists():
                rows.append(read_json(path, "a benchmark record"))
                continue
            if model is None:
                model = fitted_model(task, args.steps, args.seed)[0]
            rows.append(run(task, guide, args, model))
            write_json(path, rows[-1])
        base = next(r for r in rows if r["task"] == task and r["guide"] == "none")
        for row in rows:
            if row["task"] == task:
                row["lift_predicted"] = row["predicted_return"] - base["predicted_return"]
                row["lift_real"] = row["real_return"] - base["real_return"]
    print(header())
    columns = {
        "task": "task",
        "guide": "guide",
        "candidates": "rollouts/episode",
        "model_steps_per_episode": "model steps/episode",
        "predicted_return": "imagined return",
        "real_return": "real return (replayed)",
        "lift_predicted": "lift (imagined)",
        "lift_real": "lift (real)",
    }
    print(table(rows, columns))


if __name__ == "__main__":
    main()
