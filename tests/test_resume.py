"""Checkpoints and resume: an interrupted run continues with no real transition lost or duplicated."""

import json

import numpy as np
import pytest
import torch

import genrl
from genrl import GenrlError, RolloutDataset
from genrl.training.agents import agent_preset, make_agent
from genrl.training.checkpoint import CheckpointStore, Phase, read_checkpoint

# Every test here runs the loop (train_in_imagination) at least once.
pytestmark = pytest.mark.slow

# Small enough for seconds per run, big enough that every phase does real work.
TINY = dict(
    env="CartPole-v1",
    agent={
        "algorithm": "ppo",
        "hyperparameters": {"n_steps": 32, "batch_size": 64, "n_epochs": 2, "learning_rate": 1e-3},
    },
    seed=3,
    iterations=3,
    initial_steps=150,
    steps_per_iteration=100,
    fit_steps=30,
    refit_steps=20,
    dream_steps=256,
    eval_episodes=2,
    n_envs=8,
    horizon=50,
    world_model={"hidden_dim": 32, "rnn_dim": 32, "batch_size": 16, "seq_len": 16, "open_loop_steps": 4},
)


class Interrupt(Exception):
    """Stands in for a kill: raised from inside a phase, it leaves whatever was on disk."""


def train(run_dir, **overrides):
    return genrl.train_in_imagination(run_dir=run_dir, progress=False, **{**TINY, **overrides})


def episodes(run_dir):
    return RolloutDataset.load(run_dir / "data").episodes


def assert_same_episodes(a, b):
    assert len(a) == len(b)
    for ea, eb in zip(a, b, strict=True):
        arrays_a, arrays_b = ea.arrays(), eb.arrays()
        for key in arrays_a:
            np.testing.assert_array_equal(arrays_a[key], arrays_b[key], err_msg=key)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("reference")
    return run_dir, train(run_dir)


def test_a_run_keeps_only_the_newest_checkpoints(reference):
    run_dir, result = reference
    store = CheckpointStore(run_dir / "checkpoints")
    assert store.names() == ["000002-1-fitted", "000002-2-done"]  # keep_checkpoints: 2
    last = read_checkpoint(run_dir / "checkpoints" / "000002-2-done")
    assert (last.iteration, last.phase, last.episodes) == (2, Phase.DONE, len(result.dataset))
    assert last.phase == "done" and isinstance(last.phase, str)  # a str enum: JSON and old code agree
    assert last.real_steps == 150 + 2 * 100 == result.dataset.num_steps
    assert [row["iteration"] for row in last.history] == [0, 1, 2]


def test_the_same_seed_gives_the_same_run(reference, tmp_path):
    run_dir, result = reference
    again = train(tmp_path)
    assert_same_episodes(episodes(run_dir), episodes(tmp_path))
    for name, value in result.model.state_dict().items():
        torch.testing.assert_close(again.model.state_dict()[name], value, rtol=0, atol=0)
    assert [r["eval_return_mean"] for r in again.history] == [r["eval_return_mean"] for r in result.history]


@pytest.mark.parametrize(
    "where",
    ["initial collection", "second collection", "first fit", "second fit", "agent training", "evaluation"],
)
def test_resume_after_an_interruption_matches_an_uninterrupted_run(reference, tmp_path, monkeypatch, where):
    run_dir, result = reference
    calls = {"fit": 0}
    real_add, real_fit = RolloutDataset.add_episode, genrl.WorldModel.fit
    lengths = np.cumsum([len(ep.reward) for ep in episodes(run_dir)])
    first_collection = int(np.searchsorted(lengths, 150) + 1)  # episodes of the 150 random steps
    kill_at = {"initial collection": 3, "second collection": first_collection + 2}.get(where)

    def add_episode(self, *args):
        # Killed just before a new episode is written (the kill comes before the resume, so no
        # episode is being replayed: every one collected reaches the dataset).
        if len(self) == kill_at:
            raise Interrupt
        return real_add(self, *args)

    def fit(self, *args, **kwargs):
        calls["fit"] += 1
        if (where, calls["fit"]) in (("first fit", 1), ("second fit", 2)):
            real_fit(self, args[0], 5, None, False)  # part of the work, then the kill
            raise Interrupt
        return real_fit(self, *args, **kwargs)

    def evaluate(*args, **kwargs):
        raise Interrupt

    monkeypatch.setattr(RolloutDataset, "add_episode", add_episode)
    monkeypatch.setattr(genrl.WorldModel, "fit", fit)
    if where == "agent training":
        monkeypatch.setattr("stable_baselines3.PPO.train", lambda self: (_ for _ in ()).throw(Interrupt()))
    if where == "evaluation":
        monkeypatch.setattr("genrl.training.loop.evaluate_phase", evaluate)
    with pytest.raises(Interrupt):
        train(tmp_path)
    monkeypatch.undo()
    resumed = genrl.resume(tmp_path, progress=False)
    assert_same_episodes(episodes(run_dir), episodes(tmp_path))
    assert resumed.dataset.num_steps == result.dataset.num_steps == 150 + 2 * 100
    for name, value in result.model.state_dict().items():
        torch.testing.assert_close(resumed.model.state_dict()[name], value, rtol=0, atol=0)
    for name, value in result.agent.policy.state_dict().items():
        torch.testing.assert_close(resumed.agent.policy.state_dict()[name], value, rtol=0, atol=0)
    strip = ("wall_time_s", "eval_time_s")  # clock readings differ between runs
    assert [{k: v for k, v in r.items() if k not in strip} for r in resumed.history] == [
        {k: v for k, v in r.items() if k not in strip} for r in result.history
    ]


