"""WorldModel: an observation encoder plus autoregressive latent dynamics (an MDN-RNN).

The model only predicts. One transition, for a batch::

    z_t     = encode(o_t),  o_t = decode(z_t)                the encoder's mean; decoded, clipped to the space
    h_{t+1} = GRU([z_t, a_t], h_t)                           a_t one-hot or scaled to [-1, 1]
    z_{t+1} ~ z_t + MDN(h_{t+1}, a_t)                        K-component Gaussian mixture, temperature tau
    r_t, done_t = heads(h_{t+1}, a_t, z_t, z_{t+1})          done_t: termination logit > 0

With ``ensemble_size`` K > 1 the dynamics are K members, each with its own h: every member
steps, one member's sample is the next latent (per dream or per step, as the caller picks), and
the disagreement is the spread of the members' mean predictions, ``mean_d std_k E_k[z_{t+1,d}]``,
divided by its mean on the real data the model was fitted on (1: as much as on the data); the
reward spread is the std of the members' rewards for the one sampled transition.
The recurrent state a caller holds is the K members' states side by side, (B, K * rnn_dim).

``step`` is one transition, ``unroll`` many under given actions, and ``predict_sequence`` scores a
real history one step at a time (teacher forced), as the trainer and the anomaly detector do.

Fitting lives in :mod:`genrl.model.trainer` (its losses in :mod:`genrl.model.losses`), the
file format in :mod:`genrl.model.files`; ``fit``, ``save`` and ``load`` here are entry points to
them. Resetting and episode bookkeeping live in the dream envs.
"""

from __future__ import annotations

import dataclasses
import math
import os
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import torch
from gymnasium import spaces
from torch import nn

from genrl.data.dataset import RolloutDataset
from genrl.errors import GenrlError
from genrl.model.config import FitConfig, WorldModelConfig, split_settings
from genrl.model.dynamics import LatentDynamics
from genrl.model.encoders import build_encoder, latent_size, resolve
from genrl.model.networks import ensemble_spread, mixture_mean, mixture_nll, mixture_sample, mixture_std
from genrl.util.checks import from_mapping
from genrl.util.seeding import fresh_seed, seeded
from genrl.util.spaces import ActionCodec, check_spaces_match, check_supported, is_binary, is_image

if TYPE_CHECKING:
    from genrl.model.trainer import Trainer

MAX_START_STATES = 10_000
MAX_IMAGE_START_STATES = 1_000  # a model file keeps them: 1,000 CarRacing frames are 27 MB


class StepOutput(NamedTuple):
    z: torch.Tensor  # (B, latent_dim) next latent
    h: torch.Tensor  # (B, K * rnn_dim) next recurrent state of every member
    reward: torch.Tensor  # (B,)
    terminated: torch.Tensor  # (B,) bool
    uncertainty: torch.Tensor  # (B,) predictive std of the next latent
    termination_prob: torch.Tensor  # (B,) sigmoid of the termination logit; terminated is prob > 0.5
    disagreement: torch.Tensor  # (B,) members' spread, 1 = as on the real data (0 for one model)
    reward_spread: torch.Tensor  # (B,) std of the members' predicted rewards, in reward units (0 for one)


class Unroll(NamedTuple):
    """A batch of imagined steps, (B, H, ...) each, and the recurrent state after the last."""

    z: torch.Tensor
    reward: torch.Tensor
    terminated: torch.Tensor
    uncertainty: torch.Tensor
    h: torch.Tensor
    disagreement: torch.Tensor


class SequencePrediction(NamedTuple):
    """The model's one-step predictions along a real history (teacher forced), per step (B, T)."""

    nll: torch.Tensor  # -log p(z_{t+1} | z_0..z_t, a_0..a_t) in nats, z the encoder's mean
    reward: torch.Tensor  # predicted reward of each transition
    termination_logit: torch.Tensor  # > 0 means the model predicts the episode ends there
    h: torch.Tensor  # (B, K * rnn_dim) recurrent state after the last step, to continue from

    # An ensemble predicts as the uniform mixture of its members: the nll is of that mixture, the
    # reward the members' mean, the termination logit that of their mean probability.


