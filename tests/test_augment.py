"""ImaginedReplay (genrl.guidance.augment): imagined transitions in SB3 replay batches (MBPO)."""

from __future__ import annotations

import copy

import gymnasium as gym
import numpy as np
import pytest
import torch
from stable_baselines3 import DQN, PPO, SAC, TD3
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.callbacks import BaseCallback, CallbackList
from stable_baselines3.common.logger import KVWriter, Logger

from genrl.errors import GenrlError
from genrl.guidance.augment import (
    ImaginedReplay,
    MixedReplayBuffer,
    append_transitions,
    imagine,
    replay_episodes,
)
from genrl.model.world_model import WorldModel

PENDULUM = gym.make("Pendulum-v1")
CARTPOLE = gym.make("CartPole-v1")
TINY = {"hidden_dim": 16, "rnn_dim": 16, "batch_size": 8, "seq_len": 8, "num_mixtures": 1}
# A callback that fits at 100 and 200 real steps, a few gradient steps each.
QUICK = {"start_after": 100, "refit_every": 100, "fit_steps": 10, "refit_steps": 5, "capacity": 5000}


def small(**settings) -> dict:
    """Settings of a small, quick SB3 agent (a fresh dict: SB3 writes into policy_kwargs)."""
    return {
        "buffer_size": 5000,
        "batch_size": 32,
        "device": "cpu",
        "policy_kwargs": {"net_arch": [16]},
        **settings,
    }


def tiny_model(env: gym.Env, **settings) -> WorldModel:
    return WorldModel(
        env.observation_space, env.action_space, encoder="identity", seed=0, **{**TINY, **settings}
    )


def rows(*arrays) -> list[bytes]:
    """Transitions as hashable rows, to tell which buffer a sampled transition came from."""
    flat = np.concatenate([np.asarray(a, dtype=np.float32).reshape(len(a), -1) for a in arrays], 1)
    return [row.tobytes() for row in flat]


def buffer_rows(buffer: ReplayBuffer) -> set[bytes]:
    n = buffer.size()
    return set(rows(buffer.observations[:n, 0], buffer.actions[:n, 0], buffer.next_observations[:n, 0]))


class Spy(BaseCallback):
    """Samples the agent's batches while it learns, as its ``train`` does."""

    def __init__(self, batch_size: int):
        super().__init__()
        self.batch_size, self.batches = batch_size, []

    def _on_step(self) -> bool:
        buffer = self.model.replay_buffer
        if self.num_timesteps % 50 == 0 and buffer.imagined.size() > 0:
            batch = buffer.sample(self.batch_size)
            self.batches.append((batch, buffer_rows(buffer), buffer_rows(buffer.imagined)))
        return True


class Capture(KVWriter):
    """An SB3 logger output that keeps the keys written to it."""

    def __init__(self):
        self.keys: set[str] = set()

    def write(self, key_values, key_excluded, step=0) -> None:
        self.keys |= set(key_values)


def learn(agent, callback: ImaginedReplay, steps: int, extra: tuple[BaseCallback, ...] = ()) -> set[str]:
    """Train ``agent`` with ``callback``; returns the keys it logged."""
    capture = Capture()
    agent.set_logger(Logger(folder=None, output_formats=[capture]))
    agent.learn(steps, callback=CallbackList([callback, *extra]))
    agent.logger.dump(agent.num_timesteps)
    return capture.keys


@pytest.mark.parametrize("ratio", [0.0, 0.05, 0.3, 1.0])
def test_batches_hold_the_chosen_ratio_of_real_transitions(ratio):
    agent = SAC("MlpPolicy", PENDULUM, learning_starts=1000, seed=0, **small())
    callback = ImaginedReplay(tiny_model(PENDULUM), real_ratio=ratio, rollouts=10, seed=0, **QUICK)
    spy = Spy(batch_size=64)
    learn(agent, callback, 200, (spy,))
    assert len(spy.batches) == 2  # at 150 and 200 real steps: after the first fit
    for batch, real, imagined in spy.batches:
        sampled = rows(batch.observations.cpu(), batch.actions.cpu(), batch.next_observations.cpu())
        is_real = np.array([r in real for r in sampled])
        is_imagined = np.array([r in imagined for r in sampled])
        assert (is_real ^ is_imagined).all()  # every transition comes from exactly one buffer
        assert is_real.sum() == round(ratio * 64)