def test_rerunning_the_same_command_resumes_and_a_finished_run_stays_finished(reference, tmp_path):
    run_dir, result = reference
    train(tmp_path, iterations=2)
    before = episodes(tmp_path)
    again = train(tmp_path, iterations=2)  # finished: nothing is collected again
    assert_same_episodes(before, episodes(tmp_path))
    assert len(again.history) == 2
    extended = train(tmp_path)  # iterations may grow: the run continues to 3
    assert len(extended.history) == 3
    assert_same_episodes(episodes(run_dir), episodes(tmp_path))


def test_resume_refuses_other_settings(reference, tmp_path):
    run_dir, _ = reference
    with pytest.raises(GenrlError, match=r"holds a run with other settings \(seed: 3 there, 4 now\)"):
        train(run_dir, seed=4)
    with pytest.raises(
        GenrlError, match=r"expected overrides among \['device', 'iterations'\], got \['seed'\]"
    ):
        genrl.resume(run_dir, seed=4)
    with pytest.raises(
        GenrlError, match=r"expected a genrl run folder \(config.json\) at .*, found no such file"
    ):
        genrl.resume(tmp_path)


def test_resume_refuses_a_dataset_that_lost_episodes(tmp_path):
    train(tmp_path, iterations=1)
    files = sorted((tmp_path / "data" / "episodes").glob("*.npz"))
    files[-1].unlink()
    with pytest.raises(
        GenrlError, match=r"holds \d+ episodes: expected at least the \d+ recorded when checkpoint"
    ):
        genrl.resume(tmp_path, iterations=2, progress=False)


@pytest.mark.parametrize(
    "corrupt, message",
    [
        (lambda d: (d / "checkpoint.json").write_text("{"), "not valid JSON"),
        (
            lambda d: (d / "checkpoint.json").write_text(
                json.dumps({"format": "genrl.checkpoint", "version": 9})
            ),
            "genrl.checkpoint version 9; this genrl reads version 1",
        ),
        (
            lambda d: (d / "agent.pt").write_bytes(b"not a torch file"),
            "expected a genrl checkpoint tensor file",
        ),
        (
            lambda d: (d / "model_optimizer.pt").unlink(),
            "expected checkpoint tensors at .*, found no such file",
        ),
    ],
    ids=["garbled json", "newer version", "foreign agent file", "missing optimizer"],
)
def test_a_broken_checkpoint_is_a_clear_error(reference, tmp_path, corrupt, message):
    train(tmp_path, iterations=1)
    newest = CheckpointStore(tmp_path / "checkpoints").names()[-1]
    corrupt(tmp_path / "checkpoints" / newest)
    with pytest.raises(GenrlError, match=message) as info:
        genrl.resume(tmp_path, iterations=2, progress=False)
    assert "\n" not in str(info.value)


def test_an_off_policy_agent_restores_its_replay_buffer_and_optimizers(tmp_path):
    sac = {
        "algorithm": "sac",
        "hyperparameters": {"learning_starts": 50, "batch_size": 32, "buffer_size": 5000},
    }
    kwargs = dict(
        TINY,
        env="Pendulum-v1",
        agent=sac,
        iterations=1,
        initial_steps=100,
        dream_steps=200,
        n_envs=4,
        horizon=50,
    )
    result = genrl.train_in_imagination(run_dir=tmp_path, progress=False, **kwargs)
    fresh = make_agent(agent_preset(sac), result.agent.get_env(), seed=0)
    ckpt = CheckpointStore(tmp_path / "checkpoints").latest()
    ckpt.restore(result.model, fresh)
    for name, value in result.agent.get_parameters().items():
        restored = fresh.get_parameters()[name]
        flat_a, flat_b = _tensors(value), _tensors(restored)
        assert flat_a.keys() == flat_b.keys()
        for key in flat_a:
            torch.testing.assert_close(flat_b[key], flat_a[key], rtol=0, atol=0)
    torch.testing.assert_close(fresh.log_ent_coef, result.agent.log_ent_coef, rtol=0, atol=0)
    buf, old = fresh.replay_buffer, result.agent.replay_buffer
    assert (buf.pos, buf.full) == (old.pos, old.full) and old.pos > 0
    np.testing.assert_array_equal(buf.observations[: old.pos], old.observations[: old.pos])
    np.testing.assert_array_equal(buf.rewards[: old.pos], old.rewards[: old.pos])
    assert (fresh.num_timesteps, fresh._n_updates) == (result.agent.num_timesteps, result.agent._n_updates)


def _tensors(state, prefix=""):
    out = {}
    for key, value in state.items():
        if isinstance(value, dict):
            out.update(_tensors(value, f"{prefix}{key}."))
        elif isinstance(value, torch.Tensor):
            out[f"{prefix}{key}"] = value
    return out
