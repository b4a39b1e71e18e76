"""The README's "Your own environment" section works as written: its file, its commands, in a
fresh folder, with the installed `genrl` command."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
GENRL = Path(sys.executable).with_name("genrl")


def _section() -> str:
    text = README.read_text()
    start = text.index("## Your own environment")
    return text[start : text.index("\n## ", start + 1)]


def test_the_readme_file_is_the_example_file():
    [code] = re.findall(r"```python\n(.*?)```", _section(), re.S)
    assert code == (README.parent / "examples" / "corridor.py").read_text()


@pytest.mark.slow
def test_the_custom_env_walkthrough_runs_as_written(tmp_path):
    section = _section()
    [code] = re.findall(r"```python\n(.*?)```", section, re.S)
    [commands] = re.findall(r"```bash\n(.*?)```", section, re.S)
    (tmp_path / "corridor.py").write_text(code)
    outputs = []
    for line in commands.strip().splitlines():
        argv = shlex.split(line)
        assert argv[0] == "genrl"
        done = subprocess.run(
            [str(GENRL), *argv[1:]], cwd=tmp_path, capture_output=True, text=True, timeout=900
        )
        assert done.returncode == 0, done.stderr[-2000:]
        outputs.append(done.stdout)
    # The run learned: it stopped at the env's own threshold, which random walks miss by far.
    summary = json.loads((tmp_path / "runs" / "corridor" / "summary.json").read_text())
    config, history = summary["config"], summary["history"]
    assert config["env_id"] == "corridor:Corridor-v0" and config["agent"] == "ppo"
    assert config["dream"]["horizon"] == 50 and config["train"]["target_return"] == -6.0
    assert history[-1]["eval_return_mean"] >= -6.0 > -50  # a random policy: about -50.7
    assert "open-loop" in outputs[1].lower() or "real return" in outputs[1].lower()
