"""The cross-cutting conventions: devices ("auto", never moving a caller's model), seeds (None
draws, an int reproduces) and one check helper for numbers and choices. No GPU is needed: CUDA
is made to look present, so that any attempt to use it fails loudly on a CPU machine."""

import json

import numpy as np
import pytest
import torch

import genrl
from genrl import DreamEnv, DreamVecEnv, GenrlError, WorldModel
from genrl.evaluation.critic import realism_critic
from genrl.util.checks import check_choice, check_float, check_int, describe
from genrl.util.device import resolve_device

TINY_RUN = dict(
    agent={
        "algorithm": "ppo",
        "hyperparameters": {"n_steps": 16, "batch_size": 32, "n_epochs": 1, "device": "cpu"},
    },
    iterations=1,
    initial_steps=100,
    fit_steps=5,
    dream_steps=64,
    eval_episodes=1,
    n_envs=4,
    horizon=20,
    world_model={"hidden_dim": 16, "rnn_dim": 16, "batch_size": 4, "seq_len": 4, "open_loop_steps": 2},
)


@pytest.fixture
def cuda_looks_available(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)


@pytest.fixture
def no_moves(monkeypatch):
    """Any WorldModel.to() fails the test: nothing may move the caller's model."""

    def refuse(self, *args, **kwargs):
        raise AssertionError(f"a WorldModel was moved: .to({args}, {kwargs})")

    monkeypatch.setattr(WorldModel, "to", refuse)


def test_auto_is_cuda_when_present_and_names_the_device_otherwise(cuda_looks_available):
    assert resolve_device("auto") == torch.device("cuda")
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(GenrlError, match=r"device: expected 'auto', 'cpu', 'cuda' or 'cuda:N', got 'gpu0'"):
        resolve_device("gpu0")


def test_dream_vec_env_keeps_the_callers_model_where_it_is(cartpole_model, cuda_looks_available, no_moves):
    env = DreamVecEnv(cartpole_model, n_envs=4, seed=0)  # before: moved to CUDA when it looked present
    assert env.model is cartpole_model and cartpole_model.device == torch.device("cpu")
    env.reset()
    env.step(np.zeros(4, dtype=np.int64))


def test_dream_env_keeps_the_callers_model_where_it_is(cartpole_model, no_moves):
    env = DreamEnv(cartpole_model)  # before: "cpu" by default, moving a CUDA model back silently
    assert env.model is cartpole_model
    env.reset(seed=0)
    env.step(0)


def test_a_device_other_than_the_models_is_refused_in_one_line(cartpole_model):
    for make in (DreamEnv, DreamVecEnv):
        with pytest.raises(
            GenrlError, match=r"the world model is on cpu: expected device='auto' or 'cpu', got 'cuda'"
        ):
            make(cartpole_model, device="cuda")


def test_a_saved_model_loads_onto_auto(cartpole_model_path, cuda_looks_available, monkeypatch):
    seen = []
    real_resolve = genrl.model.files.resolve_device
    monkeypatch.setattr(genrl.model.files, "resolve_device", lambda d: seen.append(d) or real_resolve("cpu"))
    assert WorldModel.load(cartpole_model_path).device == torch.device("cpu")
    assert seen == ["auto"]


def test_the_loops_device_is_not_overridden_and_a_drawn_seed_is_recorded(tmp_path, cuda_looks_available):
    """device="cpu" on a machine that looks like it has a GPU: before, the dreams moved the
    loop's model to CUDA. seed=None draws a seed, which the run records and resumes with."""
    result = genrl.train_in_imagination(
        "CartPole-v1", run_dir=tmp_path, progress=False, device="cpu", **TINY_RUN
    )
    assert result.model.device == torch.device("cpu")
    seed = json.loads((tmp_path / "config.json").read_text())["seed"]
    assert isinstance(seed, int) and result.config.seed == seed
    again = genrl.train_in_imagination(
        "CartPole-v1", run_dir=tmp_path, progress=False, device="cpu", **TINY_RUN
    )
    assert again.history == result.history  # the same command, re-run: the finished run, unchanged


