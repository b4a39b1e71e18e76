"""Atomic file writes and safe reads (JSON, .npz, tensors), shared by every module that touches disk."""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import zipfile
from collections.abc import Callable, Collection, Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from genrl.errors import GenrlError
from genrl.util.checks import describe, one_line


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> None:
    """Call ``write(tmp_path)`` then rename onto ``path``, so readers never see a half file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        # mkstemp makes the file private (0600); the result should get the usual permissions, so
        # that a shared run folder, model or report can be read by whoever may read the folder.
        os.chmod(tmp, 0o666 & ~_umask())
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def atomic_folder(path: str | os.PathLike, write: Callable[[Path], None], replace: bool = False) -> None:
    """Call ``write(tmp_folder)`` then rename the folder onto ``path``: never half a folder there.

    ``replace`` lets a folder already at ``path`` be swapped out (moved aside, then deleted);
    without it an existing folder is a GenrlError. A failed ``write`` leaves nothing behind.
    """
    path = Path(path)
    if path.exists() and not replace:
        raise GenrlError(f"{path} already exists: expected a new folder to write into")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    old = tmp.with_name(tmp.name[: -len(".tmp")] + ".old")
    try:
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp's folder is private (0700), as mkstemp's files
        write(tmp)
        if path.exists():
            os.replace(path, old)
        try:
            os.replace(tmp, path)
        except OSError:
            if old.exists():  # put the folder that was there back
                os.replace(old, path)
            raise
    finally:
        for leftover in (tmp, old):
            if leftover.exists():
                shutil.rmtree(leftover)


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
        data = json.loads(path.read_bytes())  # bytes: JSON's own encoding detection, not the locale's
    except (ValueError, RecursionError) as exc:  # bad JSON or UTF-8, a huge integer; nesting too deep
        raise GenrlError(
            f"expected {what} in {path}, got a file that is not valid JSON ({one_line(exc)})"
        ) from None
    if not isinstance(data, dict):
        raise GenrlError(f"expected {what} in {path}, got JSON of type {type(data).__name__}")
    return data


def check_format(meta: dict, fmt: str, version: int | tuple[int, ...], path: str | os.PathLike) -> int:
    """The file's version, if it is a ``fmt`` file this genrl reads; else a message a user can act on."""
    readable = (version,) if isinstance(version, int) else tuple(version)
    if meta.get("format") != fmt:
        raise GenrlError(f"expected a {fmt} file at {path}, got format {describe(meta.get('format'))}")
    given = meta.get("version")
    if isinstance(given, bool) or given not in readable:
        versions = " or ".join(map(str, readable))
        raise GenrlError(f"{path} is {fmt} version {describe(given)}; this genrl reads version {versions}")
    return int(given)


def write_npz(path: str | os.PathLike, arrays: dict[str, np.ndarray], compress: bool = False) -> None:
    """Write arrays as an ``.npz`` atomically (deflated if ``compress``); :func:`read_npz` reads it back."""

    def _write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            (np.savez_compressed if compress else np.savez)(f, **arrays)

    atomic_write(path, _write)


