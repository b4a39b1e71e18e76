"""Dreams: N imagined episodes of a WorldModel stepped as one torch batch.

This is the one place that owns dream state (latent, recurrent state, time step), start-state
sampling, the horizon and seeding. DreamEnv (N=1) and DreamVecEnv (N>=1) are thin adapters.
"""

from __future__ import annotations

import os
from typing import Literal

import numpy as np
import torch
from gymnasium import spaces

from genrl.data.dataset import RolloutDataset
from genrl.dream.render import render_bars, render_observation
from genrl.dream.reward import RewardFn, checked_rewards, reward_function
from genrl.errors import GenrlError
from genrl.model.world_model import WorldModel
from genrl.util.checks import check_choice, check_float, check_int
from genrl.util.device import resolve_device, same_device
from genrl.util.seeding import fresh_seed
from genrl.util.spaces import check_spaces_match

IMAGE_POOL = 4096  # recorded frames an image model's dreams start from (start="any")
ObsMode = Literal["decoded", "latent"]
StartMode = Literal["initial", "any"]
MemberMode = Literal["episode", "step"]


def as_model(model: WorldModel | str | os.PathLike, device: str | torch.device | None = "auto") -> WorldModel:
    """A WorldModel instance as it is, or one loaded from a saved folder onto ``device``.

    An instance is never moved: ``"auto"`` keeps it where it is, and any other device must be
    the one it is on (the caller moves their own model, with ``model.to``).
    """
    if isinstance(model, WorldModel):
        if device not in (None, "auto") and not same_device(model.device, resolve_device(device)):
            raise GenrlError(
                f"the world model is on {model.device}: expected device='auto' or {str(model.device)!r}, "
                f"got {str(device)!r} (move it first with model.to({str(device)!r}))"
            )
        return model
    if isinstance(model, (str, os.PathLike)):
        return WorldModel.load(model, device=device or "auto")
    raise GenrlError(f"model must be a WorldModel or the path of a saved one, got {type(model).__name__}")


