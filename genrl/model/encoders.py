"""Encoders: observation (standardised) <-> latent, all behind one interface.

An encoder maps standardised observations ``(..., *obs_shape)`` to the mean and log-variance of
a diagonal Gaussian latent ``(..., latent_dim)``; an *exact* encoder returns ``None`` for the
log-variance (the latent is the observation, nothing to sample or learn). Its decoder maps
latents back. :func:`build_encoder` picks the pair from the settings and the observation shape,
so a convolutional pair for images slots in there without touching the dynamics or the dream.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import torch
from torch import nn

from genrl.errors import GenrlError
from genrl.model.config import WorldModelConfig
from genrl.model.networks import mlp


class IdentityEncoder(nn.Module):
    """The latent is the standardised observation itself: exact, with no parameters."""

    exact = True

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, None]:
        return obs, None


class IdentityDecoder(nn.Module):
    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return z


class MLPEncoder(nn.Module):
    """Flat observation -> (mean, log-variance) of a diagonal Gaussian latent."""

    exact = False

    def __init__(self, obs_shape: tuple[int, ...], latent_dim: int, hidden: int):
        super().__init__()
        self.obs_ndim = len(obs_shape)
        self.net = mlp(math.prod(obs_shape), hidden, 2 * latent_dim)

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, logvar = self.net(obs.flatten(-self.obs_ndim)).chunk(2, dim=-1)
        return mean, logvar.clamp(-10.0, 4.0)


class MLPDecoder(nn.Module):
    """Latent -> flat observation mean (unit-variance Gaussian likelihood)."""

    def __init__(self, latent_dim: int, obs_shape: tuple[int, ...], hidden: int):
        super().__init__()
        self.obs_shape = obs_shape
        self.net = mlp(latent_dim, hidden, math.prod(obs_shape))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z).reshape(*z.shape[:-1], *self.obs_shape)


def resolve(config: WorldModelConfig, obs_shape: tuple[int, ...]) -> WorldModelConfig:
    """``config`` with ``encoder="auto"``, ``num_mixtures`` and ``rnn_dim`` None chosen for ``obs_shape``."""
    encoder = config.encoder
    if encoder == "auto":
        vector = len(obs_shape) == 1 and config.latent_dim in (None, int(np.prod(obs_shape)))
        encoder = "identity" if vector else "vae"
    exact = encoder == "identity"
    mixtures = config.num_mixtures or (1 if exact else 5)
    rnn_dim = config.rnn_dim if config.rnn_dim is not None else (0 if exact else 128)
    return dataclasses.replace(config, encoder=encoder, num_mixtures=mixtures, rnn_dim=rnn_dim)


def latent_size(config: WorldModelConfig, obs_shape: tuple[int, ...]) -> int:
    """The latent size an encoder gives observations of ``obs_shape`` under ``config``."""
    size = int(np.prod(obs_shape))
    if config.encoder == "identity":
        if len(obs_shape) != 1 or config.latent_dim not in (None, size):
            raise GenrlError(
                "the identity encoder keeps the observation as the latent: expected a vector "
                f"observation and latent_dim None or {size}, got shape {obs_shape} and "
                f"latent_dim {config.latent_dim}"
            )
        return size
    if len(obs_shape) == 3:
        raise GenrlError(
            f"image observations {obs_shape} are not supported yet: expected a vector observation"
        )
    return config.latent_dim if config.latent_dim is not None else int(np.clip(2 * size, 8, 64))


def build_encoder(config: WorldModelConfig, obs_shape: tuple[int, ...]) -> tuple[nn.Module, nn.Module]:
    """The (encoder, decoder) pair for ``config`` and observations of ``obs_shape``."""
    latent = latent_size(config, obs_shape)
    if config.encoder == "identity":
        return IdentityEncoder(), IdentityDecoder()
    return MLPEncoder(obs_shape, latent, config.hidden_dim), MLPDecoder(latent, obs_shape, config.hidden_dim)
