import dataclasses
import json
import os
import pickle
import stat
from pathlib import Path

import numpy as np
import pytest
from gymnasium import spaces

from genrl import Episode, GenrlError, RolloutDataset
from genrl.util.files import atomic_write

OBS = spaces.Box(-np.inf, np.inf, (2,), np.float32)
ACT = spaces.Discrete(3)


def _episode(ep: int, length: int, terminated: bool = True) -> dict[str, np.ndarray]:
    """An episode whose values say where they come from: obs[t] = (ep, t), reward[t] = 100 ep + t."""
    t = np.arange(length + 1, dtype=np.float32)
    done = np.zeros(length, dtype=bool)
    done[-1] = True
    return {
        "obs": np.stack([np.full_like(t, ep), t], axis=1),
        "action": (np.arange(length) + ep) % 3,
        "reward": (100 * ep + np.arange(length)).astype(np.float32),
        "terminated": done if terminated else np.zeros(length, dtype=bool),
        "truncated": np.zeros(length, dtype=bool) if terminated else done,
    }


@pytest.fixture
def indexed_dataset() -> RolloutDataset:
    ds = RolloutDataset(OBS, ACT)
    for ep, length in enumerate([3, 10, 1, 6]):
        ds.add_episode(**_episode(ep, length, terminated=ep % 2 == 0))
    return ds


def _tmp_files(path):
    return [p for p in path.rglob("*") if p.name.endswith(".tmp") or p.name.startswith(".")]


def test_add_load_round_trip(tmp_path):
    ds = RolloutDataset(OBS, ACT, tmp_path / "data")
    episodes = [_episode(0, 4), _episode(1, 7, terminated=False)]
    for ep in episodes:
        ds.add_episode(**ep)
    assert sorted(p.name for p in (tmp_path / "data" / "episodes").iterdir()) == ["000000.npz", "000001.npz"]
    assert _tmp_files(tmp_path) == []

    loaded = RolloutDataset.load(tmp_path / "data")
    assert len(loaded) == 2 and loaded.num_steps == 11
    assert loaded.observation_space == OBS and loaded.action_space == ACT
    for got, want in zip(loaded.episodes, episodes, strict=True):
        assert isinstance(got, Episode)
        assert set(got.arrays()) == set(want)
        for key in want:
            np.testing.assert_array_equal(got.arrays()[key], want[key])
    assert loaded.episodes[0].action.dtype == np.int64
    assert loaded.episodes[0].obs.dtype == np.float32
    np.testing.assert_array_equal(loaded.episode_returns(), [0 + 1 + 2 + 3, 7 * 100 + sum(range(7))])


def test_episodes_are_frozen_records_and_add_appends_one(tmp_path):
    ds = RolloutDataset(OBS, ACT, tmp_path)
    ds.add(Episode(**_episode(2, 5, terminated=False)))
    ds.add_episode(**_episode(3, 2))
    ep = ds.episodes[0]
    assert isinstance(ep, Episode) and ep.length == 5 and ep.obs.shape == (6, 2)
    assert ep.episode_return == pytest.approx(5 * 200 + sum(range(5)))
    assert list(ep.arrays()) == ["obs", "action", "reward", "terminated", "truncated"]
    assert ep.truncated[-1] and not ep.terminated.any()
    with pytest.raises(dataclasses.FrozenInstanceError):
        ep.obs = np.zeros((6, 2))
    # add() validates and writes like add_episode().
    loaded = RolloutDataset.load(tmp_path)
    assert [e.length for e in loaded.episodes] == [5, 2]
    np.testing.assert_array_equal(loaded.episodes[0].obs, ep.obs)
    with pytest.raises(GenrlError, match="expected obs of shape"):
        ds.add(Episode(**{**_episode(4, 3), "obs": np.zeros((4, 3))}))
    with pytest.raises(GenrlError, match="add: expected an Episode, got dict"):
        ds.add(_episode(4, 3))
    assert len(ds) == 2


def test_appending_to_a_loaded_dataset_continues_numbering(tmp_path):
    RolloutDataset(OBS, ACT, tmp_path).add_episode(**_episode(0, 2))
    ds = RolloutDataset.load(tmp_path)
    ds.add_episode(**_episode(1, 3))
    assert sorted(p.name for p in (tmp_path / "episodes").iterdir()) == ["000000.npz", "000001.npz"]
    assert RolloutDataset.load(tmp_path).num_steps == 5


