"""``kill -9`` a real ``genrl train`` process at random moments, resume it, and compare with a clean run."""

import os
import random
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import yaml

from genrl import RolloutDataset
from genrl.training.checkpoint import CheckpointStore

KILLS = 20  # the issue asks for at least 20 kill points
PRESET = {
    "id": "CartPole-v1",
    "agent": {"algorithm": "ppo", "hyperparameters": {"n_steps": 32, "batch_size": 64, "n_epochs": 2}},
    "collect": {"initial_steps": 300, "steps_per_iteration": 200},
    "world_model": {"hidden_dim": 32, "rnn_dim": 32},
    "fit": {"steps": 60, "refit_steps": 40, "batch_size": 16, "seq_len": 16, "open_loop_steps": 4},
    "dream": {"n_envs": 8, "horizon": 50},
    "train": {"iterations": 3, "dream_steps": 512, "eval_episodes": 2},
}


def _command(preset, run_dir):
    cli = "from genrl.cli import main; import sys; sys.exit(main())"
    return [sys.executable, "-c", cli, "train", str(preset), "--run-dir", str(run_dir), "--seed", "1"]


def _env():
    return {**os.environ, "OMP_NUM_THREADS": "1", "GENRL_PROGRESS": "0", "PYTHONUNBUFFERED": "1"}


def _launch(preset, run_dir):
    """Start a run and block until it prints its first phase line (imports done); return it."""
    proc = subprocess.Popen(
        _command(preset, run_dir), env=_env(), stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True
    )
    for line in proc.stderr:
        if line.startswith("genrl: "):
            break
    return proc


def _finish(proc):
    err = proc.stderr.read()
    assert proc.wait(timeout=300) == 0, err


def _episodes(run_dir):
    return RolloutDataset.load(run_dir / "data").episodes


@pytest.fixture(scope="module")
def preset(tmp_path_factory):
    path = tmp_path_factory.mktemp("preset") / "tiny.yaml"
    path.write_text(yaml.safe_dump(PRESET))
    return path


@pytest.fixture(scope="module")
def clean_run(preset, tmp_path_factory):
    """An uninterrupted run, and how long it works past its imports."""
    run_dir = tmp_path_factory.mktemp("clean")
    proc = _launch(preset, run_dir)
    start = time.monotonic()
    _finish(proc)
    return run_dir, time.monotonic() - start


@pytest.mark.slow
def test_kill_minus_nine_at_random_moments_then_resume(preset, clean_run, tmp_path):
    """Chains of kill, resume, kill...; each chain ends in a finished run equal to the clean one."""
    clean_dir, working_seconds = clean_run
    clean = _episodes(clean_dir)
    rng = random.Random(1234)
    kills, where, chains = 0, [], 0
    while kills < KILLS:
        chains += 1
        run_dir = tmp_path / f"chain{chains}"
        while True:
            proc = _launch(preset, run_dir)
            time.sleep(rng.uniform(0.0, 0.6 * working_seconds))  # most kills land before the end
            if proc.poll() is not None:  # it finished before the kill came: the chain is done
                _finish(proc)
                break
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            kills += 1
            names = CheckpointStore(run_dir / "checkpoints").names()
            # keep_checkpoints is 2; a kill between a save's rename and its pruning leaves one more.
            assert len(names) <= 3
            where.append(names[-1] if names else "no checkpoint yet")
        resumed = _episodes(run_dir)
        assert sum(len(ep.reward) for ep in resumed) == 300 + 2 * 200
        assert len(resumed) == len(clean)
        for a, b in zip(clean, resumed, strict=True):
            arrays_a, arrays_b = a.arrays(), b.arrays()
            for key in arrays_a:
                np.testing.assert_array_equal(arrays_a[key], arrays_b[key], err_msg=key)
        assert len(CheckpointStore(run_dir / "checkpoints").names()) == 2
        assert not list((run_dir / "checkpoints").glob(".tmp-*"))
        assert not list(run_dir.rglob(".*.tmp"))
    print(f"\nkill-and-resume: {kills} SIGKILLs over {chains} runs; newest checkpoint at each kill: {where}")
    assert len(set(where)) >= 4  # the kills spread over collection, fitting and training
