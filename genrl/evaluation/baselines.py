"""Naive predictors a world model must beat: repeat the last observation, and linear dynamics.

Both predict open loop from one real observation and the real actions, exactly as a dream does,
so that their error curves stand beside the model's in ``genrl.evaluate``.
"""

from __future__ import annotations

import numpy as np
import torch
from gymnasium import spaces

from genrl.data.dataset import RolloutDataset
from genrl.errors import GenrlError
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
