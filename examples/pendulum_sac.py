"""Pendulum with SAC, trained only in imagination.

``train_in_imagination`` runs the whole loop from the ``envs/pendulum.yaml`` preset: collect random
real steps, fit a world model, train stable-baselines3's SAC (``agents/sac.yaml``) in batched
dreams, evaluate it in the real Pendulum and collect more data with it, and repeat.

Everything lands in one run folder: the dataset, the world model, the agent (``policy.safetensors``),
``summary.json`` and TensorBoard logs. Watch it with ``tensorboard --logdir runs/``.

The same run from a shell: ``genrl train pendulum --agent sac --run-dir runs/pendulum-sac``.
"""

from __future__ import annotations

import genrl

SEED = 0
RUN_DIR = "runs/pendulum-sac"


def main() -> None:
    result = genrl.train_in_imagination("pendulum", agent="sac", seed=SEED, run_dir=RUN_DIR)
    for row in result.history:
        print(
            f"iteration {row['iteration']}: {row['real_steps']} real steps, "
            f"real return {row['eval_return_mean']:.1f} ± {row['eval_return_std']:.1f}, "
            f"dream return {row['dream_return_mean']:.1f}"
        )
    print(
        f"SAC used {result.dataset.num_steps} real env steps of training data; "
        f"final real return {result.final['eval_return_mean']:.1f}; run folder: {result.run_dir}"
    )
    # Pendulum's rewards are negative; a return above about -200 swings the pole up and holds it.


if __name__ == "__main__":
    main()
