"""Generated data for an agent that learns from the real env: SAC on Pendulum with ImaginedReplay.

``genrl.ImaginedReplay`` is an SB3 callback (MBPO's recipe): while unmodified SAC learns from the
real Pendulum, it refits a world model on SAC's own replay data every ``refit_every`` real steps,
branches short imagined rollouts from real states with SAC's current policy, and fills all but
``real_ratio`` of every replay batch with them.

It prints the real return after 1,500 real steps beside SAC with the same gradient steps and no
imagined data: on Pendulum the extra gradient steps do most of the work (benchmarks/RESULTS.md).
Run it with ``python examples/replay_augmentation.py`` (about five minutes on 2 CPU cores).
"""

from __future__ import annotations

import gymnasium as gym
import torch
from stable_baselines3 import SAC
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.monitor import Monitor

import genrl

torch.set_num_threads(2)
REAL_STEPS = 1_500
SAC_SETTINGS = dict(learning_rate=1e-3, gradient_steps=10, seed=0, device="cpu")

for name, callback in (
    ("SAC + ImaginedReplay", genrl.ImaginedReplay(real_ratio=0.05, branch_length=5, seed=0)),
    ("SAC, same gradient steps", None),
):
    agent = SAC("MlpPolicy", "Pendulum-v1", **SAC_SETTINGS)
    agent.learn(REAL_STEPS, callback=callback)
    mean, std = evaluate_policy(agent, Monitor(gym.make("Pendulum-v1")), n_eval_episodes=10)
    print(f"{name}: real return {mean:.0f} ± {std:.0f} after {REAL_STEPS:,} real steps")
