"""genrl benchmarks: dream throughput, world-model training throughput, and the CartPole demo loop.

Usage: python benchmarks/run.py [--only dream,fit,demo] [--out benchmarks/results.json]
Prints a markdown table per benchmark; copy it into benchmarks/RESULTS.md with the date,
machine and commit.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import time
from pathlib import Path

import numpy as np
import torch

import genrl


def machine() -> str:
    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = f", GPU {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""
    return (
        f"{os.cpu_count()} cores, {cpu}{gpu}, torch {torch.__version__} ({torch.get_num_threads()} threads)"
    )


def commit() -> str:
    try:
        return subprocess.check_output(["git", "rev-parse", "--short", "HEAD"], text=True).strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def small_model(steps: int) -> tuple[genrl.WorldModel, genrl.RolloutDataset]:
    data = genrl.collect("CartPole-v1", 2000, seed=0, progress=False)
    model = genrl.WorldModel(data.observation_space, data.action_space, open_loop_steps=16)
    model.fit(data, steps=steps, progress=False)
    return model, data


def bench_dream(model: genrl.WorldModel, data: genrl.RolloutDataset) -> list[dict]:
    """Imagined steps per second of DreamVecEnv against n_envs, beside the real vector env."""
    import gymnasium as gym

    rows = []
    for n in (1, 16, 256, 1024, 4096):
        venv = genrl.DreamVecEnv(model, n_envs=n, dataset=data, horizon=500, seed=0)
        venv.reset()
        actions = np.random.default_rng(0).integers(0, 2, size=(50, n))
        venv.step(actions[0])
        start = time.perf_counter()
        for a in actions:
            venv.step(a)
        dream_sps = 50 * n / (time.perf_counter() - start)
        real = gym.make_vec("CartPole-v1", num_envs=min(n, 256), vectorization_mode="sync")
        real.reset(seed=0)
        real_actions = np.random.default_rng(0).integers(0, 2, size=(50, real.num_envs))
        start = time.perf_counter()
        for a in real_actions:
            real.step(a)
        real_sps = 50 * real.num_envs / (time.perf_counter() - start)
        real.close()
        rows.append(
            {
                "n_envs": n,
                "dream_steps_per_s": dream_sps,
                "real_sync_vec_envs": real.num_envs,
                "real_sync_vec_steps_per_s": real_sps,
            }
        )
    return rows


def bench_fit(data: genrl.RolloutDataset, steps: int = 200) -> dict:
    model = genrl.WorldModel(data.observation_space, data.action_space, open_loop_steps=16)
    start = time.perf_counter()
    model.fit(data, steps=steps, progress=False)
    seconds = time.perf_counter() - start
    c = model.config
    return {"steps": steps, "seconds": seconds, "sequences_per_s": steps * c.batch_size / seconds}


def bench_demo(seed: int) -> dict:
    start = time.perf_counter()
    result = genrl.train_in_imagination("cartpole", agent="ppo", seed=seed, progress=False)
    return {
        "seed": seed,
        "real_steps": result.dataset.num_steps,
        "eval_return_mean": result.final["eval_return_mean"],
        "eval_return_std": result.final["eval_return_std"],
        "wall_time_s": time.perf_counter() - start,
    }


def table(rows: list[dict]) -> str:
    keys = list(rows[0])
    lines = ["| " + " | ".join(keys) + " |", "|" + " --- |" * len(keys)]
    for row in rows:
        lines.append(
            "| " + " | ".join(f"{v:,.1f}" if isinstance(v, float) else str(v) for v in row.values()) + " |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="dream,fit", help="comma list of dream, fit, demo")
    parser.add_argument("--seeds", type=int, default=1, help="seeds for the demo benchmark")
    parser.add_argument("--out", default="benchmarks/results.json")
    args = parser.parse_args()
    torch.set_num_threads(int(os.environ.get("GENRL_THREADS", "1")))
    os.environ.setdefault("GENRL_PROGRESS", "0")
    only = set(args.only.split(","))
    results: dict = {"machine": machine(), "commit": commit(), "date": time.strftime("%Y-%m-%d")}
    print(f"{results['date']}, {results['machine']}, commit {results['commit']}\n")
    if only & {"dream", "fit"}:
        model, data = small_model(300)
        if "dream" in only:
            results["dream"] = bench_dream(model, data)
            print("DreamVecEnv throughput (default CartPole model, CPU unless a GPU is present)\n")
            print(table(results["dream"]) + "\n")
        if "fit" in only:
            results["fit"] = bench_fit(data)
            print("World-model training throughput\n")
            print(table([results["fit"]]) + "\n")
    if "demo" in only:
        results["demo"] = [bench_demo(seed) for seed in range(args.seeds)]
        print("CartPole demo loop (genrl train cartpole)\n")
        print(table(results["demo"]) + "\n")
    Path(args.out).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
