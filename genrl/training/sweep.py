"""sweep(): runs of the loop over seeds and a grid of settings, as Ray tasks, and one combined table.

Each trial is one :func:`~genrl.train_in_imagination` run in its own run folder::

    OUT/sweep.json                     the trials and the combined table (rewritten as trials end)
    OUT/<setting>/seed<N>/             a normal run folder: `genrl eval` and TensorBoard read it

``<setting>`` names the grid values (``dream_steps=2000,fit.steps=100``), or ``default``. Trials
are plain Ray tasks of one CPU each rather than Ray Tune trials: a trial is a whole run with its
own checkpoints, so Tune's schedulers and its results store would add nothing but a dependency.
A re-run of the same sweep resumes: finished trials are read back, killed ones continue from
their last checkpoint.

The table has, per setting, the median, the interquartile mean and its 95% bootstrap interval of
the final real return, the median real steps, and with a ``target_return`` the trials that
reached it and the median real steps they needed.
"""

from __future__ import annotations

import itertools
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from genrl.data.ray_collect import init_ray
from genrl.errors import GenrlError
from genrl.evaluation.metrics import bootstrap_ci, iqm
from genrl.training.config import resolve_config
from genrl.util.checks import check_int, describe, one_line
from genrl.util.files import read_json, write_json
from genrl.util.progress import progress_bar

FORMAT = "genrl.sweep"
VERSION = 1


@dataclass
class SweepResult:
    """A finished sweep: its folder, one record per trial, and one table row per setting."""

    out: Path
    trials: list[dict[str, Any]]
    table: list[dict[str, Any]]


def parse_seeds(text: str) -> list[int]:
    """``"0-4"`` -> [0, 1, 2, 3, 4]; ``"0,3,7"`` and ``"5"`` as written."""
    seeds: list[int] = []
    for part in str(text).split(","):
        match = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
        if not match or (match[2] is not None and int(match[2]) < int(match[1])):
            raise GenrlError(f"seeds: expected a range like 0-4 or a list like 0,3,7, got {text!r}")
        low = int(match[1])
        seeds.extend(range(low, int(match[2] or low) + 1))
    if len(set(seeds)) != len(seeds):
        raise GenrlError(f"seeds: expected each seed once, got {text!r}")
    return seeds


def parse_setting(text: str, grid: bool) -> tuple[str, list[Any]]:
    """``"key=v1,v2"`` -> (key, [v1, v2]) with YAML scalars (``1e-3``, ``true``, ``ppo``)."""
    key, sep, values = str(text).partition("=")
    expected = "key=v1,v2,..." if grid else "key=value"
    if not sep or not key.strip() or not values.strip():
        raise GenrlError(f"expected a setting as {expected}, got {text!r}")
    parsed = [_scalar(v) for v in (values.split(",") if grid else [values])]
    for value in parsed:
        # null is a value: it turns a limit off (dream.support=null) or leaves a setting to genrl.
        if isinstance(value, (dict, list)):
            raise GenrlError(f"setting {key}: expected numbers, booleans, words or null, got {values!r}")
    return key.strip(), parsed


