"""Throughput of the default CartPole world model: dream, roofline, dream cost inside PPO, fit.

Usage: python benchmarks/throughput.py [--only dream,roofline,ppo,fit] [--quick] [--threads 1]
                                       [--device cpu] [--out benchmarks/throughput.json]

Sections:
  dream     imagined steps/s of DreamVecEnv against n_envs, beside gymnasium's real vector envs
  roofline  FLOPs per imagined step, counted from the model's layers, and the matmul rate this
            machine achieves on exactly those shapes: how close the dream gets to it
  ppo       share of SB3 PPO's learn() wall time spent inside the dream (preset dream settings)
  fit       world-model training throughput and the time to fit the preset model

Prints one markdown table per section and writes every number as JSON to --out.
"""

from __future__ import annotations

import argparse
import itertools
import math
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3.common.vec_env import VecMonitor
from torch import nn

import genrl
import genrl.training.agents
import genrl.training.presets
from genrl.util.files import write_json

# Run as `python benchmarks/throughput.py` the script's folder is already first on sys.path; this
# makes `from common import` work however the file is started (runpy, an IDE, another cwd).
HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))
from common import command, commit, header, machine, table  # noqa: E402

ENV_ID = "CartPole-v1"
SECTIONS = ("dream", "roofline", "ppo", "fit")
TARGET_DREAM_STEPS_PER_S = 100_000  # at TARGET_N_ENVS
TARGET_N_ENVS = 1024
TARGET_ROOFLINE_FRACTION = 0.5
TARGET_PPO_DREAM_FRACTION = 0.2


@dataclass(frozen=True)
class Settings:
    """How long each measurement runs; ``--quick`` swaps in QUICK."""

    n_envs: tuple[int, ...] = (1, 16, 256, 1024, 4096)
    min_seconds: float = 1.0  # every timed loop lasts at least this long
    warmup_steps: int = 20  # untimed steps first: allocator, caches, lazy inits
    data_steps: int = 1000  # random real steps, as in the demo's first iteration
    model_fit_steps: int = 300  # for the dream/ppo model: weights barely matter for speed
    ppo_steps: int = 50_000
    fit_steps: int | None = None  # None: the preset's fit.steps


QUICK = Settings(min_seconds=0.1, warmup_steps=3, model_fit_steps=30, ppo_steps=4096, fit_steps=50)


# ---- shared ------------------------------------------------------------------------------------


def sync(device: torch.device) -> None:
    """Wait for queued GPU work, so that a timer stops when the work is done, not when it was queued."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_loop(fn: Callable[[], Any], min_seconds: float, warmup: int, device: torch.device) -> float:
    """Seconds per call of ``fn``, timed over enough calls to last ``min_seconds``.

    Calls run in chunks sized from the rate so far, so the clock is read (and the GPU synchronised)
    a handful of times rather than per call, and the loop ends close to ``min_seconds``.
    """
    for _ in range(warmup):
        fn()
    sync(device)
    done, chunk = 0, 1
    start = time.perf_counter()
    while True:
        for _ in range(chunk):
            fn()
        sync(device)
        done += chunk
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds:
            return elapsed / done
        left = (min_seconds - elapsed) / max(elapsed, 1e-9) * done
        chunk = max(1, min(2 * done, math.ceil(1.05 * left)))


def random_actions(space: spaces.Space, n: int, count: int, seed: int = 0) -> list[np.ndarray]:
    """``count`` batches of ``n`` uniform actions, drawn ahead so that no timed loop pays for them."""
    rng = np.random.default_rng(seed)
    if isinstance(space, spaces.Discrete):
        start = int(space.start)
        return list(rng.integers(start, start + int(space.n), size=(count, n)))
    return list(rng.uniform(space.low, space.high, size=(count, n, *space.shape)).astype(space.dtype))


def build_model(
    preset: dict[str, Any], data: genrl.RolloutDataset, fit_steps: int, device: torch.device
) -> genrl.WorldModel:
    """The preset's CartPole world model on ``device``, fitted for ``fit_steps``."""
    cfg = genrl.TrainConfig.from_preset(preset)
    model = genrl.WorldModel(data.observation_space, data.action_space, cfg.world_model, cfg.fit, seed=0)
    model.to(device)
    if fit_steps:
        model.fit(data, steps=fit_steps, progress=False)
    return model