def test_continuous_actions_round_trip(tmp_path):
    act = spaces.Box(-2.0, 2.0, (1,), np.float32)
    ds = RolloutDataset(OBS, act, tmp_path)
    action = np.array([[0.5], [-1.5]], dtype=np.float64)
    ds.add_episode(np.zeros((3, 2)), action, np.zeros(2), np.array([False, True]), np.zeros(2, bool))
    loaded = RolloutDataset.load(tmp_path)
    assert loaded.episodes[0].action.dtype == np.float32
    np.testing.assert_allclose(loaded.episodes[0].action, action)


def test_dataset_json_describes_the_schema(tmp_path):
    RolloutDataset(OBS, ACT, tmp_path)
    meta = json.loads((tmp_path / "dataset.json").read_text())
    assert meta["format"] == "genrl.rollouts" and meta["version"] == 2
    assert meta["action_space"] == {"type": "Discrete", "n": 3, "start": 0}
    assert meta["observation_space"]["type"] == "Box"


def test_creating_over_an_existing_dataset_is_refused(tmp_path):
    RolloutDataset(OBS, ACT, tmp_path)
    with pytest.raises(GenrlError, match="already exists"):
        RolloutDataset(OBS, ACT, tmp_path)


def test_atomic_write_leaves_nothing_behind_on_failure(tmp_path):
    target = tmp_path / "file.bin"

    def failing_write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            f.write(b"half a file")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_write(target, failing_write)
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []


def test_atomic_write_gives_the_usual_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        atomic_write(tmp_path / "shared.txt", lambda tmp: Path(tmp).write_text("x"))
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "shared.txt").stat().st_mode) == 0o644


def test_atomic_write_replaces_whole_file(tmp_path):
    target = tmp_path / "sub" / "file.txt"
    atomic_write(target, lambda tmp: Path(tmp).write_text("first"))
    atomic_write(target, lambda tmp: Path(tmp).write_text("second"))
    assert target.read_text() == "second"
    assert [p.name for p in target.parent.iterdir()] == ["file.txt"]


def test_invalid_episode_is_not_written(tmp_path):
    ds = RolloutDataset(OBS, ACT, tmp_path)
    bad = _episode(0, 3)
    bad["obs"] = bad["obs"][:, :1]
    with pytest.raises(GenrlError):
        ds.add_episode(**bad)
    assert len(ds) == 0
    assert not (tmp_path / "episodes").exists() or list((tmp_path / "episodes").iterdir()) == []


def _modified(key: str, value) -> dict:
    ep = _episode(0, 4)
    ep[key] = value
    return ep


@pytest.mark.parametrize(
    "episode, match",
    [
        (_modified("obs", np.zeros((5, 3))), r"expected obs of shape \(T\+1, 2\) with T >= 1, got \(5, 3\)"),
        (_modified("obs", np.zeros((1, 2))), r"with T >= 1"),
        (_modified("action", np.zeros(3, dtype=np.int64)), r"expected action of shape \(4,\), got \(3,\)"),
        (_modified("action", np.zeros((4, 1), dtype=np.int64)), r"expected action of shape \(4,\)"),
        (_modified("reward", np.zeros(5)), r"expected reward of shape \(4,\), got \(5,\)"),
        (_modified("terminated", np.zeros(3, bool)), r"expected terminated of shape \(4,\)"),
        (_modified("action", np.array([0, 1, 3, 2])), r"expected integers in Discrete\(3\)"),
        (_modified("action", np.array([0, -1, 2, 2])), r"expected integers in Discrete\(3\)"),
        (_modified("action", np.array([0.0, 0.7, 1.0, 2.0])), r"expected integers in Discrete\(3\)"),
        (_modified("action", np.array([0.0, np.nan, 1.0, 2.0])), r"expected integers in Discrete\(3\)"),
        (_modified("obs", np.array([[0, 0], [0, np.nan], [0, 0], [0, 0], [0, 0]])), "expected finite obs"),
        (_modified("reward", np.array([0, np.inf, 0, 0])), "expected finite reward"),
        (
            _modified("terminated", np.array([False, True, False, True])),
            "terminated may only be set on the last",
        ),
        (
            _modified("truncated", np.array([True, False, False, False])),
            "truncated may only be set on the last",
        ),
    ],
)
def test_add_episode_validates_schema(episode, match):
    ds = RolloutDataset(OBS, ACT)
    with pytest.raises(GenrlError, match=match):
        ds.add_episode(**episode)
    assert len(ds) == 0


