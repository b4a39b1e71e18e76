"""Networks the world model is built from: MLPs, and the mixture-density head with its math."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F


def mlp(inp: int, hidden: int, out: int, layers: int = 2) -> nn.Sequential:
    dims = [inp] + [hidden] * layers
    blocks: list[nn.Module] = []
    for a, b in zip(dims[:-1], dims[1:], strict=True):
        blocks += [nn.Linear(a, b), nn.SiLU()]
    return nn.Sequential(*blocks, nn.Linear(dims[-1], out))


class MixtureDensityHead(nn.Module):
    """Features -> a K-component diagonal Gaussian mixture over the next latent, centred on ``base``.

    As in World Models' MDN-RNN; each component is a full latent vector so that samples stay
    coherent across dimensions.
    """

    def __init__(
        self, features: int, latent_dim: int, components: int, hidden: int, linear_features: int = 0
    ):
        super().__init__()
        self.k, self.d = components, latent_dim
        self.net = mlp(features, hidden, components * (1 + 2 * latent_dim), layers=1)
        self.linear = nn.Linear(linear_features, latent_dim) if linear_features else None

    def forward(
        self, h: torch.Tensor, base: torch.Tensor, linear_input: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Mixture logits (..., K), means (..., K, D) and log-stds (..., K, D).

        Means are residuals added to ``base`` (the current latent): small steps are easy to learn.
        With ``linear_features``, every component's step also adds a linear map of
        ``linear_input`` (the latent and the action): a linear dynamics core.
        """
        out = self.net(h)
        logits = out[..., : self.k]
        delta, log_std = out[..., self.k :].reshape(*h.shape[:-1], self.k, 2 * self.d).chunk(2, dim=-1)
        if self.linear is not None:
            delta = delta + self.linear(linear_input).unsqueeze(-2)
        return logits, base.unsqueeze(-2) + delta, log_std.clamp(-7.0, 2.0)

    @torch.no_grad()
    def set_linear_core(self, weight: torch.Tensor, bias: torch.Tensor) -> None:
        """Start from given linear dynamics; the network's own steps start at zero, to learn what is left."""
        self.linear.weight.copy_(weight)
        self.linear.bias.copy_(bias)
        # Outputs are K logits, then per component D steps and D log-stds: zero the steps.
        rows = self.k + (torch.arange(self.k)[:, None] * 2 * self.d + torch.arange(self.d)).flatten()
        self.net[-1].weight[rows] = 0.0
        self.net[-1].bias[rows] = 0.0


def mixture_nll(
    logits: torch.Tensor, mean: torch.Tensor, log_std: torch.Tensor, target: torch.Tensor
) -> torch.Tensor:
    """Negative log-likelihood of ``target`` (..., D) under the mixture, per element of ``...``."""
    z = (target.unsqueeze(-2) - mean) / log_std.exp()
    comp = -0.5 * z.pow(2).sum(-1) - log_std.sum(-1) - 0.5 * mean.shape[-1] * math.log(2 * math.pi)
    if logits.shape[-1] == 1:  # one component: its log-weight is exactly 0, skip the no-op ops
        return -comp.squeeze(-1)
    return -torch.logsumexp(F.log_softmax(logits, dim=-1) + comp, dim=-1)


def mixture_sample(
    logits: torch.Tensor,
    mean: torch.Tensor,
    log_std: torch.Tensor,
    temperature: float,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Draw from the mixture; temperature sharpens (<1) or flattens (>1) it as in World Models.

    Temperature 0 returns the mixture's mean: the model's expected next latent, no noise.
    """
    batch = logits.shape[:-1]
    if temperature <= 0:
        return mixture_mean(logits, mean)
    if logits.shape[-1] == 1:  # one component: nothing to choose
        mu, std = mean.squeeze(-2), log_std.squeeze(-2).exp()
    else:
        probs = F.softmax(logits.reshape(-1, logits.shape[-1]) / temperature, dim=-1)
        index = torch.multinomial(probs, 1, generator=generator).reshape(*batch)
        pick = index[..., None, None].expand(*batch, 1, mean.shape[-1])
        mu = torch.gather(mean, -2, pick).squeeze(-2)
        std = torch.gather(log_std, -2, pick).squeeze(-2).exp()
    noise = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
    return mu + std * math.sqrt(temperature) * noise


def mixture_mean(logits: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
    """Expected value of the mixture: (..., D)."""
    if logits.shape[-1] == 1:  # the one weight is exactly 1: the same value without the ops
        return mean.squeeze(-2)
    return (F.softmax(logits, dim=-1).unsqueeze(-1) * mean).sum(-2)


def mixture_std(logits: torch.Tensor, mean: torch.Tensor, log_std: torch.Tensor) -> torch.Tensor:
    """Total standard deviation of the mixture, averaged over latent dimensions: (...,)."""
    if logits.shape[-1] == 1:  # as below with the weight exactly 1, in fewer ops
        mu = mean.squeeze(-2)
        second = log_std.squeeze(-2).exp().pow(2) + mu.pow(2)
    else:
        w = F.softmax(logits, dim=-1).unsqueeze(-1)
        mu = mixture_mean(logits, mean)
        second = (w * (log_std.exp().pow(2) + mean.pow(2))).sum(-2)
    return (second - mu.pow(2)).clamp_min(0).sqrt().mean(-1)


def ensemble_spread(means: torch.Tensor) -> torch.Tensor:
    """Ensemble members' mean predictions (K, ..., D) -> their disagreement (...): mean_d std_k."""
    return means.std(0, correction=0).mean(-1)