# ---- 1. dream throughput -----------------------------------------------------------------------


def dream_seconds_per_step(model: genrl.WorldModel, data: genrl.RolloutDataset, n: int, s: Settings) -> float:
    """Seconds per DreamVecEnv.step() of ``n`` dreams: SB3's view, auto-reset and infos included."""
    dream = genrl.DreamVecEnv(model, n_envs=n, dataset=data, horizon=500, seed=0)
    dream.reset()
    actions = itertools.cycle(random_actions(dream.action_space, n, 64))
    return time_loop(lambda: dream.step(next(actions)), s.min_seconds, s.warmup_steps, model.device)


@torch.inference_mode()
def model_step_seconds(model: genrl.WorldModel, data: genrl.RolloutDataset, n: int, s: Settings) -> float:
    """Seconds per WorldModel.step() of a batch of ``n``: the network alone, no VecEnv around it.

    Every call starts from the same state: the work is the same for any state, and a state fed
    back through an untrained model could drift to inf/NaN, which would time something else.
    """
    rng = np.random.default_rng(0)
    states = data.all_states()
    obs = torch.as_tensor(states[rng.integers(len(states), size=n)], device=model.device)
    z = model.encode(obs)
    generator = torch.Generator(device=model.device).manual_seed(0)
    actions = [torch.as_tensor(a, device=model.device) for a in random_actions(model.action_space, n, 64)]
    h = model.step(z, model.initial_state(n), actions[0], 1.0, generator).h
    cycle = itertools.cycle(actions)
    return time_loop(
        lambda: model.step(z, h, next(cycle), 1.0, generator), s.min_seconds, s.warmup_steps, model.device
    )


def real_seconds_per_step(n: int, mode: str, s: Settings) -> float | None:
    """Seconds per step of gymnasium's vector CartPole of ``n`` envs; None if ``mode`` is unavailable."""
    try:
        env = gym.make_vec(ENV_ID, num_envs=n, vectorization_mode=mode)
    except (gym.error.Error, ValueError) as exc:  # no vector entry point registered for the task
        print(f"  ({ENV_ID} has no {mode} vector env: {exc})", file=sys.stderr)
        return None
    try:
        env.reset(seed=0)
        actions = itertools.cycle(random_actions(env.single_action_space, n, 64))
        return time_loop(lambda: env.step(next(actions)), s.min_seconds, s.warmup_steps, torch.device("cpu"))
    finally:
        env.close()


def bench_dream(model: genrl.WorldModel, data: genrl.RolloutDataset, s: Settings) -> list[dict[str, Any]]:
    """Imagined steps/s of DreamVecEnv and of the bare model step, beside the real vector envs."""
    rows = []
    for n in s.n_envs:
        dream = dream_seconds_per_step(model, data, n, s)
        bare = model_step_seconds(model, data, n, s)
        sync_env = real_seconds_per_step(n, "sync", s)
        native = real_seconds_per_step(n, "vector_entry_point", s)
        rows.append(
            {
                "n_envs": n,
                "dream_steps_per_s": n / dream,
                "dream_us_per_call": dream * 1e6,
                "model_step_steps_per_s": n / bare,
                "model_step_share": bare / dream,  # the rest: VecEnv glue, numpy, infos, resets
                "real_sync_steps_per_s": None if sync_env is None else n / sync_env,
                "real_native_steps_per_s": None if native is None else n / native,
            }
        )
    return rows


