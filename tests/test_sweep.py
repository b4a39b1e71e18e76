"""genrl sweep: seeds and a settings grid as Ray tasks, one run folder per trial, one combined table."""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from genrl.cli import main
from genrl.errors import GenrlError
from genrl.evaluation.metrics import iqm
from genrl.training.run import load_run
from genrl.training.sweep import as_overrides, combine, parse_seeds, parse_setting, sweep

ray = pytest.importorskip("ray", reason="the genrl[ray] extra is not installed")

# The CartPole preset, shrunk to seconds per trial: one iteration on 200 random steps.
SMALL = {
    "iterations": 1,
    "initial_steps": 200,
    "fit_steps": 100,
    "dream_steps": 1024,
    "eval_episodes": 3,
    "n_envs": 16,
    "horizon": 100,
}
SMALL_FLAGS = [flag for key, value in SMALL.items() for flag in ("--set", f"{key}={value}")]


def test_seeds_and_settings_parse_as_written():
    assert parse_seeds("0-4") == [0, 1, 2, 3, 4]
    assert parse_seeds("0,3,7") == [0, 3, 7]
    assert parse_seeds("2-3,9") == [2, 3, 9]
    for bad in ("4-0", "a", "1,,2", "1,1", "-1"):
        with pytest.raises(GenrlError, match="seeds: expected"):
            parse_seeds(bad)
    assert parse_setting("fit.learning_rate=1e-3,3e-4", grid=True) == ("fit.learning_rate", [1e-3, 3e-4])
    assert parse_setting("agent=sac", grid=False) == ("agent", ["sac"])
    assert parse_setting("train.target_return=true", grid=False) == ("train.target_return", [True])
    # null turns a limit off, or leaves a setting to genrl
    assert parse_setting("dream.support=3,null", grid=True) == ("dream.support", [3, None])
    for bad in ("dream_steps", "=3", "x=", "x=[1, 2]"):
        with pytest.raises(GenrlError, match="expected"):
            parse_setting(bad, grid=True)
    assert as_overrides({"fit.steps": 5, "fit.refit_steps": 2, "iterations": 3}) == {
        "fit": {"steps": 5, "refit_steps": 2},
        "iterations": 3,
    }


def test_the_table_combines_each_setting_over_its_seeds():
    trials = [
        {
            "setting": "a",
            "status": "done",
            "final_return": r,
            "real_steps": s,
            "steps_to_target": t,
            "wall_time_s": 1.0,
        }
        for r, s, t in ((10.0, 100, None), (500.0, 300, 220), (480.0, 200, 200), (20.0, 100, None))
    ] + [{"setting": "b", "status": "failed", "error": "boom"}]
    a, b = combine(trials)
    assert a["trials"] == 4 and a["failed"] == 0
    assert a["return_median"] == np.median([10.0, 500.0, 480.0, 20.0]) == 250.0
    assert a["return_iqm"] == iqm(np.array([10.0, 500.0, 480.0, 20.0])) == 250.0
    low, high = a["return_iqm_ci95"]
    assert 10.0 <= low <= a["return_iqm"] <= high <= 500.0
    assert a["reached_target"] == 2 and a["steps_to_target_median"] == 210.0
    assert a["real_steps_median"] == 150.0
    assert b == {"setting": "b", "trials": 0, "failed": 1}


def test_sweep_runs_three_seeds_of_the_cartpole_preset_on_a_local_ray(local_ray, tmp_path, capsys):
    out = tmp_path / "sweep"
    code = main(["sweep", "cartpole", "--seeds", "0-2", "--out", str(out), "--no-progress", *SMALL_FLAGS])
    printed = capsys.readouterr().out
    assert code == 0
    record = json.loads((out / "sweep.json").read_text())
    assert [t["seed"] for t in record["trials"]] == [0, 1, 2]
    assert all(t["status"] == "done" for t in record["trials"])
    # Each trial is a whole run folder of its own, whose history the table summarises.
    returns = []
    for seed in (0, 1, 2):
        run = load_run(out / "default" / f"seed{seed}", device="cpu")
        assert run.config.seed == seed and run.config.env_id == "CartPole-v1"
        assert run.config.train.dream_steps == SMALL["dream_steps"]
        assert run.config.fit.steps == SMALL["fit_steps"]
        returns.append(run.final["eval_return_mean"])
        assert (out / "default" / f"seed{seed}" / "tb").is_dir()
    (row,) = record["table"]
    assert row["setting"] == "default" and row["trials"] == 3
    assert row["return_median"] == pytest.approx(float(np.median(returns)))
    assert row["return_iqm"] == pytest.approx(iqm(np.array(returns)))
    assert row["real_steps_median"] == SMALL["initial_steps"]
    assert "genrl sweep cartpole" in printed and f"{np.median(returns):.1f}" in printed

    # The same command again resumes: every trial is read back, none is run a second time.
    before = {p: p.stat().st_mtime_ns for p in out.glob("default/seed*/summary.json")}
    assert (
        main(["sweep", "cartpole", "--seeds", "0-2", "--out", str(out), "--no-progress", *SMALL_FLAGS]) == 0
    )
    assert {p: p.stat().st_mtime_ns for p in out.glob("default/seed*/summary.json")} == before
    assert json.loads((out / "sweep.json").read_text())["table"] == record["table"]


