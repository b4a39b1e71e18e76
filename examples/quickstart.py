"""genrl quickstart: a learned copy of CartPole, and a PPO agent trained inside it.

Walks through the Python API step by step:

1. ``genrl.collect``: record random-policy episodes of the real env into a dataset folder
2. ``genrl.WorldModel``: fit a generative model of the env on that data, save it, load it back
3. ``genrl.DreamEnv``: step the model as an ordinary ``gymnasium.Env``
4. ``genrl.DreamVecEnv``: many dreams as one batched SB3 ``VecEnv``; train stable-baselines3's PPO on it
5. evaluate the dream-trained agent in the *real* env
6. ``gymnasium.make("genrl/Dream-v0", model=PATH)``: the saved model is a shareable environment

Run it with ``python examples/quickstart.py`` (a few minutes on a laptop CPU). The budgets below
are small on purpose; raise them for a better model and agent. Everything is written to ``OUT``.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import gymnasium as gym
from stable_baselines3 import PPO
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import VecMonitor

import genrl

ENV_ID = "CartPole-v1"
COLLECT_STEPS = 2_000  # real transitions recorded with a random policy
FIT_STEPS = 1_000  # world-model gradient steps
N_DREAMS = 32  # parallel dreams PPO learns in
PPO_STEPS = 20_000  # agent steps taken in the dream
HORIZON = 500  # a dream is truncated (never terminated) after this many steps
EVAL_EPISODES = 10
SEED = 0
OUT = Path("runs/quickstart")


def main() -> None:
    # Start clean: collect() appends to an existing dataset folder.
    shutil.rmtree(OUT, ignore_errors=True)

    # 1. Real data. Episodes land in OUT/data as .npz files (see the dataset schema in the README).
    dataset = genrl.collect(ENV_ID, COLLECT_STEPS, seed=SEED, path=OUT / "data")
    returns = dataset.episode_returns()
    print(f"collected {len(dataset)} episodes, {dataset.num_steps} steps, random return {returns.mean():.1f}")

    # 2. A world model for these spaces; fit() holds out every 10th episode and returns its losses.
    model = genrl.WorldModel(dataset.observation_space, dataset.action_space, seed=SEED)
    val = model.fit(dataset, FIT_STEPS)
    print("held-out losses:", {k: round(v, 4) for k, v in val.items()})

    # Saving writes model.json + weights.safetensors; loading runs no code from the files.
    model.save(OUT / "model")
    model = genrl.WorldModel.load(OUT / "model")

    # 3. One dream as a gymnasium.Env: same action and observation spaces as the real CartPole.
    env = genrl.DreamEnv(model, dataset, horizon=HORIZON)
    obs, _ = env.reset(seed=SEED)
    env.action_space.seed(SEED)
    total, steps, done = 0.0, 0, False
    while not done:
        obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
        total, steps, done = total + reward, steps + 1, terminated or truncated
    print(f"a random-action dream: {steps} steps, return {total:.1f}, uncertainty {info['uncertainty']:.3f}")

    # 4. Many dreams as one torch batch, behind SB3's VecEnv interface. PPO is SB3's own, unmodified.
    dreams = VecMonitor(genrl.DreamVecEnv(model, N_DREAMS, dataset, horizon=HORIZON, seed=SEED))
    agent = PPO(
        "MlpPolicy",
        dreams,
        n_steps=32,
        batch_size=256,
        gamma=0.98,
        gae_lambda=0.8,
        learning_rate=1e-3,
        device="cpu",
        seed=SEED,
    )
    agent.learn(PPO_STEPS, progress_bar=True)

    # 5. The agent never touched the real env while learning; now it does, unchanged.
    real_env = Monitor(gym.make(ENV_ID))
    mean, std = evaluate_policy(agent, real_env, n_eval_episodes=EVAL_EPISODES, deterministic=True)
    print(f"PPO trained only in the dream: real return {mean:.1f} ± {std:.1f} over {EVAL_EPISODES} episodes")
    real_env.close()

    # 6. The saved model is an environment anyone can gym.make (start states are saved with it).
    shared = gym.make("genrl/Dream-v0", model=str(OUT / "model"), horizon=HORIZON)
    obs, _ = shared.reset(seed=SEED)
    dream_return, done = 0.0, False
    while not done:
        action, _ = agent.predict(obs, deterministic=True)
        obs, reward, terminated, truncated, _ = shared.step(action)
        dream_return, done = dream_return + reward, terminated or truncated
    print(f"the same agent in gym.make('genrl/Dream-v0'): dream return {dream_return:.1f}")
    shared.close()

    print(f"dataset and model are in {OUT}")

    # The whole loop (collect -> fit -> train in the dream -> evaluate and collect -> repeat) is one
    # call: genrl.train_in_imagination("cartpole"), or from a shell: genrl train cartpole


if __name__ == "__main__":
    main()