def read_npz(path: str | os.PathLike, keys: Iterable[str], what: str) -> dict[str, np.ndarray]:
    """The arrays ``keys`` of an ``.npz`` (those it has), read without pickle and without trusting headers.

    ``np.load`` allocates whatever shape an ``.npy`` header claims before reading any data, so one
    flipped digit can ask for terabytes. Here each member's header is checked against the bytes the
    member holds first, and only arrays of numbers and booleans are read: pickle is never involved.
    A damaged file is a GenrlError saying it is not ``what``.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
        with zipfile.ZipFile(path) as archive:
            members = {info.filename: info for info in archive.infolist()}
            return {
                key: _read_npy_member(archive, members[f"{key}.npy"], size)
                for key in keys
                if f"{key}.npy" in members
            }
    except MemoryError:  # not a damaged file: the checks exist so that this cannot happen
        raise
    except Exception as exc:  # zipfile and numpy's header parser raise many types on a damaged archive
        # (BadZipFile, ValueError, tokenize.TokenError, zlib.error, EOFError, NotImplementedError...)
        raise GenrlError(f"{path}: expected {what}, got an unreadable file ({one_line(exc)})") from None


class _Unreadable(Exception):
    """Why an ``.npz`` member cannot be read; becomes the reason in the GenrlError."""


def _read_npy_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, archive_size: int) -> np.ndarray:
    name = info.filename
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):  # what np.savez* write
        raise _Unreadable(f"{name} uses compression method {info.compress_type}; expected none or deflate")
    # Deflate expands at most about 1032-fold: a larger claimed size is a damaged or hostile header.
    if info.compress_size > archive_size or info.file_size > 1032 * info.compress_size + 1024:
        raise _Unreadable(f"{name} claims {info.file_size} bytes in an archive of {archive_size}")
    with archive.open(info) as f:
        version = np.lib.format.read_magic(f)
        if version not in ((1, 0), (2, 0)):
            raise _Unreadable(f"{name} is .npy version {version}; expected 1.0 or 2.0")
        read_header = (
            np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        )
        shape, fortran_order, dtype = read_header(f)
        if dtype.kind not in "biuf":  # never "O": object arrays are pickles
            raise _Unreadable(f"{name} holds dtype {dtype}; expected numbers or booleans")
        nbytes = math.prod(shape) * dtype.itemsize
        if min(shape, default=0) < 0 or nbytes > info.file_size:
            raise _Unreadable(f"{name} claims shape {shape} of {dtype} but holds only {info.file_size} bytes")
        data = f.read(nbytes)
        if len(data) != nbytes or f.read(1):  # reading to the end also checks the member's CRC
            raise _Unreadable(f"{name} does not hold exactly the data of shape {shape} of {dtype}")
    array = np.frombuffer(bytearray(data), dtype=dtype)
    return array.reshape(shape[::-1]).T if fortran_order else array.reshape(shape)


def check_tensors(
    state: Mapping[str, Any],
    expected: Mapping[str, Any],
    mismatch: str,
    any_length: Collection[str] = (),
    may_be_infinite: Collection[str] = (),
) -> None:
    """Check tensors read from a file against the ones they will be loaded into, before loading.

    Names, shapes (``any_length``: all but the first dimension) and the kind of dtype must match,
    and floating values must be finite (``may_be_infinite``: not NaN), so a loaded module is never
    half-written or silently broken. A GenrlError starts with ``mismatch`` and says what differs.
    """
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    if missing or unexpected:
        raise GenrlError(
            f"{mismatch} (missing tensors {describe(missing)}, unexpected {describe(unexpected)})"
        )
    for key, ref in expected.items():
        got = state[key]
        if key in any_length:
            shape_ok = got.dim() == ref.dim() and got.shape[1:] == ref.shape[1:]
            want = "(" + ", ".join(["N", *map(str, ref.shape[1:])]) + ")"
        else:
            shape_ok, want = got.shape == ref.shape, str(tuple(ref.shape))
        if not shape_ok:
            raise GenrlError(f"{mismatch} (expected {key} of shape {want}, got {tuple(got.shape)})")
        if _dtype_kind(got) != _dtype_kind(ref):
            raise GenrlError(f"{mismatch} (expected {key} of {_dtype_kind(ref)} dtype, got {got.dtype})")
        if got.is_floating_point() or got.is_complex():
            bad = got.isnan() if key in may_be_infinite else ~got.isfinite()
            if bad.any():
                raise GenrlError(f"{mismatch} ({key} holds NaN or infinite values)")


def _dtype_kind(tensor: Any) -> str:
    if tensor.is_floating_point():
        return "floating point"
    if tensor.is_complex():
        return "complex"
    return "bool" if str(tensor.dtype) == "torch.bool" else "integer"
