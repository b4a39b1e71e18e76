"""Minari datasets in and out: exact round trips both ways, a world model fitted on imported data
driving a dream, ``genrl fit --minari``, and one-line errors. Every dataset lives in a tmp folder
(MINARI_DATASETS_PATH), so nothing touches ~/.minari."""

from __future__ import annotations

import functools
import json
import sys

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces

from genrl import DreamEnv, GenrlError, RolloutDataset, WorldModel
from genrl.cli import main
from genrl.data.minari import from_minari, to_minari

minari = pytest.importorskip("minari", reason="the genrl[minari] extra is not installed")

CARTPOLE = "genrl-tests/cartpole-random-v0"
# Small networks and batches: a few dozen steps on two CPU cores.
SMALL_MODEL = {"hidden_dim": 32, "rnn_dim": 32, "batch_size": 16, "seq_len": 8}
# Minari warns about each of these that is missing.
META = {
    "author": "genrl tests",
    "author_email": "tests@genrl.invalid",
    "code_permalink": "https://example.invalid/genrl",
}


@pytest.fixture(autouse=True)
def _local_minari(tmp_path, monkeypatch):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # keeps main() from raising torch's thread count


def _record(env_id: str, dataset_id: str, steps: int, max_episode_steps: int, seed: int = 0):
    """A Minari dataset of random actions, recorded by Minari's own DataCollector."""
    pytest.importorskip("jax", reason="Minari's DataCollector needs minari[create] (jax), not installed")
    env = minari.DataCollector(gym.make(env_id, max_episode_steps=max_episode_steps))
    env.action_space.seed(seed)
    episode = 0
    env.reset(seed=seed)  # each reset seeded: the DataCollector would draw a seed otherwise
    for _ in range(steps):
        _, _, terminated, truncated, _ = env.step(env.action_space.sample())
        if terminated or truncated:
            episode += 1
            env.reset(seed=seed + episode)
    # The last, unfinished episode is stored as truncated.
    data = env.create_dataset(
        dataset_id, eval_env=env_id, algorithm_name="random", description="random actions", **META
    )
    env.close()
    return data


@pytest.fixture
def cartpole():
    """CartPole, 300 random steps; episodes end by termination, by the time limit of 30, or cut."""
    return _record("CartPole-v1", CARTPOLE, steps=300, max_episode_steps=30)


def _assert_same(ours: RolloutDataset, theirs, dataset_id: str | None = None) -> None:
    """Exactly the same episodes, split the same way (rewards as genrl stores them, float32)."""
    episodes = list(theirs.iterate_episodes())
    assert [ep.length for ep in ours.episodes] == [len(ep) for ep in episodes]
    for mine, ep in zip(ours.episodes, episodes, strict=True):
        np.testing.assert_array_equal(mine.obs, ep.observations, strict=True)
        np.testing.assert_array_equal(mine.action, ep.actions, strict=True)
        np.testing.assert_array_equal(mine.reward, ep.rewards.astype(np.float32), strict=True)
        np.testing.assert_array_equal(mine.terminated, ep.terminations, strict=True)
        np.testing.assert_array_equal(mine.truncated, ep.truncations, strict=True)
        if dataset_id is not None:
            assert mine.info == {"minari": {"dataset_id": dataset_id, "episode_id": int(ep.id)}}


def test_cartpole_round_trips_exactly_both_ways(cartpole, tmp_path):
    episodes = list(cartpole.iterate_episodes())
    ends = [(bool(ep.terminations[-1]), bool(ep.truncations[-1])) for ep in episodes]
    assert (True, False) in ends and (False, True) in ends  # by termination and by truncation
    assert any(len(ep) == 30 for ep in episodes)  # the time limit, not only the final cut

    ours = from_minari(CARTPOLE, tmp_path / "data")
    assert ours.observation_space == cartpole.observation_space
    assert ours.action_space == cartpole.action_space
    assert ours.num_steps == cartpole.total_steps == 300
    _assert_same(ours, cartpole, CARTPOLE)
    _assert_same(RolloutDataset.load(tmp_path / "data"), cartpole, CARTPOLE)  # written to disk too
    info = json.loads((tmp_path / "data" / "episodes" / "000000.json").read_text())
    assert info == {"minari": {"dataset_id": CARTPOLE, "episode_id": 0}}
    assert len(from_minari(cartpole, episodes=2)) == 2  # a MinariDataset object, its first episodes
    with pytest.raises(
        GenrlError, match=r"^a dataset already exists at .*; open it with RolloutDataset.load$"
    ):
        from_minari(cartpole, tmp_path / "data")

    copy = to_minari(ours, "genrl-tests/cartpole-copy-v0", env="CartPole-v1", **META)
    back = minari.load_dataset("genrl-tests/cartpole-copy-v0")
    assert copy.id == back.id == "genrl-tests/cartpole-copy-v0"
    assert back.env_spec.id == "CartPole-v1" and back.total_steps == 300
    assert back.observation_space == cartpole.observation_space and back.action_space == cartpole.action_space
    _assert_same(ours, back)
    for original, exported in zip(episodes, back.iterate_episodes(), strict=True):
        for field in ("observations", "actions", "rewards", "terminations", "truncations"):
            np.testing.assert_array_equal(getattr(exported, field), getattr(original, field), strict=True)
    _assert_same(from_minari(back), back, "genrl-tests/cartpole-copy-v0")


