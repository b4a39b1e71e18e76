"""Latent dynamics: an MDN-RNN that predicts the next latent, the reward and the episode's end.

For a batch, with ``a`` the action as a vector (one-hot or scaled to [-1, 1])::

    h_{t+1}       = GRU(W [z_t, a_t], h_t)
    p(z_{t+1})    = sum_k pi_k N(z_t + mu_k, sigma_k)        mixture from (h_{t+1}, a_t[, z_t])
    r_t, done_t   = heads(h_{t+1}, a_t, z_t, z_{t+1})         z_t only with transition_heads

With ``terminal_reward`` a second reward head scores the steps that end the episode (done_t's
logit > 0) and the first one all others: endings often pay what no other step does.

With ``rnn_dim=0`` there is no GRU and ``h`` has width 0: Markov dynamics, as in PETS and MBPO,
for a state that is all there is to know (most vector observations). Teacher-forced training is
then one batched MLP call instead of a recurrence over the window.

With ``precise=True`` (an exact encoder, whose latent is the state) every component's step also
adds a linear map of ``[z_t, a_t]`` (the linear core, set by least squares on the first fit),
and the mixture sees ``z_t`` itself, not only the GRU's summary of it: the network's correction
to the linear core must be precise.
"""

from __future__ import annotations

import torch
from torch import nn

from genrl.model.config import WorldModelConfig
from genrl.model.networks import MixtureDensityHead, mlp

Mixture = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # logits (.., K), means and log-stds (.., K, D)


class LatentDynamics(nn.Module):
    """p(z', r, done | history, action) over latents of size ``latent_dim``."""

    def __init__(self, latent_dim: int, action_dim: int, config: WorldModelConfig, precise: bool):
        super().__init__()
        c = config
        self.precise = precise
        self.rnn_dim = c.rnn_dim
        self.transition_heads = c.transition_heads
        self.terminal_reward = c.terminal_reward
        if c.rnn_dim:
            self.rnn_in = nn.Sequential(nn.Linear(latent_dim + action_dim, c.rnn_dim), nn.SiLU())
            self.rnn = nn.GRU(c.rnn_dim, c.rnn_dim, batch_first=True)
        # The heads see the action directly, not only through the GRU: otherwise a mixture can
        # explain the action's effect away as two equally likely outcomes.
        head_in = c.rnn_dim + action_dim
        linear = latent_dim + action_dim if precise else 0
        mdn_in = head_in + (latent_dim if precise else 0)
        self.mdn = MixtureDensityHead(mdn_in, latent_dim, c.num_mixtures, c.hidden_dim, linear)
        seen = (2 if c.transition_heads else 1) * latent_dim
        self.reward_head = mlp(head_in + seen, c.hidden_dim, 1, layers=1)
        if c.terminal_reward:
            self.terminal_reward_head = mlp(head_in + seen, c.hidden_dim, 1, layers=1)
        self.termination_head = mlp(head_in + seen, c.hidden_dim, 1, layers=1)

    def cell(self, z: torch.Tensor, h: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        """One recurrent step for a batch: h_{t+1}, with the fused GRU cell (no nn.GRU call overhead)."""
        if not self.rnn_dim:
            return h
        x, rnn = self.rnn_in(torch.cat([z, a], dim=-1)), self.rnn
        return torch.gru_cell(x, h, rnn.weight_ih_l0, rnn.weight_hh_l0, rnn.bias_ih_l0, rnn.bias_hh_l0)

    def recur(
        self, z: torch.Tensor, a: torch.Tensor, h0: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, ...]:
        """Teacher-forced recurrence over sequences z (B, T, D), a (B, T, A): h (B, T, H) and the last h."""
        if not self.rnn_dim:
            return z.new_zeros(*z.shape[:-1], 0), z.new_zeros(z.shape[0], 0)
        x = self.rnn_in(torch.cat([z, a], -1))
        out, h_last = self.rnn(x) if h0 is None else self.rnn(x, h0.unsqueeze(0).contiguous())
        return out, h_last.squeeze(0)

    def mixture(self, h: torch.Tensor, z: torch.Tensor, a: torch.Tensor) -> Mixture:
        """The mixture over z_{t+1}, from h_{t+1}, z_t and a_t."""
        if self.precise:
            return self.mdn(torch.cat([h, a, z], -1), z, torch.cat([z, a], -1))
        return self.mdn(torch.cat([h, a], -1), z)

    def heads(
        self, h: torch.Tensor, a: torch.Tensor, z: torch.Tensor, z_next: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Standardised reward and termination logit of each transition z -> z_next (> 0: it ends)."""
        reward, terminal_reward, termination = self.all_heads(h, a, z, z_next)
        if terminal_reward is not None:
            reward = torch.where(termination > 0, terminal_reward, reward)
        return reward, termination

    def all_heads(
        self, h: torch.Tensor, a: torch.Tensor, z: torch.Tensor, z_next: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """Each head's output: the reward if the step goes on, if it ends (None without that
        head), and the termination logit; the losses train each on its own steps."""
        feat = torch.cat([h, a, z, z_next] if self.transition_heads else [h, a, z_next], dim=-1)
        terminal = self.terminal_reward_head(feat).squeeze(-1) if self.terminal_reward else None
        return self.reward_head(feat).squeeze(-1), terminal, self.termination_head(feat).squeeze(-1)

    @torch.no_grad()
    def set_linear_core(self, weight: torch.Tensor, bias: torch.Tensor) -> None:
        self.mdn.set_linear_core(weight, bias)
