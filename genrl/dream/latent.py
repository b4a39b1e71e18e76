"""A real env seen as a latent-mode dream sees itself: the model's features ``[z_t, h_t]``.

(For an image model; a vector model's features are its latent ``z_t`` alone, as they always were.)

A policy trained in latent-mode dreams acts on the latent of the current observation and the
recurrent state that summarises the history before it (World Models' controller input). Here a
real env gives the same features: each real observation is encoded, and the recurrent state is
carried forward with the action taken, exactly as a dream step carries it::

    h_{t+1} = model.advance(z_t, h_t, a_t),   z_{t+1} = encode(o_{t+1})

:class:`LatentObservation` wraps one env (for evaluating or deploying such a policy);
:class:`LatentPolicy` lets such a policy act on raw observations in :func:`genrl.collect`, which
records the real frames, not the features.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces

from genrl.errors import GenrlError
from genrl.model.world_model import WorldModel


def feature_space(model: WorldModel) -> spaces.Box:
    """The observation space of latent-mode dreams of ``model`` and of :class:`LatentObservation`."""
    return spaces.Box(-np.inf, np.inf, (model.feature_dim,), np.float32)


class LatentFeatures:
    """Features ``[z, h]`` of ``n`` real episodes, stepped alongside them."""

    def __init__(self, model: WorldModel, n: int):
        self.model = model
        self.z = torch.zeros(n, model.config.latent_dim, device=model.device)
        self.h = model.initial_state(n)

    @torch.inference_mode()
    def observe(self, obs: np.ndarray, starts: np.ndarray | None = None) -> np.ndarray:
        """Encode observations (n, *obs_shape); ``starts`` marks episodes that begin with them.

        A batch of another size than the last begins new episodes, all of them.
        """
        if len(obs) != len(self.h):
            self.h = self.model.initial_state(len(obs))
            starts = None
        if starts is not None and np.any(starts):
            self.h[torch.as_tensor(np.asarray(starts, dtype=bool), device=self.h.device)] = 0.0
        self.z = self.model.encode(torch.as_tensor(np.asarray(obs), device=self.model.device))
        return self.model.features(self.z, self.h).cpu().numpy()

    @torch.inference_mode()
    def act(self, actions: np.ndarray) -> None:
        """Carry the recurrent state forward with the actions taken from the last observations."""
        self.h = self.model.advance(
            self.z, self.h, torch.as_tensor(np.asarray(actions), device=self.model.device)
        )


class LatentObservation(gym.Wrapper):
    """A real env whose observations are ``model``'s features ``[z_t, h_t]``.

    ``info["frame"]`` keeps the real observation the features were computed from.
    """

    def __init__(self, env: gym.Env, model: WorldModel):
        super().__init__(env)
        model.check_env_spaces(env.observation_space, env.action_space)
        self.model = model
        self.observation_space = feature_space(model)
        self._features = LatentFeatures(model, 1)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        obs, info = self.env.reset(seed=seed, options=options)
        return self._features.observe(obs[None], np.ones(1, bool))[0], {**info, "frame": obs}

    def step(self, action: Any):
        self._features.act(np.asarray(action)[None])
        obs, reward, terminated, truncated, info = self.env.step(action)
        return self._features.observe(obs[None])[0], reward, terminated, truncated, {**info, "frame": obs}


class LatentPolicy:
    """A policy over features ``[z, h]`` (an SB3 model) made to act on raw observations.

    :func:`genrl.collect` calls :meth:`episode_start` with the envs whose observation begins an
    episode before each batch of actions, so that their recurrent state starts again from zero.
    In decoded dreams (:func:`genrl.evaluate`'s dream returns) it re-encodes the decoded frames.
    """

    def __init__(self, agent: Any, model: WorldModel, n_envs: int = 1, deterministic: bool = False):
        if not hasattr(agent, "predict"):
            raise GenrlError(
                f"LatentPolicy: expected an SB3 model (with predict), got {type(agent).__name__}"
            )
        self.agent, self.deterministic = agent, deterministic
        self.features = LatentFeatures(model, n_envs)
        self._starts: np.ndarray | None = np.ones(n_envs, bool)

    def episode_start(self, starts: np.ndarray) -> None:
        self._starts = np.asarray(starts, dtype=bool)

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        features = self.features.observe(obs, self._starts)
        self._starts = None
        action = self.agent.predict(features, deterministic=self.deterministic)[0]
        self.features.act(action)
        return action