def test_pendulum_round_trips_up_to_float32_rewards():
    theirs = _record("Pendulum-v1", "genrl-tests/pendulum-random-v0", steps=100, max_episode_steps=25)
    ours = from_minari("genrl-tests/pendulum-random-v0")
    assert len(ours) == 4 and all(ep.truncated[-1] and not ep.terminated.any() for ep in ours.episodes)
    _assert_same(ours, theirs, "genrl-tests/pendulum-random-v0")
    to_minari(ours, "genrl-tests/pendulum-copy-v0", **META)  # no env: the dataset's spaces alone
    back = minari.load_dataset("genrl-tests/pendulum-copy-v0")
    assert back.env_spec is None and back.action_space == theirs.action_space
    _assert_same(ours, back)
    for original, exported in zip(theirs.iterate_episodes(), back.iterate_episodes(), strict=True):
        np.testing.assert_array_equal(exported.actions, original.actions, strict=True)  # float32
        # Minari's float64 rewards come back as the float32 genrl stores: close, not equal.
        assert exported.rewards.dtype == original.rewards.dtype == np.float64
        np.testing.assert_allclose(exported.rewards, original.rewards, rtol=1e-6)
        np.testing.assert_array_equal(exported.rewards, original.rewards.astype(np.float32))


def test_a_model_fitted_on_imported_data_dreams(cartpole):
    ds = from_minari(CARTPOLE)
    model = WorldModel(ds.observation_space, ds.action_space, seed=0, **SMALL_MODEL)
    losses = model.fit(ds, 30, progress=False)
    assert all(np.isfinite(v) for v in losses.values())
    env = DreamEnv(model, ds, horizon=10)
    obs, _ = env.reset(seed=0)
    env.action_space.seed(0)
    for _ in range(5):
        assert obs.shape == ds.observation_space.shape and np.all(np.isfinite(obs))
        obs, reward, terminated, truncated, _ = env.step(env.action_space.sample())
        assert np.isfinite(reward)
        if terminated or truncated:
            obs, _ = env.reset()


def _one_line_error(capsys, argv: list[str], match: str) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("genrl: error: ") and "\n" not in err and "Traceback" not in err, err
    assert match in err, err


def test_cli_fits_on_a_minari_dataset(cartpole, capsys, tmp_path):
    out = tmp_path / "model"
    assert main(["fit", "--minari", CARTPOLE, "--out", str(out), "--steps", "20", "--no-progress"]) == 0
    assert f"Fitted on {cartpole.total_episodes} episodes (300 steps)" in capsys.readouterr().out
    loaded = WorldModel.load(out, device="cpu")
    assert int(loaded.trained_steps) == 20
    assert loaded.observation_space == cartpole.observation_space
    both = ["fit", str(tmp_path / "data"), "--minari", CARTPOLE, "--out", str(out)]
    _one_line_error(capsys, both, "fit: expected exactly one of DATA_DIR or --minari DATASET_ID, got both")
    _one_line_error(capsys, ["fit", "--out", str(out)], "expected exactly one of DATA_DIR or --minari")
    _one_line_error(capsys, ["fit", "--minari", "nope/none-v0", "--out", str(out)], "'nope/none-v0'")


def _buffer(obs, actions, terminations):
    steps = len(actions)
    return minari.data_collector.EpisodeBuffer(
        observations=obs,
        actions=np.asarray(actions),
        rewards=np.zeros(steps),
        terminations=np.asarray(terminations),
        truncations=np.zeros(steps, dtype=bool),
    )


