"""genrl anomaly detection: a world model notices when the real world stops behaving like its data.

1. record normal CartPole episodes with a simple balancing controller, and fit a world model
   with the precise-dynamics settings of ``envs/cartpole.yaml``;
2. ``genrl.evaluate``: how well does the model predict held-out episodes, against naive baselines?
3. ``genrl.SurpriseDetector``: calibrate an alarm on held-out normal episodes for a 1% false-positive
   rate;
4. ``genrl.AnomalyMonitor``: watch a live env whose pole doubles in length at step 100
   (``genrl.anomaly.faults.ChangedPhysics``) and count the alarms before and after.

Run it with ``python examples/anomaly_monitor.py`` (about two minutes on a laptop CPU).
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np

import genrl
from genrl.anomaly.faults import ChangedPhysics

SEED = 0
PRECISE = {"encoder": "identity", "num_mixtures": 1, "nll_beta": 1.0, "prediction_weight": 10.0}


def controller(obs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Balance the pole, with 30% random actions so that the data covers varied states."""
    push = (obs[:, 2] + 0.3 * obs[:, 3] + 0.02 * obs[:, 0] + 0.05 * obs[:, 1] > 0).astype(np.int64)
    return np.where(rng.random(len(obs)) < 0.3, rng.integers(0, 2, len(obs)), push)


def main() -> None:
    rng = np.random.default_rng(SEED)
    policy = lambda obs: controller(obs, rng)  # noqa: E731
    data = genrl.collect("CartPole-v1", 20_000, policy, seed=SEED, progress=False)
    model = genrl.WorldModel(
        data.observation_space, data.action_space, termination_weight=10.0, lr_schedule="cosine", **PRECISE
    )
    model.fit(data, steps=1500)

    report = genrl.evaluate(model, data, horizon=50)  # the fit's held-out episodes only
    print("open-loop error (standardised MSE) at horizon 1 / 10 / 50:")
    for name in ("model", "repeat last", "linear"):
        print(
            f"  {name:>12}: "
            + " / ".join(f"{report.scalars[f'open_loop/{name}/h{k}']:.2e}" for k in (1, 10, 50))
        )

    detector = genrl.SurpriseDetector(model, window=20)
    # About 1/fpr normal episodes: each of the first 19 steps gets its own threshold from them.
    normal = genrl.collect("CartPole-v1", 50_000, policy, seed=SEED + 1, progress=False)
    detector.calibrate(normal, fpr=0.01)

    pole = gym.make("CartPole-v1").unwrapped
    longer = {"length": 2 * pole.length, "polemass_length": pole.masspole * 2 * pole.length}
    env = genrl.AnomalyMonitor(ChangedPhysics(gym.make("CartPole-v1"), onset=100, **longer), detector)
    for episode in range(3):
        obs, _ = env.reset(seed=SEED + episode)
        alarms, faulty, done = [], [], False
        while not done:
            obs, _, terminated, truncated, info = env.step(int(controller(obs[None], rng)[0]))
            alarms.append(info["anomaly"])
            faulty.append(info["fault"])
            done = terminated or truncated
        # One surprising normal step keeps the 20-step mean up for as long as 20 steps: false alarms
        # average the target rate over many steps but come in runs.
        alarms, faulty = np.array(alarms), np.array(faulty)
        after = np.flatnonzero(alarms & faulty)
        print(
            f"episode {episode}: alarms on {alarms[~faulty].sum()} of {(~faulty).sum()} normal steps "
            f"(the target rate is 1%) and on {alarms[faulty].sum()} of {faulty.sum()} steps after the pole "
            f"doubled; first alarm after it: " + (f"{after[0] - 100} steps later" if len(after) else "none")
        )
    env.close()


if __name__ == "__main__":
    main()
