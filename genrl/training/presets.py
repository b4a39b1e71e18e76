"""YAML presets: ``envs/NAME.yaml`` (an environment's recipe) and ``agents/NAME.yaml`` (an SB3 agent)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml

from genrl.errors import GenrlError
from genrl.util.checks import one_line

Kind = Literal["envs", "agents"]
_PACKAGE = Path(__file__).resolve().parents[1]  # genrl/
_LABEL = {"envs": "env", "agents": "agent"}


def preset_dirs(kind: Kind) -> list[Path]:
    """Where presets live: inside an installed wheel, or at the top of a source checkout."""
    return [p for p in (_PACKAGE / "preset_files" / kind, _PACKAGE.parent / kind) if p.is_dir()]


def available(kind: Kind) -> list[str]:
    return sorted({p.stem for d in preset_dirs(kind) for p in d.glob("*.yaml")})


def load_preset(kind: Kind, name: str | Path) -> dict[str, Any]:
    """Read a preset by name (``cartpole``) or by path to a YAML file."""
    path = Path(name)
    if path.suffix not in (".yaml", ".yml"):
        found = [d / f"{name}.yaml" for d in preset_dirs(kind) if (d / f"{name}.yaml").is_file()]
        if not found:
            raise GenrlError(
                f"unknown {_LABEL[kind]} preset {str(name)!r}: expected one of {available(kind)}"
            )
        path = found[0]
    if not path.is_file():
        raise GenrlError(f"expected an {_LABEL[kind]} preset file at {path}, found no such file")
    try:
        # Bytes, so YAML detects the encoding itself (UTF-8/16) rather than the locale deciding.
        data = yaml.safe_load(path.read_bytes())
    except Exception as exc:  # besides YAMLError: ValueError (a date like 2001-13-45), RecursionError...
        raise GenrlError(f"{path}: expected valid YAML ({one_line(exc)})") from None
    if not isinstance(data, dict):
        raise GenrlError(f"{path}: expected a mapping of settings, got {type(data).__name__}")
    return data


def find_env_preset(env_id: str) -> dict[str, Any] | None:
    """The env preset whose ``id`` is ``env_id``, if there is one."""
    for name in available("envs"):
        preset = load_preset("envs", name)
        if preset.get("id") == env_id:
            return preset
    return None