def test_batches_are_all_real_until_there_are_imagined_transitions():
    real = ReplayBuffer(100, PENDULUM.observation_space, PENDULUM.action_space, "cpu")
    imagined = ReplayBuffer(100, PENDULUM.observation_space, PENDULUM.action_space, "cpu")
    for _ in range(10):
        obs = PENDULUM.observation_space.sample()[None]
        real.add(obs, obs, np.zeros((1, 1)), np.ones(1), np.zeros(1), [{}])
    mixed = MixedReplayBuffer.wrapping(real, imagined, 0.05)
    assert (mixed.sample(40).rewards == 1).all()
    append_transitions(imagined, *np.zeros((2, 5, 3), np.float32), np.zeros((5, 1)), -np.ones(5), np.zeros(5))
    assert (mixed.sample(40).rewards == 1).sum() == 2
    assert (mixed.unwrap().sample(40).rewards == 1).all() and type(mixed.unwrap()) is ReplayBuffer


def test_imagined_buffer_is_first_in_first_out():
    buffer = ReplayBuffer(10, PENDULUM.observation_space, PENDULUM.action_space, "cpu")
    for first in (0, 7, 14):
        values = np.arange(first, first + 7, dtype=np.float32)
        obs = np.repeat(values[:, None], 3, 1)
        append_transitions(buffer, obs, obs, values[:, None], values, np.zeros(7))
    assert buffer.full and buffer.pos == 1
    assert sorted(buffer.rewards[:, 0]) == list(range(11, 21))  # the ten newest of 21


def test_branches_start_from_real_states_of_the_buffer():
    agent = SAC("MlpPolicy", PENDULUM, learning_starts=1000, seed=0, **small())
    callback = ImaginedReplay(tiny_model(PENDULUM), branch_length=1, rollouts=10, seed=0, **QUICK)
    learn(agent, callback, 150)
    n, real = agent.replay_buffer.size(), agent.replay_buffer.observations[:, 0]
    starts = callback.imagined.observations[: callback.imagined.size(), 0]
    assert len(starts) == 10 * 50  # 10 branches of one step on each real step from the first fit
    assert set(rows(starts)) <= set(rows(real[:n]))


def test_branches_follow_the_model_from_their_real_start():
    model = scripted(tiny_model(PENDULUM))  # an unfitted model may predict terminations
    start = np.stack([PENDULUM.observation_space.sample() for _ in range(6)])
    policy = lambda obs: np.zeros((len(obs), 1), np.float32)  # noqa: E731
    branches = imagine(model, policy, start, 4, generator=torch.Generator().manual_seed(0))
    assert branches.obs.shape == (6, 4, 3) and branches.kept.all()
    np.testing.assert_array_equal(branches.obs[:, 0], start)
    np.testing.assert_array_equal(branches.obs[:, 1:], branches.next_obs[:, :-1])
    assert len(branches.flat()[0]) == 24


def scripted(model: WorldModel, terminated_at: dict[int, int] | None = None, std_per_step: float = 0.0):
    """A copy of ``model`` whose step k predicts std ``k * std_per_step`` and terminates row i at
    step ``terminated_at[i]`` (and no other)."""
    model, step = copy.deepcopy(model), model.step
    count = {"k": 0}

    def scripted_step(z, h, action, temperature=1.0, generator=None):
        out, k = step(z, h, action, temperature, generator), count["k"]
        count["k"] += 1
        done = torch.tensor([(terminated_at or {}).get(i) == k for i in range(len(z))])
        return out._replace(terminated=done, uncertainty=torch.full((len(z),), k * std_per_step))

    model.step = scripted_step
    return model


def test_a_branch_ends_at_a_predicted_termination():
    model = scripted(tiny_model(PENDULUM), terminated_at={0: 1, 2: 0})
    policy = lambda obs: np.zeros((len(obs), 1), np.float32)  # noqa: E731
    branches = imagine(model, policy, np.zeros((3, 3), np.float32), 5)
    assert branches.lengths.tolist() == [2, 5, 1]
    assert branches.terminated[0, 1] and branches.terminated[2, 0]
    assert branches.flat()[4].sum() == 2  # the terminal steps are kept, marked terminal


def test_a_branch_stops_before_the_step_whose_uncertainty_is_too_high():
    model = scripted(tiny_model(PENDULUM), std_per_step=1.0)  # std 0, 1, 2, 3, ...
    policy = lambda obs: np.zeros((len(obs), 1), np.float32)  # noqa: E731
    branches = imagine(model, policy, np.zeros((3, 3), np.float32), 5, max_uncertainty=1.5)
    assert branches.lengths.tolist() == [2, 2, 2]
    unlimited = imagine(scripted(tiny_model(PENDULUM), std_per_step=1.0), policy, np.zeros((3, 3)), 5)
    assert unlimited.lengths.tolist() == [5, 5, 5]


def test_an_unreliable_model_adds_no_imagined_data():
    agent = SAC("MlpPolicy", PENDULUM, learning_starts=1000, seed=0, **small())
    callback = ImaginedReplay(tiny_model(PENDULUM), max_uncertainty=1e-6, seed=0, **QUICK)
    learn(agent, callback, 150)
    assert callback.fits == 1 and callback.imagined.size() == 0


