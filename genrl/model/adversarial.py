"""An adversarial loss on an image model's decoder (a VAE-GAN, Larsen et al., 2016), off by default.

A VAE fitted on pixel error alone blurs what it cannot place exactly: the mean of the frames it
hesitates between. With ``FitConfig.adversarial_weight`` > 0, a small convolutional
discriminator learns during the VAE stage to tell real frames from the decoder's reconstructions,
and the decoder's loss gains ``adversarial_weight`` times the generator's term, which rewards
reconstructions the discriminator takes for real. Both terms are hinge losses (as in SNGAN and
VQGAN); the discriminator's logit is the mean of its logits over patches of the frame.

One VAE step with the adversary, on a batch of frames:

    reconstructions  the decoder's outputs in the VAE's own loss (probabilities for a Bernoulli grid)
    adversarial_g    -mean D(reconstruction): the decoder's extra term, through a frozen D
    adversarial_d    mean relu(1 - D(real)) + mean relu(1 + D(reconstruction)): D's own Adam step

The discriminator is training-only: it lives in the trainer, not in the model, so model files
are unchanged by it, and a run resumed from a file starts a new discriminator.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn
from torch.nn import functional as F

from genrl.model.encoders import resize
from genrl.model.losses import vae_losses
from genrl.util.seeding import seeded

if TYPE_CHECKING:
    from genrl.model.world_model import WorldModel

PATCH_SIDE = 8  # the discriminator halves frames down to this side or less, then scores each patch


class Discriminator(nn.Module):
    """Frames (N, H, W, C) in [0, 1] -> logits (N, s, s), one per patch; > 0 says real.

    Strided 4x4 convs halve the frame (at the model's working size) and double the channels (at
    most 8x the first) down to ``PATCH_SIDE`` or fewer pixels; a 3x3 conv scores each position.
    """

    def __init__(self, in_channels: int, size: int, channels: int):
        super().__init__()
        self.size = size
        layers: list[nn.Module] = []
        c_in, c, side = in_channels, channels, size
        while side > PATCH_SIDE:
            layers += [nn.Conv2d(c_in, c, 4, 2, 1), nn.LeakyReLU(0.2)]
            c_in, c, side = c, min(2 * c, 8 * channels), side // 2
        layers.append(nn.Conv2d(c_in, 1, 3, 1, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        x = resize(frames.permute(0, 3, 1, 2), (self.size, self.size))
        return self.net(x).squeeze(1)


def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Hinge loss of the discriminator: real patches above +1, reconstructed ones below -1."""
    return F.relu(1.0 - real_logits).mean() + F.relu(1.0 + fake_logits).mean()


def generator_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """The decoder's term: raise the discriminator's logits of its reconstructions."""
    return -fake_logits.mean()


class Adversary:
    """A discriminator and its optimiser beside an image model's VAE, for the VAE stage of fits."""

    def __init__(self, model: WorldModel):
        self.model = model
        c = model.config
        with seeded(model.seed):  # its own RNG draws: the VAE's stream is the same as without it
            net = Discriminator(model.observation_space.shape[-1], c.image_size, c.conv_channels)
        self.discriminator = net.to(model.device)
        # Betas (0.5, 0.9), as GANs commonly use: less momentum against the moving target.
        self.optimizer = torch.optim.Adam(
            net.parameters(), lr=model.fit_config.learning_rate, betas=(0.5, 0.9)
        )
        self._batch: tuple[torch.Tensor, torch.Tensor] | None = None

    def vae_losses(self, frames: torch.Tensor) -> dict[str, torch.Tensor]:
        """:func:`vae_losses` on frames (N, H, W, C) as the env gives them, plus ``adversarial_g``.

        The fit settings weigh it (``adversarial_weight``, by ``total_loss``); the batch is kept
        for the discriminator's :meth:`step`, taken after the model's.
        """
        model = self.model
        decoded: list[torch.Tensor] = []
        # vae_losses does not return its reconstructions: a hook catches them, with no second decode.
        hook = model.decoder.register_forward_hook(lambda _module, _args, out: decoded.append(out))
        try:
            losses = vae_losses(model, frames)
        finally:
            hook.remove()
        fake = decoded[0]
        if model.config.likelihood == "bernoulli":
            fake = torch.sigmoid(fake)  # the decoder gives logits
        real = (frames.float() - model.obs_mean) / model.obs_std
        self._batch = (real, fake.detach())
        self.discriminator.requires_grad_(False)  # the decoder's term moves the decoder alone
        try:
            losses["adversarial_g"] = generator_loss(self.discriminator(fake))
        finally:
            self.discriminator.requires_grad_(True)
        return losses

    def step(self) -> float:
        """One discriminator step on the batch of the last :meth:`vae_losses`; returns its loss."""
        if self._batch is None:
            raise RuntimeError("Adversary.step needs a batch: call vae_losses first")
        real, fake = self._batch
        self._batch = None
        loss = discriminator_loss(self.discriminator(real), self.discriminator(fake))
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return loss.item()

    @torch.no_grad()
    def logits(self, frames: torch.Tensor) -> torch.Tensor:
        """The discriminator's logit of each of frames (N, H, W, C) in [0, 1]: its patches' mean."""
        return self.discriminator(frames).flatten(1).mean(1)
