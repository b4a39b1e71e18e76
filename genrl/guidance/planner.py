"""Planner: model-predictive control in a WorldModel, with stable-baselines3's ``predict``.

At every real step the planner searches over action sequences of ``horizon`` steps, scoring all
candidates of all envs as one batch of imagined rollouts from the current observation, and acts
with the first action of the best plan. Three searches share the same sampling and scoring::

    cem    sample around a distribution per step, refit it to the elite candidates (PETS)
    icem   cem with colored noise, elites kept between iterations and shifted between steps,
           a shrinking population and the best sequence seen so far (Pinneri et al., 2020)
    mppi   refit to all candidates weighted by exp(return / lambda) (Williams et al., 2017)

Continuous actions are planned in [-1, 1] (the model's action scale) with a Gaussian per step.
Discrete actions have a categorical distribution per step, sampled by the inverse of its CDF at
uniform noise, so colored noise correlates discrete actions in time as it does continuous ones.

A candidate's score is its expected predicted return ``sum_t gamma^t c_t r_t``, where ``c_t`` is
the predicted probability that the episode is still running before step t (a terminal step's
reward counts, as in the real env). Weighting by the probability rather than cutting at the first
predicted termination keeps plans away from states the termination head is unsure of. A terminal
value adds ``gamma^H c_H V(o_H)``: a trained SB3 agent's critic, as in TD-MPC, or any callable.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from genrl.errors import GenrlError
from genrl.model.world_model import WorldModel
from genrl.util.checks import check_choice, check_float, check_int
from genrl.util.seeding import fresh_seed

METHODS = ("cem", "icem", "mppi")
RewardFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], Any]
ValueFn = Callable[[torch.Tensor], torch.Tensor]

# On a new step the shifted plan keeps its mean (or half its categorical weight): a plan that
# collapsed onto one action would otherwise never sample the others again.
_KEEP_DISCRETE = 0.5
_MIN_STD = 0.05
MAX_SUPPORT = 4000


class Planner:
    """Model-predictive control over a world model's action sequences, for Discrete and Box actions.

    :param model: the world model to plan in (it is not moved: plans run on its device)
    :param method: ``"cem"``, ``"icem"`` or ``"mppi"``
    :param horizon: steps each candidate plan looks ahead
    :param population: candidate plans per iteration, per env
    :param elites: best candidates the distribution is refitted to (cem, icem)
    :param iterations: refits per real step
    :param smoothing: weight of the old distribution in each refit (0: refit completely)
    :param init_std: initial std of continuous actions, in [-1, 1] units
    :param noise_beta: colored-noise exponent (0 white, 2 brown); default 2 for icem, else 0
    :param keep_elites: fraction of elites carried to the next iteration and step (icem)
    :param population_decay: the population shrinks by this factor per iteration (icem)
    :param mppi_lambda: MPPI's temperature, in units of the candidates' return std
    :param gamma: discount of predicted rewards
    :param temperature: the dynamics' sampling temperature (0: the model's expected transition)
    :param value: terminal value: an SB3 agent (its critic) or a callable on observations
    :param reward_fn: ``reward_fn(obs, action, next_obs) -> rewards``, batched torch tensors, in
        place of the learned reward head
    :param support: real observations (an array, or a RolloutDataset's states) the model was fitted
        on. Each imagined step then costs ``support_penalty`` times its latent distance beyond the
        data's own spacing (the 95th-percentile nearest-neighbour distance): plans stay where the
        model's predictions were learned rather than exploit its errors off the data, as MOPO
        penalises uncertainty
    :param support_penalty: reward lost per step per latent unit outside the data
    :param exploration_bonus: reward *gained* per step per latent unit outside the data (needs
        ``support``), in place of the penalty: the planner seeks states the data lacks, as
        count-based exploration does, so a task whose reward random data never sees (MountainCar)
        gets data that holds it. Novelty wears off by itself: each refit's data covers where the
        last plans went. Nonzero, it replaces ``support_penalty``
    :param seed: seeds the planner's sampling; None draws one
    """

    def __init__(
        self,
        model: WorldModel,
        method: str = "cem",
        horizon: int = 30,
        population: int = 100,
        elites: int = 10,
        iterations: int = 2,
        smoothing: float = 0.1,
        init_std: float = 0.5,
        noise_beta: float | None = None,
        keep_elites: float = 0.3,
        population_decay: float = 1.25,
        mppi_lambda: float = 0.5,
        gamma: float = 0.99,
        temperature: float = 0.0,
        value: Any = None,
        reward_fn: RewardFn | None = None,
        support: Any = None,
        support_penalty: float = 0.1,
        exploration_bonus: float = 0.0,
        seed: int | None = None,
    ):
        if not isinstance(model, WorldModel):
            raise GenrlError(f"model must be a WorldModel, got {type(model).__name__}")
        self.model = model
        self.method = check_choice(method, "method", METHODS)
        self.horizon = check_int(horizon, "horizon", 1, 10_000)
        self.population = check_int(population, "population", 2, 1_000_000)
        self.elites = check_int(elites, "elites", 1, self.population)
        self.iterations = check_int(iterations, "iterations", 1, 1_000)
        self.smoothing = check_float(smoothing, "smoothing", 0.0, 1.0, high_open=True)
        self.init_std = check_float(init_std, "init_std", 0.0, 2.0, low_open=True)
        beta = (2.0 if self.method == "icem" else 0.0) if noise_beta is None else noise_beta
        self.noise_beta = check_float(beta, "noise_beta", 0.0, 10.0)
        self.keep_elites = check_float(keep_elites, "keep_elites", 0.0, 1.0)
        self.population_decay = check_float(population_decay, "population_decay", 1.0, 100.0)
        self.mppi_lambda = check_float(mppi_lambda, "mppi_lambda", 0.0, low_open=True)
        self.gamma = check_float(gamma, "gamma", 0.0, 1.0)
        self.temperature = check_float(temperature, "temperature", 0.0)
        self.value = None if value is None else value_function(value)
        if reward_fn is not None and not callable(reward_fn):
            raise GenrlError(
                f"reward_fn must be callable(obs, action, next_obs), got {type(reward_fn).__name__}"
            )
        self.reward_fn = reward_fn
        self.support_penalty = check_float(support_penalty, "support_penalty", 0.0)
        self.exploration_bonus = check_float(exploration_bonus, "exploration_bonus", 0.0)
        self._support, self._radius = self._support_set(support)
        self._support_sq = None if self._support is None else (self._support**2).sum(1)
        self.observation_space, self.action_space = model.observation_space, model.action_space
        self.discrete = model.actions.discrete
        self._width = model.actions.dim if self.discrete else int(np.prod(self.action_space.shape))
        self.generator = torch.Generator(device=model.device)
        self.generator.manual_seed(fresh_seed(seed))
        self.model_steps = 0  # imagined transitions evaluated so far: the planner's compute
        self._plan: _Plan | None = None

    def _support_set(self, support: Any) -> tuple[torch.Tensor | None, float]:
        if support is None and self.exploration_bonus:
            raise GenrlError(
                "exploration_bonus: expected the real data as support= (novelty is the distance from it), "
                "got support=None"
            )
        if support is None:
            return None, math.inf
        states = support.all_states() if hasattr(support, "all_states") else support
        states = np.asarray(states, dtype=np.float32)
        if states.ndim < 2 or states.shape[1:] != self.model.observation_space.shape or len(states) < 2:
            raise GenrlError(
                f"support: expected at least 2 observations of shape {self.model.observation_space.shape}, "
                f"got an array of shape {states.shape}"
            )
        if len(states) > MAX_SUPPORT:  # every imagined step measures its distance to all of them
            states = states[np.random.default_rng(0).choice(len(states), MAX_SUPPORT, replace=False)]
        with torch.inference_mode():
            z = self.model.encode(torch.as_tensor(states, device=self.model.device))
            dist = torch.cdist(z, z)
            dist.fill_diagonal_(math.inf)
            spacing = torch.quantile(dist.amin(1), 0.95).item()
        return z, spacing

    @property
    def _support_weight(self) -> float:
        """Reward per latent unit beyond the data: a bonus when exploring, else a penalty."""
        return self.exploration_bonus if self.exploration_bonus else -self.support_penalty

    def _off_support(self, z: torch.Tensor) -> torch.Tensor:
        """How far each latent (B, latent_dim) lies beyond the data's spacing, in latent units."""
        # |a - b|^2 = |a|^2 - 2 a.b + |b|^2, minimised over b before adding |a|^2: half of cdist's
        # time on every imagined step, where this is the planner's third largest cost.
        nearest_sq = (self._support_sq[None] - 2.0 * z @ self._support.T).amin(1) + (z * z).sum(1)
        return (nearest_sq.clamp(min=0.0).sqrt() - self._radius).clamp(min=0.0)

    # ---- SB3's interface -------------------------------------------------------------------------

    def predict(
        self,
        observation: np.ndarray,
        state: Any = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = False,
    ) -> tuple[np.ndarray, None]:
        """The planned action for each observation, as an SB3 policy's ``predict`` returns it.

        ``deterministic=False`` samples the first action from the final plan's distribution
        (exploration, e.g. for collecting data); True takes the plan's own first action.
        """
        obs = np.asarray(observation, dtype=np.float32)
        single = obs.shape == self.observation_space.shape
        batch = obs[None] if single else obs
        if batch.shape[1:] != self.observation_space.shape:
            raise GenrlError(
                f"observation: expected shape {self.observation_space.shape} or (n, "
                f"{', '.join(map(str, self.observation_space.shape))}), got {obs.shape}"
            )
        if episode_start is not None and self._plan is not None and len(self._plan) == len(batch):
            self._plan.restart(np.asarray(episode_start, dtype=bool).reshape(-1))
        actions = self.act(torch.as_tensor(batch, device=self.model.device), deterministic)
        actions = actions.cpu().numpy().astype(self.action_space.dtype)
        return (actions[0] if single else actions), None

    def reset(self) -> None:
        """Forget the plans carried between steps (call at the start of new episodes)."""
        self._plan = None

    # ---- planning ------------------------------------------------------------------------------

    @torch.inference_mode()
    def act(self, obs: torch.Tensor, deterministic: bool = True) -> torch.Tensor:
        """Plan from a batch of observations (N, *obs_shape); returns env actions (N, ...)."""
        if self._plan is None or len(self._plan) != len(obs):
            self._plan = _Plan.fresh(self, len(obs))
        else:
            self._plan.shift()
        z = self.model.encode(obs.float())
        self.optimize(z, self._plan)
        first = self._plan.first_action(deterministic, self.generator)
        return self.to_env(first)

    def optimize(self, z: torch.Tensor, plan: _Plan) -> None:
        """Refine ``plan`` for latents ``z`` (N, latent_dim) over ``iterations`` rounds."""
        kept: torch.Tensor | None = plan.elites if self.method == "icem" else None
        for i in range(self.iterations):
            size = self.population
            if self.method == "icem":
                size = max(2 * self.elites, int(self.population / self.population_decay**i))
            candidates = plan.sample(size, self.noise_beta, self.generator)
            if kept is not None:
                candidates = torch.cat([candidates, kept], 1)
            if self.method == "icem" and i == self.iterations - 1:
                candidates = torch.cat([candidates, plan.mode()[:, None]], 1)
            returns = self.score(z, candidates)
            plan.remember_best(candidates, returns)
            if self.method == "mppi":
                plan.refit_weighted(candidates, returns, self.mppi_lambda, self.smoothing)
                continue
            top = returns.topk(self.elites, dim=1).indices
            elite = torch.gather(candidates, 1, _expand_index(top, candidates))
            plan.refit(elite, self.smoothing)
            if self.method == "icem":
                kept = elite[:, : int(round(self.keep_elites * self.elites))]
        plan.elites = kept

    def score(self, z: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
        """Predicted returns (N, P) of candidate plans (N, P, H[, d]) from latents z (N, latent_dim)."""
        n, p, h = candidates.shape[:3]
        flat = candidates.reshape(n * p, h, *candidates.shape[3:])
        z = z.repeat_interleave(p, 0)
        state = self.model.initial_state(n * p)
        ret = torch.zeros(n * p, device=z.device)
        alive = torch.ones(n * p, device=z.device)
        for t in range(h):
            action = self.to_env(flat[:, t])
            out = self.model.step(z, state, action, self.temperature, self.generator)
            reward = out.reward if self.reward_fn is None else self._custom_reward(z, action, out.z)
            if self._support is not None:
                reward = reward + self._support_weight * self._off_support(out.z)
            ret += alive * self.gamma**t * reward
            alive = alive * (1.0 - out.termination_prob)
            z, state = out.z, out.h
        self.model_steps += n * p * h
        if self.value is not None:
            ret += alive * self.gamma**h * self.value(self.model.decode(z)).reshape(-1).float()
        return ret.reshape(n, p)

    def _custom_reward(self, z: torch.Tensor, action: torch.Tensor, z_next: torch.Tensor) -> torch.Tensor:
        return scored_reward(self.reward_fn, self.model.decode(z), action, self.model.decode(z_next))

    def new_plan(self, n: int) -> _Plan:
        """Fresh search distributions for ``n`` envs, to refine with :meth:`optimize`."""
        return _Plan.fresh(self, n)

    def to_env(self, actions: torch.Tensor) -> torch.Tensor:
        """Planner actions (indices, or values in [-1, 1]) -> env actions."""
        if self.discrete:
            return actions.long() + int(self.action_space.start)
        low = torch.as_tensor(self.action_space.low, device=actions.device, dtype=torch.float32)
        high = torch.as_tensor(self.action_space.high, device=actions.device, dtype=torch.float32)
        values = actions.reshape(actions.shape[0], *self.action_space.shape)
        return low + (values + 1.0) * 0.5 * (high - low)


class _Plan:
    """Per-env search distributions over action sequences, carried from one real step to the next.

    Continuous: ``mean``, ``std`` (N, H, d) in [-1, 1]. Discrete: ``probs`` (N, H, n).
    """

    def __init__(self, planner: Planner, mean: torch.Tensor, std: torch.Tensor | None):
        self.planner = planner
        self.mean, self.std = mean, std  # for discrete plans, mean holds the probabilities
        self.elites: torch.Tensor | None = None
        self.best: torch.Tensor | None = None
        self.best_return: torch.Tensor | None = None

    @classmethod
    def fresh(cls, planner: Planner, n: int) -> _Plan:
        device, h, w = planner.model.device, planner.horizon, planner._width
        if planner.discrete:
            return cls(planner, torch.full((n, h, w), 1.0 / w, device=device), None)
        return cls(
            planner,
            torch.zeros(n, h, w, device=device),
            torch.full((n, h, w), planner.init_std, device=device),
        )

    def __len__(self) -> int:
        return self.mean.shape[0]

    def restart(self, rows: np.ndarray) -> None:
        """Forget the plans of the envs whose episode just started."""
        if rows.any():
            fresh = _Plan.fresh(self.planner, len(self))
            index = torch.as_tensor(rows, device=self.mean.device)
            self.mean[index] = fresh.mean[index]
            if self.std is not None:
                self.std[index] = fresh.std[index]
            self.elites = None

    def shift(self) -> None:
        """Move every plan one step on: the step just taken drops out, a fresh one is appended."""
        fresh = _Plan.fresh(self.planner, len(self))
        self.mean = torch.cat([self.mean[:, 1:], fresh.mean[:, -1:]], 1)
        if self.std is None:
            self.mean = _KEEP_DISCRETE * self.mean + (1 - _KEEP_DISCRETE) * fresh.mean
        else:
            self.std = fresh.std  # PETS resets the spread every step; the mean carries the plan
        if self.elites is not None:
            tail = self.sample(1, 0.0, self.planner.generator)[:, :, -1:].expand_as(self.elites[:, :, -1:])
            self.elites = torch.cat([self.elites[:, :, 1:], tail], 2)
        self.best, self.best_return = None, None

    def sample(self, size: int, beta: float, generator: torch.Generator) -> torch.Tensor:
        """``size`` candidate sequences per env: (N, size, H, d) values or (N, size, H) indices."""
        n, h, w = self.mean.shape
        if self.std is None:
            noise = colored_noise((n, size, h, 1), beta, generator, self.mean.device)[..., 0]
            uniform = 0.5 * (1 + torch.erf(noise / math.sqrt(2)))  # the normal CDF: uniform marginals
            cdf = self.mean.cumsum(-1)[:, None]
            return (cdf < uniform[..., None]).sum(-1).clamp(max=w - 1)
        noise = colored_noise((n, size, h, w), beta, generator, self.mean.device)
        return (self.mean[:, None] + self.std[:, None] * noise).clamp(-1.0, 1.0)

    def mode(self) -> torch.Tensor:
        """The distribution's most likely sequence, (N, H[, d])."""
        return self.mean.argmax(-1) if self.std is None else self.mean.clone()

    def refit(self, elite: torch.Tensor, smoothing: float) -> None:
        """Move the distributions toward the elites (N, E, H[, d])."""
        if self.std is None:
            freq = torch.nn.functional.one_hot(elite, self.mean.shape[-1]).float().mean(1)
            self.mean = smoothing * self.mean + (1 - smoothing) * freq
            return
        self.mean = smoothing * self.mean + (1 - smoothing) * elite.mean(1)
        std = elite.std(1, unbiased=False).clamp(min=_MIN_STD)
        self.std = smoothing * self.std + (1 - smoothing) * std

    def refit_weighted(
        self, candidates: torch.Tensor, returns: torch.Tensor, lam: float, smoothing: float
    ) -> None:
        """MPPI: every candidate weighted by exp((R - max R) / (lambda * std R))."""
        scale = lam * returns.std(1, keepdim=True).clamp(min=1e-6)
        weight = torch.softmax((returns - returns.amax(1, keepdim=True)) / scale, 1)
        if self.std is None:
            onehot = torch.nn.functional.one_hot(candidates, self.mean.shape[-1]).float()
            freq = (weight[:, :, None, None] * onehot).sum(1)
            self.mean = smoothing * self.mean + (1 - smoothing) * freq
            return
        w = weight[:, :, None, None]
        mean = (w * candidates).sum(1)
        std = (w * (candidates - mean[:, None]) ** 2).sum(1).sqrt().clamp(min=_MIN_STD)
        self.mean = smoothing * self.mean + (1 - smoothing) * mean
        self.std = smoothing * self.std + (1 - smoothing) * std

    def remember_best(self, candidates: torch.Tensor, returns: torch.Tensor) -> None:
        """Keep each env's best sequence seen on this step (iCEM acts with it)."""
        value, index = returns.max(1)
        pick = torch.gather(candidates, 1, _expand_index(index[:, None], candidates))[:, 0]
        if self.best is None:
            self.best, self.best_return = pick, value
            return
        better = value > self.best_return
        shape = (-1,) + (1,) * (pick.dim() - 1)
        self.best = torch.where(better.reshape(shape), pick, self.best)
        self.best_return = torch.where(better, value, self.best_return)

    def first_action(self, deterministic: bool, generator: torch.Generator) -> torch.Tensor:
        """The action to take now, (N[, d])."""
        if not deterministic:
            return self.sample(1, 0.0, generator)[:, 0, 0]
        if self.planner.method == "icem" and self.best is not None:
            return self.best[:, 0]
        return self.mode()[:, 0]


def scored_reward(
    reward_fn: RewardFn, obs: torch.Tensor, action: torch.Tensor, next_obs: torch.Tensor
) -> torch.Tensor:
    """A user's ``reward_fn`` on a batch of transitions as a float tensor (B,), or a one-line error."""
    reward = torch.as_tensor(reward_fn(obs, action, next_obs), dtype=torch.float32, device=obs.device)
    reward = reward.reshape(-1)
    if reward.shape[0] != obs.shape[0]:
        raise GenrlError(
            f"reward_fn: expected {obs.shape[0]} rewards, one per transition, got {reward.shape[0]}"
        )
    return reward


def _expand_index(index: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
    """Index (N, k) over candidates (N, P, ...) expanded for torch.gather along dim 1."""
    shape = (*index.shape, *candidates.shape[2:])
    return index.reshape(*index.shape, *([1] * (candidates.dim() - 2))).expand(shape)


def colored_noise(
    shape: tuple[int, ...], beta: float, generator: torch.Generator, device: torch.device
) -> torch.Tensor:
    """Gaussian noise of unit variance with power spectrum 1/f^beta along dim -2 (time).

    beta = 0 is white noise; larger beta gives smoother, more persistent action sequences, which
    iCEM found explores far better than white noise (Timmer and Koenig's method, as colorednoise).
    """
    steps = shape[-2]
    if beta == 0 or steps < 2:
        return torch.randn(shape, generator=generator, device=device)
    freqs = torch.fft.rfftfreq(steps, device=device)
    freqs[0] = 1.0 / steps  # the lowest frequency stands in for 0, whose power would be infinite
    scale = freqs ** (-beta / 2.0)
    weights = scale[1:].clone()
    weights[-1] *= (1 + (steps % 2)) / 2.0
    sigma = 2 * torch.sqrt((weights**2).sum()) / steps
    spectrum_shape = (*shape[:-2], len(freqs), shape[-1])
    real = torch.randn(spectrum_shape, generator=generator, device=device) * scale[:, None]
    imag = torch.randn(spectrum_shape, generator=generator, device=device) * scale[:, None]
    imag[..., 0, :] = 0.0
    real[..., 0, :] *= math.sqrt(2)
    if steps % 2 == 0:
        imag[..., -1, :] = 0.0
        real[..., -1, :] *= math.sqrt(2)
    return torch.fft.irfft(torch.complex(real, imag), n=steps, dim=-2) / sigma


def value_function(value: Any) -> ValueFn:
    """A terminal value on observations from an SB3 agent's critic, or a callable as it is."""
    policy = getattr(value, "policy", None)
    if policy is None:
        if callable(value):
            return value
        raise GenrlError(
            f"value must be an SB3 agent or a callable on observations, got {type(value).__name__}"
        )
    if hasattr(policy, "predict_values"):  # PPO, A2C
        return lambda obs: policy.predict_values(obs.to(policy.device)).reshape(-1)
    if hasattr(policy, "q_net"):  # DQN
        return lambda obs: policy.q_net(obs.to(policy.device)).amax(-1)
    if hasattr(policy, "critic") and hasattr(policy, "actor"):  # SAC, TD3
        critic, actor = policy.critic, policy.actor

        def q_of_policy(obs: torch.Tensor) -> torch.Tensor:
            obs = obs.to(policy.device)
            return torch.cat(critic(obs, actor(obs)), 1).amin(1)

        return q_of_policy
    raise GenrlError(f"value: {type(value).__name__}'s policy has no critic genrl knows how to read")
