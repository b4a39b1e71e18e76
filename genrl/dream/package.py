"""Environment packages: a world model with its start states, dream settings and card, in one folder.

Version 1::

    package.json   {"format": "genrl.env-package", "version": 1, "settings": {
                        "horizon": int, "temperature": float, "obs_mode": "decoded" | "latent",
                        "reward": <a reward override, genrl.dream.reward>,
                        "start": how the start states were made ("real", "perturbed", "prior",
                                 "adversarial"), "source_env": an env id or null,
                        "summary": the card's one line}}
    model/         the world model (WorldModel.save)
    starts.npz     starts: float32 (N, *obs_shape), the observations dreams start from
    card.json      {"format": "genrl.env-card", "version": 1, ...}: where the model came from, the
                   settings and its evaluation figures (written by genrl.guidance.synthesis)
    CARD.md        the card for people

A package is written into a temporary folder beside its target and renamed into place, so a crash
never leaves half of one. Reading it executes no code: JSON, safetensors and ``.npz`` only.
``DreamEnv(model=DIR)``, ``DreamVecEnv(model=DIR)`` and ``gymnasium.make("genrl/Dream-v0",
model=DIR)`` open a package: its settings are their defaults, and arguments given still win.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from genrl.dream.batch import as_model, check_starts
from genrl.dream.reward import LEARNED, check_reward
from genrl.errors import GenrlError
from genrl.model.world_model import WorldModel
from genrl.util.checks import check_choice, check_float, check_int, describe, from_mapping, set_field
from genrl.util.files import (
    atomic_folder,
    atomic_write,
    check_format,
    read_json,
    read_npz,
    write_json,
    write_npz,
)

FORMAT = "genrl.env-package"
VERSION = 1
CARD_FORMAT = "genrl.env-card"
CARD_VERSION = 1
START_MODES = ("real", "perturbed", "prior", "adversarial")
# What a dream uses when neither the caller nor a package says otherwise.
DREAM_DEFAULTS: dict[str, Any] = {"horizon": 500, "temperature": 1.0, "obs_mode": "decoded", "reward": None}


@dataclass(frozen=True)
class PackageSettings:
    """The dream settings a package opens with, and what it says about itself."""

    horizon: int = 500
    temperature: float = 1.0
    obs_mode: str = "decoded"
    reward: dict[str, Any] = field(default_factory=lambda: dict(LEARNED))
    start: str = "real"  # how starts.npz was made; dreams draw from it whatever this says
    source_env: str | None = None
    summary: str = ""

    def __post_init__(self) -> None:
        set_field(self, "horizon", check_int(self.horizon, "package horizon", 1))
        set_field(self, "temperature", check_float(self.temperature, "package temperature", 0.0))
        set_field(self, "obs_mode", check_choice(self.obs_mode, "package obs_mode", ("decoded", "latent")))
        set_field(self, "reward", check_reward(self.reward))
        set_field(self, "start", check_choice(self.start, "package start", START_MODES))
        if self.source_env is not None and not isinstance(self.source_env, str):
            raise GenrlError(f"package source_env: expected an id or null, got {describe(self.source_env)}")
        if not isinstance(self.summary, str) or "\n" in self.summary:
            raise GenrlError(f"package summary: expected one line of text, got {describe(self.summary)}")


@dataclass
class EnvPackage:
    """A package read back: its model (on the device asked for), start states, settings and card."""

    path: Path
    model: WorldModel
    starts: np.ndarray
    settings: PackageSettings
    card: dict[str, Any]

    @property
    def summary(self) -> str:
        return self.settings.summary


def is_package(path: Any) -> bool:
    """Whether ``path`` is the folder of an environment package (it holds a package.json)."""
    return isinstance(path, (str, os.PathLike)) and (Path(path) / "package.json").is_file()


def write_package(
    out: str | os.PathLike,
    model: WorldModel,
    starts: np.ndarray,
    settings: PackageSettings,
    card: dict[str, Any],
    markdown: str,
    overwrite: bool = False,
) -> Path:
    """Write a package folder atomically; ``overwrite`` replaces a package (only) already at ``out``."""
    out = Path(out)
    if out.exists() and not (overwrite and (is_package(out) or _empty_folder(out))):
        hint = "" if overwrite else " (or overwrite=True to replace a package)"
        raise GenrlError(f"{out} already exists: expected a new folder for the package{hint}")
    starts = check_starts(starts, model).cpu().numpy()
    check_reward(settings.reward, starts[0].size)

    def write(folder: Path) -> None:
        model.save(folder / "model")
        write_npz(folder / "starts.npz", {"starts": starts})
        write_json(folder / "card.json", {"format": CARD_FORMAT, "version": CARD_VERSION, **card})
        atomic_write(folder / "CARD.md", lambda tmp: Path(tmp).write_text(markdown, encoding="utf-8"))
        # Last: a folder with a package.json is a package, so it goes in when everything else is there.
        meta = {"format": FORMAT, "version": VERSION, "settings": dataclasses.asdict(settings)}
        write_json(folder / "package.json", meta)

    atomic_folder(out, write, replace=overwrite)
    return out


def load_package(path: str | os.PathLike, device: str | torch.device = "auto") -> EnvPackage:
    """Read a package folder, its model onto ``device``; a damaged or newer one is a one-line GenrlError."""
    path = Path(path)
    meta_file = path / "package.json"
    meta = read_json(meta_file, "a genrl environment package (package.json)")
    check_format(meta, FORMAT, VERSION, meta_file)
    try:
        settings = from_mapping(PackageSettings, meta.get("settings"), "package settings")
    except GenrlError as exc:
        raise GenrlError(f"{meta_file}: {exc}") from None
    card_file = path / "card.json"
    card = read_json(card_file, "a genrl environment card (card.json)")
    check_format(card, CARD_FORMAT, CARD_VERSION, card_file)
    model = WorldModel.load(path / "model", device=device)
    starts_file = path / "starts.npz"
    arrays = read_npz(starts_file, ["starts"], "the start states of a genrl environment package")
    if "starts" not in arrays:
        raise GenrlError(f"{starts_file}: expected an array named starts, found none")
    try:
        starts = check_starts(arrays["starts"], model).cpu().numpy()
        check_reward(settings.reward, starts[0].size)
    except GenrlError as exc:
        raise GenrlError(f"{path}: {exc}") from None
    return EnvPackage(path, model, starts, settings, card)


@dataclass
class DreamSource:
    """What a dream env is built from: the model, its settings and, for a package, its card."""

    model: WorldModel
    settings: dict[str, Any]  # horizon, temperature, obs_mode, reward, starts: DreamBatch's keywords
    card: dict[str, Any] | None = None
    summary: str | None = None  # the card's one line


def open_dream(
    model: WorldModel | str | os.PathLike,
    device: str | torch.device | None,
    dataset: Any | None,
    **given: Any,
) -> DreamSource:
    """The model a dream env steps and its settings: those given (not None), else a package's, else
    the defaults. A package's start states apply unless a dataset or other starts are given."""
    defaults = {**DREAM_DEFAULTS, "starts": None}
    if not is_package(model):
        source = DreamSource(as_model(model, device), {})
    else:
        package = load_package(model, device or "auto")
        s = package.settings
        defaults.update(horizon=s.horizon, temperature=s.temperature, obs_mode=s.obs_mode, reward=s.reward)
        defaults["starts"] = package.starts if dataset is None else None
        source = DreamSource(package.model, {}, package.card, package.summary)
    source.settings = {k: (defaults[k] if v is None else v) for k, v in given.items()}
    return source


def _empty_folder(path: Path) -> bool:
    return path.is_dir() and not any(path.iterdir())
