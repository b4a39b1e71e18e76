"""Determinism: the same seed gives the same data, the same fitted model (CPU) and the same dreams.

Every comparison here is exact (bitwise), not approximate.
"""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

import genrl
from genrl import DreamEnv, DreamVecEnv, RolloutDataset, WorldModel
from genrl.model.config import BEFORE_V3_FIT, BEFORE_V3_MODEL

# A tiny model: a few dozen steps fit in about a second, yet every loss (open-loop included) runs.
TINY = {
    **BEFORE_V3_MODEL,
    **BEFORE_V3_FIT,
    "hidden_dim": 16,
    "rnn_dim": 16,
    "batch_size": 8,
    "seq_len": 8,
    "open_loop_steps": 4,
    "seed": 1,
}
FIT_STEPS = 24


def _hash(*arrays) -> str:
    digest = hashlib.sha256()
    for array in arrays:
        array = np.ascontiguousarray(array)
        digest.update(f"{array.dtype}{array.shape}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()[:16]


def _weights_hash(model: WorldModel) -> str:
    state = model.state_dict()
    return _hash(
        *(np.frombuffer(name.encode(), np.uint8) for name in state), *(v.numpy() for v in state.values())
    )


def _dataset_hash(dataset: RolloutDataset) -> str:
    return _hash(*(array for ep in dataset.episodes for _, array in sorted(ep.arrays().items())))


def _assert_same_datasets(a: RolloutDataset, b: RolloutDataset) -> None:
    assert len(a) == len(b) and a.num_steps == b.num_steps
    for ea, eb in zip(a.episodes, b.episodes, strict=True):
        arrays_a, arrays_b = ea.arrays(), eb.arrays()
        assert arrays_a.keys() == arrays_b.keys()
        for key in arrays_a:
            assert arrays_a[key].dtype == arrays_b[key].dtype, key
            np.testing.assert_array_equal(arrays_a[key], arrays_b[key], err_msg=key)


def _assert_same_weights(a: WorldModel, b: WorldModel) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for name in sa:
        assert torch.equal(sa[name], sb[name]), name


def _dream_rollout(venv: DreamVecEnv, steps: int, seed: int = 0) -> list:
    """Everything a VecEnv hands an agent over ``steps`` steps of seeded random actions."""
    rng = np.random.default_rng(seed)
    out: list = [venv.reset()]
    for _ in range(steps):
        if venv.model.actions.discrete:
            action = rng.integers(0, venv.action_space.n, venv.num_envs)
        else:
            action = rng.uniform(-1, 1, (venv.num_envs, *venv.action_space.shape)).astype(np.float32)
        out.append(venv.step(action))
    return out


def _assert_same_rollouts(a: list, b: list) -> None:
    np.testing.assert_array_equal(a[0], b[0])
    for (obs_a, rew_a, done_a, infos_a), (obs_b, rew_b, done_b, infos_b) in zip(a[1:], b[1:], strict=True):
        np.testing.assert_array_equal(obs_a, obs_b)
        np.testing.assert_array_equal(rew_a, rew_b)
        np.testing.assert_array_equal(done_a, done_b)
        assert len(infos_a) == len(infos_b)
        for ia, ib in zip(infos_a, infos_b, strict=True):
            assert ia.keys() == ib.keys()
            for key in ia:
                np.testing.assert_array_equal(ia[key], ib[key], err_msg=key)


def pipeline() -> tuple[str, str, str]:
    """Collect, fit and dream from seeds alone; hashes of the data, the weights and the dream.

    Also run in fresh interpreters by test_fit_and_dream_are_identical_in_fresh_processes.
    """
    dataset = genrl.collect("CartPole-v1", 300, seed=0, progress=False)
    model = WorldModel(dataset.observation_space, dataset.action_space, **TINY)
    model.fit(dataset, FIT_STEPS, progress=False)
    dream = _dream_rollout(DreamVecEnv(model, 8, dataset, horizon=10, device="cpu", seed=0), 25)
    dream_arrays = [dream[0]] + [a for obs, rew, done, _ in dream[1:] for a in (obs, rew, done)]
    return _dataset_hash(dataset), _weights_hash(model), _hash(*dream_arrays)


# ---- collected data -----------------------------------------------------------------------------


def _epsilon_greedy_lean(obs: np.ndarray) -> np.ndarray:
    return (obs[:, 2] > 0).astype(np.int64)


@pytest.mark.parametrize(
    "env_id, kwargs",
    [
        ("CartPole-v1", {}),
        ("CartPole-v1", {"policy": _epsilon_greedy_lean, "epsilon": 0.3}),
        ("Pendulum-v1", {}),
    ],
    ids=["discrete-random", "discrete-epsilon-policy", "box-random"],
)
def test_same_seed_collects_identical_data(env_id, kwargs):
    a, b = (genrl.collect(env_id, 250, seed=5, progress=False, **kwargs) for _ in range(2))
    _assert_same_datasets(a, b)
    other = genrl.collect(env_id, 250, seed=6, progress=False, **kwargs)
    assert _dataset_hash(other) != _dataset_hash(a)


def test_same_seed_collects_identical_data_from_vector_envs_and_on_disk(tmp_path):
    def make():
        return gym.make_vec("Pendulum-v1", num_envs=3, vectorization_mode="sync")

    a = genrl.collect(make(), 200, seed=2, path=tmp_path / "a", progress=False)
    b = genrl.collect(make(), 200, seed=2, path=tmp_path / "b", progress=False)
    _assert_same_datasets(a, b)
    _assert_same_datasets(RolloutDataset.load(tmp_path / "a"), RolloutDataset.load(tmp_path / "b"))
    _assert_same_datasets(a, RolloutDataset.load(tmp_path / "a"))


# ---- fitted models ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def data() -> RolloutDataset:
    return genrl.collect("CartPole-v1", 300, seed=0, progress=False)


def _model(data: RolloutDataset, **overrides) -> WorldModel:
    return WorldModel(data.observation_space, data.action_space, **{**TINY, **overrides})


@pytest.mark.parametrize("which", ["discrete", "box"])
def test_same_config_seed_fits_bit_identical_weights(which, data, pendulum_dataset):
    data = data if which == "discrete" else pendulum_dataset
    torch.manual_seed(123)  # torch's global generator must not matter: the model's seed decides
    a = _model(data)
    a.fit(data, FIT_STEPS, progress=False)
    torch.manual_seed(456)
    b = _model(data)
    b.fit(data, FIT_STEPS, progress=False)
    _assert_same_weights(a, b)
    other = _model(data, seed=2)
    other.fit(data, FIT_STEPS, progress=False)
    assert _weights_hash(other) != _weights_hash(a)
    # The seed reaches the dynamics too, not only the encoder.
    name = "dynamics.0.rnn.weight_hh_l0"
    assert not torch.equal(a.state_dict()[name], other.state_dict()[name])


@pytest.mark.slow  # two fresh interpreters
def test_fit_and_dream_are_identical_in_fresh_processes():
    here = Path(__file__).parent
    code = (
        "import os, sys, torch; torch.set_num_threads(1); "
        f"sys.path.insert(0, {str(here)!r}); "
        "from test_determinism import pipeline; print(*pipeline())"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GENRL_PROGRESS": "0", "PYTHONHASHSEED": "random"}
    # One after the other: the machine's cores are shared.
    runs = [
        subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120, check=False
        )
        for _ in range(2)
    ]
    for run in runs:
        assert run.returncode == 0, run.stderr[-2000:]
    first, second = (run.stdout.split() for run in runs)
    assert len(first) == 3
    assert first == second, "data, weights and dream hashes differ between two fresh processes"
    assert list(pipeline()) == first, "and this process computes the same ones"


def _optimizer_state_bytes(model: WorldModel) -> bytes:
    # Serialised at once, as a checkpoint is: the live state dict would keep changing with training.
    buffer = io.BytesIO()
    torch.save(model.trainer.state_dict(), buffer)
    return buffer.getvalue()


def test_resumed_fit_matches_an_uninterrupted_one(data, tmp_path):
    half = FIT_STEPS // 2
    uninterrupted = _model(data)
    uninterrupted.fit(data, half, progress=False)
    uninterrupted.fit(data, half, progress=False)

    before = _model(data)
    before.fit(data, half, progress=False)
    before.save(tmp_path / "model")
    optimizer_state = _optimizer_state_bytes(before)
    del before

    resumed = WorldModel.load(tmp_path / "model", device="cpu")
    resumed.trainer.load_state_dict(torch.load(io.BytesIO(optimizer_state), weights_only=True))
    resumed.fit(data, half, progress=False)
    assert int(resumed.trained_steps) == FIT_STEPS
    _assert_same_weights(resumed, uninterrupted)

    # The optimizer's state is what makes it exact: without it, Adam restarts its moments.
    no_optimizer = WorldModel.load(tmp_path / "model", device="cpu")
    no_optimizer.fit(data, half, progress=False)
    assert _weights_hash(no_optimizer) != _weights_hash(uninterrupted)


def test_one_fit_call_matches_the_same_steps_split_over_two(data):
    split = _model(data)
    split.fit(data, FIT_STEPS // 2, progress=False)
    split.fit(data, FIT_STEPS // 2, progress=False)
    single = _model(data)
    single.fit(data, FIT_STEPS, progress=False)
    _assert_same_weights(single, split)


def test_a_drawn_evaluation_seed_is_recorded_and_reproduces_the_report(cartpole_model, cartpole_dataset):
    def evaluate(seed):
        return genrl.evaluate(cartpole_model, cartpole_dataset, horizon=5, max_windows=200, seed=seed)

    # seed=None draws a seed, and records it; the same seed, given, gives the same report.
    drawn = [evaluate(None) for _ in range(2)]
    seeds = [report.data["seed"] for report in drawn]
    assert all(isinstance(seed, int) for seed in seeds) and seeds[0] != seeds[1]
    again = evaluate(seeds[0])
    assert again.data["seed"] == seeds[0]
    np.testing.assert_equal(again.scalars, drawn[0].scalars)  # NaN-aware: exact, entry by entry
    np.testing.assert_equal(again.curves, drawn[0].curves)
    assert evaluate(3).data["seed"] == 3


# ---- dreams -------------------------------------------------------------------------------------


def test_dream_vec_env_same_seed_same_actions_same_everything(cartpole_model, cartpole_dataset):
    def make(seed):
        return DreamVecEnv(cartpole_model, 16, cartpole_dataset, horizon=12, device="cpu", seed=seed)

    a, b = _dream_rollout(make(3), 40), _dream_rollout(make(3), 40)
    _assert_same_rollouts(a, b)
    # The auto-reset path ran: terminations and horizon truncations, with their infos, matched too.
    dones = np.stack([step[2] for step in a[1:]])
    assert dones.sum() > 16
    assert any(
        info["TimeLimit.truncated"] for step in a[1:] for info in step[3] if "TimeLimit.truncated" in info
    )
    assert any(
        not info["TimeLimit.truncated"] for step in a[1:] for info in step[3] if "TimeLimit.truncated" in info
    )
    # VecEnv.seed() then reset() is the same as the constructor's seed.
    seeded = make(None)
    seeded.seed(3)
    _assert_same_rollouts(a, _dream_rollout(seeded, 40))
    other = _dream_rollout(make(4), 40)
    assert not np.array_equal(np.stack([s[0] for s in a[1:]]), np.stack([s[0] for s in other[1:]]))


def test_dream_vec_env_continuous_actions_are_deterministic(pendulum_dataset):
    model = WorldModel(pendulum_dataset.observation_space, pendulum_dataset.action_space, **TINY)
    model.fit(pendulum_dataset, 4, progress=False)

    def make():
        return DreamVecEnv(model, 6, pendulum_dataset, horizon=9, device="cpu", seed=1)

    _assert_same_rollouts(_dream_rollout(make(), 20), _dream_rollout(make(), 20))


def _trajectory(env: DreamEnv, actions, seed: int | None) -> list:
    obs, info = env.reset(seed=seed)
    out = [(obs, info)]
    for action in actions:
        step = env.step(action)
        out.append(step)
        if step[2] or step[3]:
            break
    return out


def _assert_same_trajectory(a: list, b: list) -> None:
    assert len(a) == len(b)
    np.testing.assert_array_equal(a[0][0], b[0][0])
    for (obs_a, *rest_a), (obs_b, *rest_b) in zip(a[1:], b[1:], strict=True):
        np.testing.assert_array_equal(obs_a, obs_b)
        assert rest_a == rest_b  # reward, terminated, truncated, info (uncertainty) exactly


@pytest.mark.parametrize("with_dataset", [False, True], ids=["model-start-states", "dataset-start-states"])
@pytest.mark.parametrize("env_name", ["cartpole", "pendulum"])
def test_dream_env_seeded_reset_reproduces_the_trajectory(request, env_name, with_dataset):
    model = request.getfixturevalue(f"{env_name}_model")
    dataset = request.getfixturevalue(f"{env_name}_dataset") if with_dataset else None
    rng = np.random.default_rng(0)
    if model.actions.discrete:
        actions = list(rng.integers(0, 2, 60))
    else:
        actions = list(rng.uniform(-2, 2, (60, 1)).astype(np.float32))
    env = DreamEnv(model, dataset, horizon=60, temperature=1.0)
    first = _trajectory(env, actions, seed=21)
    assert len(first) > 3
    # Other episodes in between, seeded and not, partly stepped, do not change what seed 21 gives.
    _trajectory(env, actions[:7], seed=4)
    _trajectory(env, actions[:3], seed=None)
    env.reset()
    _assert_same_trajectory(first, _trajectory(env, actions, seed=21))
    # Nor does a fresh instance, or one that ran other dreams first.
    fresh = DreamEnv(model, dataset, horizon=60, temperature=1.0)
    _trajectory(fresh, actions, seed=99)
    _assert_same_trajectory(first, _trajectory(fresh, actions, seed=21))
    # Another seed gives another dream.
    other = _trajectory(env, actions, seed=22)
    assert not all(np.array_equal(x[0], y[0]) for x, y in zip(first[1:], other[1:], strict=False))
    # Unseeded resets continue the stream seeded last: they repeat too.
    env.reset(seed=21)
    again = DreamEnv(model, dataset, horizon=60, temperature=1.0)
    again.reset(seed=21)
    _assert_same_trajectory(_trajectory(env, actions, seed=None), _trajectory(again, actions, seed=None))


def test_dream_env_other_seed_gives_another_trajectory(cartpole_model):
    actions = [0, 1] * 10
    env = DreamEnv(cartpole_model, horizon=20, temperature=1.0)
    first = _trajectory(env, actions, seed=21)
    # Even from the same start observation, temperature 1 samples other transitions.
    start = {"initial_obs": first[0][0]}
    env.reset(seed=21, options=start)
    same = [env.step(a)[0] for a in actions[:5]]
    env.reset(seed=22, options=start)
    other = [env.step(a)[0] for a in actions[:5]]
    assert not np.array_equal(np.stack(same), np.stack(other))
    other_start = _trajectory(env, actions, seed=22)
    assert not np.array_equal(first[0][0], other_start[0][0])


def test_dreams_leave_torch_global_generator_alone(cartpole_model, cartpole_dataset):
    """Building and stepping dreams, seeded or not, must not reseed or draw from torch's global RNG.

    Otherwise ``torch.manual_seed(s)`` followed by an unseeded dream would no longer fix what the
    caller builds next (an agent's initial weights, say).
    """
    torch.manual_seed(0)
    expected = torch.rand(4)
    torch.manual_seed(0)
    env = DreamEnv(cartpole_model, cartpole_dataset, horizon=5)
    _trajectory(env, [0, 1, 0, 1, 1, 0], seed=None)
    _trajectory(env, [0, 1, 0], seed=3)
    for seed in (None, 1):
        _dream_rollout(
            DreamVecEnv(cartpole_model, 4, cartpole_dataset, horizon=5, device="cpu", seed=seed), 8
        )
    assert torch.equal(torch.rand(4), expected)


def test_unseeded_dreams_differ(cartpole_model, cartpole_dataset):
    def rollout():
        return _dream_rollout(DreamVecEnv(cartpole_model, 8, cartpole_dataset, horizon=20, device="cpu"), 10)

    a, b = rollout(), rollout()
    assert not np.array_equal(np.stack([s[0] for s in a[1:]]), np.stack([s[0] for s in b[1:]]))