@pytest.mark.parametrize(
    "algorithm, env", [(SAC, PENDULUM), (TD3, PENDULUM), (DQN, CARTPOLE)], ids=["sac", "td3", "dqn"]
)
def test_unmodified_sb3_agents_learn_with_imagined_batches(algorithm, env):
    agent = algorithm("MlpPolicy", env, learning_starts=50, seed=0, **small())
    callback = ImaginedReplay(tiny_model(env), rollouts=4, branch_length=3, seed=0, **QUICK)
    logged = learn(agent, callback, 250)
    assert callback.fits == 2 and callback.imagined.size() > 0
    assert type(agent.replay_buffer) is ReplayBuffer  # handed back plain after training
    assert {"imagined/transitions", "imagined/branch_length", "imagined/model_reward"} <= logged
    # Imagined actions are stored as SB3 stores real ones: scaled to [-1, 1], or indices.
    actions = callback.imagined.actions[: callback.imagined.size()]
    if algorithm is DQN:
        assert set(np.unique(actions)) <= {0, 1}
    else:
        assert np.abs(actions).max() <= 1.0


def test_replay_episodes_are_the_real_episodes():
    agent = SAC("MlpPolicy", PENDULUM, learning_starts=1000, buffer_size=5000, device="cpu", seed=0)
    agent.learn(450)
    dataset = replay_episodes(agent)
    assert [ep.length for ep in dataset.episodes] == [200, 200, 50]
    assert all(ep.truncated[-1] and not ep.terminated.any() for ep in dataset.episodes)
    assert np.abs(np.concatenate([ep.action for ep in dataset.episodes])).max() <= 2.0  # env units
    buffer = agent.replay_buffer
    np.testing.assert_allclose(dataset.episodes[1].obs[:-1], buffer.observations[200:400, 0])

    dqn = DQN("MlpPolicy", CARTPOLE, learning_starts=1000, buffer_size=5000, device="cpu", seed=0)
    dqn.learn(200)
    episodes = replay_episodes(dqn).episodes
    assert all(ep.terminated[-1] for ep in episodes[:-1]) and episodes[-1].truncated[-1]
    assert sum(ep.length for ep in episodes) == 200 and episodes[0].action.dtype == np.int64


def test_a_seed_reproduces_the_imagined_data():
    def imagined(seed: int) -> np.ndarray:
        agent = SAC("MlpPolicy", PENDULUM, learning_starts=1000, seed=0, **small())
        callback = ImaginedReplay(tiny_model(PENDULUM), rollouts=5, seed=seed, **QUICK)
        learn(agent, callback, 130)
        return callback.imagined.next_observations[: callback.imagined.size()].copy()

    first, other = imagined(3), imagined(4)
    np.testing.assert_array_equal(first, imagined(3))
    assert first.shape != other.shape or not np.array_equal(first, other)


def test_a_default_model_is_built_for_the_agents_spaces():
    agent = DQN("MlpPolicy", CARTPOLE, learning_starts=1000, seed=0, **small())
    callback = ImaginedReplay(rollouts=2, seed=0, **{**QUICK, "fit_steps": 2})
    learn(agent, callback, 110)
    assert callback.world_model.observation_space == CARTPOLE.observation_space
    assert callback.world_model.config.encoder == "identity" and callback.imagined.size() > 0


@pytest.mark.parametrize(
    "settings",
    [
        {"real_ratio": 1.5},
        {"real_ratio": "half"},
        {"branch_length": 0},
        {"rollouts": 2.5},
        {"refit_every": 0},
        {"fit_steps": -1},
        {"refit_steps": True},
        {"start_after": 0},
        {"capacity": 0},
        {"temperature": -0.1},
        {"max_uncertainty": 0.0},
        {"max_uncertainty": float("nan")},
        {"seed": -1},
        {"world_model": "model"},
    ],
)
def test_bad_arguments_fail_in_one_line(settings):
    with pytest.raises(GenrlError) as error:
        ImaginedReplay(**settings)
    assert "\n" not in str(error.value) and next(iter(settings)) in str(error.value)


def test_agents_and_models_it_cannot_serve_fail_in_one_line():
    cases = [
        (PPO("MlpPolicy", PENDULUM, n_steps=64, device="cpu"), ImaginedReplay(), "off-policy"),
        (
            SAC("MlpPolicy", PENDULUM, **small()),
            ImaginedReplay(tiny_model(CARTPOLE)),
            "observation",
        ),
        (
            DQN(
                "MlpPolicy",
                CARTPOLE,
                optimize_memory_usage=True,
                replay_buffer_kwargs={"handle_timeout_termination": False},
                **small(),
            ),
            ImaginedReplay(),
            "optimize_memory_usage",
        ),
    ]
    for agent, callback, words in cases:
        with pytest.raises(GenrlError, match=words) as error:
            agent.learn(10, callback=callback)
        assert "\n" not in str(error.value)
