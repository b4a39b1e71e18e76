"""Helpers shared by the benchmark scripts: where and what was measured, and markdown tables.

JSON results are written with ``genrl.util.files.write_json`` (atomic), like every genrl file.

Scripts run as ``python benchmarks/NAME.py`` have this folder on ``sys.path``, so ``from common
import machine, commit, table`` works from any working directory.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parent.parent
# Environment variables that change what a benchmark measures, so they belong in its command line.
_ENV_KEYS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "CUDA_VISIBLE_DEVICES", "GENRL_THREADS")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or "unknown CPU"


def _memory_gib() -> str:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / 2**20:.0f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    return "unknown memory"


def machine() -> str:
    """Cores, CPU model, memory, GPU, torch version and its thread count, in one line."""
    gpu = f"GPU {torch.cuda.get_device_name()}" if torch.cuda.is_available() else "no GPU"
    threads = torch.get_num_threads()
    return (
        f"{os.cpu_count()} cores ({_cpu_model()}), {_memory_gib()}, {gpu}, "
        f"torch {torch.__version__} ({threads} thread{'s' if threads != 1 else ''})"
    )


def commit() -> str:
    """The checkout's short commit hash, with ``+dirty`` when tracked files differ from it."""
    try:
        head = subprocess.check_output(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, text=True, stderr=subprocess.DEVNULL
        ).strip()
        # Uncommitted edits change what was measured: say so rather than credit the commit.
        dirty = subprocess.run(
            ["git", "diff", "--quiet", "HEAD", "--"], cwd=REPO, stderr=subprocess.DEVNULL
        ).returncode
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


def command() -> str:
    """The command line that ran this process, with the thread settings it inherited."""
    env = [f"{k}={os.environ[k]}" for k in _ENV_KEYS if k in os.environ]
    python = Path(sys.executable)
    try:
        python = python.relative_to(Path.cwd())
    except ValueError:
        python = Path(python.name)
    return " ".join(env + [shlex.join([str(python), *sys.argv])])


def header() -> str:
    """One line for above a results table: date, machine, commit and command."""
    return f"{time.strftime('%Y-%m-%d %H:%M')}, {machine()}, commit {commit()}, `{command()}`"


def fmt(value: Any) -> str:
    """A number as a table cell: thousands separators, 3 significant digits below 100."""
    if isinstance(value, bool) or value is None:
        return {True: "yes", False: "no", None: "-"}[value]
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if value != value:  # NaN
            return "-"
        return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"
    return str(value)


def table(rows: Sequence[Mapping[str, Any]], columns: Mapping[str, str] | None = None) -> str:
    """Rows of dicts as a markdown table; ``columns`` picks and names the keys (default: all, as is)."""
    if not rows:
        return "(no rows)"
    columns = columns or {k: k for k in rows[0]}
    lines = ["| " + " | ".join(columns.values()) + " |", "|" + " --- |" * len(columns)]
    lines += ["| " + " | ".join(fmt(row.get(k)) for k in columns) + " |" for row in rows]
    return "\n".join(lines)
