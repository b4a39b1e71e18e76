"""Guided generation: imagined episodes of a world model, steered toward high return.

Every generated episode starts from a real start state and may cost ``candidates`` imagined
rollouts of the whole episode, so that guides compare at equal compute (counted in model steps)::

    none        one rollout under uniform random actions
    best-of-n   ``candidates`` random-action rollouts; the one with the highest return is kept
    policy      ``candidates`` rollouts of an SB3 agent acting in the dream (sampling its actions
                when there is more than one); the best is kept
    cem         the planner's cross-entropy search over the episode's whole action sequence,
                ``candidates`` rollouts in all; the best sequence found is rolled out once more

All rollouts of all episodes run as one torch batch. The returned :class:`RolloutDataset` holds
decoded observations, so it has the real env's spaces; each episode's ``info`` records its guide,
its predicted return, its start state's index and the model steps it cost.
"""

from __future__ import annotations

import os
from typing import Any, NamedTuple

import numpy as np
import torch

from genrl.data.dataset import RolloutDataset
from genrl.data.episode import Episode
from genrl.dream.batch import as_model
from genrl.errors import GenrlError
from genrl.guidance.planner import Planner, RewardFn, scored_reward
from genrl.model.world_model import WorldModel
from genrl.util.checks import check_choice, check_float, check_int
from genrl.util.seeding import fresh_seed

GUIDES = ("none", "best-of-n", "policy", "cem")
CEM_ITERATIONS = 4


class Rollouts(NamedTuple):
    """B imagined episodes of up to H steps; steps after an episode's ``length`` are padding."""

    obs: torch.Tensor  # (B, H+1, *obs_shape) decoded
    action: torch.Tensor  # (B, H, ...) env actions
    reward: torch.Tensor  # (B, H)
    length: torch.Tensor  # (B,) steps until (and including) the first predicted termination, or H
    terminated: torch.Tensor  # (B,) whether the episode ended by termination, not the horizon

    def returns(self) -> torch.Tensor:
        steps = torch.arange(self.reward.shape[1], device=self.reward.device)
        return (self.reward * (steps[None] < self.length[:, None])).sum(1)


def generate(
    model: WorldModel | str | os.PathLike,
    n: int,
    guide: str = "best-of-n",
    *,
    reward_fn: RewardFn | None = None,
    agent: Any = None,
    candidates: int = 16,
    horizon: int = 200,
    temperature: float = 1.0,
    starts: np.ndarray | RolloutDataset | None = None,
    seed: int | None = None,
    path: str | os.PathLike | None = None,
    writer: Any = None,
) -> RolloutDataset:
    """Generate ``n`` imagined episodes steered by ``guide`` toward high (predicted) return.

    :param model: a :class:`WorldModel` or the folder of a saved one
    :param guide: ``"none"``, ``"best-of-n"``, ``"policy"`` (needs ``agent``) or ``"cem"``
    :param reward_fn: ``reward_fn(obs, action, next_obs) -> rewards`` on batched torch tensors
        (decoded observations, env actions), in place of the learned reward: steer toward any
        objective you can score
    :param agent: an SB3 agent trained on the real env's observations (guide ``"policy"``)
    :param candidates: imagined rollouts each episode may cost (1 for ``"none"``)
    :param horizon: the most steps of an episode; shorter if the model predicts termination
    :param temperature: the dynamics' sampling temperature
    :param starts: real start observations (N, *obs_shape), or a dataset's start states; default
        the start states saved with the model
    :param seed: seeds start states, actions and the dynamics' noise; None draws one
    :param path: folder to write the dataset to (it must not exist yet); None keeps it in memory
    :param writer: a TensorBoard ``SummaryWriter`` for the generator's figures, or None
    """
    model = as_model(model)
    guide = check_choice(guide, "guide", GUIDES)
    n = check_int(n, "n", 1, 1_000_000)
    candidates = 1 if guide == "none" else check_int(candidates, "candidates", 1, 1_000_000)
    if guide == "cem" and candidates < 2 * CEM_ITERATIONS:
        raise GenrlError(
            f"candidates: expected at least {2 * CEM_ITERATIONS} for guide 'cem', got {candidates}"
        )
    horizon = check_int(horizon, "horizon", 1, 100_000)
    temperature = check_float(temperature, "temperature", 0.0)
    if guide == "policy" and not hasattr(agent, "predict"):
        raise GenrlError(f"guide 'policy' needs an SB3 agent (with predict), got {type(agent).__name__}")
    if reward_fn is not None and not callable(reward_fn):
        raise GenrlError(f"reward_fn must be callable(obs, action, next_obs), got {type(reward_fn).__name__}")
    generator = torch.Generator(device=model.device).manual_seed(fresh_seed(seed))
    pool = _start_pool(model, starts)
    pick = torch.randint(len(pool), (n,), generator=generator, device=pool.device)
    gen = _Generator(model, horizon, temperature, reward_fn, generator)
    with torch.inference_mode():
        z0 = model.encode(pool[pick])
        best, cost = gen.guided(guide, z0, candidates, agent)
    dataset = _to_dataset(model, best, guide, cost, pick.cpu().numpy(), path)
    if writer is not None:
        writer.add_scalar(f"generate/{guide}/predicted_return", float(best.returns().mean()), candidates)
        writer.add_scalar(f"generate/{guide}/model_steps_per_episode", cost / n, candidates)
    return dataset


