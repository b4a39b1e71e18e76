"""An adversarial loss on the decoder (FitConfig.adversarial_weight, a VAE-GAN): sharpness and realism.

On genrl/PixelCartPole-v1 (64x64 grayscale frames), random-policy frames are collected once: a
training set (``--frames`` env steps, seed 0) and a held-out set (``--eval-frames``, seed 1). For each
weight in ``--weights`` a default image model is fitted on the training set with the same seed
and the same ``--steps`` (``WorldModel.fit``: the VAE stage, encoding, the dynamics stage; the
dynamics do not change the VAE), and each held-out frame is reconstructed through the latent
mean (``decode(encode(frame))``, uint8 as the env gives frames). Per weight:

- sharpness: mean gradient energy (squared differences of neighbouring pixels) and the variance
  of the 4-neighbour Laplacian of the reconstructions, each as a ratio to the real frames' (1:
  as sharp as the real frames; a blurred picture is below 1), on pixels in [0, 1];
- fidelity: pixel MSE and PSNR (dB) of the reconstructions against their frames;
- realism: genrl's realism critic (genrl.evaluation.critic.realism_critic, an MLP classifier
  trained on the pairs of half of the episodes, tested on the other half) applied to frames:
  held-out accuracy at telling real frames from their reconstructions (0.5: indistinguishable),
  on the full 64x64 frames and on frames averaged down to 16x16;
- the discriminator's hinge loss and the generator's term at the last logged steps.

Usage::

    python benchmarks/vae_gan.py                  # weights 0, 0.1 and 1, 1,000 steps: ~17 min, 1 thread
    python benchmarks/vae_gan.py --weights 0,0.1 --steps 1500 --out benchmarks/vae_gan.json
    python benchmarks/vae_gan.py --quick          # a smoke run, not a result
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))
from common import command, commit, machine, table  # noqa: E402

from genrl import RolloutDataset, WorldModel, collect  # noqa: E402
from genrl.data.envs import make_env  # noqa: E402
from genrl.evaluation.critic import realism_critic  # noqa: E402
from genrl.util.files import write_json  # noqa: E402

ENV_ID = "genrl/PixelCartPole-v1"
COLUMNS = (
    "adversarial_weight",
    "gradient_energy_ratio",
    "laplacian_variance_ratio",
    "psnr_db",
    "critic_accuracy_64x64",
    "critic_accuracy_16x16",
    "adversarial_d_last",
    "fit_s",
)


class Scalars:
    """A SummaryWriter's add_scalar, recorded: the fit's training losses, every 50 steps."""

    def __init__(self) -> None:
        self.values: dict[str, list[float]] = {}

    def add_scalar(self, tag: str, value: float, step: int) -> None:
        self.values.setdefault(tag, []).append(float(value))


def gradient_energy(x: np.ndarray) -> float:
    """Mean squared difference of horizontally and vertically neighbouring pixels, (N, H, W)."""
    return float(np.mean(np.diff(x, axis=1) ** 2) + np.mean(np.diff(x, axis=2) ** 2))


def laplacian_variance(x: np.ndarray) -> float:
    """Mean over frames (N, H, W) of the variance of the 4-neighbour Laplacian of the interior."""
    lap = x[:, :-2, 1:-1] + x[:, 2:, 1:-1] + x[:, 1:-1, :-2] + x[:, 1:-1, 2:] - 4 * x[:, 1:-1, 1:-1]
    return float(lap.reshape(len(x), -1).var(1).mean())


def pool(x: np.ndarray, k: int) -> np.ndarray:
    """Frames (N, H, W) averaged over k x k blocks."""
    n, h, w = x.shape
    return x.reshape(n, h // k, k, w // k, k).mean((2, 4))


def frames_and_groups(data: RolloutDataset) -> tuple[np.ndarray, np.ndarray]:
    """Every frame of ``data`` (N, H, W, C) and the episode it comes from (N,)."""
    frames = np.concatenate([ep.obs for ep in data.episodes])
    groups = np.concatenate([np.full(len(ep.obs), i) for i, ep in enumerate(data.episodes)])
    return frames, groups


@torch.no_grad()
def reconstruct(model: WorldModel, frames: np.ndarray, batch: int = 256) -> np.ndarray:
    out = [
        model.decode(model.encode(torch.as_tensor(frames[i : i + batch]))).numpy()
        for i in range(0, len(frames), batch)
    ]
    return np.concatenate(out).astype(frames.dtype)


def measure(
    weight: float, train: RolloutDataset, frames: np.ndarray, groups: np.ndarray, steps: int, seed: int
) -> dict[str, Any]:
    torch.manual_seed(seed)
    model = WorldModel(train.observation_space, train.action_space, seed=seed, adversarial_weight=weight)
    writer = Scalars()
    clock = time.perf_counter()
    metrics = model.fit(train, steps=steps, writer=writer, progress=False)
    fit_s = time.perf_counter() - clock
    recon = reconstruct(model, frames)
    real = frames[..., 0].astype(np.float32) / 255
    fake = recon[..., 0].astype(np.float32) / 255
    mse = float(np.mean((fake - real) ** 2))
    critic_full = realism_critic(real.reshape(len(real), -1), fake.reshape(len(fake), -1), groups, seed=seed)
    critic_small = realism_critic(
        pool(real, 4).reshape(len(real), -1), pool(fake, 4).reshape(len(fake), -1), groups, seed=seed
    )
    last = {k.rsplit("/", 1)[-1]: v[-1] for k, v in writer.values.items() if "adversarial" in k}
    return {
        "adversarial_weight": weight,
        "gradient_energy_ratio": gradient_energy(fake) / gradient_energy(real),
        "laplacian_variance_ratio": laplacian_variance(fake) / laplacian_variance(real),
        "mse": mse,
        "psnr_db": float(10 * np.log10(1.0 / mse)),
        "critic_accuracy_64x64": critic_full.accuracy,
        "critic_accuracy_16x16": critic_small.accuracy,
        "critic_test_pairs": critic_full.test_pairs,
        "val_reconstruction": metrics["reconstruction"],
        "val_kl": metrics["kl"],
        "adversarial_d_last": last.get("adversarial_d"),
        "adversarial_g_last": last.get("adversarial_g"),
        "adversarial_d_curve": writer.values.get("world_model/train/adversarial_d", []),
        "fit_s": fit_s,
        "stage_seconds": model.trainer.stage_seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default="0,0.1,1", help="comma list of adversarial_weight values")
    parser.add_argument("--steps", type=int, default=1000, help="fit steps (each stage)")
    parser.add_argument("--frames", type=int, default=5000, help="training env steps (random policy)")
    parser.add_argument("--eval-frames", type=int, default=1000, help="held-out env steps (random policy)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="benchmarks/vae_gan.json")
    parser.add_argument("--quick", action="store_true", help="tiny budgets: a smoke run, not a result")
    args = parser.parse_args()
    if args.quick:
        args.steps, args.frames, args.eval_frames = 20, 300, 200
    weights = [float(w) for w in args.weights.split(",")]
    clock = time.perf_counter()
    env = make_env(ENV_ID)
    train = collect(env, args.frames, seed=args.seed, progress=False)
    held_out = collect(env, args.eval_frames, seed=args.seed + 1, progress=False)
    env.close()
    frames, groups = frames_and_groups(held_out)
    rows = []
    for w in weights:
        rows.append(measure(w, train, frames, groups, args.steps, args.seed))
        print(f"adversarial_weight {w}: fitted in {rows[-1]['fit_s']:.0f} s", flush=True)
    record = {
        "benchmark": "vae_gan",
        "env": ENV_ID,
        "machine": machine(),
        "commit": commit(),
        "command": command(),
        "steps": args.steps,
        "train_steps": train.num_steps,
        "train_episodes": len(train),
        "eval_frames": len(frames),
        "eval_episodes": len(held_out),
        "critic": "genrl.evaluation.critic.realism_critic on flattened frames in [0, 1] (and 4x4-averaged)",
        "wall_s": time.perf_counter() - clock,
        "rows": rows,
    }
    write_json(args.out, record)
    print(table(rows, {k: k for k in COLUMNS}))
    print(f"wrote {args.out} ({record['wall_s']:.0f} s)")


if __name__ == "__main__":
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    main()
