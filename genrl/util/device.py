"""Devices, as stable-baselines3 names them: ``"auto"`` is CUDA when present, else the CPU."""

from __future__ import annotations

import torch

from genrl.errors import GenrlError


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """``"auto"`` (or None) -> CUDA if available, else CPU; anything else as torch reads it."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(device)
    except (RuntimeError, TypeError):
        raise GenrlError(f"device: expected 'auto', 'cpu', 'cuda' or 'cuda:N', got {device!r}") from None


def same_device(a: torch.device | str, b: torch.device | str) -> bool:
    """Whether two devices are one (``cuda`` and ``cuda:0`` are, when GPU 0 is the current one)."""
    a, b = torch.device(a), torch.device(b)
    if a.type != b.type or a.type != "cuda":
        return a.type == b.type
    current = torch.cuda.current_device() if torch.cuda.is_available() else 0
    return (a.index if a.index is not None else current) == (b.index if b.index is not None else current)
