"""The world model's file format: a folder with ``model.json`` and ``weights.safetensors``.

Version 7 (genrl 0.3) adds image models: ``config.image_size``, ``config.conv_channels`` and
``config.likelihood`` (a convolutional VAE's working resolution, width and pixel likelihood), and
``start_states`` in the observation space's dtype (uint8 frames). Older files hold vector models,
for which these settings mean nothing, and load with the defaults.

Version 6 (genrl 0.3) adds ``config.terminal_reward`` (the reward of a step that ends the episode
has its own head, ``dynamics.<k>.terminal_reward_head.*``); older files load with ``False``.

Version 5 (genrl 0.3) adds ``config.transition_heads`` (the reward and termination heads see the
latent before a step as well as after it); older files load with ``False``, as they were trained.

Version 4 (genrl 0.3) holds K dynamics members (``config.ensemble_size``): their tensors are
``dynamics.<k>.*``, and ``disagreement_scale`` their mean disagreement on the fitted data. Older
files hold one, ``dynamics.*``, which loads as member 0.

Version 3 (genrl 0.3) adds the support of the data, set by every fit: ``support_low``,
``support_high``, ``support_scale`` (per latent dimension) and ``reward_low``, ``reward_high``.

Version 2 (genrl 0.2)::

    model.json          {"format": "genrl.world_model", "version": 2, "seed": int,
                         "config": {WorldModelConfig}, "fit": {FitConfig},
                         "observation_space": <space JSON>, "action_space": <space JSON>}
    weights.safetensors the state dict: encoder.*, decoder.*, dynamics.*, and the buffers
                        (normalisation, start_states, trained_steps, trained_episodes, obs bounds)

Version 1 (genrl 0.1.0) kept one flat config (sizes, fit settings and seed together) and the
dynamics' tensors at the top level (``rnn.*``, ``mdn.*``...); it loads unchanged. Loading reads
JSON and safetensors only: no code in the folder is executed.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from genrl.errors import GenrlError
from genrl.model.config import (
    BEFORE_V3_FIT,
    BEFORE_V3_MODEL,
    BEFORE_V5_MODEL,
    BEFORE_V6_MODEL,
    FitConfig,
    WorldModelConfig,
)
from genrl.model.world_model import WorldModel
from genrl.util.checks import check_int, describe, from_mapping, one_line
from genrl.util.device import resolve_device
from genrl.util.files import atomic_write, check_format, check_tensors, read_json, write_json
from genrl.util.spaces import space_from_json, space_to_json

FORMAT = "genrl.world_model"
VERSION = 7
READS = (1, 2, 3, 4, 5, 6, 7)
# Version 3 added the data's support; older files load with none (unbounded) until a refit.
SUPPORT = ("support_low", "support_high", "support_scale", "reward_low", "reward_high")
# Version 1 kept the dynamics' modules at the top level of the state dict.
V1_DYNAMICS = ("rnn_in.", "rnn.", "mdn.", "reward_head.", "termination_head.")


def save_model(model: WorldModel, path: str | os.PathLike) -> None:
    """Write ``model.json`` (format, settings, spaces) and ``weights.safetensors`` into a folder."""
    path = Path(path)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    atomic_write(path / "weights.safetensors", lambda tmp: save_file(state, tmp))
    write_json(
        path / "model.json",
        {
            "format": FORMAT,
            "version": VERSION,
            "seed": model.seed,
            "config": dataclasses.asdict(model.config),
            "fit": dataclasses.asdict(model.fit_config),
            "observation_space": space_to_json(model.observation_space),
            "action_space": space_to_json(model.action_space),
        },
    )


def load_model(path: str | os.PathLike, device: str | torch.device = "auto") -> WorldModel:
    """Load a saved model folder onto ``device`` (``"auto"``: CUDA when present).

    Nothing is allocated for the model before its weights file has been checked against it:
    a size in model.json that the weights do not back (a flipped digit) is an error, not gigabytes.
    """
    path = Path(path)
    meta_file = path / "model.json"
    meta = read_json(meta_file, "a genrl world model (model.json)")
    version = check_format(meta, FORMAT, READS, meta_file)
    try:
        args = _model_args(meta, version)
    except GenrlError as exc:
        raise GenrlError(f"{meta_file}: {exc}") from None
    state = _read_weights(path / "weights.safetensors", version)
    try:
        with torch.device("meta"):  # the described model's tensor shapes, without allocating them
            expected = WorldModel(*args[:2], args[2], args[3], seed=args[4]).state_dict()
    except (RuntimeError, OverflowError) as exc:  # sizes past what torch can even describe
        raise GenrlError(f"{meta_file}: expected a model of a possible size ({one_line(exc)})") from None
    if version < 3:
        fill = {"support_scale": 1.0, "support_high": torch.inf, "reward_high": torch.inf}
        for key in SUPPORT:
            state.setdefault(key, torch.full(expected[key].shape, fill.get(key, -torch.inf)))
    if version < 4:  # one member: nothing to disagree
        state.setdefault("disagreement_scale", torch.tensor(1.0))
    check_tensors(
        state,
        expected,
        f"{path / 'weights.safetensors'}: weights do not match the model described in model.json",
        any_length=("start_states", "trained_episodes"),
        # The bounds of an unbounded observation space, and a support no fit has set.
        may_be_infinite=("_obs_low", "_obs_high", "support_low", "support_high", "reward_low", "reward_high"),
    )
    model = WorldModel(*args[:2], args[2], args[3], seed=args[4])
    # Their lengths vary, so they cannot load in place.
    model.start_states = state["start_states"].to(model.start_states.dtype)
    model.trained_episodes = state["trained_episodes"]
    model.load_state_dict(state, strict=True)
    return model.to(resolve_device(device)).eval()


def _model_args(meta: dict[str, Any], version: int) -> tuple:
    """(observation space, action space, config, fit, seed) as model.json of ``version`` gives them."""
    obs_space = space_from_json(meta.get("observation_space"))
    act_space = space_from_json(meta.get("action_space"))
    config = meta.get("config")
    if not isinstance(config, dict):
        raise GenrlError(f"expected a config object, got {describe(config)}")
    if version == 1:  # one flat mapping of sizes, fit settings and seed
        seed = check_int(config.get("seed", 0), "seed", 0, 2**63 - 1)
        flat = {
            **BEFORE_V3_MODEL,
            **BEFORE_V5_MODEL,
            **BEFORE_V6_MODEL,
            **BEFORE_V3_FIT,
            **{k: v for k, v in config.items() if k != "seed"},
        }
        return obs_space, act_space, flat, None, seed
    fit, sizes = meta.get("fit"), config
    if version == 2 and isinstance(fit, dict):  # what that version's defaults were
        fit, sizes = {**BEFORE_V3_FIT, **fit}, {**BEFORE_V3_MODEL, **config}
    if version < 5:
        sizes = {**BEFORE_V5_MODEL, **sizes}
    if version < 6:
        sizes = {**BEFORE_V6_MODEL, **sizes}
    fit = from_mapping(FitConfig, fit, "fit settings")
    sizes = from_mapping(WorldModelConfig, sizes, "world model settings")
    return obs_space, act_space, sizes, fit, check_int(meta.get("seed"), "seed", 0, 2**63 - 1)


def _read_weights(weights: Path, version: int) -> dict[str, torch.Tensor]:
    if not weights.is_file():
        raise GenrlError(f"expected model weights at {weights}, found no such file")
    try:
        state = load_file(str(weights))  # safetensors checks its header against the file's size
    except (SafetensorError, OSError, ValueError) as exc:
        raise GenrlError(
            f"{weights}: expected a safetensors file, got an unreadable one ({one_line(exc)})"
        ) from None
    if version == 1:
        state = {("dynamics." + k if k.startswith(V1_DYNAMICS) else k): v for k, v in state.items()}
        # Models saved before genrl recorded their training episodes: none are known.
        state.setdefault("trained_episodes", torch.zeros((0,), dtype=torch.long))
    if version < 4:  # one dynamics, before ensembles: member 0
        state = {("dynamics.0." + k[9:] if k.startswith("dynamics.") else k): v for k, v in state.items()}
    return state
