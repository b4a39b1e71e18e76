"""Adversarial synthesis on CartPole-v1, confirmed in the real env.

1. Train PPO in the real CartPole-v1 (rl-baselines3-zoo hyperparameters) until it is good from
   ordinary resets (20 deterministic episodes averaging >= 475), checking every 10,000 steps.
2. Record ~2,000 random real steps and fit a world model with the settings of envs/cartpole.yaml
   (identity encoder, one mixture component, its fit section).
3. ``genrl.guidance.synthesis.synthesize(..., adversarial=True)``: search, within ``--radius``
   standard deviations of the data's real reset states, for the start states where the agent's
   return in the dream is lowest; keep the hardest ``--starts``.
4. Confirm in the REAL env: for each hard start, ``env.reset()`` then ``env.unwrapped.state =
   start`` and let the agent play (its first observation is the start itself). Beside it: the
   agent's real return from ordinary resets, and from the same number of randomly perturbed real
   starts of the same radius (``start="perturbed"``), so the search is compared with chance too;
   and a fixed linear controller's real return from the hard starts, which says whether they can
   be recovered from at all (a hard scenario, not a lost cause).

Usage::

    python benchmarks/synthesis.py                # radii 0.5 and 1 (about 5 minutes on 1 thread)
    python benchmarks/synthesis.py --quick        # a smoke run at tiny budgets

Writes ``--out-dir/synthesis.json`` (every episode's return, the card, timings) and prints a
markdown summary for benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import command, commit, machine, table  # noqa: E402
from sample_efficiency import TASKS  # noqa: E402

ENV_ID = "CartPole-v1"
GOOD = 475.0  # "good from ordinary starts": CartPole's solved threshold
# rl-baselines3-zoo's PPO for CartPole-v1 (hyperparams/ppo.yml): sample_efficiency.py's baseline.
_ZOO = TASKS["cartpole"].baselines["ppo"]
PPO = {
    "algorithm": "ppo",
    "hyperparameters": {
        **{k: v for k, v in _ZOO.items() if k not in ("algo", "budget", "n_envs")},
        "device": "cpu",
    },
}


def train_agent(seed: int, budget: int, chunk: int, episodes: int) -> tuple[Any, list[dict[str, float]]]:
    """PPO in the real env, evaluated every ``chunk`` steps until it is good or out of budget."""
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.evaluation import evaluate_policy

    from genrl.training.agents import make_agent

    env = make_vec_env(ENV_ID, n_envs=8, seed=seed)
    agent = make_agent(PPO, env, seed=seed)
    evaluator = make_vec_env(ENV_ID, n_envs=episodes, seed=50_000 + seed)
    history = []
    while agent.num_timesteps < budget:
        agent.learn(chunk, reset_num_timesteps=False)
        returns, _ = evaluate_policy(
            agent, evaluator, episodes, deterministic=True, return_episode_rewards=True
        )
        history.append({"steps": int(agent.num_timesteps), "return_mean": float(np.mean(returns))})
        if np.mean(returns) >= GOOD:
            break
    return agent, history


def fit_model(seed: int, steps: int, fit_steps: int | None):
    """A world model of random CartPole data, with the settings of envs/cartpole.yaml."""
    import genrl
    from genrl.training.config import resolve_config

    cfg = resolve_config("cartpole")
    data = genrl.collect(ENV_ID, steps, seed=seed, progress=False)
    model = genrl.WorldModel(data.observation_space, data.action_space, cfg.world_model, cfg.fit, seed=seed)
    model.fit(data, fit_steps, progress=False)
    return model.eval(), data


def real_returns(agent: Any, starts: np.ndarray | None, count: int, seed: int) -> dict[str, list]:
    """The agent's deterministic real returns from each start (set as ``env.unwrapped.state``), or
    from ``count`` ordinary resets when ``starts`` is None; and how each episode ended."""
    import gymnasium as gym

    env = gym.make(ENV_ID)
    returns, ends = [], []
    try:
        for i in range(count if starts is None else len(starts)):
            obs, _ = env.reset(seed=seed + i)
            if starts is not None:
                env.unwrapped.state = np.asarray(starts[i], dtype=np.float64)
                obs = np.asarray(starts[i], dtype=np.float32)
            total, terminated, truncated = 0.0, False, False
            while not (terminated or truncated):
                action, _ = agent.predict(obs, deterministic=True)
                obs, reward, terminated, truncated, _ = env.step(int(action))
                total += float(reward)
            returns.append(total)
            ends.append(_ending(env.unwrapped, terminated))
    finally:
        env.close()
    return {"returns": returns, "ends": ends}


def _ending(cartpole: Any, terminated: bool) -> str:
    """Why a CartPole episode ended: the time limit, the cart off the track, or the pole down."""
    if not terminated:
        return "time limit"
    x, _, theta, _ = cartpole.state
    return "cart off the track" if abs(x) > cartpole.x_threshold else "pole fell"


class LinearController:
    """Push right iff ``K . state > 0``: a fixed state-feedback CartPole controller (LQR-like
    gains), to tell whether a start the agent fails from can be recovered from at all."""

    K = np.array([1.0, 1.6, 18.0, 2.9])

    def predict(self, obs: np.ndarray, deterministic: bool = True) -> tuple[np.ndarray, None]:
        return np.asarray(obs @ self.K > 0, dtype=np.int64), None


def summary(values: list[float]) -> dict[str, Any]:
    from genrl.evaluation.metrics import bootstrap_ci

    low, high = bootstrap_ci(np.asarray(values, dtype=float), statistic=np.mean)
    return {"mean": float(np.mean(values)), "std": float(np.std(values)), "ci95": [float(low), float(high)]}


def one_radius(agent: Any, model: Any, data: Any, radius: float, args: argparse.Namespace) -> dict[str, Any]:
    """Adversarial and random perturbed starts at ``radius``, each played in the dream and for real."""
    from genrl.dream.play import dream_returns
    from genrl.guidance.synthesis import synthesize

    search = {"population": args.population, "generations": args.generations}
    common = {"dataset": data, "horizon": 500, "perturbation": radius, "n_starts": args.starts}
    begin = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="genrl-synthesis-") as tmp:
        hard = synthesize(model, Path(tmp) / "hard", env=ENV_ID, agent=agent, adversarial=True,
                          search=search, seed=args.seed, progress=False, **common)  # fmt: skip
        seconds = time.perf_counter() - begin
        chance = synthesize(model, Path(tmp) / "chance", start="perturbed", seed=args.seed + 1,
                            progress=False, **common)  # fmt: skip
    real = {
        "hard": real_returns(agent, hard.starts, 0, 80_000 + args.seed),
        "perturbed": real_returns(agent, chance.starts, 0, 90_000 + args.seed),
    }
    real["controller"] = real_returns(LinearController(), hard.starts, 0, 80_000 + args.seed)
    dream = {
        "hard": hard.hard.returns.tolist(),
        "perturbed": dream_returns(model, agent, chance.starts, 500, seed=args.seed + 2).tolist(),
    }
    return {
        "radius": radius,
        "synthesize_s": seconds,
        "real": real,
        "dream": dream,
        "card": hard.card,
        "hard_starts": hard.starts.tolist(),
        "perturbed_starts": chance.starts.tolist(),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    """The whole benchmark: one agent, one model, then each radius; returns its record."""
    t0 = time.perf_counter()
    agent, training = train_agent(args.seed, args.agent_budget, args.agent_chunk, 20)
    t_agent = time.perf_counter()
    model, data = fit_model(args.seed, args.data_steps, args.fit_steps)
    t_fit = time.perf_counter()
    ordinary = real_returns(agent, None, max(args.starts, 20), 70_000 + args.seed)
    radii = [one_radius(agent, model, data, float(r), args) for r in args.radius.split(",")]
    return {
        "date": time.strftime("%Y-%m-%d"),
        "machine": machine(),
        "commit": commit(),
        "command": command(),
        "settings": vars(args),
        "agent_training": training,
        "real_data_steps": data.num_steps,
        "ordinary_real": ordinary,
        "radii": radii,
        "seconds": {"agent": t_agent - t0, "fit": t_fit - t_agent, "total": time.perf_counter() - t0},
    }


def _row(label: str, real: dict[str, list], dream: str) -> dict[str, Any]:
    r = summary(real["returns"])
    ends = {e: real["ends"].count(e) for e in ("time limit", "pole fell", "cart off the track")}
    return {
        "starts": label,
        "episodes": len(real["returns"]),
        "real": f"{r['mean']:.1f} ± {r['std']:.1f} (95% CI {r['ci95'][0]:.1f} - {r['ci95'][1]:.1f})",
        "ends": ", ".join(f"{k} {v}" for k, v in ends.items() if v),
        "dream": dream,
    }


def report(record: dict[str, Any]) -> str:
    """Markdown for RESULTS.md: real and dream returns by kind of start, and the verdict per radius."""
    first = record["radii"][0]["card"]["adversarial"]
    dream_ordinary = f"{first['ordinary_return']:.1f} ± {first['ordinary_return_std']:.1f}"
    rows = [_row("ordinary resets", record["ordinary_real"], f"{dream_ordinary} (from real reset states)")]
    verdicts = []
    ordinary = summary(record["ordinary_real"]["returns"])
    for r in record["radii"]:
        for kind, label in (("perturbed", "random perturbed"), ("hard", "adversarial")):
            d = summary(r["dream"][kind])
            rows.append(
                _row(f"{label}, radius {r['radius']:g}", r["real"][kind], f"{d['mean']:.1f} ± {d['std']:.1f}")
            )
        label = f"the same adversarial starts, radius {r['radius']:g}: linear controller instead of PPO"
        rows.append(_row(label, r["real"]["controller"], "-"))
        hard = summary(r["real"]["hard"]["returns"])
        clearly = hard["ci95"][1] < ordinary["ci95"][0]
        half = hard["ci95"][1] < 0.5 * ordinary["mean"]
        verdicts.append(
            f"radius {r['radius']:g}: adversarial real return {hard['mean']:.1f} vs {ordinary['mean']:.1f} "
            f"({100 * (hard['mean'] / ordinary['mean'] - 1):+.0f}%); 95% CIs apart: {clearly}; "
            f"CI below half the ordinary mean: {half}"
        )
    columns = {"starts": "start states", "episodes": "real episodes", "real": "real return",
               "ends": "real episodes ended by", "dream": "dream return"}  # fmt: skip
    return table(rows, columns) + "\n\n" + "\n".join(f"- {v}" for v in verdicts)


def main() -> None:
    import os

    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--radius", default="0.5,1.0", help="search radii, in data stds (comma list)")
    parser.add_argument("--starts", type=int, default=64, help="hard starts kept (and episodes of each kind)")
    parser.add_argument("--population", type=int, default=256)
    parser.add_argument("--generations", type=int, default=8)
    parser.add_argument("--data-steps", type=int, default=2000)
    parser.add_argument("--fit-steps", type=int, default=None, help="default: envs/cartpole.yaml's")
    parser.add_argument("--agent-budget", type=int, default=100_000)
    parser.add_argument("--agent-chunk", type=int, default=10_000)
    parser.add_argument("--out-dir", default="benchmarks/results/synthesis")
    parser.add_argument("--quick", action="store_true", help="tiny budgets: checks that it runs")
    args = parser.parse_args()
    if args.quick:
        args.starts, args.population, args.generations = 8, 16, 1
        args.data_steps, args.fit_steps, args.agent_budget, args.agent_chunk = 300, 20, 2_000, 1_000
    os.environ.setdefault("GENRL_PROGRESS", "0")
    torch.set_num_threads(1)
    from genrl.util.files import write_json

    record = run(args)
    out = Path(args.out_dir) / ("synthesis-quick.json" if args.quick else "synthesis.json")
    write_json(out, record)
    print(f"{record['date']}, {record['machine']}, commit {record['commit']}, `{record['command']}`\n")
    print(report(record))
    print(f"\nSeconds: {record['seconds']}; JSON: {out}")


if __name__ == "__main__":
    main()
