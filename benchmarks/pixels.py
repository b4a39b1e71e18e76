"""Pixel tasks: dream speed beside the real env, and the loop beside a model-free baseline.

Usage: python benchmarks/pixels.py speed [--out benchmarks/pixels_speed.json]
       python benchmarks/pixels.py memory [--frames 200000] [--out benchmarks/pixels_memory.json]
       python benchmarks/pixels.py run PRESET [--seed 0] [--budget-s 3600] [--max-real-steps 10000]
                                              [--baseline-steps N] [--out-dir benchmarks/results/pixels]

speed   real CarRacing-v3 steps/s (random actions) and latent-mode dream steps/s of a model of
        CarRacing's spaces (64 dreams, the default image model: conv VAE at 64x64, latent 32,
        GRU 128), measured in one process. Speed does not depend on the weights: the model is
        not trained. MinAtar Breakout's real rate is reported beside it.
memory  a dataset of --frames CarRacing-shaped frames (96x96x3 uint8, 1,000-step episodes, random
        pixels: memory does not depend on what they show) in memory, and one fit of the default
        image model on it (50 steps a stage, so the cost is the encoding pass and the memory):
        peak resident memory and the seconds of each stage.
run     `genrl train PRESET` until its target, --max-real-steps or --budget-s of wall time
        (whichever comes first; the loop stops between iterations), then the preset's model-free
        SB3 agent on the real env (CnnPolicy for frames, MlpPolicy for MinAtar's grids) for the
        same number of real steps. Each finished stage is saved as JSON in --out-dir, so a rerun
        resumes after it.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from torch import nn

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))
from common import command, commit, header, machine  # noqa: E402

from genrl import DreamVecEnv, WorldModel, train_in_imagination  # noqa: E402
from genrl.data.envs import make_env  # noqa: E402
from genrl.training.config import resolve_config  # noqa: E402
from genrl.util.files import read_json, write_json  # noqa: E402


def steps_per_second(step, seconds: float = 5.0) -> float:
    """Calls of ``step`` (which returns how many steps it took) per second, over ``seconds``."""
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        done += step()
    return done / (time.perf_counter() - start)


def real_rate(env_id: str, seconds: float = 5.0) -> float:
    env = make_env(env_id)
    env.reset(seed=0)
    env.action_space.seed(0)

    def step() -> int:
        _, _, terminated, truncated, _ = env.step(env.action_space.sample())
        if terminated or truncated:
            env.reset()
        return 1

    rate = steps_per_second(step, seconds)
    env.close()
    return rate


@torch.inference_mode()
def dream_rate(env_id: str, n_envs: int = 64, seconds: float = 5.0) -> float:
    env = make_env(env_id)
    model = WorldModel(env.observation_space, env.action_space, seed=0)
    model.set_start_states(np.stack([env.reset(seed=s)[0] for s in range(8)]))
    env.close()
    dreams = DreamVecEnv(model, n_envs, horizon=1000, obs_mode="latent", support=None, seed=0)
    dreams.reset()
    actions = np.stack([model.action_space.sample() for _ in range(n_envs)])

    def step() -> int:
        dreams.step(actions)
        return n_envs

    return steps_per_second(step, seconds)


def speed(out: Path) -> dict[str, Any]:
    torch.set_num_threads(1)
    result = {
        "machine": machine(),
        "commit": commit(),
        "command": command(),
        "carracing_real_steps_per_s": real_rate("CarRacing-v3"),
        "carracing_dream_steps_per_s": dream_rate("CarRacing-v3"),
        "breakout_real_steps_per_s": real_rate("MinAtar/Breakout-v1"),
        "breakout_dream_steps_per_s": dream_rate("MinAtar/Breakout-v1"),
    }
    result["carracing_ratio"] = result["carracing_dream_steps_per_s"] / result["carracing_real_steps_per_s"]
    write_json(out, result)
    print(header())
    for key, value in result.items():
        print(f"| {key} | {value if isinstance(value, str) else f'{value:,.1f}'} |")
    return result


def memory(frames: int, out: Path) -> dict[str, Any]:
    import resource

    from genrl import RolloutDataset

    torch.set_num_threads(1)
    obs_space = spaces.Box(0, 255, (96, 96, 3), np.uint8)
    act_space = spaces.Box(np.array([-1, 0, 0], np.float32), np.array([1, 1, 1], np.float32))
    data = RolloutDataset(obs_space, act_space)
    rng = np.random.default_rng(0)
    start = time.time()
    for _ in range(frames // 1000):
        steps = 999  # 1,000 frames an episode
        data.add_episode(
            rng.integers(0, 256, (steps + 1, 96, 96, 3), dtype=np.uint8),
            rng.uniform(0, 1, (steps, 3)).astype(np.float32),
            rng.normal(size=steps).astype(np.float32),
            np.zeros(steps, bool),
            np.eye(1, steps, steps - 1, dtype=bool)[0],
        )
    built = time.time() - start
    model = WorldModel(obs_space, act_space, seed=0)
    model.fit(data, steps=50, progress=False)
    result = {
        "machine": machine(),
        "commit": commit(),
        "command": command(),
        "frames": sum(len(ep.obs) for ep in data.episodes),
        "dataset_gib": sum(ep.obs.nbytes for ep in data.episodes) / 2**30,
        "build_s": built,
        "stage_seconds": model.trainer.stage_seconds,
        "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
    }
    write_json(out, result)
    print(header())
    print(result)
    return result


def run(
    preset: str, seed: int, budget_s: float, max_real_steps: int, baseline_steps: int | None, out: Path
) -> None:
    torch.set_num_threads(1)
    out.mkdir(parents=True, exist_ok=True)
    genrl_file = out / f"{Path(preset).stem}_genrl_seed{seed}.json"
    if not genrl_file.exists():
        start = time.time()
        # The loop stops between iterations: a callback-free way is to run one iteration at a
        # time (each call resumes the run folder) until a limit is reached.
        run_dir = out / f"{Path(preset).stem}_run_seed{seed}"
        history: list[dict[str, Any]] = []
        iteration = 1
        while True:
            result = train_in_imagination(
                preset, seed=seed, run_dir=run_dir, iterations=iteration, progress=False
            )
            history = result.history
            last = history[-1]
            print(
                f"iteration {last['iteration']}: real steps {last['real_steps']}, real return "
                f"{last['eval_return_mean']:.1f}, dream return {last['dream_return_mean']:.1f}, "
                f"{time.time() - start:.0f} s",
                flush=True,
            )
            target = result.config.train.target_return
            if (target is not None and last["eval_return_mean"] >= target) or last[
                "real_steps"
            ] >= max_real_steps:
                break
            if time.time() - start >= budget_s:
                break
            iteration += 1
        write_json(
            genrl_file,
            {
                "preset": preset,
                "seed": seed,
                "machine": machine(),
                "commit": commit(),
                "command": command(),
                "wall_s": time.time() - start,
                "history": history,
            },
        )
    record = read_json(genrl_file, "a benchmark result")
    real_steps = baseline_steps or record["history"][-1]["real_steps"]
    baseline_file = out / f"{Path(preset).stem}_baseline_seed{seed}_{real_steps}.json"
    if not baseline_file.exists():
        write_json(baseline_file, model_free(preset, seed, real_steps))
    base = read_json(baseline_file, "a benchmark result")
    best = max(record["history"], key=lambda row: row["eval_return_mean"])
    print(header())
    print("| method | real steps | real return (last) | best | wall s |\n| --- | --- | --- | --- | --- |")
    last = record["history"][-1]
    print(
        f"| genrl | {last['real_steps']} | {last['eval_return_mean']:.1f} | {best['eval_return_mean']:.1f} "
        f"at {best['real_steps']} | {record['wall_s']:.0f} |"
    )
    print(
        f"| {base['algorithm']} | {base['real_steps']} | {base['return_mean']:.1f} | | {base['wall_s']:.0f} |"
    )


def model_free(preset: str, seed: int, steps: int) -> dict[str, Any]:
    """The model-free baseline on the real env for ``steps`` steps, then 20 deterministic episodes.

    MinAtar: DQN with the published MinAtar settings (Young and Tian, 2019: one 3x3 conv of 16
    channels, a hidden layer of 128, RMSprop at 2.5e-4, replay 100,000 from 5,000, batch 32,
    target update 1,000, an update every step, epsilon 1 to 0.1 over the first 100,000 steps).
    Frames (pixel CartPole): PPO with SB3's CnnPolicy and defaults.
    """
    from stable_baselines3 import DQN, PPO
    from stable_baselines3.common.evaluation import evaluate_policy
    from stable_baselines3.common.vec_env import DummyVecEnv

    cfg = resolve_config(preset, seed=seed)
    start = time.time()
    venv = DummyVecEnv([lambda: make_env(cfg.env_id)])
    if cfg.env_id.startswith("MinAtar/"):
        name = "DQN, MinAtar's published settings"
        agent = DQN(
            "MlpPolicy",
            venv,
            learning_rate=2.5e-4,
            buffer_size=100_000,
            learning_starts=5_000,
            batch_size=32,
            gamma=0.99,
            target_update_interval=1_000,
            train_freq=1,
            gradient_steps=1,
            exploration_initial_eps=1.0,
            exploration_final_eps=0.1,
            exploration_fraction=min(1.0, 100_000 / steps),
            policy_kwargs={
                "features_extractor_class": MinAtarNet,
                "net_arch": [],
                "optimizer_class": torch.optim.RMSprop,
                "optimizer_kwargs": {"alpha": 0.95, "centered": True, "eps": 0.01},
            },
            seed=seed,
            device="cpu",
        )
    else:
        name = "PPO, SB3's CnnPolicy and defaults"
        agent = PPO("CnnPolicy", venv, seed=seed, device="cpu")
    agent.learn(steps)
    returns, _ = evaluate_policy(agent, venv, 20, deterministic=True, return_episode_rewards=True)
    return {
        "algorithm": name,
        "real_steps": steps,
        "return_mean": float(np.mean(returns)),
        "return_std": float(np.std(returns)),
        "wall_s": time.time() - start,
        "machine": machine(),
        "commit": commit(),
        "command": command(),
    }


class MinAtarNet(BaseFeaturesExtractor):
    """MinAtar's DQN network (Young and Tian, 2019) up to its hidden layer: conv 3x3x16, fc 128."""

    def __init__(self, observation_space: spaces.Box):
        super().__init__(observation_space, features_dim=128)
        height, width, channels = observation_space.shape
        self.net = nn.Sequential(
            nn.Conv2d(channels, 16, 3),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(16 * (height - 2) * (width - 2), 128),
            nn.ReLU(),
        )

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.net(obs.float().permute(0, 3, 1, 2))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="what", required=True)
    p = sub.add_parser("speed")
    p.add_argument("--out", type=Path, default=HERE / "pixels_speed.json")
    p = sub.add_parser("memory")
    p.add_argument("--frames", type=int, default=200_000)
    p.add_argument("--out", type=Path, default=HERE / "pixels_memory.json")
    p = sub.add_parser("run")
    p.add_argument("preset")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--budget-s", type=float, default=3600.0)
    p.add_argument("--max-real-steps", type=int, default=10_000)
    p.add_argument("--baseline-steps", type=int, default=None)
    p.add_argument("--out-dir", type=Path, default=HERE / "results" / "pixels")
    args = parser.parse_args(argv)
    if args.what == "speed":
        speed(args.out)
    elif args.what == "memory":
        memory(args.frames, args.out)
    else:
        run(args.preset, args.seed, args.budget_s, args.max_real_steps, args.baseline_steps, args.out_dir)


if __name__ == "__main__":
    main()
