"""The world model's training losses, on a batch of windows of real episodes.

Per window, with ``m`` the mask of real (not padded) steps, every term a masked mean:

    reconstruction, kl   the VAE's (none for an exact encoder)
    dynamics_nll         -log p(z_{t+1} | history) / latent_dim, beta-NLL weighted if nll_beta > 0
    reward, termination  squared error of the standardised reward (of the terminal reward head
                         on steps that end the episode, where the model has one); weighted BCE
                         of the end
    prediction           decoded one-step prediction error, in observation space
    open_loop            decoded error of open_loop_steps steps fed the model's own predictions

``total = sum of the terms``, with ``kl`` and ``prediction`` weighted by the fit settings.

An image model is fitted in two parts, as World Models fits its VAE and its MDN-RNN: the VAE on
batches of frames (:func:`vae_losses`: each frame's summed squared error, or cross-entropy of a
Bernoulli grid, and the KL), and the dynamics on windows of latents the trainer encoded once
(``batch["obs"]`` holds them), where ``prediction`` and ``open_loop`` are latent errors: decoding
every predicted frame of every window would cost more than the rest of the fit.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch.nn import functional as F

from genrl.model.config import FitConfig
from genrl.model.networks import mixture_mean, mixture_nll, mixture_std

if TYPE_CHECKING:
    from genrl.model.dynamics import LatentDynamics
    from genrl.model.world_model import WorldModel


def world_model_losses(
    model: WorldModel, batch: dict[str, torch.Tensor], fit: FitConfig
) -> dict[str, torch.Tensor]:
    """Per-head losses on a batch from :meth:`RolloutDataset.sample_sequences` (as tensors).

    With an ensemble, each member's terms weigh the batch's windows by its own bootstrap counts
    (``batch["member_weights"]``, (K, B); all ones without it), and the dynamics' terms are the
    members' mean: Adam's steps do not depend on that 1/K, and the figures stay comparable.
    """
    mask = batch["mask"].float()  # (B, L)
    if model.image:  # windows of cached latents
        obs, zt, logvar = None, batch["obs"], None
    else:
        obs = (batch["obs"] - model.obs_mean) / model.obs_std  # (B, L+1, ...)
        mean, logvar = model.encoder(obs)
        # The dynamics learns on the encoder's means; gradients stop so it cannot reshape the latent.
        zt = mean.detach()
    actions = model.actions.encode(batch["action"].flatten(0, 1)).unflatten(0, mask.shape)
    losses: dict[str, torch.Tensor] = {}
    weights = batch.get("member_weights")
    k_open = min(fit.open_loop_steps, mask.shape[1])
    for k, dynamics in enumerate(model.dynamics):
        weighted = mask if weights is None else mask * weights[k].unsqueeze(1)
        terms = {
            name: _masked_mean(value, weighted)
            for name, value in _teacher_forced(model, dynamics, obs, zt, actions, batch, fit).items()
        }
        predicted = _open_loop_latents(model, dynamics, zt, actions, k_open)
        if predicted:  # scored once for all steps: a few large ops instead of many small ones
            if obs is None:
                open_loop = (torch.stack(predicted, 1) - zt[:, 1 : k_open + 1]).pow(2).mean(-1)
            else:
                decoded = model.decoder(torch.stack(predicted, 1))
                open_loop = (decoded - obs[:, 1 : k_open + 1]).pow(2).flatten(2).mean(-1)
            terms["open_loop"] = _masked_mean(open_loop, weighted[:, :k_open])
        for name, value in terms.items():
            losses[name] = losses.get(name, 0.0) + value / model.ensemble_size
    if logvar is None:  # an exact encoder has nothing to learn
        return losses
    # Built after the dynamics' terms, so gradients accumulate in the order of earlier versions
    # and a resumed old run trains bit for bit as it did.
    obs_mask = torch.cat([torch.ones_like(mask[:, :1]), mask], dim=1)
    return _vae(model, obs, mean, logvar, obs_mask) | losses


def vae_losses(model: WorldModel, frames: torch.Tensor) -> dict[str, torch.Tensor]:
    """An image model's VAE terms on a batch of frames (N, H, W, C) as the env gives them."""
    obs = (frames.float() - model.obs_mean) / model.obs_std
    mean, logvar = model.encoder(obs)
    return _vae(model, obs, mean, logvar, torch.ones(len(obs), device=obs.device))


