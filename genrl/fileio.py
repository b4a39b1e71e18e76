"""Atomic file writes and safe JSON reads, shared by every module that touches disk."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from genrl.errors import GenrlError


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> None:
    """Call ``write(tmp_path)`` then rename onto ``path``, so readers never see a half file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_json(path: str | os.PathLike, data: Any) -> None:
    def _write(tmp: str) -> None:
        with open(tmp, "w") as f:
            json.dump(data, f, indent=2)

    atomic_write(path, _write)


def read_json(path: str | os.PathLike, what: str) -> dict:
    """Read a JSON object; a missing or garbled file is a GenrlError naming ``what`` it should be."""
    path = Path(path)
    if not path.is_file():
        raise GenrlError(f"expected {what} at {path}, found no such file")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise GenrlError(f"expected {what} in {path}, got a file that is not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise GenrlError(f"expected {what} in {path}, got JSON of type {type(data).__name__}")
    return data


def check_format(meta: dict, fmt: str, version: int, path: str | os.PathLike) -> None:
    """Reject files of another kind or a newer version with a message a user can act on."""
    if meta.get("format") != fmt:
        raise GenrlError(f"expected a {fmt} file at {path}, got format {meta.get('format')!r}")
    if meta.get("version") != version:
        raise GenrlError(
            f"{path} is {fmt} version {meta.get('version')!r}; this genrl reads version {version}"
        )