DREAM_COLUMNS = {
    "n_envs": "n_envs",
    "dream_steps_per_s": "DreamVecEnv steps/s",
    "dream_us_per_call": "µs per step() call",
    "model_step_steps_per_s": "WorldModel.step alone, steps/s",
    "model_step_share": "model share of step()",
    "real_sync_steps_per_s": "real gym sync vec, steps/s",
    "real_native_steps_per_s": "real native CartPoleVectorEnv, steps/s",
}


# ---- 2. roofline -------------------------------------------------------------------------------


def member_matmuls(dynamics: nn.Module, linears: Any) -> list[tuple[str, int, int]]:
    """One dynamics member's matmul shapes, in the order its step runs them."""
    rnn = dynamics.rnn
    if rnn.bidirectional:
        raise ValueError("a bidirectional GRU cannot step one transition at a time")
    gru = []
    for layer in range(rnn.num_layers):
        fan_in = rnn.input_size if layer == 0 else rnn.hidden_size
        # A GRU cell is two matmuls onto its three gates (reset, update, new): W_ih x and W_hh h.
        gru.append((f"rnn.l{layer}.input", fan_in, 3 * rnn.hidden_size))
        gru.append((f"rnn.l{layer}.hidden", rnn.hidden_size, 3 * rnn.hidden_size))
    # In the step's order, so that the matmul loop below touches memory as the step does.
    return [
        *linears("rnn_in", dynamics.rnn_in),
        *gru,
        *linears("mdn.net", dynamics.mdn.net),
        *linears("mdn.linear", dynamics.mdn.linear),
        *linears("reward_head", dynamics.reward_head),
        *linears("terminal_reward_head", getattr(dynamics, "terminal_reward_head", None)),
        *linears("termination_head", dynamics.termination_head),
    ]


def step_matmuls(model: genrl.WorldModel) -> list[dict[str, Any]]:
    """The matmuls of one WorldModel.step per env, read from the modules: name, fan_in, fan_out, FLOPs.

    Elementwise work (activations, sampling, the mixture's softmax) is left out: a roofline of
    the matmuls, which is what scales with the layer sizes.
    """

    def linears(part: str, module: nn.Module | None) -> list[tuple[str, int, int]]:
        # mdn.linear exists only with the identity encoder (its linear core), terminal_reward_head
        # only with world_model.terminal_reward
        if module is None:
            return []
        return [
            (f"{part}.{name}" if name else part, sub.in_features, sub.out_features)
            for name, sub in module.named_modules()
            if isinstance(sub, nn.Linear)
        ]

    shapes = []
    for k, dynamics in enumerate(model.dynamics):  # every ensemble member steps
        prefix = f"member{k}." if len(model.dynamics) > 1 else ""
        shapes += [(prefix + n, i, o) for n, i, o in member_matmuls(dynamics, linears)]
    return [{"layer": n, "fan_in": i, "fan_out": o, "flops": 2 * i * o} for n, i, o in shapes]


def matmul_seconds(layers: list[dict[str, Any]], n: int, device: torch.device, s: Settings) -> float:
    """Seconds for one pass of ``addmm`` over every layer shape at batch ``n`` (float32, ``device``).

    Preallocated outputs and a transposed weight view, as nn.Linear calls it: the machine's best
    case for exactly these matmuls, with nothing else in the loop.
    """
    g = torch.Generator().manual_seed(0)
    ops = []
    for layer in layers:
        fan_in, fan_out = layer["fan_in"], layer["fan_out"]
        x = torch.randn(n, fan_in, generator=g).to(device)
        weight_t = torch.randn(fan_out, fan_in, generator=g).to(device).T
        bias = torch.randn(fan_out, generator=g).to(device)
        ops.append((bias, x, weight_t, torch.empty(n, fan_out, device=device)))

    def one_pass() -> None:
        for bias, x, weight_t, out in ops:
            torch.addmm(bias, x, weight_t, out=out)

    with torch.inference_mode():
        return time_loop(one_pass, s.min_seconds, s.warmup_steps, device)