def _scalar(text: str) -> Any:
    """A YAML scalar, with ``1e-3`` a number (YAML 1.1 reads it as text)."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        raise GenrlError(
            f"expected a number, a boolean or a word as a setting's value, got {text!r}"
        ) from None
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def as_overrides(settings: dict[str, Any]) -> dict[str, Any]:
    """Dotted names (``fit.steps``) as sections, flat names (``iterations``) as they are."""
    out: dict[str, Any] = {}
    for key, value in settings.items():
        section, dot, name = key.partition(".")
        if dot:
            out.setdefault(section, {})[name] = value
        else:
            out[key] = value
    return out


def sweep(
    env: str,
    seeds: list[int] | str,
    grid: dict[str, list[Any]] | None = None,
    *,
    out: str | os.PathLike = "runs/sweep",
    settings: dict[str, Any] | None = None,
    address: str | None = None,
    workers: int | None = None,
    progress: bool = True,
) -> SweepResult:
    """Run ``train_in_imagination(env)`` for every seed and every combination of ``grid``'s values.

    :param env: env preset name, preset file or Gymnasium id, as for ``train_in_imagination``
    :param seeds: a list of seeds, or a range as text (``"0-4"``)
    :param grid: settings to vary, by name (``{"dream_steps": [2000, 4000], "fit.steps": [100]}``)
    :param settings: settings every trial shares, by name (the preset's, changed)
    :param address: an existing Ray cluster (default: the running or a new local Ray)
    :param workers: trials at a time on a new local Ray (default: the CPUs Ray sees)
    """
    seeds = parse_seeds(seeds) if isinstance(seeds, str) else [check_int(s, "seed", 0) for s in seeds]
    if not seeds:
        raise GenrlError("sweep: expected at least one seed, got none")
    grid = dict(grid or {})
    for key, values in grid.items():
        if not isinstance(values, (list, tuple)) or not values:
            raise GenrlError(f"sweep grid {key}: expected a non-empty list of values, got {describe(values)}")
    settings = dict(settings or {})
    combos = [dict(zip(grid, values, strict=True)) for values in itertools.product(*grid.values())]
    for combo in combos:  # every setting checked here, before a single trial starts
        resolve_config(env, seed=seeds[0], **as_overrides({**settings, **combo}))
    out = Path(out)
    trials = _trials(combos, seeds, out)
    ray = init_ray(workers, address)
    task = ray.remote(num_cpus=1, max_retries=0)(run_trial)
    # A user's env module beside the command (`genrl sweep my_env:MyEnv-v0`) must import on the
    # workers too, which do not start in the driver's folder's import path.
    here = os.getcwd()
    pending = {
        task.remote(env, t["seed"], as_overrides({**settings, **t["grid"]}), t["run_dir"], here): t
        for t in trials
    }
    with progress_bar(total=len(trials), desc="sweep", unit="trial", disable=not progress) as bar:
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            trial = pending.pop(ready[0])
            try:
                trial.update(ray.get(ready[0]))
            except ray.exceptions.RayError as exc:
                cause = getattr(exc, "cause", None) or exc
                trial.update(status="failed", error=one_line(cause))
            bar.update(1)
            _write(out, env, seeds, grid, settings, trials)
    return SweepResult(out, trials, _write(out, env, seeds, grid, settings, trials))


def _trials(combos: list[dict[str, Any]], seeds: list[int], out: Path) -> list[dict[str, Any]]:
    """One record per (setting, seed), each with its own run folder under ``out``."""
    return [
        {
            "setting": _label(combo),
            "grid": combo,
            "seed": seed,
            "run_dir": str(out / _label(combo) / f"seed{seed}"),
        }
        for combo in combos
        for seed in seeds
    ]


def run_trial(
    env: str, seed: int, overrides: dict[str, Any], run_dir: str, import_dir: str | None = None
) -> dict[str, Any]:
    """One trial, on a Ray worker: a run of the loop (resumed if its folder holds one), summarised.

    ``import_dir`` (the driver's working folder) joins the import path, as it does for the
    ``genrl`` command, where it exists on the worker's machine.
    """
    import sys

    import torch

    if import_dir and os.path.isdir(import_dir) and import_dir not in sys.path:
        sys.path.insert(0, import_dir)

    from genrl.training.loop import train_in_imagination
    from genrl.training.run import read_config

    torch.set_num_threads(1)  # one CPU per trial, as the task asked Ray for
    summary = Path(run_dir) / "summary.json"
    if summary.is_file():
        history = read_json(summary, "a finished genrl run (summary.json)")["history"]
        target = read_config(run_dir).train.target_return
    else:
        result = train_in_imagination(env, seed=seed, run_dir=run_dir, progress=False, **overrides)
        history, target = result.history, result.config.train.target_return
    return summarise(history, target)


def summarise(history: list[dict[str, Any]], target: float | None) -> dict[str, Any]:
    """A trial's figures: final real and dream return, real steps, and the steps to ``target``."""
    final = history[-1]
    reached = [
        row["real_steps"] for row in history if target is not None and row["eval_return_mean"] >= target
    ]
    return {
        "status": "done",
        "final_return": float(final["eval_return_mean"]),
        "dream_return": float(final["dream_return_mean"]),
        "real_steps": int(final["real_steps"]),
        "steps_to_target": int(reached[0]) if reached else None,
        "target_return": target,
        "wall_time_s": float(final["wall_time_s"]),
    }


def combine(trials: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per setting over its finished trials (the order of the grid)."""
    rows = []
    for setting in dict.fromkeys(t["setting"] for t in trials):
        done = [t for t in trials if t["setting"] == setting and t.get("status") == "done"]
        row: dict[str, Any] = {
            "setting": setting,
            "trials": len(done),
            "failed": sum(t.get("status") == "failed" for t in trials if t["setting"] == setting),
        }
        if done:
            returns = np.array([t["final_return"] for t in done])
            low, high = bootstrap_ci(returns)
            reached = [t["steps_to_target"] for t in done if t["steps_to_target"] is not None]
            row.update(
                return_median=float(np.median(returns)),
                return_iqm=iqm(returns),
                return_iqm_ci95=[low, high],
                real_steps_median=float(np.median([t["real_steps"] for t in done])),
                reached_target=len(reached),
                steps_to_target_median=float(np.median(reached)) if reached else None,
                wall_time_s_median=float(np.median([t["wall_time_s"] for t in done])),
            )
        rows.append(row)
    return rows


def _label(combo: dict[str, Any]) -> str:
    """A folder name for one combination of grid values."""
    if not combo:
        return "default"
    text = ",".join(f"{k}={v}" for k, v in combo.items())
    return re.sub(r"[^A-Za-z0-9._=,+-]", "_", text)


def _write(out: Path, env: str, seeds: list[int], grid: dict, settings: dict, trials: list) -> list[dict]:
    table = combine(trials)
    record = {
        "format": FORMAT,
        "version": VERSION,
        "env": env,
        "seeds": seeds,
        "grid": grid,
        "settings": settings,
        "trials": trials,
        "table": table,
    }
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "sweep.json", record)
    return table
