"""DreamVecEnv: N dreams as one torch batch behind stable-baselines3's VecEnv interface."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from stable_baselines3.common.vec_env.base_vec_env import VecEnv, VecEnvIndices, VecEnvStepReturn

from genrl.data.dataset import RolloutDataset
from genrl.dream.batch import DreamBatch, MemberMode, ObsMode, StartMode
from genrl.dream.package import open_dream
from genrl.dream.reward import RewardFn
from genrl.errors import GenrlError
from genrl.model.world_model import WorldModel


class DreamVecEnv(VecEnv):
    """An SB3 ``VecEnv`` stepping ``n_envs`` dreams at once, on CPU or CUDA.

    Follows SB3's auto-reset contract: a finished dream is restarted from a real start state at
    once, the observation returned is the new episode's first, and ``infos[i]`` carries
    ``terminal_observation`` and ``TimeLimit.truncated``. ``infos[i]["uncertainty"]`` is the
    predictive std of each step, ``infos[i]["disagreement"]`` an ensemble's spread (0 for one).

    :param model: a :class:`WorldModel`, the folder of a saved one, or an environment package,
        whose settings are then the defaults (as for :class:`~genrl.dream.env.DreamEnv`)
    :param device: ``"auto"`` keeps a model instance where it is (a saved one loads onto CUDA
        when present); another device must be the instance's own: a model is never moved
    :param seed: seeds start states and the dynamics' noise; None draws fresh entropy
    :param starts: observations (N, *obs_shape) to start from instead of the dataset's or model's
    :param reward: a reward override (:mod:`genrl.dream.reward`), a mapping or a callable
    :param support: truncate a dream whose latent leaves the real data's range widened by this
        many of its standard deviations (None: never); ``clip_reward`` clips learned rewards to
        the real rewards' range; with an ensemble, ``max_disagreement`` truncates where the
        members disagree more, ``exploration_bonus`` rewards their disagreement,
        ``reward_penalty`` charges for their spread of rewards and ``member``
        picks how dreams follow members (see :class:`~genrl.dream.batch.DreamBatch`)
    """

    def __init__(
        self,
        model: WorldModel | str | os.PathLike,
        n_envs: int = 256,
        dataset: RolloutDataset | None = None,
        horizon: int | None = None,
        obs_mode: ObsMode | None = None,
        temperature: float | None = None,
        start: StartMode = "initial",
        device: str | torch.device = "auto",
        seed: int | None = None,
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
        given = {"horizon": horizon, "obs_mode": obs_mode, "temperature": temperature}
        source = open_dream(model, device, dataset, **given, starts=starts, reward=reward)
        self.model, self.card = source.model, source.card
        self.dream = DreamBatch(
            self.model,
            n_envs,
            dataset,
            start=start,
            seed=seed,
            support=support,
            clip_reward=clip_reward,
            max_disagreement=max_disagreement,
            exploration_bonus=exploration_bonus,
            member=member,
            off_support=off_support,
            reward_penalty=reward_penalty,
            **source.settings,
        )
        self.render_mode = "rgb_array"  # read by VecEnv.__init__ through get_attr
        self._actions: torch.Tensor | None = None
        super().__init__(n_envs, self.dream.observation_space, self.dream.action_space)
        if source.summary is not None:
            self.metadata["genrl_card"] = source.summary
        self._obs_dtype = self.observation_space.dtype

    # ---- the VecEnv protocol -----------------------------------------------------------------

    def reset(self) -> np.ndarray:
        if self._seeds[0] is not None:
            self.dream.seed(self._seeds[0])
        self._reset_seeds()
        self._reset_options()
        self._last_obs = self._numpy(self.dream.reset())
        return self._last_obs

    def step_async(self, actions: np.ndarray) -> None:
        # Validated once per batch, vectorised: this runs on every step of every dream.
        actions = self.model.actions.as_batch(actions, self.num_envs)
        self._actions = torch.as_tensor(np.ascontiguousarray(actions))

    def step_wait(self) -> VecEnvStepReturn:
        if self._actions is None:
            raise GenrlError("step_wait() called without step_async(): expected actions first")
        obs, reward, terminated, truncated, uncertainty = self.dream.step(self._actions)
        self._actions = None
        done = terminated | truncated
        obs_np = self._numpy(obs)
        done_np = done.cpu().numpy()
        truncated_np = truncated.cpu().numpy()
        # tolist(): Python floats, fast; one model has nothing to disagree, and no copy to make.
        spread = (
            self.dream.disagreement.cpu().numpy().tolist()
            if self.model.ensemble_size > 1
            else [0.0] * self.num_envs
        )
        pairs = zip(uncertainty.cpu().numpy().tolist(), spread, strict=True)
        infos: list[dict[str, Any]] = [{"uncertainty": u, "disagreement": d} for u, d in pairs]
        finished = np.flatnonzero(done_np)
        if len(finished):
            left_np = self.dream.left_support.cpu().numpy()
            for i in finished:
                infos[i]["terminal_observation"] = obs_np[i].copy()
                infos[i]["TimeLimit.truncated"] = bool(truncated_np[i])
                infos[i]["left_support"] = bool(left_np[i])
            index = torch.as_tensor(finished, device=self.model.device)
            obs_np[finished] = self._numpy(self.dream.reset(index))
        self._last_obs = obs_np
        return obs_np, reward.cpu().numpy().astype(np.float32), done_np, infos

    def close(self) -> None:
        pass

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        value = getattr(self.dream, attr_name) if hasattr(self.dream, attr_name) else getattr(self, attr_name)
        return [value for _ in self._get_indices(indices)]

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        # All dreams share one batch, so settings apply to every env or to none.
        if len(list(self._get_indices(indices))) != self.num_envs:
            raise GenrlError(
                f"set_attr({attr_name!r}): dreams share settings, expected indices=None (all envs)"
            )
        if not hasattr(self.dream, attr_name):
            raise GenrlError(f"set_attr: dreams have no setting {attr_name!r}")
        setattr(self.dream, attr_name, value)

    def env_method(
        self, method_name: str, *method_args, indices: VecEnvIndices = None, **method_kwargs
    ) -> list:
        if method_name == "render":
            return [self._render(i) for i in self._get_indices(indices)]
        method = getattr(self.dream, method_name, None)
        if method is None or not callable(method):
            raise AttributeError(f"dreams have no method {method_name!r}")
        # One batch holds every dream: a method runs once, for all of them.
        if len(list(self._get_indices(indices))) != self.num_envs:
            raise GenrlError(f"env_method({method_name!r}): dreams share one batch, expected indices=None")
        result = method(*method_args, **method_kwargs)
        return [result for _ in range(self.num_envs)]

    def env_is_wrapped(self, wrapper_class: type, indices: VecEnvIndices = None) -> list[bool]:
        return [False for _ in self._get_indices(indices)]

    def get_images(self) -> Sequence[np.ndarray | None]:
        return [self._render(i) for i in range(self.num_envs)]

    # ---- helpers -----------------------------------------------------------------------------

    def _render(self, i: int) -> np.ndarray:
        last = getattr(self, "_last_obs", None)
        return self.dream.render(last[i] if last is not None else np.zeros(self.observation_space.shape))

    def _numpy(self, obs: torch.Tensor) -> np.ndarray:
        return obs.cpu().numpy().astype(self._obs_dtype, copy=False)
