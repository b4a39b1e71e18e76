"""WorldModel: an observation VAE plus an autoregressive latent dynamics model (MDN-RNN).

The model only predicts: ``encode`` an observation, ``step`` a batch of latent states under a
batch of actions, ``decode`` a latent. Resetting and episode bookkeeping live in the dream envs.

One transition, for a batch::

    z_t = encode(o_t)                                  VAE mean
    h_{t+1} = GRU([z_t, onehot_or_scaled(a_t)], h_t)
    z_{t+1} ~ z_t + MDN(h_{t+1}, a_t)                  K-component Gaussian mixture, temperature tau
    r_t = reward_head(h_{t+1}, a_t, z_{t+1});  done_t = termination_head(h_{t+1}, a_t, z_{t+1}) > 0

Training minimises, on windows of real episodes: the VAE's reconstruction error and KL; the
mixture's negative log-likelihood of the next latent; the decoded one-step prediction error; the
decoded error of ``open_loop_steps`` steps predicted from the model's own outputs; and the
reward and termination losses.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import numbers
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from gymnasium import spaces
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn
from torch.nn import functional as F

from genrl.data.dataset import RolloutDataset
from genrl.errors import GenrlError
from genrl.model.networks import (
    MixtureDensityHead,
    build_vae,
    mixture_mean,
    mixture_nll,
    mixture_sample,
    mixture_std,
    mlp,
)
from genrl.util.files import atomic_write, brief, check_format, check_tensors, one_line, read_json, write_json
from genrl.util.progress import progress_bar
from genrl.util.spaces import ActionCodec, check_spaces_match, check_supported, space_from_json, space_to_json

FORMAT = "genrl.world_model"
VERSION = 1
MAX_START_STATES = 10_000
CHOICES = {"encoder": ("vae", "identity"), "lr_schedule": ("constant", "cosine")}


@dataclass
class WorldModelConfig:
    """Sizes and training settings. ``latent_dim=None`` picks twice the observation size (8 to 64)."""

    latent_dim: int | None = None
    hidden_dim: int = 128
    rnn_dim: int = 128
    num_mixtures: int = 5
    kl_weight: float = 1e-3
    prediction_weight: float = 1.0  # weight of the decoded one-step prediction error
    open_loop_steps: int = 16  # steps of the open-loop prediction loss (0: off)
    termination_weight: float = 1.0  # weight of terminal steps in the termination loss (they are rare)
    learning_rate: float = 1e-3
    batch_size: int = 32
    seq_len: int = 32
    fit_steps: int = 1000
    grad_clip: float = 10.0
    val_every: int = 10  # every val_every-th episode is held out from training
    seed: int = 0
    # "vae": a VAE encodes observations into a latent. "identity" (vector observations): the
    # latent is the standardised observation itself, exact, and the dynamics gain a linear core
    # set by least squares on the first fit, the networks learning what it misses. Precise
    # dynamics matter more than compression for low-dimensional state, as in PETS and MBPO.
    encoder: str = "vae"
    nll_beta: float = 0.0  # beta-NLL weighting of the dynamics' likelihood (0: plain NLL)
    # "cosine": each fit() anneals the learning rate to 1% of learning_rate, for precise dynamics
    # (then fit(n); fit(m) no longer equals fit(n + m)). "constant": as set.
    lr_schedule: str = "constant"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WorldModelConfig:
        """Settings from a file, a preset or a caller, each value checked so a bad one fails here."""
        if not isinstance(data, dict):
            raise GenrlError(f"expected world model settings as a mapping, got {brief(data)}")
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - set(fields), key=str)
        if unknown:
            raise GenrlError(f"unknown world model settings {unknown}; expected some of {sorted(fields)}")
        may_be_zero = ("open_loop_steps", "fit_steps", "seed")
        values: dict[str, Any] = {}
        for name, value in data.items():
            if name == "latent_dim" and value is None:
                values[name] = None
            elif name in CHOICES:
                if value not in CHOICES[name]:
                    raise GenrlError(
                        f"world model setting {name}: expected one of {CHOICES[name]}, got {brief(value)}"
                    )
                values[name] = value
            elif isinstance(fields[name].default, float):
                number = _as_float(value)
                if number is None or not 0 <= number < math.inf:
                    raise GenrlError(
                        f"world model setting {name}: expected a number >= 0, got {brief(value)}"
                    )
                values[name] = value if isinstance(value, (int, float)) else number
            else:
                low = 0 if name in may_be_zero else 1
                if (
                    isinstance(value, bool)
                    or not isinstance(value, numbers.Integral)
                    or not low <= value < 2**63
                ):
                    raise GenrlError(
                        f"world model setting {name}: expected an integer >= {low}, got {brief(value)}"
                    )
                values[name] = int(value)
        return cls(**values)


class StepOutput(NamedTuple):
    z: torch.Tensor  # (B, latent_dim) next latent
    h: torch.Tensor  # (B, rnn_dim) next recurrent state
    reward: torch.Tensor  # (B,)
    terminated: torch.Tensor  # (B,) bool
    uncertainty: torch.Tensor  # (B,) predictive std of the next latent


class SequencePrediction(NamedTuple):
    """The model's one-step predictions along a real history (teacher forced), per step (B, T)."""

    nll: torch.Tensor  # -log p(z_{t+1} | z_0..z_t, a_0..a_t) in nats, z the encoder's mean
    reward: torch.Tensor  # predicted reward of each transition
    termination_logit: torch.Tensor  # > 0 means the model predicts the episode ends there
    h: torch.Tensor  # (B, rnn_dim) recurrent state after the last step, to continue from