def total_loss(losses: dict[str, torch.Tensor], fit: FitConfig) -> torch.Tensor:
    """The weighted sum that a fit minimises."""
    weights = {
        "kl": fit.kl_weight,
        "prediction": fit.prediction_weight,
        "adversarial_g": fit.adversarial_weight,
    }
    return sum(v * weights.get(k, 1.0) for k, v in losses.items())


def _teacher_forced(
    model: WorldModel,
    dynamics: LatentDynamics,
    obs: torch.Tensor,
    zt: torch.Tensor,
    actions: torch.Tensor,
    batch: dict[str, torch.Tensor],
    fit: FitConfig,
) -> dict[str, torch.Tensor]:
    """Each step's terms, conditioned on the real history before it: (B, L) each, unmasked."""
    h = dynamics.recur(zt[:, :-1], actions)[0]
    logits, mu, log_std = dynamics.mixture(h, zt[:, :-1], actions)
    nll = mixture_nll(logits, mu, log_std, zt[:, 1:]) / model.config.latent_dim
    if fit.nll_beta > 0:
        # beta-NLL (Seitzer et al., 2022): weighting each step by its predicted variance**beta
        # keeps the sharpest predictions' huge gradients from drowning the rest; beta=1 trains
        # the means as squared error would.
        variance = mixture_std(logits, mu, log_std).detach().pow(2)
        nll = nll * variance.pow(fit.nll_beta)
    # Likelihood in latent space alone lets small latent errors become large observation
    # errors; scoring the decoded mixture mean in observation space keeps predictions sharp there.
    if obs is None:  # an image model's: in latent space (see the module's docstring)
        prediction = (mixture_mean(logits, mu) - zt[:, 1:]).pow(2).mean(-1)
    else:
        prediction = (model.decoder(mixture_mean(logits, mu)) - obs[:, 1:]).pow(2).flatten(2).mean(-1)
    reward_logit, terminal_logit, termination_logit = dynamics.all_heads(h, actions, zt[:, :-1], zt[:, 1:])
    if terminal_logit is not None:  # each reward head learns on its own steps
        reward_logit = torch.where(batch["terminated"], terminal_logit, reward_logit)
    reward_target = (batch["reward"] - model.reward_mean) / model.reward_std
    termination = F.binary_cross_entropy_with_logits(
        termination_logit,
        batch["terminated"].float(),
        reduction="none",
        pos_weight=torch.tensor(fit.termination_weight, device=model.device),
    )
    return {
        "dynamics_nll": nll,
        "reward": (reward_logit - reward_target).pow(2),
        "termination": termination,
        "prediction": prediction,
    }


def _open_loop_latents(
    model: WorldModel, dynamics: LatentDynamics, zt: torch.Tensor, actions: torch.Tensor, k: int
) -> list[torch.Tensor]:
    """The dynamics fed its own predictions for ``k`` steps, as in a dream, so that errors do not
    compound (latent overshooting, as in PlaNet): the predicted latent means."""
    z, h, predicted = zt[:, 0], torch.zeros(zt.shape[0], model.config.rnn_dim, device=zt.device), []
    for t in range(k):
        h = dynamics.cell(z, h, actions[:, t])
        z = mixture_mean(*dynamics.mixture(h, z, actions[:, t])[:2])
        predicted.append(z)
    return predicted


def _vae(
    model: WorldModel, obs: torch.Tensor, mean: torch.Tensor, logvar: torch.Tensor, obs_mask: torch.Tensor
) -> dict[str, torch.Tensor]:
    z = mean + torch.randn_like(mean) * (0.5 * logvar).exp()
    out = model.decoder(z)
    if model.image:  # a frame's log-likelihood sums over its pixels (unit-variance Gaussian on [0, 1])
        if model.config.likelihood == "bernoulli":
            per_pixel = F.binary_cross_entropy_with_logits(out, obs, reduction="none")
        else:
            per_pixel = (out - obs).pow(2)
        recon = per_pixel.flatten(-3).sum(-1)
    else:
        recon = (out - obs).pow(2).flatten(2).mean(-1)
    kl = 0.5 * (mean.pow(2) + logvar.exp() - 1 - logvar).sum(-1)
    return {"reconstruction": _masked_mean(recon, obs_mask), "kl": _masked_mean(kl, obs_mask)}


def _masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (x * mask).sum() / mask.sum().clamp_min(1.0)
