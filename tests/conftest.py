"""Shared, session-scoped fixtures: small real datasets and small fitted world models, built once.

Budgets are tiny on purpose: the whole suite runs on two CPU cores.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

import genrl
from genrl.model.config import BEFORE_V3_FIT, BEFORE_V3_MODEL

# Read at call time by genrl.progress; also keeps CLI subprocesses quiet.
os.environ["GENRL_PROGRESS"] = "0"
torch.set_num_threads(1)

# Small enough to fit in seconds on a CPU, large enough to learn CartPole's dynamics. A VAE with
# the fit settings that were the defaults before genrl 0.3 (BEFORE_V3_*), so the tests built on
# these models keep exercising the VAE path; test_defaults.py covers today's defaults.
SMALL_MODEL = {
    **BEFORE_V3_MODEL,
    **BEFORE_V3_FIT,
    "hidden_dim": 32,
    "rnn_dim": 32,
    "batch_size": 16,
    "seq_len": 8,
    "seed": 0,
}
# CartPole is deterministic: one mixture component is enough and keeps the tiny model quick to fit
# (see test_dynamics_respond_to_actions for the check that the dream follows the agent's actions).
# termination_weight as in envs/cartpole.yaml: terminal steps are rare in the data.
CARTPOLE_MODEL = {**SMALL_MODEL, "num_mixtures": 1, "termination_weight": 10.0}


# One iteration of the loop on CartPole in seconds: for tests of what a run reports, not of learning.
ONE_QUICK_ITERATION = {
    "iterations": 1,
    "initial_steps": 200,
    "fit_steps": 50,
    "dream_steps": 1024,
    "eval_episodes": 2,
    "n_envs": 16,
    "horizon": 100,
    "hidden_dim": 32,
    "rnn_dim": 32,
}


def pytest_configure(config):
    # Registered here rather than in pyproject.toml; `pytest -m "not slow"` is the quick suite.
    config.addinivalue_line(
        "markers",
        "slow: runs for more than about 5 s (full training loops, fuzzing, kill-and-resume, endurance)",
    )


@pytest.fixture(scope="session")
def cartpole_dataset() -> genrl.RolloutDataset:
    """2000 random CartPole transitions, in memory."""
    return genrl.collect("CartPole-v1", 2000, seed=0, progress=False)


@pytest.fixture(scope="session")
def cartpole_model(cartpole_dataset) -> genrl.WorldModel:
    """A small CartPole world model. Tests must not train it further (copy it first)."""
    torch.manual_seed(0)  # parameter init and the VAE's noise come from torch's global generator
    model = genrl.WorldModel(
        cartpole_dataset.observation_space, cartpole_dataset.action_space, **CARTPOLE_MODEL
    )
    model.fit(cartpole_dataset, steps=800, progress=False)
    return model.eval()


@pytest.fixture(scope="session")
def cartpole_model_path(cartpole_model, tmp_path_factory):
    path = tmp_path_factory.mktemp("cartpole_model") / "model"
    cartpole_model.save(path)
    return path


@pytest.fixture(scope="session")
def pendulum_dataset() -> genrl.RolloutDataset:
    """800 random Pendulum transitions (continuous actions, never terminates)."""
    return genrl.collect("Pendulum-v1", 800, seed=0, progress=False)


@pytest.fixture(scope="session")
def pendulum_model(pendulum_dataset) -> genrl.WorldModel:
    torch.manual_seed(0)
    model = genrl.WorldModel(pendulum_dataset.observation_space, pendulum_dataset.action_space, **SMALL_MODEL)
    model.fit(pendulum_dataset, steps=150, progress=False)
    return model.eval()


@pytest.fixture(scope="session")
def pendulum_model_path(pendulum_model, tmp_path_factory):
    path = tmp_path_factory.mktemp("pendulum_model") / "model"
    pendulum_model.save(path)
    return path


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray for a test module, started as a user's script would (tests need genrl[ray])."""
    ray = pytest.importorskip("ray", reason="the genrl[ray] extra is not installed")
    started = not ray.is_initialized()
    if started:
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    if started:
        ray.shutdown()


@pytest.fixture
def small_config() -> dict:
    return dict(SMALL_MODEL)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


# Filled by tests/test_fuzz.py: loader name -> counts of files, outcomes and executed payloads.
FUZZ_STATS: dict[str, dict[str, int]] = {}


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """One line with the fuzzing totals, when the fuzz tests ran."""
    if not FUZZ_STATS:
        return
    total = {k: sum(s[k] for s in FUZZ_STATS.values()) for k in next(iter(FUZZ_STATS.values()))}
    known = [s["crash"] for s in FUZZ_STATS.values() if s["xfail"] and s["crash"]]
    loaders = f"{len(known)} loader{'s' if len(known) > 1 else ''}"
    known_note = f" ({sum(known)} of them in {loaders} marked xfail)" if known else ""
    terminalreporter.write_line(
        f"fuzz: {total['files']} mutated files across {len(FUZZ_STATS)} loaders, {total['crash']} crashes"
        f"{known_note}, {total['payload']} payloads executed (load ok: {total['ok']}, "
        f"GenrlError: {total['genrl_error']}; plus {total['payload_files']} unmutated payload files)"
    )
    if config.option.verbose > 0:
        for name, s in FUZZ_STATS.items():
            terminalreporter.write_line(
                f"  {name}: {s['files']} files, load ok {s['ok']}, GenrlError {s['genrl_error']}, "
                f"crashes {s['crash']}, payloads executed {s['payload']}"
            )