def test_a_grid_gives_one_row_per_setting(local_ray, tmp_path):
    small = {k: v for k, v in SMALL.items() if k != "dream_steps"}
    result = sweep(
        "cartpole", "0", {"dream_steps": [512, 1024]}, out=tmp_path / "s", settings=small, progress=False
    )
    assert [row["setting"] for row in result.table] == ["dream_steps=512", "dream_steps=1024"]
    for row, steps in zip(result.table, (512, 1024), strict=True):
        assert load_run(tmp_path / "s" / row["setting"] / "seed0").config.train.dream_steps == steps


def test_a_sweep_runs_an_env_from_a_module_beside_the_command(local_ray, tmp_path, monkeypatch):
    """`genrl sweep corridor:Corridor-v0` in the folder of corridor.py: the workers import it too."""
    examples = Path(__file__).resolve().parents[1] / "examples"
    monkeypatch.chdir(examples)
    monkeypatch.syspath_prepend(str(examples))  # as the genrl command adds its working folder
    small = {**SMALL, "target_return": None}
    result = sweep("corridor:Corridor-v0", "0", out=tmp_path / "s", settings=small, progress=False)
    [trial] = result.trials
    assert trial["status"] == "done", trial.get("error")
    assert load_run(tmp_path / "s" / "default" / "seed0").config.env_id == "corridor:Corridor-v0"


def test_bad_settings_fail_before_any_trial(local_ray, tmp_path):
    with pytest.raises(GenrlError, match="unknown training settings"):
        sweep("cartpole", "0", {"no_such_setting": [1]}, out=tmp_path / "s", progress=False)
    with pytest.raises(GenrlError, match="dream n_envs"):
        sweep("cartpole", "0", {"n_envs": [0]}, out=tmp_path / "s", progress=False)
    assert not (tmp_path / "s").exists()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def ray_cluster(tmp_path):
    """An existing Ray cluster, as `ray start --head` makes one; its address, and the env to reach it."""
    port = _free_port()
    # Ray 2.5x authenticates clients by token; one of the test's own, shared with its clients.
    env = dict(os.environ, RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(16), OMP_NUM_THREADS="1")
    ray_bin = Path(sys.executable).parent / "ray"
    head = subprocess.Popen(
        [str(ray_bin), "start", "--head", f"--port={port}", "--num-cpus=2", "--include-dashboard=false"]
        + ["--disable-usage-stats", "--block"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            if time.monotonic() > deadline or head.poll() is not None:
                head.kill()
                pytest.fail("`ray start --head` did not come up within 60 s")
            time.sleep(0.2)
    try:
        yield f"127.0.0.1:{port}", env
    finally:
        head.send_signal(signal.SIGINT)  # --block stops the cluster's processes on SIGINT
        try:
            head.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)


def test_collect_and_sweep_on_an_existing_cluster(ray_cluster, tmp_path):
    address, env = ray_cluster
    genrl = [str(Path(sys.executable).parent / "genrl")]
    data = tmp_path / "data"
    done = subprocess.run(
        genrl
        + ["collect", "CartPole-v1", "--steps", "300", "--path", str(data), "--backend", "ray"]
        + ["--workers", "2", "--address", address, "--no-progress"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "now holds" in done.stdout
    done = subprocess.run(
        genrl
        + ["sweep", "cartpole", "--seeds", "0", "--address", address, "--out", str(tmp_path / "s")]
        + ["--no-progress", *SMALL_FLAGS],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads((tmp_path / "s" / "sweep.json").read_text())["trials"][0]["status"] == "done"
