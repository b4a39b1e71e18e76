"""Settings left to genrl, chosen from the real env (its spaces and spec) and the agent.

A preset or a caller leaves a setting to genrl with ``None`` (``"auto"`` for the agent and the
target return, where ``None`` has its own meaning). :func:`with_env_defaults` fills them in before
a run starts, so its ``config.json`` records what it ran with.
"""

from __future__ import annotations

import dataclasses

import gymnasium as gym
from gymnasium import spaces

from genrl.data.dataset import RolloutDataset
from genrl.training.agents import ON_POLICY, agent_preset
from genrl.training.config import TrainConfig

FALLBACK_HORIZON = 1000  # an env without a time limit: Gymnasium's MuJoCo tasks use 1000


def with_env_defaults(cfg: TrainConfig, env: gym.Env) -> TrainConfig:
    """``cfg`` with every setting left to genrl chosen for ``env``."""
    agent = cfg.agent
    if agent == "auto":
        # SAC learns Box tasks in far fewer steps than PPO (Pendulum: benchmarks/RESULTS.md);
        # PPO is the one agent preset tuned for Discrete ones in a dream.
        agent = "sac" if isinstance(env.action_space, spaces.Box) else "ppo"
    on_policy = agent_preset(agent)["algorithm"] in ON_POLICY
    spec = env.spec
    dream, train = cfg.dream, cfg.train
    if dream.n_envs is None:
        # On-policy agents need many parallel dreams for their batches; off-policy agents take a
        # gradient step per env step, so few dreams keep the replay's data fresh.
        dream = dataclasses.replace(dream, n_envs=64 if on_policy else 8)
    if dream.temperature is None:
        # Measured on the two tasks genrl has figures for (benchmarks/RESULTS.md): Pendulum's SAC
        # learns at 0.3 and not at 1 (the learned noise overstates a deterministic env's), while
        # CartPole's PPO failed seed 4 at 0.3 and reached 475 at 1. Not yet checked beyond them.
        discrete = isinstance(env.action_space, spaces.Discrete)
        dream = dataclasses.replace(dream, temperature=1.0 if discrete else 0.3)
    if dream.horizon is None:
        limit = spec.max_episode_steps if spec is not None else None
        dream = dataclasses.replace(dream, horizon=limit or FALLBACK_HORIZON)
    if train.dream_steps is None:
        train = dataclasses.replace(train, dream_steps=100_000 if on_policy else 16_000)
    if train.target_return == "auto":
        threshold = spec.reward_threshold if spec is not None else None
        train = dataclasses.replace(train, target_return=None if threshold is None else float(threshold))
    return dataclasses.replace(cfg, agent=agent, dream=dream, train=train)


def off_support(setting: str, dataset: RolloutDataset) -> str:
    """``dream.off_support`` for dreams of ``dataset``'s model; ``"auto"`` decides from the data.

    Ending a dream forfeits the rewards after it. Where real episodes end and rewards are mostly
    positive (CartPole), that is the pessimistic outcome, and one the data knows. Where they never
    end (Pendulum), an end would be as invented as the state it reached; where rewards are mostly
    negative (MountainCar's -1 a step), ending would pay the agent for leaving the data.

    Images: truncate. A learned VAE latent's box of ±3 data spreads per dimension is a loose
    picture of where its data lies, and pixel CartPole's dreams at temperature 1 left it after about
    28 steps in 55% of episodes; ending them there taught the agent that nothing lasts longer
    (real return stuck at 40 to 50, benchmarks/RESULTS.md).
    """
    if setting != "auto":
        return setting
    if dataset.image:
        return "truncate"
    episodes = [ep for ep in dataset.episodes if ep.length]
    ends = any(bool(ep.terminated[-1]) for ep in episodes)
    gains = sum(float(ep.reward.sum()) for ep in episodes) > 0
    return "terminate" if ends and gains else "truncate"