class WorldModel(nn.Module):
    """A generative model of an environment with the given spaces.

    :param observation_space: a Box (vector observations)
    :param action_space: Discrete or bounded Box
    :param config: a :class:`WorldModelConfig`, a dict of its fields, or None for defaults
    :param overrides: individual config fields, e.g. ``latent_dim=16``
    """

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        config: WorldModelConfig | dict | None = None,
        **overrides: Any,
    ):
        super().__init__()
        check_supported(observation_space, action_space)
        if isinstance(config, dict) or config is None:
            config = WorldModelConfig.from_dict({**(config or {}), **overrides})
        elif overrides:
            config = dataclasses.replace(config, **overrides)
        obs_shape = tuple(observation_space.shape)
        if config.encoder == "identity":
            size = int(np.prod(obs_shape))
            if len(obs_shape) != 1 or config.latent_dim not in (None, size):
                raise GenrlError(
                    "the identity encoder keeps the observation as the latent: expected a vector "
                    f"observation and latent_dim None or {size}, got shape {obs_shape} and "
                    f"latent_dim {config.latent_dim}"
                )
            config = dataclasses.replace(config, latent_dim=size)
        if config.latent_dim is None:
            config = dataclasses.replace(config, latent_dim=int(np.clip(2 * np.prod(obs_shape), 8, 64)))
        self.config = config
        self.observation_space, self.action_space = observation_space, action_space
        self.actions = ActionCodec(action_space)
        c = config
        self.identity = c.encoder == "identity"
        with _seeded(c.seed):
            if not self.identity:
                self.encoder, self.decoder = build_vae(obs_shape, c.latent_dim, c.hidden_dim)
            self.rnn_in = nn.Sequential(nn.Linear(c.latent_dim + self.actions.dim, c.rnn_dim), nn.SiLU())
            self.rnn = nn.GRU(c.rnn_dim, c.rnn_dim, batch_first=True)
            # The heads see the action directly, not only through the GRU: otherwise a mixture can
            # explain the action's effect away as two equally likely outcomes.
            head_in = c.rnn_dim + self.actions.dim
            linear = c.latent_dim + self.actions.dim if self.identity else 0
            # With the identity encoder the mixture also sees the exact state, not only the GRU's
            # summary of it: the network's correction to the linear core must be precise.
            mdn_in = head_in + (c.latent_dim if self.identity else 0)
            self.mdn = MixtureDensityHead(mdn_in, c.latent_dim, c.num_mixtures, c.hidden_dim, linear)
            self.reward_head = mlp(head_in + c.latent_dim, c.hidden_dim, 1, layers=1)
            self.termination_head = mlp(head_in + c.latent_dim, c.hidden_dim, 1, layers=1)
        self.register_buffer("obs_mean", torch.zeros(obs_shape))
        self.register_buffer("obs_std", torch.ones(obs_shape))
        self.register_buffer("reward_mean", torch.zeros(()))
        self.register_buffer("reward_std", torch.ones(()))
        self.register_buffer("start_states", torch.zeros((0, *obs_shape)))
        self.register_buffer("trained_steps", torch.zeros((), dtype=torch.long))
        # Digests (RolloutDataset.episode_digests) of every episode a fit has trained on, sorted.
        self.register_buffer("trained_episodes", torch.zeros((0,), dtype=torch.long))
        low, high = observation_space.low, observation_space.high
        self.register_buffer(
            "_obs_low", torch.as_tensor(np.where(np.isfinite(low), low, -np.inf), dtype=torch.float32)
        )
        self.register_buffer(
            "_obs_high", torch.as_tensor(np.where(np.isfinite(high), high, np.inf), dtype=torch.float32)
        )
        self._optimizer: torch.optim.Optimizer | None = None

    @property
    def device(self) -> torch.device:
        return self.obs_mean.device

    # ---- prediction --------------------------------------------------------------------------

    def encode(self, obs: torch.Tensor) -> torch.Tensor:
        """Observations (B, *obs_shape) -> latent means (B, latent_dim)."""
        return self._encode_standardised((obs.float() - self.obs_mean) / self.obs_std)[0]

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Latents (B, latent_dim) -> observations, clipped to the observation space."""
        obs = self._decode_standardised(z) * self.obs_std + self.obs_mean
        return torch.maximum(torch.minimum(obs, self._obs_high), self._obs_low)

    def _encode_standardised(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Standardised observations -> the latent's mean and log-variance (None: exact)."""
        return (obs, None) if self.identity else self.encoder(obs)

    def _decode_standardised(self, z: torch.Tensor) -> torch.Tensor:
        return z if self.identity else self.decoder(z)

    def initial_state(self, batch_size: int) -> torch.Tensor:
        """The recurrent state a dream starts from: zeros (B, rnn_dim)."""
        return torch.zeros(batch_size, self.config.rnn_dim, device=self.device)

    def step(
        self,
        z: torch.Tensor,
        h: torch.Tensor,
        action: torch.Tensor,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> StepOutput:
        """Sample one transition for a batch. ``action`` holds env actions (indices or Box values)."""
        action_vec = self.actions.encode(action)
        h, logits, mean, log_std = self._transition(z, h, action_vec)
        z_next = mixture_sample(logits, mean, log_std, temperature, generator)
        feat = torch.cat([h, action_vec, z_next], dim=-1)
        reward = self.reward_head(feat).squeeze(-1) * self.reward_std + self.reward_mean
        terminated = self.termination_head(feat).squeeze(-1) > 0
        return StepOutput(z_next, h, reward, terminated, mixture_std(logits, mean, log_std))

    def _transition(
        self, z: torch.Tensor, h: torch.Tensor, action_vec: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """One recurrent step: next h, and the mixture over the next latent."""
        x = self.rnn_in(torch.cat([z, action_vec], dim=-1))
        h = self._gru_cell(x, h)
        return (h, *self._mixture(h, z, action_vec))

    def _gru_cell(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """One step of ``self.rnn`` for a batch: the fused cell, without nn.GRU's per-call overhead."""
        rnn = self.rnn
        return torch.gru_cell(x, h, rnn.weight_ih_l0, rnn.weight_hh_l0, rnn.bias_ih_l0, rnn.bias_hh_l0)

    def _mixture(
        self, h: torch.Tensor, z: torch.Tensor, action_vec: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The mixture over the next latent, from the recurrent state, the latent and the action."""
        if self.identity:
            return self.mdn(torch.cat([h, action_vec, z], -1), z, torch.cat([z, action_vec], -1))
        return self.mdn(torch.cat([h, action_vec], -1), z)

    @torch.no_grad()
    def predict_sequence(
        self, obs: torch.Tensor, actions: torch.Tensor, h: torch.Tensor | None = None
    ) -> SequencePrediction:
        """Score real sequences step by step: obs (B, T+1, ...), env actions (B, T, ...).

        Each step's prediction is conditioned on the real history before it, as in training; ``h``
        continues from an earlier call's final state (by default the start of an episode).
        """
        batch, steps = actions.shape[:2]
        z = self.encode(obs.reshape(batch * (steps + 1), *obs.shape[2:])).reshape(batch, steps + 1, -1)
        a = self.actions.encode(actions.reshape(batch * steps, *actions.shape[2:])).reshape(batch, steps, -1)
        h0 = self.initial_state(batch) if h is None else h
        out, h_last = self.rnn(self.rnn_in(torch.cat([z[:, :-1], a], -1)), h0.unsqueeze(0))
        logits, mu, log_std = self._mixture(out, z[:, :-1], a)
        feat = torch.cat([out, a, z[:, 1:]], dim=-1)
        return SequencePrediction(
            nll=mixture_nll(logits, mu, log_std, z[:, 1:]),
            reward=self.reward_head(feat).squeeze(-1) * self.reward_std + self.reward_mean,
            termination_logit=self.termination_head(feat).squeeze(-1),
            h=h_last.squeeze(0),
        )

    def held_out_episodes(self, dataset: RolloutDataset) -> list[int]:
        """Indices of the episodes of ``dataset`` that this model has never trained on."""
        trained = self.trained_episodes.cpu().numpy()
        digests = dataset.episode_digests()
        return [int(i) for i in np.flatnonzero(~np.isin(digests, trained))]

    # ---- training ----------------------------------------------------------------------------

    def losses(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Per-head losses on a batch of sequences from :meth:`RolloutDataset.sample_sequences`."""
        obs = (batch["obs"] - self.obs_mean) / self.obs_std  # (B, L+1, ...)
        mask = batch["mask"].float()  # (B, L)
        obs_mask = torch.cat([torch.ones_like(mask[:, :1]), mask], dim=1)
        mean, logvar = self._encode_standardised(obs)
        # The dynamics learns on the encoder's means; gradients stop so it cannot reshape the latent.
        zt = mean.detach()
        actions = self.actions.encode(batch["action"].flatten(0, 1)).unflatten(0, mask.shape)
        h = self.rnn(self.rnn_in(torch.cat([zt[:, :-1], actions], -1)))[0]
        logits, mu, log_std = self._mixture(h, zt[:, :-1], actions)
        nll = mixture_nll(logits, mu, log_std, zt[:, 1:]) / self.config.latent_dim
        if self.config.nll_beta > 0:
            # beta-NLL (Seitzer et al., 2022): weighting each step by its predicted variance**beta
            # keeps the sharpest predictions' huge gradients from drowning the rest; beta=1 trains
            # the means as squared error would.
            variance = mixture_std(logits, mu, log_std).detach().pow(2)
            nll = nll * variance.pow(self.config.nll_beta)
        # Likelihood in latent space alone lets small latent errors become large observation
        # errors; scoring the decoded mixture mean in observation space keeps predictions sharp there.
        prediction = (
            (self._decode_standardised(mixture_mean(logits, mu)) - obs[:, 1:]).pow(2).flatten(2).mean(-1)
        )
        feat = torch.cat([h, actions, zt[:, 1:]], dim=-1)
        reward_target = (batch["reward"] - self.reward_mean) / self.reward_std
        reward = (self.reward_head(feat).squeeze(-1) - reward_target).pow(2)
        term = F.binary_cross_entropy_with_logits(
            self.termination_head(feat).squeeze(-1),
            batch["terminated"].float(),
            reduction="none",
            pos_weight=torch.tensor(self.config.termination_weight, device=self.device),
        )

        def avg(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
            return (x * m).sum() / m.sum().clamp_min(1.0)

        # Open-loop: the dynamics fed its own predictions for a few steps, as in a dream, so
        # that errors do not compound (latent overshooting, as in PlaNet).
        k = min(self.config.open_loop_steps, mask.shape[1])
        z_ol, h_ol, predicted = zt[:, 0], torch.zeros_like(h[:, 0]), []
        for t in range(k):
            h_ol, lg, m, _ = self._transition(z_ol, h_ol, actions[:, t])
            z_ol = mixture_mean(lg, m)
            predicted.append(z_ol)
        losses = {}
        if logvar is not None:  # a VAE; the identity encoder is exact and has nothing to learn
            z = mean + torch.randn_like(mean) * (0.5 * logvar).exp()
            recon = (self.decoder(z) - obs).pow(2).flatten(2).mean(-1)
            kl = 0.5 * (mean.pow(2) + logvar.exp() - 1 - logvar).sum(-1)
            losses = {"reconstruction": avg(recon, obs_mask), "kl": avg(kl, obs_mask)}
        losses |= {
            "dynamics_nll": avg(nll, mask),
            "reward": avg(reward, mask),
            "termination": avg(term, mask),
            "prediction": avg(prediction, mask),
        }
        if k:  # scored once for all steps: a few large ops instead of many small ones
            decoded = self._decode_standardised(torch.stack(predicted, 1))
            open_loop = (decoded - obs[:, 1 : k + 1]).pow(2).flatten(2).mean(-1)
            losses["open_loop"] = avg(open_loop, mask[:, :k])
        return losses

    def _total(self, losses: dict[str, torch.Tensor]) -> torch.Tensor:
        weights = {"kl": self.config.kl_weight, "prediction": self.config.prediction_weight}
        return sum(v * weights.get(k, 1.0) for k, v in losses.items())

    def fit(
        self,
        dataset: RolloutDataset,
        steps: int | None = None,
        writer: Any | None = None,
        progress: bool = True,
    ) -> dict[str, float]:
        """Train on sequences from ``dataset``; returns held-out losses per head.

        Every ``val_every``-th episode is held out. Normalisation statistics and start states are
        taken from the data on the first fit. Repeated calls continue training (the optimizer's
        state is kept), so refitting on a grown dataset is cheap.

        :param writer: a ``torch.utils.tensorboard.SummaryWriter`` for ``world_model/*`` scalars
        """
        self._check_dataset(dataset)
        steps = int(steps if steps is not None else self.config.fit_steps)
        c = self.config
        held_out = [i % c.val_every == c.val_every - 1 for i in range(len(dataset))]
        val_idx = [i for i, h in enumerate(held_out) if h]
        train = dataset.subset([i for i, h in enumerate(held_out) if not h]) if val_idx else dataset
        if int(self.trained_steps) == 0:
            self._set_statistics(train)
            if self.identity:
                self._set_linear_core(train)
        seen = np.union1d(self.trained_episodes.cpu().numpy(), train.episode_digests())
        self.trained_episodes = torch.as_tensor(seen, dtype=torch.long, device=self.device)
        self.set_start_states(dataset.start_states())
        optimizer = self._get_optimizer()
        self.train()
        with (
            _seeded(c.seed),
            progress_bar(total=steps, desc="fit world model", unit="step", disable=not progress) as bar,
        ):
            for i in range(steps):
                # Every step draws from (seed, step), so fit(n); fit(m) equals fit(n + m): a run
                # resumed between any two fits trains exactly as an uninterrupted one.
                rng = _step_rng(c.seed, int(self.trained_steps))
                losses = self.losses(self._to_torch(train.sample_sequences(c.batch_size, c.seq_len, rng)))
                total = self._total(losses)
                optimizer.zero_grad(set_to_none=True)
                total.backward()
                nn.utils.clip_grad_norm_(self.parameters(), c.grad_clip)
                if c.lr_schedule == "cosine":
                    for group in optimizer.param_groups:
                        group["lr"] = c.learning_rate * (
                            0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * i / steps))
                        )
                optimizer.step()
                self.trained_steps += 1
                step = int(self.trained_steps)
                if writer is not None and step % 50 == 0:
                    for k, v in losses.items():
                        writer.add_scalar(f"world_model/train/{k}", float(v.detach()), step)
                    writer.add_scalar("world_model/train/total", float(total.detach()), step)
                bar.update(1)
                bar.set_postfix(loss=f"{total.item():.3f}", refresh=False)
        self.eval()
        with _seeded(c.seed):  # the VAE samples: same data, same figures
            rng = _step_rng(c.seed, int(self.trained_steps), "validation")
            metrics = self.evaluate_losses(dataset.subset(val_idx) if val_idx else train, rng)
        if writer is not None:
            for k, v in metrics.items():
                writer.add_scalar(f"world_model/val/{k}", v, int(self.trained_steps))
        return metrics

    def _get_optimizer(self) -> torch.optim.Optimizer:
        if self._optimizer is None:
            self._optimizer = torch.optim.Adam(self.parameters(), lr=self.config.learning_rate)
        return self._optimizer

    def optimizer_state_dict(self) -> dict[str, Any]:
        """The fit optimizer's state, so that a resumed run continues training exactly."""
        return self._get_optimizer().state_dict()

    def load_optimizer_state_dict(self, state: dict[str, Any]) -> None:
        if not isinstance(state, dict) or not {"state", "param_groups"} <= set(state):
            raise GenrlError(f"expected the optimizer state of this world model, got {brief(state)}")
        # Adam only compares parameter counts; another model's moments would load and fail in fit().
        params = list(self.parameters())
        if not isinstance(state["state"], dict) or not all(
            isinstance(e, dict) for e in state["state"].values()
        ):
            raise GenrlError(f"expected the optimizer state of this world model, got {brief(state['state'])}")
        for index, entry in state["state"].items():
            shapes = {tuple(v.shape) for k, v in entry.items() if k != "step" and torch.is_tensor(v)}
            want = tuple(params[index].shape) if isinstance(index, int) and index < len(params) else None
            if want is None or shapes - {want}:
                raise GenrlError(
                    "expected the optimizer state of this world model, got another model's "
                    f"(parameter {index} has shape {want}, the state {sorted(shapes)})"
                )
        try:
            self._get_optimizer().load_state_dict(state)
        except (ValueError, KeyError, TypeError, RuntimeError, AttributeError, IndexError) as exc:
            raise GenrlError(
                f"expected the optimizer state of this world model, got another ({exc})"
            ) from None

    @torch.no_grad()
    def evaluate_losses(
        self, dataset: RolloutDataset, rng: np.random.Generator, batches: int = 8
    ) -> dict[str, float]:
        """Mean per-head losses on sequences sampled from ``dataset``."""
        c = self.config
        totals: dict[str, float] = {}
        for _ in range(batches):
            for k, v in self.losses(
                self._to_torch(dataset.sample_sequences(c.batch_size, c.seq_len, rng))
            ).items():
                totals[k] = totals.get(k, 0.0) + float(v) / batches
        return totals

    def _check_dataset(self, dataset: RolloutDataset) -> None:
        if not isinstance(dataset, RolloutDataset):
            raise GenrlError(f"expected a RolloutDataset to fit on, got {type(dataset).__name__}")
        dataset.check_spaces(self.observation_space, self.action_space)
        if dataset.num_steps == 0:
            raise GenrlError("the dataset is empty: expected at least one episode to fit on")

    def _set_statistics(self, dataset: RolloutDataset) -> None:
        obs = torch.as_tensor(dataset.all_states())
        rewards = torch.as_tensor(np.concatenate([ep["reward"] for ep in dataset.episodes]))
        self.obs_mean.copy_(obs.mean(0))
        self.obs_std.copy_(obs.std(0).nan_to_num(1.0).clamp_min(1e-3))
        self.reward_mean.copy_(rewards.mean())
        self.reward_std.copy_(rewards.std().nan_to_num(1.0).clamp_min(1e-3))

    def _set_linear_core(self, dataset: RolloutDataset, ridge: float = 1e-3) -> None:
        """Least-squares linear dynamics of the standardised observation: where training starts."""
        eps = [ep for ep in dataset.episodes if len(ep["action"])]
        with torch.no_grad():
            obs = torch.as_tensor(np.concatenate([ep["obs"][:-1] for ep in eps]), device=self.device)
            nxt = torch.as_tensor(np.concatenate([ep["obs"][1:] for ep in eps]), device=self.device)
            act = torch.as_tensor(np.concatenate([ep["action"] for ep in eps]), device=self.device)
            z, z_next = self.encode(obs).double(), self.encode(nxt).double()
            x = torch.cat([z, self.actions.encode(act).double(), torch.ones_like(z[:, :1])], -1)
            gram = x.T @ x + ridge * len(x) * torch.eye(x.shape[1], dtype=x.dtype, device=x.device)
            w = torch.linalg.solve(gram, x.T @ (z_next - z))  # (features + 1, latent)
        self.mdn.set_linear_core(w[:-1].T.float(), w[-1].float())

    def set_start_states(self, states: np.ndarray) -> None:
        """Real observations dreams may start from; kept with the model when it is saved."""
        states = np.asarray(states, dtype=np.float32)
        if len(states) > MAX_START_STATES:
            states = states[np.random.default_rng(0).choice(len(states), MAX_START_STATES, replace=False)]
        self.start_states = torch.as_tensor(states, device=self.device)

    def _to_torch(self, batch: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
        return {k: torch.as_tensor(v, device=self.device) for k, v in batch.items()}

    # ---- files -------------------------------------------------------------------------------

    def save(self, path: str | os.PathLike) -> None:
        """Write ``model.json`` (format, config, spaces) and ``weights.safetensors`` into a folder."""
        path = Path(path)
        state = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        atomic_write(path / "weights.safetensors", lambda tmp: save_file(state, tmp))
        write_json(
            path / "model.json",
            {
                "format": FORMAT,
                "version": VERSION,
                "config": dataclasses.asdict(self.config),
                "observation_space": space_to_json(self.observation_space),
                "action_space": space_to_json(self.action_space),
            },
        )

    @classmethod
    def load(cls, path: str | os.PathLike, device: str | torch.device = "cpu") -> WorldModel:
        """Load a saved model folder. Reads JSON and safetensors only: no code is executed.

        Nothing is allocated for the model before its weights file has been checked against it:
        a size in model.json that the weights do not back (a flipped digit) is an error, not gigabytes.
        """
        path = Path(path)
        meta_file = path / "model.json"
        meta = read_json(meta_file, "a genrl world model (model.json)")
        check_format(meta, FORMAT, VERSION, meta_file)
        if not isinstance(meta.get("config"), dict):
            raise GenrlError(f"{meta_file}: expected a config object, got {brief(meta.get('config'))}")
        try:
            obs_space = space_from_json(meta.get("observation_space"))
            act_space = space_from_json(meta.get("action_space"))
            config = WorldModelConfig.from_dict(meta["config"])
        except GenrlError as exc:
            raise GenrlError(f"{meta_file}: {exc}") from None
        weights = path / "weights.safetensors"
        if not weights.is_file():
            raise GenrlError(f"expected model weights at {weights}, found no such file")
        try:
            state = load_file(str(weights))  # safetensors checks its header against the file's size
        except (SafetensorError, OSError, ValueError) as exc:
            raise GenrlError(
                f"{weights}: expected a safetensors file, got an unreadable one ({one_line(exc)})"
            ) from None
        # Models saved before genrl recorded their training episodes: none are known.
        if isinstance(state, dict):
            state.setdefault("trained_episodes", torch.zeros((0,), dtype=torch.long))
        try:
            with torch.device("meta"):  # the described model's tensor shapes, without allocating them
                expected = cls(obs_space, act_space, config).state_dict()
        except (RuntimeError, OverflowError) as exc:  # sizes past what torch can even describe
            raise GenrlError(f"{meta_file}: expected a model of a possible size ({one_line(exc)})") from None
        check_tensors(
            state,
            expected,
            f"{weights}: weights do not match the model described in model.json",
            any_length=("start_states", "trained_episodes"),
            may_be_infinite=("_obs_low", "_obs_high"),  # the bounds of an unbounded observation space
        )
        model = cls(obs_space, act_space, config)
        # Their lengths vary, so they cannot load in place.
        model.start_states = state["start_states"].to(model.start_states.dtype)
        model.trained_episodes = state["trained_episodes"]
        model.load_state_dict(state, strict=True)
        return model.to(device).eval()

    def check_env_spaces(self, observation_space: spaces.Space, action_space: spaces.Space) -> None:
        """Raise GenrlError if a real env's spaces differ from the ones the model was built for."""
        check_spaces_match(
            (self.observation_space, self.action_space), (observation_space, action_space), "model", "env"
        )


def _step_rng(seed: int, step: int, purpose: str = "train") -> np.random.Generator:
    """A generator for one fit step, which also seeds torch's (forked) global RNG for that step."""
    rng = np.random.default_rng([seed % 2**63, step, purpose == "validation"])
    torch.manual_seed(int(rng.integers(2**63 - 1)))
    return rng


@contextlib.contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """Run with torch's global RNG seeded, restoring the caller's RNG state afterwards."""
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def _as_float(value: Any) -> float | None:
    """A real number as a float (inf if too large), or None for anything else, bools included."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    try:
        return float(value)
    except OverflowError:
        return math.inf