def _dataset_with_file(tmp_path, write) -> str:
    RolloutDataset(OBS, ACT, tmp_path).add_episode(**_episode(0, 3))
    write(tmp_path / "episodes" / "000001.npz")
    return tmp_path


def test_load_rejects_missing_key(tmp_path):
    ep = _episode(1, 3)
    del ep["reward"]
    path = _dataset_with_file(tmp_path, lambda f: np.savez(f, **ep))
    with pytest.raises(GenrlError, match=r"000001\.npz: expected episode arrays .* missing \['reward'\]"):
        RolloutDataset.load(path)


def test_load_rejects_garbage_bytes(tmp_path):
    path = _dataset_with_file(tmp_path, lambda f: f.write_bytes(b"\x00garbage, not a zip archive" * 10))
    with pytest.raises(
        GenrlError, match=r"000001\.npz: expected a genrl episode \(\.npz\), got an unreadable"
    ):
        RolloutDataset.load(path)


def test_load_rejects_truncated_archive(tmp_path):
    def write(f):
        np.savez(f, **_episode(1, 3))
        f.write_bytes(f.read_bytes()[:50])

    with pytest.raises(GenrlError, match="unreadable"):
        RolloutDataset.load(_dataset_with_file(tmp_path, write))


def test_load_never_unpickles_object_arrays(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    ep = _episode(1, 3)
    ep["obs"] = np.array([Evil()] * 4, dtype=object)
    path = _dataset_with_file(tmp_path / "data", lambda f: np.savez(f, **ep))
    with pytest.raises(GenrlError, match="unreadable"):
        RolloutDataset.load(path)
    assert not marker.exists()


def test_load_rejects_bad_episode_contents(tmp_path):
    ep = _episode(1, 3)
    ep["terminated"] = np.array([True, False, False])
    with pytest.raises(GenrlError, match=r"000001\.npz: terminated may only be set on the last step"):
        RolloutDataset.load(_dataset_with_file(tmp_path, lambda f: np.savez(f, **ep)))


@pytest.mark.parametrize(
    "change, match",
    [
        ({"format": "something.else"}, "expected a genrl.rollouts file .* got format 'something.else'"),
        ({"version": 3}, "genrl.rollouts version 3; this genrl reads version 1 or 2"),
        ({"action_space": {"type": "Weird"}}, "expected type Discrete or Box"),
        (
            {"action_space": {"type": "Box", "shape": [1], "dtype": "float32", "low": [0], "high": ["inf"]}},
            "bounded Box",
        ),
    ],
)
def test_load_rejects_bad_metadata(tmp_path, change, match):
    RolloutDataset(OBS, ACT, tmp_path)
    meta = json.loads((tmp_path / "dataset.json").read_text())
    (tmp_path / "dataset.json").write_text(json.dumps({**meta, **change}))
    with pytest.raises(GenrlError, match=match):
        RolloutDataset.load(tmp_path)


def test_load_rejects_missing_or_invalid_dataset_json(tmp_path):
    with pytest.raises(GenrlError, match="expected a genrl dataset .* found no such file"):
        RolloutDataset.load(tmp_path)
    (tmp_path / "dataset.json").write_bytes(pickle.dumps({"format": "genrl.rollouts"}))
    with pytest.raises(GenrlError, match="not valid JSON"):
        RolloutDataset.load(tmp_path)
    (tmp_path / "dataset.json").write_text("[1, 2]")
    with pytest.raises(GenrlError, match="got JSON of type list"):
        RolloutDataset.load(tmp_path)


def test_open_creates_then_loads(tmp_path):
    ds = RolloutDataset.open(tmp_path, OBS, ACT)
    ds.add_episode(**_episode(0, 2))
    again = RolloutDataset.open(tmp_path, OBS, ACT)
    assert again.num_steps == 2


def test_open_rejects_space_mismatch(tmp_path):
    RolloutDataset(OBS, ACT, tmp_path)
    with pytest.raises(GenrlError, match="action space mismatch"):
        RolloutDataset.open(tmp_path, OBS, spaces.Discrete(4))
    with pytest.raises(GenrlError, match="observation space mismatch"):
        RolloutDataset.open(tmp_path, spaces.Box(-1, 1, (2,), np.float32), ACT)


def test_constructor_rejects_unsupported_spaces():
    with pytest.raises(GenrlError, match="unsupported action space"):
        RolloutDataset(OBS, spaces.MultiBinary(2))


def test_empty_dataset_sampling_is_an_error(rng):
    ds = RolloutDataset(OBS, ACT)
    with pytest.raises(GenrlError, match="the dataset is empty"):
        ds.sample_sequences(4, 3, rng)
    with pytest.raises(GenrlError, match="the dataset is empty"):
        ds.start_states()


def test_sample_sequences_shapes(indexed_dataset, rng):
    batch = indexed_dataset.sample_sequences(32, 5, rng)
    assert batch["obs"].shape == (32, 6, 2) and batch["obs"].dtype == np.float32
    assert batch["action"].shape == (32, 5) and batch["action"].dtype == np.int64
    assert batch["reward"].shape == (32, 5)
    assert batch["terminated"].shape == (32, 5) and batch["terminated"].dtype == bool
    assert batch["mask"].shape == (32, 5) and batch["mask"].dtype == bool


def test_sample_sequences_follow_stored_episodes(indexed_dataset, rng):
    batch = indexed_dataset.sample_sequences(500, 4, rng)
    lengths = [len(ep.reward) for ep in indexed_dataset.episodes]
    starts_seen = set()
    for b in range(500):
        ep_id, start = int(batch["obs"][b, 0, 0]), int(batch["obs"][b, 0, 1])
        stored = indexed_dataset.episodes[ep_id]
        starts_seen.add((ep_id, start))
        valid = min(4, lengths[ep_id] - start)
        mask = batch["mask"][b]
        # Mask is True up to the episode's end, False only after it.
        np.testing.assert_array_equal(mask, np.arange(4) < valid)
        for k in range(valid):
            t = start + k
            # obs[t+1] follows action[t] within the same stored episode.
            np.testing.assert_array_equal(batch["obs"][b, k], stored.obs[t])
            np.testing.assert_array_equal(batch["obs"][b, k + 1], stored.obs[t + 1])
            assert batch["action"][b, k] == stored.action[t]
            assert batch["reward"][b, k] == stored.reward[t]
            assert batch["terminated"][b, k] == stored.terminated[t]
        # Padding never leaks into another episode.
        assert np.all(batch["obs"][b, :, 0] == ep_id)
    # Every transition can start a window; nothing else can.
    assert starts_seen == {(e, s) for e, n in enumerate(lengths) for s in range(n)}


def test_sample_sequences_is_reproducible(indexed_dataset):
    a = indexed_dataset.sample_sequences(8, 3, np.random.default_rng(5))
    b = indexed_dataset.sample_sequences(8, 3, np.random.default_rng(5))
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])


def test_start_states_are_first_observations(indexed_dataset):
    starts = indexed_dataset.start_states()
    np.testing.assert_array_equal(starts, [[0, 0], [1, 0], [2, 0], [3, 0]])
    assert indexed_dataset.all_states().shape == (sum(n + 1 for n in [3, 10, 1, 6]), 2)


def test_subset_keeps_chosen_episodes(indexed_dataset):
    sub = indexed_dataset.subset([1, 3])
    assert len(sub) == 2 and sub.num_steps == 16
    np.testing.assert_array_equal(sub.start_states()[:, 0], [1, 3])
    assert sub.path is None


def test_growing_dataset_invalidates_sampling_cache(indexed_dataset, rng):
    indexed_dataset.sample_sequences(4, 2, rng)
    indexed_dataset.add_episode(**_episode(4, 50))
    batch = indexed_dataset.sample_sequences(400, 2, rng)
    assert (batch["obs"][:, 0, 0] == 4).any()
