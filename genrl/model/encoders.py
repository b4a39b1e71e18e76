"""Encoders: observation (standardised) <-> latent, all behind one interface.

An encoder maps standardised observations ``(..., *obs_shape)`` to the mean and log-variance of
a diagonal Gaussian latent ``(..., latent_dim)``; an *exact* encoder returns ``None`` for the
log-variance (the latent is the observation, nothing to sample or learn). Its decoder maps
latents back. :func:`build_encoder` picks the pair from the settings and the observation shape:
a convolutional pair for images (H, W, C), an MLP pair or the identity for vectors.

Images are standardised to [0, 1] (by the space's bounds) and resized to a square working
resolution on the way in and back to the env's own size on the way out. A decoder's output is
the mean of a Gaussian, or with ``likelihood="bernoulli"`` the logits of each cell being 1.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

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


class ConvEncoder(nn.Module):
    """Image (..., H, W, C) in [0, 1] -> (mean, log-variance), as World Models' VAE: strided convs.

    Each layer halves the picture (4x4 kernels, stride 2) and doubles the channels (at most 8x
    the first), down to 6 pixels or fewer; a small grid (16 or fewer) first gets a full-size 3x3
    layer, since every cell of it may matter (MinAtar's ball is one cell).
    """

    exact = False

    def __init__(self, obs_shape: tuple[int, ...], latent_dim: int, size: int, channels: int):
        super().__init__()
        self.obs_shape, self.size = obs_shape, size
        layers, c_in, side, c = [], obs_shape[-1], size, channels
        if size <= 16:
            layers += [nn.Conv2d(c_in, c, 3, 1, 1), nn.SiLU()]
            c_in = c
        while side > 6:
            c = min(c if not layers else 2 * c_in, 8 * channels)
            layers += [nn.Conv2d(c_in, c, 4, 2, 1), nn.SiLU()]
            c_in, side = c, side // 2
        self.net = nn.Sequential(*layers)
        self.top = (c_in, side)  # channels and side of the last feature map, for the decoder
        self.out = nn.Linear(c_in * side * side, 2 * latent_dim)

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        lead = obs.shape[:-3]
        x = resize(obs.reshape(-1, *self.obs_shape).permute(0, 3, 1, 2), (self.size, self.size))
        mean, logvar = self.out(self.net(x).flatten(1)).chunk(2, dim=-1)
        return mean.reshape(*lead, -1), logvar.clamp(-10.0, 4.0).reshape(*lead, -1)


class ConvDecoder(nn.Module):
    """Latent -> image (..., H, W, C): the encoder's layers mirrored with transposed convs."""

    def __init__(self, latent_dim: int, encoder: ConvEncoder, likelihood: str):
        super().__init__()
        self.obs_shape, self.likelihood = encoder.obs_shape, likelihood
        (c_in, side), channels = encoder.top, []
        for layer in encoder.net:  # the channel counts of the encoder's halvings, reversed
            if isinstance(layer, nn.Conv2d) and layer.stride == (2, 2):
                channels.append(layer.in_channels)
        self.top = (c_in, side)
        self.fc = nn.Linear(latent_dim, c_in * side * side)
        layers: list[nn.Module] = []
        for c in reversed(channels):
            layers += [nn.SiLU(), nn.ConvTranspose2d(c_in, c, 4, 2, 1)]
            c_in = c
        self.net = nn.Sequential(*layers, nn.SiLU(), nn.Conv2d(c_in, self.obs_shape[-1], 3, 1, 1))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        c, side = self.top
        x = self.net(self.fc(z.reshape(-1, z.shape[-1])).reshape(-1, c, side, side))
        x = resize(x, self.obs_shape[:2]).permute(0, 2, 3, 1)
        return x.reshape(*z.shape[:-1], *self.obs_shape)


def resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Pictures (N, C, H, W) at ``size`` (bilinear, antialiased when shrinking); as they are if equal."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    shrink = x.shape[-2] > size[0] or x.shape[-1] > size[1]
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False, antialias=shrink)


NATURAL_SIZE = 64  # World Models' resolution: CarRacing's road and car stay recognisable
IMAGE_LATENT = 32  # World Models' latent size for CarRacing


def resolve(config: WorldModelConfig, obs_shape: tuple[int, ...], binary: bool = False) -> WorldModelConfig:
    """``config`` with every "auto" or None setting chosen for observations of ``obs_shape``.

    ``binary``: every observation value is 0 or 1 (a bool space), for the likelihood.
    """
    encoder = config.encoder
    if encoder == "auto":
        vector = len(obs_shape) == 1 and config.latent_dim in (None, int(np.prod(obs_shape)))
        encoder = "identity" if vector else "vae"
    exact = encoder == "identity"
    mixtures = config.num_mixtures or (1 if exact else 5)
    rnn_dim = config.rnn_dim if config.rnn_dim is not None else (0 if exact else 128)
    config = dataclasses.replace(config, encoder=encoder, num_mixtures=mixtures, rnn_dim=rnn_dim)
    if len(obs_shape) != 3:
        return config
    likelihood = config.likelihood
    if likelihood == "auto":
        likelihood = "bernoulli" if binary else "gaussian"
    size = config.image_size
    if size is None:
        side = max(obs_shape[:2])
        size = side if binary or side <= NATURAL_SIZE else NATURAL_SIZE
    return dataclasses.replace(config, likelihood=likelihood, image_size=size)


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
        return config.latent_dim if config.latent_dim is not None else IMAGE_LATENT
    if len(obs_shape) > 3:
        raise GenrlError(f"expected vector or image (H, W, C) observations, got shape {obs_shape}")
    return config.latent_dim if config.latent_dim is not None else int(np.clip(2 * size, 8, 64))


def build_encoder(config: WorldModelConfig, obs_shape: tuple[int, ...]) -> tuple[nn.Module, nn.Module]:
    """The (encoder, decoder) pair for ``config`` and observations of ``obs_shape``."""
    latent = latent_size(config, obs_shape)
    if config.encoder == "identity":
        return IdentityEncoder(), IdentityDecoder()
    if len(obs_shape) == 3:
        encoder = ConvEncoder(obs_shape, latent, config.image_size, config.conv_channels)
        return encoder, ConvDecoder(latent, encoder, config.likelihood)
    return MLPEncoder(obs_shape, latent, config.hidden_dim), MLPDecoder(latent, obs_shape, config.hidden_dim)