class _Generator:
    """Imagined rollouts for one call of :func:`generate`."""

    def __init__(self, model: WorldModel, horizon: int, temperature: float, reward_fn, generator):
        self.model, self.horizon, self.temperature = model, horizon, temperature
        self.reward_fn, self.generator = reward_fn, generator

    def guided(self, guide: str, z0: torch.Tensor, k: int, agent: Any) -> tuple[Rollouts, int]:
        """The kept rollout per start (n of them) and the model steps spent on them in all."""
        n = len(z0)
        if guide == "cem":
            return self._cem(z0, k)
        starts = z0.repeat_interleave(k, 0)
        if guide == "policy":
            rollouts = self.rollout(starts, policy=_agent_actions(self.model, agent, deterministic=k == 1))
        else:
            rollouts = self.rollout(starts, actions=self._random_actions(n * k))
        pick = rollouts.returns().reshape(n, k).argmax(1) + torch.arange(n, device=z0.device) * k
        return _take(rollouts, pick), n * k * self.horizon

    def _cem(self, z0: torch.Tensor, k: int) -> tuple[Rollouts, int]:
        population = k // CEM_ITERATIONS
        planner = Planner(
            self.model,
            method="cem",
            horizon=self.horizon,
            population=population,
            elites=max(1, population // 8),
            iterations=CEM_ITERATIONS,
            temperature=self.temperature,
            reward_fn=self.reward_fn,
            gamma=1.0,
        )
        planner.generator = self.generator
        plan = planner.new_plan(len(z0))
        planner.optimize(z0, plan)
        best = planner.to_env(plan.best.reshape(-1, *plan.best.shape[2:])).reshape(
            len(z0), self.horizon, *self.model.action_space.shape
        )
        rollouts = self.rollout(z0, actions=best)
        return rollouts, planner.model_steps + len(z0) * self.horizon

    def _random_actions(self, batch: int) -> torch.Tensor:
        space, device = self.model.action_space, self.model.device
        if self.model.actions.discrete:
            index = torch.randint(
                int(space.n), (batch, self.horizon), generator=self.generator, device=device
            )
            return index + int(space.start)
        low = torch.as_tensor(space.low, device=device)
        high = torch.as_tensor(space.high, device=device)
        u = torch.rand((batch, self.horizon, *space.shape), generator=self.generator, device=device)
        return low + u * (high - low)

    def rollout(self, z: torch.Tensor, actions: torch.Tensor | None = None, policy=None) -> Rollouts:
        """Imagine ``horizon`` steps from latents z (B, L) under given actions or a policy."""
        batch = len(z)
        h = self.model.initial_state(batch)
        obs = [self.model.decode(z)]
        taken, rewards, ended = [], [], []
        for t in range(self.horizon):
            action = actions[:, t] if actions is not None else policy(obs[-1])
            out = self.model.step(z, h, action, self.temperature, self.generator)
            next_obs = self.model.decode(out.z)
            reward = (
                out.reward
                if self.reward_fn is None
                else scored_reward(self.reward_fn, obs[-1], action, next_obs)
            )
            taken.append(action)
            rewards.append(reward)
            ended.append(out.terminated)
            obs.append(next_obs)
            z, h = out.z, out.h
        ended_t = torch.stack(ended, 1)
        first = torch.where(
            ended_t.any(1),
            ended_t.float().argmax(1) + 1,
            torch.full_like(ended_t[:, 0], self.horizon, dtype=torch.long),
        )
        return Rollouts(
            torch.stack(obs, 1), torch.stack(taken, 1), torch.stack(rewards, 1), first, ended_t.any(1)
        )


def _agent_actions(model: WorldModel, agent: Any, deterministic: bool):
    def act(obs: torch.Tensor) -> torch.Tensor:
        actions, _ = agent.predict(obs.cpu().numpy(), deterministic=deterministic)
        model.actions.check_batch(actions, "actions from the agent")
        return torch.as_tensor(actions, device=model.device)

    return act


def _take(rollouts: Rollouts, index: torch.Tensor) -> Rollouts:
    return Rollouts(*(field[index] for field in rollouts))


def _start_pool(model: WorldModel, starts: Any) -> torch.Tensor:
    if starts is None:
        if not len(model.start_states):
            raise GenrlError(
                "no start states: expected starts= (observations or a dataset), or a fitted model"
            )
        return model.start_states
    states = (
        starts.start_states() if isinstance(starts, RolloutDataset) else np.asarray(starts, dtype=np.float32)
    )
    shape = model.observation_space.shape
    if states.ndim < 1 or states.shape[1:] != shape or not len(states) or not np.all(np.isfinite(states)):
        expected = f"finite observations of shape (N, {', '.join(map(str, shape))})"
        raise GenrlError(f"starts: expected {expected}, got an array of shape {states.shape}")
    return torch.as_tensor(states, device=model.device)


def _to_dataset(
    model: WorldModel, rollouts: Rollouts, guide: str, cost: int, start_index: np.ndarray, path: Any
) -> RolloutDataset:
    dataset = RolloutDataset(model.observation_space, model.action_space, path)
    obs, action, reward = (t.cpu().numpy() for t in (rollouts.obs, rollouts.action, rollouts.reward))
    length, terminated = rollouts.length.cpu().numpy(), rollouts.terminated.cpu().numpy()
    per_episode = cost // len(obs)
    for i in range(len(obs)):
        steps = int(length[i])
        end = np.zeros(steps, bool)
        end[-1] = True
        info = {
            "guide": guide,
            "predicted_return": float(reward[i, :steps].sum()),
            "start_index": int(start_index[i]),
            "model_steps": per_episode,
        }
        ended = bool(terminated[i])
        dataset.add(
            Episode(
                obs[i, : steps + 1],
                action[i, :steps],
                reward[i, :steps],
                end & ended,
                end & (not ended),
                info,
            )
        )
    return dataset