class WorldModel(nn.Module):
    """A generative model of an environment with the given spaces.

    :param observation_space: a Box: vectors, or images (H, W, C) with finite bounds
    :param action_space: Discrete or bounded Box
    :param config: a :class:`WorldModelConfig` (sizes), or a mapping of model and fit settings
    :param fit: a :class:`FitConfig`, or a mapping of its fields (``config``'s fit settings win)
    :param seed: seeds the initial weights and every fit; None draws one
    :param overrides: individual settings of either group, e.g. ``latent_dim=16, batch_size=64``
    """

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        config: WorldModelConfig | dict | None = None,
        fit: FitConfig | dict | None = None,
        *,
        seed: int | None = None,
        **overrides: Any,
    ):
        super().__init__()
        check_supported(observation_space, action_space)
        self.config, self.fit_config, self.seed = _settings(config, fit, seed, overrides)
        obs_shape = tuple(observation_space.shape)
        self.image = is_image(observation_space)
        check_observations(observation_space, self.fit_config)
        self.config = resolve(self.config, obs_shape, is_binary(observation_space))
        self.config = dataclasses.replace(self.config, latent_dim=latent_size(self.config, obs_shape))
        self.observation_space, self.action_space = observation_space, action_space
        self.actions = ActionCodec(action_space)
        with seeded(self.seed):
            self.encoder, self.decoder = build_encoder(self.config, obs_shape)
            self.dynamics = nn.ModuleList(
                LatentDynamics(
                    self.config.latent_dim, self.actions.dim, self.config, precise=self.encoder.exact
                )
                for _ in range(self.config.ensemble_size)
            )
        self.register_buffer("obs_mean", torch.zeros(obs_shape))
        self.register_buffer("obs_std", torch.ones(obs_shape))
        state_dtype = self._scale_pixels(observation_space) if self.image else torch.float32
        self.register_buffer("reward_mean", torch.zeros(()))
        self.register_buffer("reward_std", torch.ones(()))
        self.register_buffer("start_states", torch.zeros((0, *obs_shape), dtype=state_dtype))
        self.register_buffer("trained_steps", torch.zeros((), dtype=torch.long))
        # Digests (RolloutDataset.episode_digests) of every episode a fit has trained on, sorted.
        self.register_buffer("trained_episodes", torch.zeros((0,), dtype=torch.long))
        # The support of the real data (set after every fit): per latent dimension its range and
        # spread, and the range of rewards. Unbounded until a fit has seen data.
        latent = self.config.latent_dim
        self.register_buffer("support_low", torch.full((latent,), -torch.inf))
        self.register_buffer("support_high", torch.full((latent,), torch.inf))
        self.register_buffer("support_scale", torch.ones(latent))
        self.register_buffer("reward_low", torch.tensor(-torch.inf))
        self.register_buffer("reward_high", torch.tensor(torch.inf))
        # An ensemble's mean disagreement on the real data (set after every fit): disagreement
        # is reported in its units, so 1 is what the data itself gives and thresholds carry over
        # between tasks.
        self.register_buffer("disagreement_scale", torch.tensor(1.0))
        low, high = observation_space.low, observation_space.high
        self.register_buffer(
            "_obs_low", torch.as_tensor(np.where(np.isfinite(low), low, -np.inf), dtype=torch.float32)
        )
        self.register_buffer(
            "_obs_high", torch.as_tensor(np.where(np.isfinite(high), high, np.inf), dtype=torch.float32)
        )
        self._trainer: Trainer | None = None

    def _scale_pixels(self, space: spaces.Box) -> torch.dtype:
        """Standardise pixels to [0, 1] by the space's bounds (not by the data); returns the dtype
        start states keep: the space's own, as uint8 frames are a quarter of float32 ones."""
        low = space.low.astype(np.float32)
        self.obs_mean.copy_(torch.as_tensor(low))
        self.obs_std.copy_(torch.as_tensor(space.high.astype(np.float32) - low))
        return torch.from_numpy(np.zeros(0, space.dtype)).dtype

    @property
    def device(self) -> torch.device:
        return self.obs_mean.device

    # ---- z_t = encode(o_t) and o = decode(z) ----------------------------------------------------

    def encode(self, obs: torch.Tensor) -> torch.Tensor:
        """Observations (B, *obs_shape) -> latent means (B, latent_dim)."""
        return self.encoder((obs.float() - self.obs_mean) / self.obs_std)[0]

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Latents (B, latent_dim) -> observations, clipped to the observation space.

        Values of an integer or bool space are rounded to the values it holds (a Bernoulli
        decoder's cells are 1 where their probability is above one half), so that a decoded
        observation is one the real env could give, in its dtype once cast.
        """
        out = self.decoder(z)
        if self.config.likelihood == "bernoulli":
            out = torch.sigmoid(out)
        obs = torch.maximum(torch.minimum(out * self.obs_std + self.obs_mean, self._obs_high), self._obs_low)
        return obs.round() if self.start_states.dtype != torch.float32 else obs

    # ---- h, z, r, done: one step, many steps, a real history ----------------------------------

    @property
    def ensemble_size(self) -> int:
        return len(self.dynamics)

    def initial_state(self, batch_size: int) -> torch.Tensor:
        """The recurrent state a dream starts from: zeros (B, K * rnn_dim)."""
        return torch.zeros(batch_size, self.ensemble_size * self.config.rnn_dim, device=self.device)

    def step(
        self,
        z: torch.Tensor,
        h: torch.Tensor,
        action: torch.Tensor,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
        member: torch.Tensor | None = None,
    ) -> StepOutput:
        """Sample one transition for a batch. ``action`` holds env actions (indices or Box values).

        ``member`` (B,) picks the ensemble member each row follows; None draws one per row at
        random (per step). With one member it is ignored.
        """
        a = self.actions.encode(action)
        h_next = self._cells(z, h, a)
        mixtures = [dyn.mixture(h_next[:, k], z, a) for k, dyn in enumerate(self.dynamics)]
        rows = torch.arange(len(z), device=z.device)
        if self.ensemble_size == 1:
            pick = torch.zeros_like(rows)
            logits, mean, log_std = mixtures[0]
            disagreement = torch.zeros(len(z), device=z.device)
        else:
            if member is None:
                member = torch.randint(self.ensemble_size, (len(z),), generator=generator, device=z.device)
            pick = member.to(z.device).long()
            logits, mean, log_std = (torch.stack(part, 0)[pick, rows] for part in zip(*mixtures, strict=True))
            means = torch.stack([mixture_mean(lg, mu) for lg, mu, _ in mixtures], 0)
            disagreement = ensemble_spread(means) / self.disagreement_scale
        z_next = mixture_sample(logits, mean, log_std, temperature, generator)
        heads = [dyn.heads(h_next[:, k], a, z, z_next) for k, dyn in enumerate(self.dynamics)]
        rewards = torch.stack([r for r, _ in heads], 0)
        reward = rewards[pick, rows] * self.reward_std + self.reward_mean
        termination_logit = torch.stack([t for _, t in heads], 0)[pick, rows]
        # Every member scores the same sampled transition, so their spread is disagreement about
        # its reward alone: what a pessimistic dream (MOPO's penalty) charges for.
        if self.ensemble_size == 1:
            reward_spread = torch.zeros_like(reward)
        else:
            reward_spread = rewards.std(0, correction=0) * self.reward_std
        return StepOutput(
            z_next,
            h_next.flatten(1),
            reward,
            termination_logit > 0,
            mixture_std(logits, mean, log_std),
            torch.sigmoid(termination_logit),
            disagreement,
            reward_spread,
        )

    def advance(self, z: torch.Tensor, h: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """The recurrent state after acting: h_{t+1} from (z_t, h_t, a_t), as :meth:`step` computes it.

        A real env seen through the model's features (:class:`genrl.LatentObservation`) carries
        its recurrent state forward with this, then encodes the real next observation.
        """
        return self._cells(z, h, self.actions.encode(action)).flatten(1)

    def _cells(self, z: torch.Tensor, h: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        """Every member's next recurrent state, (B, K, rnn_dim), from encoded actions."""
        hs = h.unflatten(-1, (self.ensemble_size, self.config.rnn_dim))
        return torch.stack([dyn.cell(z, hs[:, k], a) for k, dyn in enumerate(self.dynamics)], 1)

    @property
    def feature_dim(self) -> int:
        """The size of the features latent mode gives a policy: an image model's latent and
        recurrent state (a frame shows no velocities: its history does), a vector model's latent."""
        return self.config.latent_dim + (self.ensemble_size * self.config.rnn_dim if self.image else 0)

    def features(self, z: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """What latent mode shows a policy at (z, h): ``[z, h]`` for an image model, else ``z``."""
        return torch.cat([z, h], -1) if self.image else z

    @torch.no_grad()
    def unroll(
        self,
        z: torch.Tensor,
        h: torch.Tensor,
        actions: torch.Tensor,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
        member: torch.Tensor | None = None,
    ) -> Unroll:
        """Imagine ``H`` steps open loop from (z, h) under env actions (B, H, ...), as one batch.

        ``member`` (B,) keeps each row on one ensemble member; None draws one per step.
        """
        steps = []
        for k in range(actions.shape[1]):
            out = self.step(z, h, actions[:, k], temperature, generator, member)
            z, h = out.z, out.h
            steps.append(out)
        stack = lambda name: torch.stack([getattr(s, name) for s in steps], 1)  # noqa: E731
        return Unroll(
            stack("z"), stack("reward"), stack("terminated"), stack("uncertainty"), h, stack("disagreement")
        )

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
        hs = (self.initial_state(batch) if h is None else h).unflatten(
            -1, (self.ensemble_size, self.config.rnn_dim)
        )
        nll, reward, termination, last = [], [], [], []
        for k, dyn in enumerate(self.dynamics):
            out, h_last = dyn.recur(z[:, :-1], a, hs[:, k])
            logits, mu, log_std = dyn.mixture(out, z[:, :-1], a)
            r, t = dyn.heads(out, a, z[:, :-1], z[:, 1:])
            nll.append(mixture_nll(logits, mu, log_std, z[:, 1:]))
            reward.append(r)
            termination.append(t)
            last.append(h_last)
        if self.ensemble_size == 1:
            nll_all, termination_logit = nll[0], termination[0]
        else:
            log_k = math.log(self.ensemble_size)
            nll_all = -(torch.logsumexp(-torch.stack(nll), 0) - log_k)
            termination_logit = torch.logit(torch.sigmoid(torch.stack(termination)).mean(0), eps=1e-6)
        return SequencePrediction(
            nll=nll_all,
            reward=torch.stack(reward).mean(0) * self.reward_std + self.reward_mean,
            termination_logit=termination_logit,
            h=torch.stack(last, 1).flatten(1),
        )

    # ---- the support of the real data ---------------------------------------------------------

    def out_of_support(self, z: torch.Tensor, margin: float) -> torch.Tensor:
        """(B,) True where a latent lies outside the data's range widened by ``margin`` spreads.

        Past the data, the dynamics and the reward head extrapolate: a dream there is nonsense.
        """
        slack = margin * self.support_scale
        return ((z < self.support_low - slack) | (z > self.support_high + slack)).any(-1)

    def clip_reward(self, reward: torch.Tensor) -> torch.Tensor:
        """Predicted rewards clipped to the range of the real rewards the model was fitted on."""
        return torch.minimum(torch.maximum(reward, self.reward_low), self.reward_high)

    # ---- what the model carries beside its networks -----------------------------------------

    def held_out_episodes(self, dataset: RolloutDataset) -> list[int]:
        """Indices of the episodes of ``dataset`` that this model has never trained on."""
        trained = self.trained_episodes.cpu().numpy()
        digests = dataset.episode_digests()
        return [int(i) for i in np.flatnonzero(~np.isin(digests, trained))]

    def set_start_states(self, states: np.ndarray) -> None:
        """Real observations dreams may start from; kept with the model when it is saved."""
        states = np.asarray(states)
        most = MAX_IMAGE_START_STATES if self.image else MAX_START_STATES
        if len(states) > most:
            states = states[np.random.default_rng(0).choice(len(states), most, replace=False)]
        self.start_states = torch.as_tensor(states, device=self.device).to(self.start_states.dtype)

    def check_env_spaces(self, observation_space: spaces.Space, action_space: spaces.Space) -> None:
        """Raise GenrlError if a real env's spaces differ from the ones the model was built for."""
        check_spaces_match(
            (self.observation_space, self.action_space), (observation_space, action_space), "model", "env"
        )

    # ---- entry points to the trainer and the file format --------------------------------------

    @property
    def trainer(self) -> Trainer:
        """The model's trainer, made on first use; it keeps the optimizer's state between fits."""
        if self._trainer is None:
            from genrl.model.trainer import Trainer  # the trainer depends on the model, not back

            self._trainer = Trainer(self)
        return self._trainer

    def fit(
        self,
        dataset: RolloutDataset,
        steps: int | None = None,
        writer: Any | None = None,
        progress: bool = True,
    ) -> dict[str, float]:
        """Train on ``dataset``; returns held-out losses per head. See :meth:`Trainer.fit`."""
        return self.trainer.fit(dataset, steps, writer, progress)

    def save(self, path: str | os.PathLike) -> None:
        """Write the model folder: ``model.json`` and ``weights.safetensors``."""
        from genrl.model.files import save_model

        save_model(self, path)

    @classmethod
    def load(cls, path: str | os.PathLike, device: str | torch.device = "auto") -> WorldModel:
        """Load a model folder (of any genrl version) on ``device``; no code in it is executed."""
        from genrl.model.files import load_model

        return load_model(path, device)


def check_observations(space: spaces.Box, fit: FitConfig) -> None:
    """Raise GenrlError unless an image space has finite bounds (pixels are scaled by them), and
    unless a discriminator of frames (``adversarial_weight``) has frames to judge."""
    if fit.adversarial_weight > 0 and not is_image(space):
        raise GenrlError(
            "fit setting adversarial_weight: expected image observations (H, W, C), "
            f"got observations of shape {space.shape}"
        )
    if is_image(space) and not (np.all(np.isfinite(space.low)) and np.all(np.isfinite(space.high))):
        raise GenrlError(
            f"image observations: expected a Box with finite bounds (such as 0 and 255), got {space}"
        )


def _settings(
    config: Any, fit: Any, seed: int | None, overrides: dict[str, Any]
) -> tuple[WorldModelConfig, FitConfig, int]:
    """The two groups of settings and the seed, from whichever form the caller gave them in."""
    if isinstance(config, WorldModelConfig):
        model_part, fit_part, seed_part = {}, {}, None
        base = config
    else:
        model_part, fit_part, seed_part = split_settings(config or {})
        base = WorldModelConfig()
    extra_model, extra_fit, extra_seed = split_settings(overrides)
    model = dataclasses.replace(base, **{**model_part, **extra_model})
    fit_base = from_mapping(FitConfig, fit if fit is not None else {}, "fit settings")
    fit_config = dataclasses.replace(fit_base, **{**fit_part, **extra_fit})
    given = [s for s in (seed, seed_part, extra_seed) if s is not None]
    return model, fit_config, fresh_seed(given[0] if given else None)
