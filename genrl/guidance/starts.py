"""Start states for a synthesised environment: real, perturbed real, or drawn from the model's prior.

Distances are in standardised units: each observation value divided by the standard deviation of
the data the model was fitted on, so one radius means the same in every dimension and task.
"""

from __future__ import annotations

import numpy as np
import torch

from genrl.data.dataset import RolloutDataset
from genrl.errors import GenrlError
from genrl.model.world_model import WorldModel

START_CHOICES = ("real", "perturbed", "prior")


class StandardUnits:
    """A model's observations as flat standardised vectors, and back; bounds are the space's."""

    def __init__(self, model: WorldModel):
        self.shape = tuple(model.observation_space.shape)
        self.mean = model.obs_mean.detach().cpu().numpy().astype(np.float64).ravel()
        self.std = model.obs_std.detach().cpu().numpy().astype(np.float64).ravel()
        space = model.observation_space
        self.low = (np.asarray(space.low, dtype=np.float64).ravel() - self.mean) / self.std
        self.high = (np.asarray(space.high, dtype=np.float64).ravel() - self.mean) / self.std

    def to_standard(self, obs: np.ndarray) -> np.ndarray:
        return (np.asarray(obs, dtype=np.float64).reshape(len(obs), -1) - self.mean) / self.std

    def to_obs(self, x: np.ndarray) -> np.ndarray:
        """Standardised vectors (N, D), clipped to the observation space, as observations."""
        x = np.clip(x, self.low, self.high)
        return (x * self.std + self.mean).reshape(len(x), *self.shape).astype(np.float32)


def real_starts(model: WorldModel, dataset: RolloutDataset | None) -> np.ndarray:
    """The real reset observations: the dataset's, else those the model was fitted with."""
    if dataset is not None and len(dataset):
        return dataset.start_states().astype(np.float32)
    if len(model.start_states):
        return model.start_states.detach().cpu().numpy().astype(np.float32)
    raise GenrlError("no real start states: expected a dataset, or a model fitted on one")


def perturbed(
    units: StandardUnits, states: np.ndarray, radius: float, rng: np.random.Generator
) -> np.ndarray:
    """Each state moved by up to ``radius`` (standardised) in every value, uniformly, within bounds."""
    x = units.to_standard(states)
    return units.to_obs(x + rng.uniform(-radius, radius, size=x.shape))


def prior_starts(model: WorldModel, n: int, seed: int) -> np.ndarray:
    """Decoded latents z ~ N(0, I). For the identity encoder the latent is the standardised
    observation, so these are Gaussian with the fitted data's mean and standard deviation."""
    generator = torch.Generator(device=model.device).manual_seed(seed)
    z = torch.randn(n, model.config.latent_dim, generator=generator, device=model.device)
    with torch.inference_mode():
        return model.decode(z).cpu().numpy().astype(np.float32)


def ordinary_starts(
    model: WorldModel,
    dataset: RolloutDataset | None,
    start: str,
    n: int,
    perturbation: float,
    seed: int,
) -> tuple[np.ndarray, np.ndarray]:
    """(the ``n`` starts of mode ``start``, the states they were made from).

    ``real`` takes up to ``n`` distinct real reset observations; ``perturbed`` moves ``n`` of them
    (drawn with replacement when there are fewer) by up to ``perturbation``; ``prior`` decodes ``n``
    draws of the latent prior. The second array is what an adversarial search perturbs: the real
    reset observations, or for ``prior`` the prior's draws.
    """
    rng = np.random.default_rng(seed)
    if start == "prior":
        drawn = prior_starts(model, n, seed)
        return drawn, drawn
    pool = real_starts(model, dataset)
    if start == "real":
        return pool[np.sort(rng.choice(len(pool), size=min(n, len(pool)), replace=False))], pool
    pick = rng.choice(len(pool), size=n, replace=n > len(pool))
    return perturbed(StandardUnits(model), pool[pick], perturbation, rng), pool