# Minari's own advice when it is given neither an env nor an evaluation env.
@pytest.mark.filterwarnings("ignore:`eval_env` is set to None", "ignore:env_spec is None")
def test_unknown_or_unreadable_datasets_are_one_line_errors(cartpole):
    with pytest.raises(
        GenrlError, match=r"^no Minari dataset 'genrl-tests/missing-v0' is installed in .*"
    ) as e:
        from_minari("genrl-tests/missing-v0")
    assert f"installed: '{CARTPOLE}'" in str(e.value) and "minari download" in str(e.value)
    with pytest.raises(GenrlError, match=r"expected a Minari dataset id of the form \[namespace/\]name-vN"):
        from_minari("../../etc-v0/x")
    with pytest.raises(GenrlError, match=r"expected a Minari dataset id \(str\) or a minari.MinariDataset"):
        from_minari(42)

    box = spaces.Box(-1.0, 1.0, (2,), np.float32)
    minari.create_dataset_from_buffers(
        "genrl-tests/dict-v0",
        [_buffer({"pos": np.zeros((3, 2), np.float32)}, [0, 1], [False, True])],
        observation_space=spaces.Dict({"pos": box}),
        action_space=spaces.Discrete(2),
        algorithm_name="test",
        **META,
        description="a Dict observation space",
    )
    with pytest.raises(
        GenrlError,
        match=r"^Minari dataset 'genrl-tests/dict-v0': unsupported observation space: "
        r"expected a Box, got Dict",
    ):
        from_minari("genrl-tests/dict-v0")

    early_end = _buffer(np.zeros((4, 2), np.float32), [0, 1, 0], [True, False, False])
    ok = _buffer(np.zeros((3, 2), np.float32), [1, 1], [False, True])
    minari.create_dataset_from_buffers(
        "genrl-tests/early-end-v0",
        [ok, early_end],
        observation_space=box,
        action_space=spaces.Discrete(2),
        algorithm_name="test",
        **META,
        description="an episode terminated before its end",
    )
    with pytest.raises(
        GenrlError,
        match=r"^Minari dataset 'genrl-tests/early-end-v0', episode 1: "
        r"terminated may only be set on the last step of an episode$",
    ):
        from_minari("genrl-tests/early-end-v0")


@pytest.mark.parametrize(
    "bad_id", ["cartpole-v0", "genrl/cartpole", "genrl/cartpole-v", "../cartpole-v0", "genrl/cart pole-v0", 7]
)
def test_a_bad_export_id_is_refused(bad_id):
    ours = RolloutDataset(spaces.Box(-1.0, 1.0, (2,)), spaces.Discrete(2))
    ours.add_episode(np.zeros((2, 2)), np.array([1]), np.ones(1), np.array([True]), np.array([False]))
    with pytest.raises(
        GenrlError, match=r"^to_minari: expected a Minari dataset id of the form namespace/name-vN"
    ):
        to_minari(ours, bad_id)


def test_exports_never_overwrite_and_check_the_env(cartpole):
    ours = from_minari(cartpole, episodes=3)
    with pytest.raises(
        GenrlError,
        match=rf"^to_minari: a Minari dataset '{CARTPOLE}' already exists at .*: expected a new id "
        r"\(e.g. 'genrl-tests/cartpole-random-v1'\)",
    ):
        to_minari(ours, CARTPOLE)
    assert minari.load_dataset(CARTPOLE).total_episodes == len(list(cartpole.iterate_episodes()))  # untouched
    with pytest.raises(GenrlError, match=r"^observation space mismatch: dataset has Box"):
        to_minari(ours, "genrl-tests/pendulum-v0", env="Pendulum-v1")
    with pytest.raises(GenrlError, match=r"^unknown environment 'NoSuchEnv-v9'"):
        to_minari(ours, "genrl-tests/nosuch-v0", env="NoSuchEnv-v9")
    with pytest.raises(GenrlError, match=r"^to_minari: the dataset is empty"):
        to_minari(RolloutDataset(ours.observation_space, ours.action_space), "genrl-tests/empty-v0")
    assert "genrl-tests/pendulum-v0" not in minari.list_local_datasets()


def test_without_minari_the_error_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "minari", None)  # `import minari` now fails as if not installed
    with pytest.raises(GenrlError, match=r"^from_minari needs Minari: pip install 'genrl\[minari\]'$"):
        from_minari("genrl-tests/any-v0")
    with pytest.raises(GenrlError, match=r"^to_minari needs Minari: pip install 'genrl\[minari\]'$"):
        to_minari(None, "genrl-tests/any-v0")


def test_a_failed_export_leaves_the_id_free(cartpole, monkeypatch):
    ours = from_minari(cartpole, episodes=2)
    with pytest.raises(GenrlError, match=r"^to_minari: algorithm_name: expected a string or None, got 5$"):
        to_minari(ours, "genrl-tests/retry-v0", algorithm_name=5)
    with pytest.raises(GenrlError, match=r"^to_minari: author: expected a string, a set of strings or None"):
        to_minari(ours, "genrl-tests/retry-v0", author=["a"])
    real = minari.create_dataset_from_buffers

    @functools.wraps(real)
    def fails_when_done(*args, **kwargs):
        real(*args, **kwargs)
        raise ValueError("disk full")

    monkeypatch.setattr(minari, "create_dataset_from_buffers", fails_when_done)
    with pytest.raises(
        GenrlError, match=r"^to_minari: Minari could not create 'genrl-tests/retry-v0': disk full$"
    ):
        to_minari(ours, "genrl-tests/retry-v0", **META)
    monkeypatch.setattr(minari, "create_dataset_from_buffers", real)
    assert len(to_minari(ours, "genrl-tests/retry-v0", **META)) == 2
