"""DreamEnv: a gymnasium.Env whose transitions are sampled from a WorldModel."""

from __future__ import annotations

import os
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from genrl.data.dataset import RolloutDataset
from genrl.dream.batch import DreamBatch, MemberMode, ObsMode, StartMode
from genrl.dream.package import open_dream
from genrl.dream.reward import RewardFn
from genrl.errors import GenrlError
from genrl.model.world_model import WorldModel
from genrl.util.checks import check_choice


class DreamEnv(gym.Env):
    """One imagined episode at a time, with the real env's action space.

    With ``obs_mode="decoded"`` observations live in the real env's observation space, so a policy
    moves between dream and reality unchanged. Hitting ``horizon`` truncates; the model's
    termination head terminates, and so does leaving the support with ``off_support="terminate"``
    (an episode that ends says in ``info["left_support"]`` whether it left).
    ``info["uncertainty"]`` is the predictive std of the step, ``info["disagreement"]`` the spread
    of an ensemble's members (0 for one model).

    ``reset(options={"initial_obs": obs})`` starts from a given real observation instead of a
    sampled start state.

    :param model: a :class:`WorldModel`, the folder of a saved one, or an environment package
        (:mod:`genrl.dream.package`), whose start states, horizon, temperature, obs_mode and reward
        are then the defaults, and whose card is ``self.card`` (its one line in
        ``metadata["genrl_card"]``)
    :param horizon: steps before truncation (default 500); ``temperature`` defaults to 1,
        ``obs_mode`` to ``"decoded"``
    :param device: ``"auto"`` keeps a model instance where it is (a saved one loads onto CUDA
        when present); another device must be the instance's own: a model is never moved
    :param starts: observations (N, *obs_shape) to start from instead of the dataset's or model's
    :param reward: a reward override (:mod:`genrl.dream.reward`), a mapping or a callable
    :param support: truncate a dream whose latent leaves the real data's range widened by this
        many of its standard deviations (None: never); ``clip_reward`` clips learned rewards to
        the real rewards' range; with an ensemble, ``max_disagreement`` truncates where the
        members disagree more, ``exploration_bonus`` rewards their disagreement,
        ``reward_penalty`` charges for their spread of rewards and ``member``
        picks how dreams follow members; ``off_support="terminate"`` ends a dream that leaves the
        support instead of truncating it (see
        :class:`~genrl.dream.batch.DreamBatch`)
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 30}

    def __init__(
        self,
        model: WorldModel | str | os.PathLike,
        dataset: RolloutDataset | None = None,
        horizon: int | None = None,
        obs_mode: ObsMode | None = None,
        temperature: float | None = None,
        start: StartMode = "initial",
        device: str | torch.device = "auto",
        render_mode: str | None = None,
        *,
        starts: np.ndarray | None = None,
        reward: dict | RewardFn | None = None,
        support: float | None = 3.0,
        clip_reward: bool = True,
        max_disagreement: float | None = None,
        exploration_bonus: float = 0.0,
        member: MemberMode = "episode",
        off_support: str = "truncate",
        reward_penalty: float = 0.0,
    ):
        self.render_mode = check_choice(render_mode, "render_mode", (None, "rgb_array"))
        given = {"horizon": horizon, "obs_mode": obs_mode, "temperature": temperature}
        source = open_dream(model, device, dataset, **given, starts=starts, reward=reward)
        self.model, self.card = source.model, source.card
        if source.summary is not None:
            self.metadata = {**type(self).metadata, "genrl_card": source.summary}
        self.dream = DreamBatch(
            self.model,
            1,
            dataset,
            start=start,
            support=support,
            clip_reward=clip_reward,
            max_disagreement=max_disagreement,
            exploration_bonus=exploration_bonus,
            member=member,
            off_support=off_support,
            reward_penalty=reward_penalty,
            **source.settings,
        )
        self.observation_space = self.dream.observation_space
        self.action_space = self.dream.action_space
        self._obs: np.ndarray | None = None

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        # Derive torch's generator from gymnasium's, so reset(seed=s) fixes the whole trajectory.
        self.dream.seed(int(self.np_random.integers(2**63 - 1)))
        initial = None
        if options and options.get("initial_obs") is not None:
            initial = self._check_obs(options["initial_obs"])
        obs = self.dream.reset(initial_obs=initial)
        self._obs = self._to_numpy(obs[0])
        return self._obs, {}

    def step(self, action: Any):
        if self._obs is None:
            raise GenrlError("step() called before reset(): expected reset() first")
        action = self.model.actions.check(action)
        obs, reward, terminated, truncated, uncertainty = self.dream.step(torch.as_tensor(action[None]))
        self._obs = self._to_numpy(obs[0])
        info = {"uncertainty": float(uncertainty[0]), "disagreement": float(self.dream.disagreement[0])}
        if truncated[0] or terminated[0]:
            info["left_support"] = bool(self.dream.left_support[0])
        return self._obs, float(reward[0]), bool(terminated[0]), bool(truncated[0]), info

    def render(self) -> np.ndarray | None:
        if self.render_mode != "rgb_array" or self._obs is None:
            return None
        return self.dream.render(self._obs)

    def _check_obs(self, obs: Any) -> torch.Tensor:
        expected = f"a finite array of shape {self.model.observation_space.shape}"
        try:
            arr = np.asarray(obs, dtype=np.float32)
        except (ValueError, TypeError):
            given = f"a {type(obs).__name__} that is not one"
            raise GenrlError(f"initial_obs: expected {expected}, got {given}") from None
        if arr.shape != self.model.observation_space.shape:
            raise GenrlError(f"initial_obs: expected {expected}, got shape {arr.shape}")
        if not np.all(np.isfinite(arr)):
            bad = int(np.sum(~np.isfinite(arr)))
            raise GenrlError(f"initial_obs: expected {expected}, got one with {bad} NaN or inf value(s)")
        return torch.as_tensor(arr[None])

    def _to_numpy(self, obs: torch.Tensor) -> np.ndarray:
        return obs.cpu().numpy().astype(self.observation_space.dtype)
