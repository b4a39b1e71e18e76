"""Naive predictors a world model must beat: repeat the last observation, and linear dynamics.

Both predict open loop from one real observation and the real actions, exactly as a dream does,
so that their error curves stand beside the model's in ``genrl.evaluate``.

A model of images gets baselines that make sense for pixels, at a bounded cost: repeat the last
frame, the training data's mean frame (:class:`MeanFrame`), and linear dynamics of the model's own
latents, decoded by its decoder (:class:`LatentLinear`). Linear dynamics of the pixels themselves
would need a D x D Gram matrix (D = 27,648 for CarRacing: about 6 GB) and fit nothing useful.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch
from gymnasium import spaces

from genrl.data.dataset import RolloutDataset
from genrl.errors import GenrlError
from genrl.model.world_model import WorldModel
from genrl.util.spaces import ActionCodec


class RepeatLast:
    """Predicts that nothing changes: every future observation equals the first."""

    name = "repeat last"

    def rollout(self, first_obs: np.ndarray, actions: np.ndarray) -> np.ndarray:
        """first_obs (N, D), actions (N, H, ...) -> predicted observations (N, H, D)."""
        return np.repeat(first_obs[:, None], actions.shape[1], axis=1)


class LinearDynamics:
    """Ridge regression of the change in (standardised) observation on [observation, action, 1].

    Fitted by least squares on the same episodes as the world model; rolled out on its own
    predictions and clipped to the observation space's bounds, as the model's decoder is.
    """

    name = "linear"

    def __init__(self, observation_space: spaces.Box, action_space: spaces.Space, ridge: float = 1e-3):
        self.codec = ActionCodec(action_space)
        self.low, self.high = observation_space.low.ravel(), observation_space.high.ravel()
        self.ridge = float(ridge)
        self.mean: np.ndarray | None = None
        self.std: np.ndarray | None = None
        self.weights: np.ndarray | None = None

    def _features(self, obs: np.ndarray, actions: np.ndarray) -> np.ndarray:
        a = self.codec.encode(torch.as_tensor(actions)).numpy().reshape(len(obs), -1)
        return np.concatenate([(obs - self.mean) / self.std, a, np.ones((len(obs), 1))], axis=1)

    def fit(self, dataset: RolloutDataset) -> LinearDynamics:
        if not len(dataset) or dataset.num_steps == 0:
            raise GenrlError("expected episodes to fit the linear baseline on, got an empty dataset")
        obs = np.concatenate([ep.obs[:-1].reshape(ep.length, -1) for ep in dataset.episodes])
        nxt = np.concatenate([ep.obs[1:].reshape(ep.length, -1) for ep in dataset.episodes])
        actions = np.concatenate([ep.action for ep in dataset.episodes])
        return self.fit_arrays(obs, actions, nxt)

    def fit_arrays(self, obs: np.ndarray, actions: np.ndarray, nxt: np.ndarray) -> LinearDynamics:
        """Fit on transitions given as arrays: obs (N, D), env actions (N, ...), next obs (N, D)."""
        if not len(obs):
            raise GenrlError("expected transitions to fit the linear baseline on, got none")
        self.mean = obs.mean(0)
        self.std = np.maximum(obs.std(0), 1e-3)
        x = self._features(obs, actions)
        y = (nxt - obs) / self.std
        gram = x.T @ x + self.ridge * len(x) * np.eye(x.shape[1])
        self.weights = np.linalg.solve(gram, x.T @ y)
        return self

    def rollout(self, first_obs: np.ndarray, actions: np.ndarray) -> np.ndarray:
        """first_obs (N, D), actions (N, H, ...) -> predicted observations (N, H, D)."""
        if self.weights is None:
            raise GenrlError("the linear baseline is not fitted: expected fit(dataset) before rollout")
        obs, out = first_obs.astype(np.float64), []
        for k in range(actions.shape[1]):
            obs = obs + (self._features(obs, actions[:, k]) @ self.weights) * self.std
            obs = np.clip(obs, self.low, self.high)
            out.append(obs)
        return np.stack(out, axis=1)


class MeanFrame:
    """Predicts the same frame at every step: the mean of the training data's frames.

    For pixels it is the constant prediction of least squared error (for a grid of cells, each
    cell's frequency), what a model that learnt nothing of the dynamics could still output.
    """

    name = "mean frame"

    def __init__(self) -> None:
        self.frame: np.ndarray | None = None

    def fit(self, frames: Iterable[np.ndarray]) -> MeanFrame:
        """Average chunks of frames (B, H, W, C); only their running sum is kept (float64)."""
        total, count = None, 0
        for chunk in frames:
            part = np.asarray(chunk, dtype=np.float64).sum(0)
            total = part if total is None else total + part
            count += len(chunk)
        if total is None or count == 0:
            raise GenrlError("expected frames to fit the mean-frame baseline on, got none")
        self.frame = (total / count).astype(np.float32)
        return self

    def rollout(self, first_obs: np.ndarray, actions: np.ndarray) -> np.ndarray:
        """first_obs (N, ...), actions (N, H, ...) -> the mean frame (N, H, ...), broadcast (a view)."""
        if self.frame is None:
            raise GenrlError("the mean-frame baseline is not fitted: expected fit(frames) before rollout")
        return np.broadcast_to(self.frame, (len(first_obs), actions.shape[1], *self.frame.shape))


class LatentLinear:
    """The linear baseline of a model of images: :class:`LinearDynamics` of the model's latents.

    Fitted on real transitions encoded by the model's encoder (latent means), rolled out from the
    latent of a real first frame, clipped to the range of the fitted latents, and decoded by the
    model's decoder. Beside the model, it isolates the dynamics: both share the encoder and the
    decoder, so the model must beat it by what its learnt transitions add to a linear map.
    """

    name = "linear"

    def __init__(self, model: WorldModel, ridge: float = 1e-3):
        self.model, self.ridge = model, float(ridge)
        self.linear: LinearDynamics | None = None
        self.transitions = 0

    @torch.inference_mode()
    def fit(self, transitions: Iterable[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> LatentLinear:
        """Fit on chunks of real transitions (frames (B, ...), env actions (B, ...), next frames);
        each chunk is encoded and dropped, so only the latents are kept (as tensors until the
        end: small arrays made between large transient ones would pin the heap's memory)."""
        z, actions, z_next = [], [], []
        for obs, action, nxt in transitions:
            z.append(self.model.encode(torch.as_tensor(obs, device=self.model.device)))
            z_next.append(self.model.encode(torch.as_tensor(nxt, device=self.model.device)))
            actions.append(torch.as_tensor(action))
        if not z or not sum(len(x) for x in z):
            raise GenrlError("expected transitions to fit the linear baseline on, got none")
        z_all, z_next_all = (torch.cat(part).cpu().double().numpy() for part in (z, z_next))
        both = np.concatenate([z_all, z_next_all])
        bounds = spaces.Box(both.min(0), both.max(0), dtype=np.float64)
        self.linear = LinearDynamics(bounds, self.model.action_space, self.ridge)
        self.linear.fit_arrays(z_all, torch.cat(actions).numpy(), z_next_all)
        self.transitions = len(z_all)
        return self

    def rollout(self, first_z: np.ndarray, actions: np.ndarray) -> np.ndarray:
        """first_z (N, latent_dim), actions (N, H, ...) -> predicted latents (N, H, latent_dim);
        the caller decodes them (step by step, as a dream decodes)."""
        if self.linear is None:
            raise GenrlError("the linear baseline is not fitted: expected fit(transitions) before rollout")
        return self.linear.rollout(np.asarray(first_z, dtype=np.float64), actions)
