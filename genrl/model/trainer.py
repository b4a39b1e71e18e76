"""Fitting a world model: optimiser, learning-rate schedule, validation split and logging.

The trainer is apart from the model (as in mbrl-lib): the model only predicts, and the trainer
changes its weights and the statistics it carries (normalisation, start states, the record of
the episodes it trained on). ``WorldModel.fit`` keeps one trainer per model, so repeated fits
continue with the optimizer's state.

An image model is fitted as World Models fits one, in three stages per fit, each timed:
``steps`` VAE steps on batches of frames, one pass encoding every frame to its latent mean, and
``steps`` dynamics steps on windows of those cached latents. Frames are read from the episodes
where they lie, never copied into one array, so memory holds the dataset's frames once.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from gymnasium import spaces
from torch import nn

from genrl.data.dataset import RolloutDataset
from genrl.errors import GenrlError
from genrl.model.adversarial import Adversary
from genrl.model.losses import total_loss, vae_losses, world_model_losses
from genrl.model.networks import ensemble_spread, mixture_mean
from genrl.util.checks import check_int, describe
from genrl.util.progress import progress_bar
from genrl.util.seeding import seeded

if TYPE_CHECKING:
    from genrl.model.world_model import WorldModel

LOG_EVERY = 50  # fit steps between TensorBoard scalars
ENCODE_BATCH = 512  # frames encoded at once when caching latents


class Trainer:
    """Fits ``model`` with its own fit settings (``model.fit_config``)."""

    def __init__(self, model: WorldModel):
        self.model = model
        self._optimizer: torch.optim.Optimizer | None = None
        # An image model's discriminator, with adversarial_weight > 0: training-only, so not in
        # the model file or the checkpoint's optimizer state; a resumed run starts a new one.
        self._adversary: Adversary | None = None
        # An image model's cost of each stage of the last fit, in seconds.
        self.stage_seconds: dict[str, float] = {}

    @property
    def optimizer(self) -> torch.optim.Optimizer:
        if self._optimizer is None:
            self._optimizer = torch.optim.Adam(
                self.model.parameters(), lr=self.model.fit_config.learning_rate
            )
        return self._optimizer

    def fit(
        self,
        dataset: RolloutDataset,
        steps: int | None = None,
        writer: Any | None = None,
        progress: bool = True,
    ) -> dict[str, float]:
        """Train on sequences from ``dataset``; returns held-out losses per head.

        Every ``val_every``-th episode is held out. Normalisation statistics and start states are
        taken from the data on the first fit. Every step draws from (seed, step), so fit(n); fit(m)
        equals fit(n + m) under a constant learning rate: a run resumed between any two fits
        trains exactly as an uninterrupted one.

        :param writer: a ``torch.utils.tensorboard.SummaryWriter`` for ``world_model/*`` scalars
        """
        model, c = self.model, self.model.fit_config
        self._check_dataset(dataset)
        steps = check_int(steps if steps is not None else c.steps, "fit steps", 0)
        train, validation = self._split(dataset)
        if int(model.trained_steps) == 0:
            set_statistics(model, train)
            if model.encoder.exact:
                set_linear_core(model, train)
        seen = np.union1d(model.trained_episodes.cpu().numpy(), train.episode_digests())
        model.trained_episodes = torch.as_tensor(seen, dtype=torch.long, device=model.device)
        model.set_start_states(dataset.start_states())
        if model.image:
            metrics = self._fit_images(dataset, train, validation, steps, progress, writer)
        else:
            self._steps("fit world model", steps, progress, lambda i: self._step(train, i, steps, writer))
            set_support(model, dataset)
            with seeded(model.seed):  # the VAE samples: same data, same figures
                rng = step_rng(model.seed, int(model.trained_steps), "validation")
                metrics = self.evaluate_losses(validation, rng)
        if writer is not None:
            for k, v in metrics.items():
                writer.add_scalar(f"world_model/val/{k}", v, int(model.trained_steps))
        return metrics

    def _fit_images(
        self,
        dataset: RolloutDataset,
        train: RolloutDataset,
        validation: RolloutDataset,
        steps: int,
        progress: bool,
        writer: Any | None,
    ) -> dict[str, float]:
        """The VAE on frames, every frame encoded once, then the dynamics on cached latents."""
        model, c = self.model, self.model.fit_config
        clock = time.perf_counter()
        if c.adversarial_weight > 0 and self._adversary is None:
            self._adversary = Adversary(model)
        adversary = self._adversary

        def vae_step(i: int) -> float:
            rng = step_rng(model.seed, int(model.trained_steps))
            frames = torch.as_tensor(train.sample_states(2 * c.batch_size, rng), device=model.device)
            losses = vae_losses(model, frames) if adversary is None else adversary.vae_losses(frames)
            total = self._update(losses, i, steps, writer)
            if adversary is not None:  # the discriminator's step, after the decoder's
                loss_d = adversary.step()
                if writer is not None and int(model.trained_steps) % LOG_EVERY == 0:
                    writer.add_scalar("world_model/train/adversarial_d", loss_d, int(model.trained_steps))
            return total

        self._steps("fit image VAE", steps, progress, vae_step)
        self.stage_seconds = {"vae": time.perf_counter() - clock}
        clock = time.perf_counter()
        latents = encode_episodes(model, dataset)
        self.stage_seconds["encode"] = time.perf_counter() - clock
        clock = time.perf_counter()
        space = spaces.Box(-np.inf, np.inf, (model.config.latent_dim,), np.float32)
        coded = dataset.with_observations(space, latents)
        train_z, validation_z = self._split(coded)
        self._steps("fit dynamics", steps, progress, lambda i: self._step(train_z, i, steps, writer))
        self.stage_seconds["dynamics"] = time.perf_counter() - clock
        set_support(model, coded, latent=True)
        with seeded(model.seed):
            rng = step_rng(model.seed, int(model.trained_steps), "validation")
            metrics = self.evaluate_losses(validation_z, rng)
            frames = torch.as_tensor(validation.sample_states(8 * c.batch_size, rng), device=model.device)
            with torch.no_grad():
                metrics |= {k: float(v) for k, v in vae_losses(model, frames).items()}
        return metrics

    def _steps(self, what: str, steps: int, progress: bool, step: Callable[[int], float]) -> None:
        """``steps`` calls of ``step(i)`` (each returns its total loss) in training mode, with progress."""
        model = self.model
        model.train()
        with seeded(model.seed), progress_bar(steps, what, "step", disable=not progress) as bar:
            for i in range(steps):
                total = step(i)
                bar.update(1)
                bar.set_postfix(loss=f"{total:.3f}", refresh=False)
        model.eval()

    def _split(self, dataset: RolloutDataset) -> tuple[RolloutDataset, RolloutDataset]:
        """(training, validation) episodes; with too few episodes to hold any out, both are all."""
        every = self.model.fit_config.val_every
        held_out = [i % every == every - 1 for i in range(len(dataset))]
        val_idx = [i for i, h in enumerate(held_out) if h]
        if not val_idx:
            return dataset, dataset
        return dataset.subset([i for i, h in enumerate(held_out) if not h]), dataset.subset(val_idx)

    def _step(self, train: RolloutDataset, i: int, steps: int, writer: Any | None) -> float:
        """One gradient step (step ``i`` of ``steps`` in this fit); returns the total loss."""
        rng = step_rng(self.model.seed, int(self.model.trained_steps))
        return self._update(
            world_model_losses(self.model, self._batch(train, rng), self.model.fit_config), i, steps, writer
        )

    def _update(self, losses: dict[str, torch.Tensor], i: int, steps: int, writer: Any | None) -> float:
        """One optimiser step on the sum of ``losses`` (step ``i`` of ``steps`` of the schedule)."""
        model, c, optimizer = self.model, self.model.fit_config, self.optimizer
        total = total_loss(losses, c)
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        nn.utils.clip_grad_norm_(model.parameters(), c.grad_clip)
        if c.lr_schedule == "cosine":
            for group in optimizer.param_groups:
                group["lr"] = c.learning_rate * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * i / steps)))
        optimizer.step()
        model.trained_steps += 1
        step = int(model.trained_steps)
        if writer is not None and step % LOG_EVERY == 0:
            for k, v in losses.items():
                writer.add_scalar(f"world_model/train/{k}", float(v.detach()), step)
            writer.add_scalar("world_model/train/total", float(total.detach()), step)
        return total.item()

    def _batch(self, dataset: RolloutDataset, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        c, members = self.model.fit_config, self.model.ensemble_size
        batch = dataset.sample_sequences(c.batch_size, c.seq_len, rng)
        if members > 1:
            # The online bootstrap (Oza, 2001): Poisson(1) counts per window and member resample
            # each batch differently for every member, at no cost in data or memory.
            batch["member_weights"] = rng.poisson(1.0, (members, c.batch_size)).astype(np.float32)
        return {k: torch.as_tensor(v, device=self.model.device) for k, v in batch.items()}

    @torch.no_grad()
    def evaluate_losses(
        self, dataset: RolloutDataset, rng: np.random.Generator, batches: int = 8
    ) -> dict[str, float]:
        """Mean per-head losses on sequences sampled from ``dataset``."""
        totals: dict[str, float] = {}
        for _ in range(batches):
            for k, v in world_model_losses(
                self.model, self._batch(dataset, rng), self.model.fit_config
            ).items():
                totals[k] = totals.get(k, 0.0) + float(v) / batches
        return totals

    def _check_dataset(self, dataset: RolloutDataset) -> None:
        if not isinstance(dataset, RolloutDataset):
            raise GenrlError(f"expected a RolloutDataset to fit on, got {type(dataset).__name__}")
        dataset.check_spaces(self.model.observation_space, self.model.action_space)
        if dataset.num_steps == 0:
            raise GenrlError("the dataset is empty: expected at least one episode to fit on")

    # ---- the optimizer's state, for checkpoints ---------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """The optimizer's state, so that a resumed run continues training exactly."""
        return self.optimizer.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Load an optimizer state from :meth:`state_dict`, checked against this model first."""
        _check_optimizer_state(state, list(self.model.parameters()))
        try:
            self.optimizer.load_state_dict(state)
        except (ValueError, KeyError, TypeError, RuntimeError, AttributeError, IndexError) as exc:
            raise GenrlError(
                f"expected the optimizer state of this world model, got another ({exc})"
            ) from None


def _check_optimizer_state(state: Any, params: list[torch.Tensor]) -> None:
    """Adam only compares parameter counts; another model's moments would load and fail in fit()."""
    if not isinstance(state, dict) or not {"state", "param_groups"} <= set(state):
        raise GenrlError(f"expected the optimizer state of this world model, got {describe(state)}")
    if not isinstance(state["state"], dict) or not all(isinstance(e, dict) for e in state["state"].values()):
        raise GenrlError(f"expected the optimizer state of this world model, got {describe(state['state'])}")
    for index, entry in state["state"].items():
        shapes = {tuple(v.shape) for k, v in entry.items() if k != "step" and torch.is_tensor(v)}
        want = tuple(params[index].shape) if isinstance(index, int) and index < len(params) else None
        if want is None or shapes - {want}:
            raise GenrlError(
                "expected the optimizer state of this world model, got another model's "
                f"(parameter {index} has shape {want}, the state {sorted(shapes)})"
            )


def set_statistics(model: WorldModel, dataset: RolloutDataset) -> None:
    """Normalisation statistics of observations and rewards, from the data of a first fit.

    An image model's pixels keep the scale of the space's bounds (set when it was made).
    """
    if not model.image:
        obs = torch.as_tensor(dataset.all_states())
        model.obs_mean.copy_(obs.mean(0))
        model.obs_std.copy_(obs.std(0).nan_to_num(1.0).clamp_min(1e-3))
    rewards = torch.as_tensor(np.concatenate([ep.reward for ep in dataset.episodes]))
    model.reward_mean.copy_(rewards.mean())
    model.reward_std.copy_(rewards.std().nan_to_num(1.0).clamp_min(1e-3))


@torch.no_grad()
def encode_episodes(model: WorldModel, dataset: RolloutDataset) -> list[np.ndarray]:
    """Every episode's frames as latent means, (T+1, latent_dim) float32 each."""
    out = []
    for ep in dataset.episodes:
        chunks = [
            model.encode(torch.as_tensor(ep.obs[i : i + ENCODE_BATCH], device=model.device)).cpu()
            for i in range(0, len(ep.obs), ENCODE_BATCH)
        ]
        out.append(torch.cat(chunks).numpy())
    return out


@torch.no_grad()
def set_support(model: WorldModel, dataset: RolloutDataset, batch: int = 4096, latent: bool = False) -> None:
    """The range and spread of the data's latents, and the range of its rewards, on the model.

    ``latent``: the dataset's observations are latents already (an image model's cached ones).
    """
    states = dataset.all_states()
    chunks = [
        torch.as_tensor(states[i : i + batch], device=model.device) for i in range(0, len(states), batch)
    ]
    z = torch.cat(chunks if latent else [model.encode(x) for x in chunks])
    rewards = torch.as_tensor(np.concatenate([ep.reward for ep in dataset.episodes]), device=model.device)
    if model.ensemble_size > 1:
        model.disagreement_scale.copy_(data_disagreement(model, dataset, latent))
    model.support_low.copy_(z.min(0).values)
    model.support_high.copy_(z.max(0).values)
    model.support_scale.copy_(z.std(0).nan_to_num(1.0).clamp_min(1e-3))
    if len(rewards):
        model.reward_low.copy_(rewards.min())
        model.reward_high.copy_(rewards.max())


@torch.no_grad()
def data_disagreement(
    model: WorldModel, dataset: RolloutDataset, latent: bool = False, windows: int = 64
) -> torch.Tensor:
    """An ensemble's mean disagreement on real windows of ``dataset``, each step teacher forced."""
    batch = dataset.sample_sequences(windows, model.fit_config.seq_len, np.random.default_rng(model.seed))
    obs = torch.as_tensor(batch["obs"], device=model.device)
    mask = torch.as_tensor(batch["mask"], device=model.device).float()
    z = obs if latent else model.encode(obs.flatten(0, 1)).unflatten(0, obs.shape[:2])
    a = model.actions.encode(torch.as_tensor(batch["action"], device=model.device).flatten(0, 1))
    a = a.unflatten(0, mask.shape)
    means = []
    for dynamics in model.dynamics:
        h = dynamics.recur(z[:, :-1], a)[0]
        means.append(mixture_mean(*dynamics.mixture(h, z[:, :-1], a)[:2]))
    per_step = ensemble_spread(torch.stack(means))
    return ((per_step * mask).sum() / mask.sum().clamp_min(1.0)).clamp_min(1e-8)


def set_linear_core(model: WorldModel, dataset: RolloutDataset, ridge: float = 1e-3) -> None:
    """Least-squares linear dynamics of the standardised observation: where training starts.

    Member 0 of an ensemble fits all transitions, each other member a bootstrap resample of them.
    """
    eps = [ep for ep in dataset.episodes if ep.length]
    rng = np.random.default_rng([model.seed % 2**63, 0])
    with torch.no_grad():
        obs = torch.as_tensor(np.concatenate([ep.obs[:-1] for ep in eps]), device=model.device)
        nxt = torch.as_tensor(np.concatenate([ep.obs[1:] for ep in eps]), device=model.device)
        act = torch.as_tensor(np.concatenate([ep.action for ep in eps]), device=model.device)
        z, z_next = model.encode(obs).double(), model.encode(nxt).double()
        x = torch.cat([z, model.actions.encode(act).double(), torch.ones_like(z[:, :1])], -1)
        y = z_next - z
        for k, dynamics in enumerate(model.dynamics):
            rows = torch.as_tensor(rng.integers(len(x), size=len(x)) if k else np.arange(len(x)))
            xk, yk = x[rows.to(x.device)], y[rows.to(x.device)]
            gram = xk.T @ xk + ridge * len(xk) * torch.eye(x.shape[1], dtype=x.dtype, device=x.device)
            w = torch.linalg.solve(gram, xk.T @ yk)  # (features + 1, latent)
            dynamics.set_linear_core(w[:-1].T.float(), w[-1].float())


def step_rng(seed: int, step: int, purpose: str = "train") -> np.random.Generator:
    """A generator for one fit step, which also seeds torch's (forked) global RNG for that step."""
    rng = np.random.default_rng([seed % 2**63, step, purpose == "validation"])
    torch.manual_seed(int(rng.integers(2**63 - 1)))
    return rng