def bench_roofline(
    model: genrl.WorldModel,
    data: genrl.RolloutDataset,
    s: Settings,
    dream_rows: list[dict[str, Any]] | None,
) -> dict[str, Any]:
    """FLOPs per imagined step, the measured matmul rate on those shapes, and the dream's share of it."""
    layers = step_matmuls(model)
    flops = sum(layer["flops"] for layer in layers)
    measured = {row["n_envs"]: row for row in dream_rows or []}
    rows = []
    for n in s.n_envs:
        seconds = matmul_seconds(layers, n, model.device, s)
        roofline = n / seconds  # env-steps/s if the step were nothing but these matmuls
        if n in measured:
            dream, bare = measured[n]["dream_steps_per_s"], measured[n]["model_step_steps_per_s"]
        else:
            dream = n / dream_seconds_per_step(model, data, n, s)
            bare = n / model_step_seconds(model, data, n, s)
        rows.append(
            {
                "n_envs": n,
                "matmul_gflop_per_s": flops * n / seconds / 1e9,
                "roofline_steps_per_s": roofline,
                "dream_steps_per_s": dream,
                "dream_fraction_of_roofline": dream / roofline,
                "model_step_fraction_of_roofline": bare / roofline,
            }
        )
    return {"flops_per_step": flops, "layers": layers, "rows": rows}


ROOFLINE_COLUMNS = {
    "n_envs": "n_envs",
    "matmul_gflop_per_s": "matmul GFLOP/s (these shapes)",
    "roofline_steps_per_s": "roofline steps/s",
    "dream_steps_per_s": "DreamVecEnv steps/s",
    "dream_fraction_of_roofline": "dream / roofline",
    "model_step_fraction_of_roofline": "WorldModel.step / roofline",
}


# ---- 3. dream cost inside PPO ------------------------------------------------------------------


class TimedDreamVecEnv(genrl.DreamVecEnv):
    """A DreamVecEnv that adds up the wall time spent in each of its VecEnv methods."""

    def __init__(self, *args: Any, **kwargs: Any):
        self.seconds = {"reset": 0.0, "step_async": 0.0, "step_wait": 0.0}
        self.calls = {"reset": 0, "step_wait": 0}
        super().__init__(*args, **kwargs)

    def reset(self) -> np.ndarray:
        start = time.perf_counter()
        try:
            return super().reset()
        finally:
            self.seconds["reset"] += time.perf_counter() - start
            self.calls["reset"] += 1

    def step_async(self, actions: np.ndarray) -> None:
        start = time.perf_counter()
        try:
            super().step_async(actions)
        finally:
            self.seconds["step_async"] += time.perf_counter() - start

    def step_wait(self) -> Any:
        start = time.perf_counter()
        try:
            return super().step_wait()
        finally:
            self.seconds["step_wait"] += time.perf_counter() - start
            self.calls["step_wait"] += 1


