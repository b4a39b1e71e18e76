"""A policy's returns in dreams started from given states: one batch, one episode per start."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from genrl.data.collect import as_policy
from genrl.dream.batch import DreamBatch
from genrl.dream.reward import RewardFn
from genrl.model.world_model import WorldModel


@torch.inference_mode()
def dream_returns(
    model: WorldModel,
    policy: Any,
    starts: np.ndarray | torch.Tensor,
    horizon: int,
    temperature: float = 1.0,
    reward: dict | RewardFn | None = None,
    seed: int | None = None,
    deterministic: bool = True,
) -> np.ndarray:
    """The return of one dream from each start state (N,), the policy acting on decoded observations.

    :param policy: an SB3 model (anything with ``predict``) or a callable from a batch of
        observations to a batch of actions
    :param reward: a reward override (:mod:`genrl.dream.reward`); None: the learned reward
    :param seed: seeds the dynamics' noise; None draws fresh entropy
    """
    act = as_policy(policy, model.actions, deterministic=deterministic)
    # No support limit: synthesis scores starts that may lie off the data on purpose.
    dreams = DreamBatch(
        model,
        len(starts),
        horizon=horizon,
        temperature=temperature,
        seed=seed,
        reward=reward,
        support=None,
        clip_reward=False,
    )
    obs = dreams.reset(initial_obs=torch.as_tensor(starts, dtype=torch.float32))
    total = torch.zeros(len(starts), device=model.device)
    alive = torch.ones(len(starts), dtype=torch.bool, device=model.device)
    while alive.any():
        action = torch.as_tensor(act(obs.cpu().numpy()), device=model.device)
        obs, rewards, terminated, truncated, _ = dreams.step(action)
        total += torch.where(alive, rewards, torch.zeros_like(rewards))
        alive &= ~(terminated | truncated)
    return total.cpu().numpy().astype(np.float64)