class DreamBatch:
    """State and transition logic for ``n`` dreams.

    :param model: the world model to dream with
    :param n: number of parallel dreams
    :param dataset: real data to draw start states from; defaults to the start states saved in the model
    :param horizon: steps after which a dream is truncated (never terminated)
    :param obs_mode: ``"decoded"`` gives observations in the real env's space, ``"latent"`` the
        model's features: the latent, and for an image model the recurrent state too,
        ``[z_t, h_t]`` (World Models' controller input), which
        :class:`~genrl.dream.latent.LatentObservation` gives a real env
    :param temperature: sampling temperature of the dynamics (1 = as learned)
    :param start: ``"initial"`` starts from real reset observations, ``"any"`` from any recorded state
    :param seed: seeds start-state sampling and the dynamics' noise
    :param starts: observations (N, *obs_shape) to start from instead (an environment package's)
    :param reward: a reward override (:mod:`genrl.dream.reward`): a mapping such as
        ``{"type": "constant", "value": 1.0}``, or a callable; None keeps the learned reward
    :param support: a dream whose latent leaves the real data's range, widened by this many of
        the data's standard deviations, is truncated (the agent bootstraps, as at the horizon);
        None never truncates for that
    :param clip_reward: clip the learned reward to the range of the real rewards (an override
        receives the clipped one; its own rewards are the caller's and are never clipped)
    :param max_disagreement: with an ensemble, a dream whose members' predictions spread by more
        than this (1: as much as on the real data) has left the support too; None: never
    :param exploration_bonus: adds this times the disagreement to every reward, so an agent
        seeks what the model does not know yet (optimism, as in Plan2Explore); 0 by default
    :param reward_penalty: with an ensemble, subtracts this times the members' spread of predicted
        rewards from every reward (pessimism, as in MOPO), so an agent gains nothing from rewards
        the members do not agree on; 0 by default
    :param member: with an ensemble, ``"episode"`` follows one member per dream, drawn at each
        reset (PETS' TS-inf), ``"step"`` draws one per step (TS-1)
    :param off_support: what leaving the support does: ``"truncate"`` (the agent bootstraps from
        its own value of the state it reached, which extrapolates as the model does) or
        ``"terminate"``: the dream ends there as a real episode ends, with nothing after it (a
        halting state, as in MOReL's pessimistic MDP), so an agent gains nothing by leaving

    ``left_support`` holds, after each step, which dreams ended for leaving the support;
    ``disagreement`` each dream's last disagreement; ``episodes_ended`` and
    ``episodes_left_support`` count since construction.
    """

    def __init__(
        self,
        model: WorldModel,
        n: int,
        dataset: RolloutDataset | None = None,
        horizon: int = 500,
        obs_mode: ObsMode = "decoded",
        temperature: float = 1.0,
        start: StartMode = "initial",
        seed: int | None = None,
        *,
        starts: np.ndarray | torch.Tensor | None = None,
        reward: dict | RewardFn | None = None,
        support: float | None = 3.0,
        clip_reward: bool = True,
        max_disagreement: float | None = None,
        exploration_bonus: float = 0.0,
        member: MemberMode = "episode",
        off_support: str = "truncate",
        reward_penalty: float = 0.0,
    ):
        self.off_support = check_choice(off_support, "off_support", ("truncate", "terminate"))
        self.support = None if support is None else check_float(support, "support", 0.0)
        self.max_disagreement = (
            None if max_disagreement is None else check_float(max_disagreement, "max_disagreement", 0.0)
        )
        self.exploration_bonus = check_float(exploration_bonus, "exploration_bonus", 0.0)
        self.reward_penalty = check_penalty(reward_penalty, model)
        self.member_mode = check_choice(member, "member", ("episode", "step"))
        self.clip_reward = bool(clip_reward)
        self.obs_mode = check_choice(obs_mode, "obs_mode", ("decoded", "latent"))
        self.start = check_choice(start, "start", ("initial", "any"))
        self.horizon = check_int(horizon, "horizon", 1)
        self.n = check_int(n, "the number of dreams", 1)
        self.temperature = check_float(temperature, "temperature", 0.0)
        self.model = model
        self.dataset = dataset
        self._pool: torch.Tensor | None = None
        self._pool_episodes = 0
        self.starts = None if starts is None else check_starts(starts, model)
        self.reward_fn = reward_function(reward, int(np.prod(model.observation_space.shape)))
        check_dataset(dataset, model)
        device = model.device
        self.generator = torch.Generator(device=device)
        self.seed(seed)
        self.z = torch.zeros(self.n, model.config.latent_dim, device=device)
        self.h = model.initial_state(self.n)
        self.t = torch.zeros(self.n, dtype=torch.long, device=device)
        self.left_support = torch.zeros(self.n, dtype=torch.bool, device=device)
        self.disagreement = torch.zeros(self.n, device=device)
        self.member = torch.zeros(self.n, dtype=torch.long, device=device)
        self._zero_counts()
        self.observation_space = (
            model.observation_space
            if obs_mode == "decoded"
            else spaces.Box(-np.inf, np.inf, (model.feature_dim,), np.float32)
        )
        self.action_space = model.action_space

    def _zero_counts(self) -> None:
        device = self.model.device  # tensors, so counting never waits for the device
        self._ended = torch.zeros((), dtype=torch.long, device=device)
        self._left = torch.zeros((), dtype=torch.long, device=device)
        self._spread = torch.zeros((), dtype=torch.float64, device=device)
        self._charged = torch.zeros((), dtype=torch.float64, device=device)
        self._steps = 0

    def seed(self, seed: int | None) -> None:
        """Seed the dreams' own generator; ``None`` draws fresh entropy from the OS.

        Never ``torch.seed()``: that would reseed torch's global generator for everyone else.
        """
        self.generator.manual_seed(fresh_seed(seed))

    def _start_pool(self) -> torch.Tensor:
        if self.starts is not None:
            return self.starts
        if self.dataset is not None and len(self.dataset):
            # Rebuilt only when the dataset has grown, so that new episodes count but resets stay cheap.
            if self._pool is None or self._pool_episodes != len(self.dataset):
                if self.start == "initial":
                    states = self.dataset.start_states()
                elif self.dataset.image:  # a sample of the frames, not a copy of every one
                    seed = int(
                        torch.randint(2**62, (), generator=self.generator, device=self.generator.device)
                    )
                    states = self.dataset.sample_states(IMAGE_POOL, np.random.default_rng(seed))
                else:
                    states = self.dataset.all_states()
                self._pool = torch.as_tensor(states, device=self.model.device)
                self._pool_episodes = len(self.dataset)
            return self._pool
        if len(self.model.start_states):
            return self.model.start_states
        raise GenrlError(
            "no start states: expected a dataset, or a model fitted on one, to start dreams from"
        )

    @torch.inference_mode()
    def reset(
        self, index: torch.Tensor | None = None, initial_obs: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Restart the dreams in ``index`` (all if None) and return their observations."""
        index = torch.arange(self.n, device=self.model.device) if index is None else index
        if initial_obs is None:
            pool = self._start_pool()
            pick = torch.randint(len(pool), (len(index),), generator=self.generator, device=pool.device)
            initial_obs = pool[pick]
        shape = (len(index), *self.model.observation_space.shape)
        self.z[index] = self.model.encode(initial_obs.to(self.model.device).reshape(shape))
        self.h[index] = 0.0
        self.t[index] = 0
        if self.model.ensemble_size > 1:
            self.member[index] = torch.randint(
                self.model.ensemble_size, (len(index),), generator=self.generator, device=self.member.device
            )
        return self.observe(self.z[index], self.h[index])

    @torch.inference_mode()
    def step(self, actions: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Advance every dream; returns (obs, reward, terminated, truncated, uncertainty) tensors.

        Finished dreams are not restarted here: the caller decides (gymnasium vs SB3 contract).
        """
        actions = actions.to(self.model.device)
        member = self.member if self.member_mode == "episode" else None
        out = self.model.step(self.z, self.h, actions, self.temperature, self.generator, member)
        reward = self.model.clip_reward(out.reward) if self.clip_reward else out.reward
        if self.reward_penalty:  # a lower confidence bound of the learned reward, as an override sees it
            charge = self.reward_penalty * out.reward_spread
            reward = reward - charge
            self._charged += charge.sum()
        if self.reward_fn is not None:
            given = self.reward_fn(self.model.decode(self.z), actions, self.model.decode(out.z), reward)
            reward = checked_rewards(given, self.n, self.model.device)
        if self.exploration_bonus:
            reward = reward + self.exploration_bonus * out.disagreement
        self.z, self.h, self.disagreement = out.z, out.h, out.disagreement
        self.t += 1
        self.left_support = torch.zeros_like(out.terminated)
        if self.support is not None:
            self.left_support |= self.model.out_of_support(out.z, self.support)
        if self.max_disagreement is not None:
            self.left_support |= out.disagreement > self.max_disagreement
        # Off the data the termination head extrapolates as much as the rest, so it never
        # decides there: off_support does (truncated: the agent bootstraps; terminated: it halts).
        terminated = out.terminated & ~self.left_support
        if self.off_support == "terminate":
            terminated = terminated | self.left_support
        truncated = ((self.t >= self.horizon) | self.left_support) & ~terminated
        self._ended += (terminated | truncated).sum()
        self._left += self.left_support.sum()
        if self.model.ensemble_size > 1:  # one model's disagreement is 0: no kernel for it
            self._spread += out.disagreement.sum()
        self._steps += self.n
        return self.observe(out.z, out.h), reward, terminated, truncated, out.uncertainty

    @property
    def episodes_ended(self) -> int:
        """Dream episodes that have ended (terminated or truncated) since this batch was made."""
        return int(self._ended)

    @property
    def episodes_left_support(self) -> int:
        """Of those, the ones truncated for leaving the support of the real data."""
        return int(self._left)

    @property
    def steps_taken(self) -> int:
        """Dream steps taken since construction, summed over the dreams."""
        return self._steps

    @property
    def disagreement_sum(self) -> float:
        """The ensemble's disagreement summed over those steps (0 for one model)."""
        return float(self._spread)

    @property
    def reward_penalty_sum(self) -> float:
        """The reward penalty charged over those steps (0 without ``reward_penalty``)."""
        return float(self._charged)

    def observe(self, z: torch.Tensor, h: torch.Tensor | None = None) -> torch.Tensor:
        """What a policy sees of dreams at (z, h): decoded observations, or the latent features
        (h None: a fresh recurrent state)."""
        if h is None:
            h = self.model.initial_state(len(z))
        return self.model.decode(z) if self.obs_mode == "decoded" else self.model.features(z, h)

    def render(self, obs: np.ndarray) -> np.ndarray:
        """An RGB picture of one observation of these dreams: the decoded frame of an image
        model (in either mode), else bars relative to the data's statistics."""
        space = self.model.observation_space
        if self.model.image:
            if self.obs_mode == "latent":
                with torch.inference_mode():
                    z = torch.as_tensor(obs[None, : self.model.config.latent_dim], device=self.model.device)
                    obs = self.model.decode(z)[0].cpu().numpy()
            return render_observation(obs.astype(space.dtype), space)
        if self.obs_mode == "decoded":
            return render_bars(obs - self.model.obs_mean.cpu().numpy(), self.model.obs_std.cpu().numpy())
        return render_bars(obs, np.ones_like(obs))


def check_penalty(reward_penalty: float, model: WorldModel) -> float:
    """``reward_penalty`` as a float >= 0, if the model has members whose rewards can spread."""
    penalty = check_float(reward_penalty, "reward_penalty", 0.0)
    if penalty and model.ensemble_size == 1:
        raise GenrlError(
            f"reward_penalty: expected a model with ensemble_size >= 2 (one model has no spread "
            f"of rewards to charge for), got reward_penalty={penalty} and ensemble_size=1"
        )
    return penalty


def check_dataset(dataset: RolloutDataset | None, model: WorldModel) -> None:
    """Raise GenrlError unless ``dataset`` is None or a RolloutDataset of the model's spaces."""
    if dataset is None:
        return
    if not isinstance(dataset, RolloutDataset):
        raise GenrlError(
            f"dataset must be a RolloutDataset (RolloutDataset.load(path) opens a folder) or None, "
            f"got {type(dataset).__name__}"
        )
    mine = (model.observation_space, model.action_space)
    check_spaces_match(mine, (dataset.observation_space, dataset.action_space), "model", "dataset")


def check_starts(starts: np.ndarray | torch.Tensor, model: WorldModel) -> torch.Tensor:
    """Given start states as a tensor on the model's device, if they are finite (N, *obs_shape)."""
    shape = tuple(model.observation_space.shape)
    arr = np.asarray(starts.cpu() if isinstance(starts, torch.Tensor) else starts)
    expected = f"starts: expected a finite array of shape (N, {', '.join(map(str, shape))}), N >= 1"
    if arr.dtype.kind not in "biuf" or arr.ndim != len(shape) + 1 or arr.shape[1:] != shape or not len(arr):
        raise GenrlError(f"{expected}, got {arr.dtype} of shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise GenrlError(f"{expected}, got one with NaN or inf values")
    return torch.as_tensor(arr, dtype=torch.float32, device=model.device)
