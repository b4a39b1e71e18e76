"""Ray collection beside the local path: steps/s, episode counts, and what starting Ray costs.

A simulator that costs CPU per step is where workers pay: each env step here busy-waits
``--step-ms`` (default 2 ms, a cheap physics engine) on top of Pendulum-v1 (every episode 200
steps, so the local path's episode count is known). Plain CartPole (about 20 µs a step) shows
Ray's overhead where workers cannot pay. Ray starts once, before the timings; its start-up time
is reported on its own.

    OMP_NUM_THREADS=1 python benchmarks/distributed.py [--steps 4000] [--step-ms 2]
"""

from __future__ import annotations

import argparse
import functools
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import torch
from common import REPO, header, table

import genrl
from genrl.util.files import write_json

OUT = REPO / "benchmarks" / "results" / "distributed"


class CostlyStep(gym.Wrapper):
    """An env whose every step also burns ``ms`` milliseconds of CPU, as a simulator would."""

    def __init__(self, env_id: str, ms: float):
        super().__init__(gym.make(env_id))
        self.seconds = ms / 1000

    def step(self, action):
        end = time.perf_counter() + self.seconds
        while time.perf_counter() < end:
            pass
        return self.env.step(action)


def measure(env_id: str, ms: float, steps: int, backend: str, workers: int | None) -> dict[str, Any]:
    make = functools.partial(CostlyStep, env_id, ms)
    kwargs = {"backend": backend, "workers": workers} if backend == "ray" else {}
    start = time.perf_counter()
    data = genrl.collect(make, steps, seed=0, progress=False, **kwargs)
    seconds = time.perf_counter() - start
    return {
        "env": env_id,
        "step_ms": ms,
        "backend": backend if backend == "local" else f"ray x{workers}",
        "steps": data.num_steps,
        "episodes": len(data),
        "seconds": seconds,
        "steps_per_s": data.num_steps / seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=4000)
    parser.add_argument("--step-ms", type=float, default=2.0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    import ray

    start = time.perf_counter()
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    ray_start_s = time.perf_counter() - start
    rows = []
    for env_id, ms in (("Pendulum-v1", args.step_ms), ("CartPole-v1", 0.0)):
        for backend, workers in (("local", None), ("ray", 1), ("ray", 2)):
            rows.append(measure(env_id, ms, args.steps, backend, workers))
        local = next(r for r in rows if r["env"] == env_id and r["backend"] == "local")
        for row in rows:
            if row["env"] == env_id:
                row["speedup"] = row["steps_per_s"] / local["steps_per_s"]
    ray.shutdown()
    record = {"header": header(), "ray_start_s": ray_start_s, "rows": rows, "args": vars(args)}
    write_json(OUT / f"{time.strftime('%Y-%m-%d')}-steps{args.steps}.json", record)
    print(header())
    print(f"Ray start-up (not in the timings): {ray_start_s:.1f} s\n")
    columns = {
        "env": "env",
        "step_ms": "extra CPU per step (ms)",
        "backend": "backend",
        "steps": "steps",
        "episodes": "episodes",
        "seconds": "seconds",
        "steps_per_s": "steps/s",
        "speedup": "vs local",
    }
    print(table(rows, columns))


if __name__ == "__main__":
    Path(OUT).mkdir(parents=True, exist_ok=True)
    main()