def bench_ppo(
    model: genrl.WorldModel, data: genrl.RolloutDataset, preset: dict[str, Any], s: Settings
) -> dict[str, Any]:
    """Share of PPO's learn() wall time spent in the dream, with the preset's dream and agent settings."""
    cfg = preset["dream"]
    dream = TimedDreamVecEnv(
        model,
        n_envs=int(cfg["n_envs"]),
        dataset=data,
        horizon=int(cfg["horizon"]),
        temperature=float(cfg["temperature"]),
        start=cfg["start"],
        seed=0,
    )
    agent_preset = genrl.training.agents.agent_preset(preset.get("agent", "ppo"))
    agent = genrl.training.agents.make_agent(agent_preset, VecMonitor(dream), seed=0)
    start = time.perf_counter()
    agent.learn(total_timesteps=s.ppo_steps, progress_bar=False)
    wall = time.perf_counter() - start
    in_dream = dream.seconds["step_wait"] + dream.seconds["reset"]
    return {
        "agent": agent_preset["algorithm"],
        "n_envs": dream.num_envs,
        "horizon": int(cfg["horizon"]),
        "start": cfg["start"],
        "timesteps": int(agent.num_timesteps),  # learn() rounds up to whole rollouts
        "learn_seconds": wall,
        "steps_per_s": agent.num_timesteps / wall,
        "step_wait_seconds": dream.seconds["step_wait"],
        "reset_seconds": dream.seconds["reset"],
        "step_async_seconds": dream.seconds["step_async"],
        "dream_fraction": in_dream / wall,
        "dream_fraction_with_step_async": (in_dream + dream.seconds["step_async"]) / wall,
        "dream_steps_per_s_inside_ppo": dream.calls["step_wait"] * dream.num_envs / in_dream,
    }


PPO_COLUMNS = {
    "agent": "agent",
    "n_envs": "n_envs",
    "timesteps": "timesteps",
    "learn_seconds": "learn() s",
    "steps_per_s": "PPO steps/s",
    "step_wait_seconds": "step_wait s",
    "reset_seconds": "reset s",
    "dream_fraction": "dream share (step_wait + reset)",
    "dream_fraction_with_step_async": "with step_async",
    "dream_steps_per_s_inside_ppo": "dream steps/s inside PPO",
}


# ---- 4. world-model fit ------------------------------------------------------------------------


def bench_fit(
    data: genrl.RolloutDataset, preset: dict[str, Any], s: Settings, device: torch.device
) -> dict[str, Any]:
    """Seconds to fit a fresh preset model for its fit_steps, and sequences/s of the gradient steps.

    The time includes what the first fit does besides gradient steps (statistics, the linear
    core's least squares, the final validation), as the demo pays for it.
    """
    steps = s.fit_steps if s.fit_steps is not None else genrl.TrainConfig.from_preset(preset).fit.steps
    model = build_model(preset, data, 0, device)
    start = time.perf_counter()
    model.fit(data, steps=steps, progress=False)
    sync(device)
    seconds = time.perf_counter() - start
    c = model.fit_config
    return {
        "fit_steps": steps,
        "batch_size": c.batch_size,
        "seq_len": c.seq_len,
        "real_steps": data.num_steps,
        "seconds": seconds,
        "ms_per_step": seconds / steps * 1e3,
        "sequences_per_s": steps * c.batch_size / seconds,
        "transitions_per_s": steps * c.batch_size * c.seq_len / seconds,
    }


FIT_COLUMNS = {
    "fit_steps": "gradient steps",
    "batch_size": "batch",
    "seq_len": "seq len",
    "real_steps": "real steps of data",
    "seconds": "fit s",
    "ms_per_step": "ms per step",
    "sequences_per_s": "sequences/s",
    "transitions_per_s": "transitions/s",
}


# ---- report ------------------------------------------------------------------------------------


def verdict(ok: bool) -> str:
    return "met" if ok else "**missed**"


def row_at(rows: list[dict[str, Any]], n: int) -> dict[str, Any] | None:
    return next((row for row in rows if row["n_envs"] == n), None)