def test_none_draws_and_an_int_reproduces_everywhere():
    def collected(seed):
        return genrl.collect("CartPole-v1", 60, seed=seed, progress=False).episodes[0].obs

    np.testing.assert_array_equal(collected(3), collected(3))
    assert not np.array_equal(collected(None), collected(None))

    rng = np.random.default_rng(0)
    real, dreamed, groups = (
        rng.normal(size=(36, 3)),
        rng.normal(size=(36, 3)) + 0.5,
        np.repeat(np.arange(8), np.arange(1, 9)),  # episodes of 1 to 8 clips: splits differ in size
    )
    assert realism_critic(real, dreamed, groups, seed=1) == realism_critic(real, dreamed, groups, seed=1)
    drawn = {realism_critic(real, dreamed, groups, steps=5).train_pairs for _ in range(6)}
    assert len(drawn) > 1  # the split of episodes differs from draw to draw


def test_dreams_draw_unless_seeded(cartpole_model):
    def dreamed(seed):
        env = DreamVecEnv(cartpole_model, n_envs=8, seed=seed)
        return np.concatenate([env.reset(), env.step(np.zeros(8, dtype=np.int64))[0]])

    np.testing.assert_array_equal(dreamed(4), dreamed(4))
    assert not np.array_equal(dreamed(None), dreamed(None))


def test_world_models_draw_a_seed_unless_given_one(cartpole_dataset):
    spaces = (cartpole_dataset.observation_space, cartpole_dataset.action_space)
    a, b = WorldModel(*spaces, hidden_dim=8, rnn_dim=8), WorldModel(*spaces, hidden_dim=8, rnn_dim=8)
    assert a.seed != b.seed
    c, d = (
        WorldModel(*spaces, hidden_dim=8, rnn_dim=8, seed=5),
        WorldModel(*spaces, hidden_dim=8, rnn_dim=8, seed=5),
    )
    for key, value in c.state_dict().items():
        torch.testing.assert_close(d.state_dict()[key], value, rtol=0, atol=0)


@pytest.mark.parametrize(
    "check, value, message",
    [
        (lambda v: check_int(v, "horizon", 1), True, r"horizon: expected an integer >= 1, got True"),
        (lambda v: check_int(v, "horizon", 1), 2.0, r"horizon: expected an integer >= 1, got 2.0"),
        (lambda v: check_int(v, "dim", 0, 3), 7, r"dim: expected an integer from 0 to 3, got 7"),
        (lambda v: check_float(v, "p", 0.0, 1.0), 1.5, r"p: expected a number >= 0 and <= 1, got 1.5"),
        (
            lambda v: check_float(v, "p", 0.0, 1.0),
            float("nan"),
            r"p: expected a number >= 0 and <= 1, got nan",
        ),
        (lambda v: check_float(v, "t", 0.0), "a lot", r"t: expected a number >= 0, got 'a lot'"),
        (
            lambda v: check_choice(v, "start", ("initial", "any")),
            "all",
            r"start: expected one of \['initial', 'any'\], got 'all'",
        ),
    ],
)
def test_checks_refuse_in_one_line_what_was_expected_and_given(check, value, message):
    with pytest.raises(GenrlError, match=f"^{message}$"):
        check(value)


def test_checks_accept_numpy_numbers_and_describe_arrays_on_one_line():
    assert check_int(np.int64(4), "n", 1) == 4 and isinstance(check_int(np.int64(4), "n", 1), int)
    assert check_float(np.float32(0.5), "p", 0.0, 1.0) == 0.5
    assert "\n" not in describe(np.zeros((50, 50))) and len(describe("x" * 500)) == 100


def test_a_discrete_action_with_a_batch_shape_is_refused(cartpole_model):
    env = DreamEnv(cartpole_model)
    env.reset(seed=0)
    env.step(np.array(1))
    env.step(np.array([1]))
    with pytest.raises(
        GenrlError, match=r"^invalid action: expected an integer in Discrete\(2\), got array\(\[\[1\]\]"
    ):
        env.step(np.array([[1]]))
