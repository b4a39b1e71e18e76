"""Environment synthesis: a learned CartPole written out as a shareable, documented environment.

1. fit the CartPole preset's precise world model on 2,000 random real steps, and train a small
   PPO agent in the real env
2. ``genrl.synthesize``: write an environment package (the model, its start states, its dream
   settings and a card that says how far the dreams can be trusted) and open it with
   ``gymnasium.make("genrl/Dream-v0", model=DIR)``
3. ``genrl.synthesize(adversarial=True, agent=...)``: search the dream for the start states where
   the agent does worst, then check in the *real* env that they are hard there too
4. ``genrl.train_on_package``: train a fresh agent inside a package

Run it with ``python examples/synthesis.py`` (about three minutes on 2 CPU cores). Everything is
written to ``OUT``; each package folder holds a CARD.md to read.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import gymnasium as gym
import numpy as np
from stable_baselines3 import PPO
from stable_baselines3.common.env_util import make_vec_env

import genrl
from genrl.training.presets import load_preset

ENV_ID = "CartPole-v1"
COLLECT_STEPS = 2_000  # real transitions recorded with a random policy
PPO_STEPS = 30_000  # real steps the agent learns from
HORIZON = 500
RADIUS = 1.0  # how far (in standard deviations of the data) adversarial starts may move
CHECKS = 10  # real episodes from the hardest starts, and from ordinary resets
SEED = 0
OUT = Path("runs/examples/synthesis")


def real_return(agent: PPO, state: np.ndarray | None, seed: int) -> float:
    """The agent's real return from ``state`` (None: an ordinary reset)."""
    env = gym.make(ENV_ID)
    obs, _ = env.reset(seed=seed)
    if state is not None:
        # CartPole's observation is its whole state, so a start state can be set directly.
        env.unwrapped.state = np.asarray(state, dtype=np.float64)
        obs = np.asarray(state, dtype=np.float32)
    total, done = 0.0, False
    while not done:
        action, _ = agent.predict(obs, deterministic=True)
        obs, reward, terminated, truncated, _ = env.step(int(action))
        total, done = total + reward, terminated or truncated
    env.close()
    return total


def main() -> None:
    shutil.rmtree(OUT, ignore_errors=True)

    # 1. Real data, a precise world model (envs/cartpole.yaml), and an agent to synthesise against.
    preset = load_preset("envs", "cartpole")
    data = genrl.collect(ENV_ID, COLLECT_STEPS, seed=SEED, path=OUT / "data", progress=False)
    print(f"collected {len(data)} episodes, {data.num_steps} random steps")
    model = genrl.WorldModel(
        data.observation_space, data.action_space, {**preset["world_model"], **preset["fit"]}, seed=SEED
    )
    val = model.fit(data)  # the preset's 1,500 steps: the slowest part of this example
    model.eval()
    print("held-out losses:", {k: round(v, 4) for k, v in val.items()})
    agent = PPO("MlpPolicy", make_vec_env(ENV_ID, 8, seed=SEED), n_steps=256, device="cpu", seed=SEED)
    agent.learn(PPO_STEPS)
    ordinary = [real_return(agent, None, SEED + i) for i in range(CHECKS)]
    print(f"PPO after {PPO_STEPS:,} real steps: real return {np.mean(ordinary):.1f}")

    # 2. A package: start states near the real ones, evaluated on the held-out data for its card.
    # With the agent and the env, the card also gives the agent's dream-to-real return gap.
    dream_dir = OUT / "cartpole-dream"
    result = genrl.synthesize(
        model,
        dream_dir,
        dataset=data,
        env=ENV_ID,
        start="perturbed",
        n_starts=256,
        horizon=HORIZON,
        agent=agent,
        evaluation_episodes=10,
        seed=SEED,
        progress=False,
    )
    print(f"\nwrote {result.path} ({len(result.starts)} start states)\ncard: {result.summary}")

    # The package is an environment anyone can make; its card travels in the metadata.
    env = gym.make("genrl/Dream-v0", model=str(dream_dir))
    print("gym.make card:", env.metadata["genrl_card"])
    obs, _ = env.reset(seed=SEED)
    total, done = 0.0, False
    while not done:
        action, _ = agent.predict(obs, deterministic=True)
        obs, reward, terminated, truncated, _ = env.step(action)
        total, done = total + reward, terminated or truncated
    print(f"the agent in the package: dream return {total:.1f}")
    env.close()

    # 3. Adversarial starts: a population of hill climbers searching, within RADIUS standard
    # deviations (of the data, per value) of the real starts, for where the agent's dream return
    # is lowest. Too large a radius finds states no policy could save (the pole already falling
    # fast); too small, none the agent minds. The search is small here to stay fast; its
    # defaults are a population of 256 over 8 generations.
    hard_dir = OUT / "cartpole-hard"
    hard = genrl.synthesize(
        model,
        hard_dir,
        dataset=data,
        env=ENV_ID,
        n_starts=32,
        perturbation=RADIUS,
        horizon=HORIZON,
        agent=agent,
        adversarial=True,
        search={"population": 64, "generations": 4, "horizon": 100},
        evaluation_episodes=10,
        seed=SEED,
        progress=False,
    )
    print(f"\nwrote {hard.path}\ncard: {hard.summary}")
    adv = hard.card["adversarial"]
    print(
        f"in the dream: {hard.hard.returns[:CHECKS].mean():.1f} from the {CHECKS} hardest starts "
        f"({adv['hard_return']:.1f} from all {len(hard.starts)}), {adv['ordinary_return']:.1f} from "
        "ordinary ones"
    )
    # These are dreamed figures; the real env is the judge. hard.starts is hardest first.
    hardest = [real_return(agent, s, SEED + i) for i, s in enumerate(hard.starts[:CHECKS])]
    failed = sum(r < HORIZON for r in hardest)
    print(
        f"in the real env: {np.mean(hardest):.1f} from the {CHECKS} hardest starts ({failed} of them "
        f"fail before {HORIZON} steps), {np.mean(ordinary):.1f} from {CHECKS} ordinary resets"
    )

    # 4. Train a fresh agent inside the first package, with the ppo agent preset (a tiny budget:
    # this shows the call, not a good agent). It is evaluated in the package's dreams, and in the
    # source env its card names. From a shell: genrl train --env-package DIR.
    trained = genrl.train_on_package(
        dream_dir, steps=10_000, n_envs=32, out=OUT / "agent", eval_episodes=10, seed=SEED, progress=False
    )
    r = trained.results
    print(
        f"\ntrain_on_package: dream return {r['dream_return']:.1f}, real return {r['real_return']:.1f}"
        f" (saved in {trained.out})"
    )


if __name__ == "__main__":
    main()