def print_section(title: str, head: str, body: str, notes: list[str]) -> None:
    print(f"### {title}\n\n{head}\n\n{body}\n")
    for note in notes:
        print(f"{note}\n")
    sys.stdout.flush()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=",".join(SECTIONS), help=f"comma list of {', '.join(SECTIONS)}")
    parser.add_argument("--quick", action="store_true", help="few steps everywhere: a smoke test")
    parser.add_argument("--threads", type=int, default=1, help="torch threads for every section")
    parser.add_argument("--device", default="cpu", help="torch device of the world model")
    # Beside the script, not the cwd: the same file whichever folder it is started from.
    parser.add_argument("--out", default=str(HERE / "throughput.json"), help="JSON results file")
    args = parser.parse_args(argv)
    args.only = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = sorted(set(args.only) - set(SECTIONS))
    if unknown or not args.only:
        parser.error(f"--only: expected some of {', '.join(SECTIONS)}, got {args.only}")
    if args.threads < 1:
        parser.error("--threads: expected an integer >= 1")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    s = QUICK if args.quick else Settings()
    head = header()
    results: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "machine": machine(),
        "commit": commit(),
        "command": command(),
        "device": str(device),
        "threads": torch.get_num_threads(),
        "quick": args.quick,
        "settings": asdict(s),
    }
    if args.quick:
        print("**--quick: 0.1 s timing loops after a short fit: a smoke test; its verdicts mean nothing.**\n")
    preset = genrl.training.presets.load_preset("envs", "cartpole")
    data = genrl.collect(ENV_ID, s.data_steps, seed=0, progress=False)
    model = None
    if set(args.only) & {"dream", "roofline", "ppo"}:
        model = build_model(preset, data, s.model_fit_steps, device)

    if "dream" in args.only:
        rows = bench_dream(model, data, s)
        results["dream"] = rows
        at = row_at(rows, TARGET_N_ENVS)
        notes = []
        if at is not None:
            ok = at["dream_steps_per_s"] >= TARGET_DREAM_STEPS_PER_S
            notes.append(
                f"Target: >= {TARGET_DREAM_STEPS_PER_S:,} imagined steps/s at {TARGET_N_ENVS:,} envs: "
                f"{at['dream_steps_per_s']:,.0f} ({verdict(ok)})."
            )
        print_section(
            f"Dream throughput ({ENV_ID} preset model, random actions, horizon 500, device {device})",
            head,
            table(rows, DREAM_COLUMNS),
            notes,
        )

    if "roofline" in args.only:
        roof = bench_roofline(model, data, s, results.get("dream"))
        results["roofline"] = roof
        per_layer = ", ".join(f"{layer['layer']} {layer['flops']:,}" for layer in roof["layers"])
        notes = [
            f"FLOPs per imagined step (matmuls, 2·in·out per env): {roof['flops_per_step']:,} = {per_layer}."
        ]
        at = row_at(roof["rows"], TARGET_N_ENVS)
        if at is not None:
            ok = at["dream_fraction_of_roofline"] >= TARGET_ROOFLINE_FRACTION
            notes.append(
                f"Target: >= {TARGET_ROOFLINE_FRACTION:.0%} of roofline at {TARGET_N_ENVS:,} envs: "
                f"{at['dream_fraction_of_roofline']:.1%} ({verdict(ok)})."
            )
        print_section(
            "Roofline of the dream step (float32 addmm on the step's own layer shapes)",
            head,
            table(roof["rows"], ROOFLINE_COLUMNS),
            notes,
        )

    if "ppo" in args.only:
        ppo = bench_ppo(model, data, preset, s)
        results["ppo"] = ppo
        ok = ppo["dream_fraction"] <= TARGET_PPO_DREAM_FRACTION
        print_section(
            f"Dream cost inside PPO training (preset dream: {ppo['n_envs']} envs, horizon "
            f"{ppo['horizon']}, start {ppo['start']!r})",
            head,
            table([ppo], PPO_COLUMNS),
            [
                f"Target: <= {TARGET_PPO_DREAM_FRACTION:.0%} of learn() in the dream's step_wait + reset: "
                f"{ppo['dream_fraction']:.1%} ({verdict(ok)})."
            ],
        )

    if "fit" in args.only:
        fit = bench_fit(data, preset, s, device)
        results["fit"] = fit
        print_section(
            f"World-model fit ({ENV_ID} preset model, {data.num_steps:,} random real steps)",
            head,
            table([fit], FIT_COLUMNS),
            [],
        )

    write_json(args.out, results)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
