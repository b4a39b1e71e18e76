"""Endurance: a million imagined steps in one DreamVecEnv without resident memory growing.

A dream step allocates fresh tensors, arrays and one info dict per env; all of it must be freed.
A leak of one observation batch per step (1024 x 4 float32 = 16 KiB) would add about 15 MiB over
the run below, and a leak of one small object per env step (about 100 bytes) about 95 MiB. The
bound, 8 MiB, is below both but well above the noise of the allocators (a few hundred KiB here).
"""

from __future__ import annotations

import gc
import os
import time
from pathlib import Path

import numpy as np
import pytest

from genrl import DreamVecEnv

N_ENVS = 1024
STEPS = 977  # 1024 * 977 = 1,000,448 imagined steps
WARMUP = 50
MAX_GROWTH = 8 * 2**20

STATM = Path("/proc/self/statm")


def resident_bytes() -> int:
    """Resident set size of this process (Linux), without psutil."""
    return int(STATM.read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.slow
@pytest.mark.skipif(not STATM.exists(), reason="reads resident memory from /proc (Linux)")
def test_a_million_dream_steps_keep_memory_flat(cartpole_model, cartpole_dataset):
    venv = DreamVecEnv(cartpole_model, N_ENVS, cartpole_dataset, horizon=200, device="cpu", seed=0)
    rng = np.random.default_rng(0)
    venv.reset()
    episodes = 0

    def run(steps: int) -> None:
        nonlocal episodes
        for _ in range(steps):
            _, _, done, _ = venv.step(rng.integers(0, 2, N_ENVS))
            episodes += int(done.sum())

    run(WARMUP)
    gc.collect()
    warm = peak = resident_bytes()
    start = time.perf_counter()
    for _ in range((STEPS - WARMUP) // 50):
        run(50)
        peak = max(peak, resident_bytes())
    run((STEPS - WARMUP) % 50)
    elapsed = time.perf_counter() - start
    gc.collect()
    end = resident_bytes()
    peak = max(peak, end)

    mib = 2**20
    print(
        f"\n{N_ENVS * STEPS:,} dream steps ({episodes:,} episodes ended): resident memory "
        f"{warm / mib:.1f} MiB after {WARMUP} warm-up steps, {end / mib:.1f} MiB at the end "
        f"(peak {peak / mib:.1f} MiB, growth {(end - warm) / mib:+.2f} MiB); "
        f"{N_ENVS * (STEPS - WARMUP) / elapsed:,.0f} steps/s"
    )
    assert episodes > N_ENVS, "dreams ended and were restarted many times: the reset path ran too"
    assert end - warm < MAX_GROWTH, f"resident memory grew by {(end - warm) / mib:.1f} MiB"
    assert peak - warm < MAX_GROWTH, f"resident memory peaked {(peak - warm) / mib:.1f} MiB above warm-up"
