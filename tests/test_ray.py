"""collect(..., backend="ray"): episodes from Ray workers, their guarantees, and a worker killed mid-run."""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

import genrl
from genrl.errors import GenrlError

ray = pytest.importorskip("ray", reason="the genrl[ray] extra is not installed")
# The env classes below travel to the workers by value: the workers need not import this file.
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])


pytestmark = pytest.mark.usefixtures("local_ray")


class DyingCartPole(gym.Wrapper):
    """CartPole whose worker process dies once, mid-episode, the first time any copy of it reaches
    step ``die_at`` of an episode; ``marker`` records that it happened and in which process."""

    def __init__(self, marker: str, die_at: int = 20):
        super().__init__(gym.make("CartPole-v1"))
        self.marker, self.die_at, self.t = Path(marker), die_at, 0

    def reset(self, **kwargs):
        self.t = 0
        return self.env.reset(**kwargs)

    def step(self, action):
        self.t += 1
        if self.t == self.die_at and not self.marker.exists():
            self.marker.write_text(str(os.getpid()))
            os._exit(1)  # as a crash or an OOM kill would: no cleanup, no exception
        return self.env.step(action)


def _arrays(dataset: genrl.RolloutDataset) -> list[tuple[np.ndarray, ...]]:
    return [tuple(ep.arrays().values()) for ep in dataset.episodes]


def _same(a: genrl.RolloutDataset, b: genrl.RolloutDataset) -> bool:
    return len(a) == len(b) and all(
        all(np.array_equal(x, y) for x, y in zip(ea, eb, strict=True))
        for ea, eb in zip(_arrays(a), _arrays(b), strict=True)
    )


def _check_valid(dataset: genrl.RolloutDataset, steps: int, cut_last: bool) -> None:
    """Every episode starts at a reset state, ends once, and the budget is met exactly."""
    assert dataset.num_steps == steps
    for i, ep in enumerate(dataset.episodes):
        done = ep.terminated | ep.truncated
        assert not done[:-1].any()
        assert done[-1]
        # A reset step recorded as a transition would put a reset-range state right after a
        # terminal one inside an episode; CartPole resets within +-0.05 on every coordinate.
        assert np.abs(ep.obs[0]).max() <= 0.05
        if i < len(dataset) - 1 or not cut_last:
            assert ep.terminated[-1] or ep.length == 500


def test_two_workers_give_the_local_number_of_valid_episodes():
    # Pendulum's episodes all last 200 steps, so the local path's count is known: 5 for 1,000 steps.
    local = genrl.collect("Pendulum-v1", 1000, seed=1, progress=False)
    remote = genrl.collect("Pendulum-v1", 1000, seed=1, backend="ray", workers=2, progress=False)
    assert len(remote) == len(local) == 5
    assert remote.num_steps == local.num_steps == 1000
    assert all(ep.length == 200 and ep.truncated[-1] and not ep.terminated.any() for ep in remote.episodes)
    # CartPole's lengths vary: the same budget, met exactly, in whole valid episodes, the last one cut.
    cartpole = genrl.collect("CartPole-v1", 600, seed=1, backend="ray", workers=2, progress=False)
    _check_valid(cartpole, 600, cut_last=True)


def test_episodes_do_not_depend_on_the_number_of_workers(tmp_path):
    one = genrl.collect("CartPole-v1", 400, seed=5, backend="ray", workers=1, progress=False)
    two = genrl.collect(
        "CartPole-v1", 400, seed=5, backend="ray", workers=2, path=tmp_path / "d", progress=False
    )
    assert _same(one, two)
    assert _same(two, genrl.RolloutDataset.load(tmp_path / "d"))  # streamed to disk, every episode
    other = genrl.collect("CartPole-v1", 400, seed=6, backend="ray", workers=2, progress=False)
    assert not _same(one, other)


def test_episodes_budget_and_policies():
    ds = genrl.collect("CartPole-v1", episodes=7, seed=0, backend="ray", workers=2, progress=False)
    assert len(ds) == 7
    assert all(ep.terminated[-1] or ep.truncated[-1] for ep in ds.episodes)
    # A callable policy travels to the workers: always push right.
    right = genrl.collect(
        "CartPole-v1",
        100,
        lambda obs: np.ones(len(obs), dtype=np.int64),
        seed=0,
        backend="ray",
        progress=False,
    )
    assert all((ep.action == 1).all() for ep in right.episodes)


def test_sb3_agent_acts_on_the_workers_and_stays_where_it_was():
    from stable_baselines3 import PPO

    agent = PPO("MlpPolicy", "CartPole-v1", seed=0, n_steps=64, batch_size=64, device="cpu")
    ds = genrl.collect("CartPole-v1", 200, agent, seed=0, deterministic=True, backend="ray", progress=False)
    first = ds.episodes[0]
    expected = agent.predict(first.obs[:-1], deterministic=True)[0]
    assert np.array_equal(first.action, expected)
    assert agent.device.type == "cpu" and agent.env is not None


def test_a_killed_worker_loses_and_duplicates_nothing(tmp_path):
    marker = tmp_path / "died"
    make = functools.partial(DyingCartPole, str(marker))
    path = tmp_path / "data"
    ds = genrl.collect(make, 800, seed=2, backend="ray", workers=2, path=path, progress=False)
    assert marker.exists(), "the worker was expected to die once"
    assert int(marker.read_text()) != os.getpid()  # it was a worker, not this process
    # The run with a death holds exactly what a run without one holds, on disk too.
    clean = genrl.collect(
        functools.partial(DyingCartPole, str(marker)), 800, seed=2, backend="ray", workers=2, progress=False
    )
    assert _same(ds, clean)
    on_disk = genrl.RolloutDataset.load(path)
    assert _same(ds, on_disk)
    digests = on_disk.episode_digests()
    assert len(set(digests.tolist())) == len(digests)  # no episode stored twice
    _check_valid(on_disk, 800, cut_last=True)
    assert sorted(p.name for p in (path / "episodes").iterdir()) == [f"{i:06d}.npz" for i in range(len(ds))]


class AlwaysDying(gym.Wrapper):
    def __init__(self):
        super().__init__(gym.make("CartPole-v1"))

    def step(self, action):
        os._exit(1)


def test_a_worker_that_always_dies_is_reported_in_one_line():
    with pytest.raises(GenrlError, match="died 3 times while playing episode 0"):
        genrl.collect(AlwaysDying, 50, seed=0, backend="ray", workers=1, progress=False)


class NanEnv(gym.Wrapper):
    def __init__(self):
        super().__init__(gym.make("CartPole-v1"))

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        return obs, float("nan"), terminated, truncated, info


def test_errors_name_what_was_expected():
    with pytest.raises(GenrlError, match="NaN|non-finite"):
        genrl.collect(NanEnv, 20, seed=0, backend="ray", workers=1, progress=False)
    with pytest.raises(GenrlError, match="env id or a function that makes the env"):
        genrl.collect(gym.make("CartPole-v1"), 20, backend="ray", progress=False)
    with pytest.raises(GenrlError, match="collect backend"):
        genrl.collect("CartPole-v1", 20, backend="dask", progress=False)
    with pytest.raises(GenrlError, match="settings of backend='ray'"):
        genrl.collect("CartPole-v1", 20, workers=2, progress=False)
    with pytest.raises(GenrlError, match="collect workers"):
        genrl.collect("CartPole-v1", 20, backend="ray", workers=0, progress=False)
    with pytest.raises(GenrlError, match="unknown environment"):
        genrl.collect("NoSuchEnv-v0", 20, backend="ray", progress=False)
