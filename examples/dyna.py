"""Dyna with an unmodified SB3 agent: PPO learns CartPole from the real env and from dreams of its data.

``DreamTraining`` is an SB3 callback: while PPO learns from the real CartPole, it records the
real transitions, refits a world model on them (after 256 real steps, then every 512) and trains
the same PPO for 50,000 steps in 64 dreams of the model after each fit. ``RealEvaluation`` plays
10 deterministic real episodes every 256 real steps and logs ``real/*`` beside PPO's own
``rollout/*``, ``train/*`` and DreamTraining's ``dyna/*`` in one TensorBoard run. At the end the
agent, the model and the real data are saved side by side, as a run folder ``genrl eval`` reads.

Run it with ``python examples/dyna.py`` (about 90 seconds on one CPU core; more threads only
slow networks this small down). PPO alone reaches a return of about 40 from the same 1,280 real
steps; this reaches 500.
"""

from __future__ import annotations

import torch
from stable_baselines3 import PPO

import genrl
from genrl.cli import main

torch.set_num_threads(1)
RUN_DIR = "runs/dyna-cartpole"

agent = PPO(
    "MlpPolicy",
    "CartPole-v1",
    n_steps=256,  # real steps per rollout; in the dream, as many transitions per update
    batch_size=64,
    learning_rate=1e-3,
    gamma=0.98,
    gae_lambda=0.8,
    policy_kwargs={"net_arch": [64, 64]},
    tensorboard_log=f"{RUN_DIR}/tb",
    seed=0,
    device="cpu",
)
evaluation = genrl.RealEvaluation("CartPole-v1", every=256, n_episodes=10)
dyna = genrl.DreamTraining(
    start_after=256,
    every=512,
    dream_steps=50_000,
    fit_steps=500,
    refit_steps=150,
    save_dir=RUN_DIR,
    evaluation=evaluation,
    seed=0,
    verbose=1,
)
agent.learn(1_200, callback=[dyna, evaluation])
for row in evaluation.history:
    print(f"{row['timesteps']:>5} real steps: real return {row['eval_return_mean']:.1f}")

# The same as `genrl eval runs/dyna-cartpole` in a shell: the model on held-out real data, the policy
# in the real env and in the dream.
main(["eval", RUN_DIR, "--episodes", "10", "--no-progress"])
