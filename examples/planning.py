"""Plan in a learned CartPole, then steer generation toward reward.

1. fit a world model on 1,000 random real steps (the CartPole preset's precise model)
2. ``genrl.Planner``: act in the *real* env by planning in the model (CEM; also "icem", "mppi"),
   through the same ``predict`` an SB3 policy has
3. ``genrl.generate``: imagined episodes, unguided and best-of-n at equal compute, each replayed
   in the real env from the same start state to check what the model promised

Run it with ``python examples/planning.py`` (about three minutes on 2 CPU cores).
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3.common.evaluation import evaluate_policy

import genrl
from genrl.training.presets import load_preset

torch.set_num_threads(2)
preset = load_preset("envs", "cartpole")
data = genrl.collect("CartPole-v1", 1_000, seed=0)
model = genrl.WorldModel(
    data.observation_space, data.action_space, {**preset["world_model"], **preset["fit"]}, seed=0
)
model.fit(data)
model.eval()

# The planner is a drop-in SB3 policy: evaluate_policy, genrl.collect(policy=planner), ...
# support=data keeps plans near the states the model was fitted on (see genrl.Planner).
planner = genrl.Planner(
    model, "cem", horizon=30, population=100, elites=10, iterations=3, support=data, seed=0
)
mean, std = evaluate_policy(planner, gym.make("CartPole-v1"), n_eval_episodes=3)
print(f"planner in the real env: {mean:.0f} ± {std:.0f} (random actions: about 22)")


def replayed(episode: genrl.Episode) -> float:
    """The real return of a generated episode's actions, from its real start state."""
    env = gym.make("CartPole-v1")
    env.reset(seed=0)
    env.unwrapped.state = model.start_states[episode.info["start_index"]].numpy().astype(np.float64)
    total = 0.0
    for action in episode.action:
        _, reward, terminated, truncated, _ = env.step(int(action))
        total += reward
        if terminated or truncated:
            break
    return total


for guide in ("none", "best-of-n"):
    episodes = genrl.generate(model, 20, guide, candidates=32, horizon=200, temperature=0.0, seed=0)
    imagined = np.mean([e.info["predicted_return"] for e in episodes.episodes])
    real = np.mean([replayed(e) for e in episodes.episodes])
    cost = episodes.episodes[0].info["model_steps"]
    print(
        f"{guide:>10}: imagined return {imagined:6.1f}, replayed in the real env {real:6.1f} "
        f"({cost} model steps each)"
    )
