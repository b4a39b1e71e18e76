"""Dreams that stay honest: a dream that leaves the real data's support is truncated, learned
rewards stay within the real rewards' range, and the loop reports how often either happened."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import ONE_QUICK_ITERATION

import genrl
from genrl import DreamEnv, DreamVecEnv, GenrlError, TrainConfig, WorldModel
from genrl.dream.batch import DreamBatch
from genrl.training.defaults import off_support


@pytest.fixture(scope="module")
def precise(pendulum_dataset) -> WorldModel:
    """genrl's default model for vector state (the identity latent), briefly fitted on Pendulum:
    it never terminates, so a dream off the data can only be truncated."""
    model = WorldModel(
        pendulum_dataset.observation_space, pendulum_dataset.action_space, hidden_dim=32, rnn_dim=32, seed=0
    )
    model.fit(pendulum_dataset, steps=50, progress=False)
    return model.eval()


def _push(n: int) -> torch.Tensor:
    return torch.zeros(n, 1)


def _copy(model: WorldModel, tmp_path) -> WorldModel:
    model.save(tmp_path / "copy")
    return WorldModel.load(tmp_path / "copy", device="cpu")


def test_a_fit_records_the_support_of_its_data(cartpole_model, cartpole_dataset):
    z = cartpole_model.encode(torch.as_tensor(cartpole_dataset.all_states()))
    torch.testing.assert_close(cartpole_model.support_low, z.min(0).values)
    torch.testing.assert_close(cartpole_model.support_high, z.max(0).values)
    torch.testing.assert_close(cartpole_model.support_scale, z.std(0))
    rewards = np.concatenate([ep.reward for ep in cartpole_dataset.episodes])
    assert float(cartpole_model.reward_low) == rewards.min() == float(cartpole_model.reward_high) == 1.0
    # Every real state lies inside, with no margin at all.
    assert not cartpole_model.out_of_support(z, 0.0).any()
    far = cartpole_model.support_high + 4 * cartpole_model.support_scale
    assert cartpole_model.out_of_support(far[None], 3.0).all()
    assert not cartpole_model.out_of_support(far[None], 5.0).any()


def _far_starts(model: WorldModel, n: int) -> np.ndarray:
    """Real-looking start observations 50 standard deviations away from anything in the data."""
    return (model.obs_mean + 50 * model.obs_std).repeat(n, 1).numpy()


def test_a_dream_off_the_data_is_truncated_not_terminated(precise, pendulum_dataset):
    starts = _far_starts(precise, 4)
    dreams = DreamBatch(precise, 4, starts=starts, horizon=100, seed=0)
    dreams.reset()
    _, _, terminated, truncated, _ = dreams.step(_push(4))
    assert dreams.left_support.all() and truncated.all() and not terminated.any()
    assert (dreams.episodes_ended, dreams.episodes_left_support) == (4, 4)
    # With the limit off, the same dreams run on.
    free = DreamBatch(precise, 4, starts=starts, horizon=100, seed=0, support=None)
    free.reset()
    _, _, terminated, truncated, _ = free.step(_push(4))
    # With the limit off nothing is truncated: the extrapolating termination head decides.
    assert not truncated.any() and free.episodes_left_support == 0
    # From real starts the default limit (3 spreads) leaves the first steps alone.
    real = DreamBatch(precise, 64, pendulum_dataset, horizon=100, seed=0)
    real.reset()
    real.step(_push(64))
    assert not real.left_support.any()


def test_a_dream_can_end_where_it_leaves_the_data(precise):
    starts = _far_starts(precise, 4)
    dreams = DreamBatch(precise, 4, starts=starts, horizon=100, seed=0, off_support="terminate")
    dreams.reset()
    _, _, terminated, truncated, _ = dreams.step(_push(4))
    assert dreams.left_support.all() and terminated.all() and not truncated.any()
    assert (dreams.episodes_ended, dreams.episodes_left_support) == (4, 4)
    vec = DreamVecEnv(precise, 2, starts=starts, seed=0, off_support="terminate")
    vec.reset()
    _, _, dones, infos = vec.step(np.zeros((2, 1), dtype=np.float32))
    assert dones.all() and not any(info["TimeLimit.truncated"] for info in infos)
    assert all(info["left_support"] for info in infos)
    env = DreamEnv(precise, starts=starts, off_support="terminate")
    env.reset(seed=0)
    _, _, terminated, truncated, info = env.step(np.zeros(1, np.float32))
    assert terminated and not truncated and info["left_support"] is True
    with pytest.raises(GenrlError, match="^off_support: expected one of"):
        DreamBatch(precise, 1, starts=starts, off_support="stop")


def test_the_loop_ends_dreams_off_the_data_where_real_episodes_end(cartpole_dataset, pendulum_dataset):
    cfg = TrainConfig.from_dict({"env_id": "CartPole-v1"})
    assert cfg.dream.off_support == "auto" and "off_support" not in cfg.dream.limits()
    assert off_support("auto", cartpole_dataset) == "terminate"  # CartPole's episodes end
    assert off_support("auto", pendulum_dataset) == "truncate"  # Pendulum's never do
    assert off_support("truncate", cartpole_dataset) == "truncate"
    # MountainCar's -1 a step: an episode's end is what the agent wants, so leaving the data
    # must not end a dream (that would pay for it); it truncates.
    costly = genrl.RolloutDataset(cartpole_dataset.observation_space, cartpole_dataset.action_space)
    for ep in cartpole_dataset.episodes[:3]:
        costly.add_episode(ep.obs, ep.action, -ep.reward, ep.terminated, ep.truncated)
    assert any(ep.terminated[-1] for ep in costly.episodes)
    assert off_support("auto", costly) == "truncate"
    with pytest.raises(GenrlError, match="^dream off_support: expected one of"):
        TrainConfig.from_dict({"env_id": "CartPole-v1"}, dream={"off_support": "halt"})


def test_both_envs_say_why_a_dream_was_truncated(precise):
    starts = _far_starts(precise, 2)
    vec = DreamVecEnv(precise, 2, starts=starts, seed=0)
    vec.reset()
    _, _, dones, infos = vec.step(np.zeros((2, 1), dtype=np.float32))
    assert dones.all()
    assert all(info["TimeLimit.truncated"] and info["left_support"] for info in infos)
    env = DreamEnv(precise, starts=starts)
    env.reset(seed=0)
    _, _, terminated, truncated, info = env.step(np.zeros(1, np.float32))
    assert truncated and not terminated and info["left_support"] is True
    env = DreamEnv(precise, starts=starts, support=None)
    env.reset(seed=0)
    _, _, terminated, truncated, info = env.step(np.zeros(1, np.float32))
    assert not truncated and not info.get("left_support", False)


def test_learned_rewards_stay_within_the_real_range(cartpole_model, cartpole_dataset, tmp_path):
    model = _copy(cartpole_model, tmp_path)
    # Pretend the real rewards lay in [0.2, 0.3]: every learned reward (about 1) is clipped there.
    model.reward_low.fill_(0.2)
    model.reward_high.fill_(0.3)
    dreams = DreamBatch(model, 32, cartpole_dataset, horizon=50, seed=0)
    dreams.reset()
    rewards = torch.stack([dreams.step(torch.ones(32, dtype=torch.long))[1] for _ in range(5)])
    assert torch.all(rewards == 0.3)
    free = DreamBatch(model, 32, cartpole_dataset, horizon=50, seed=0, clip_reward=False)
    free.reset()
    assert torch.all(free.step(torch.ones(32, dtype=torch.long))[1] > 0.9)
    # An override's rewards are the caller's: never clipped.
    constant = DreamBatch(model, 32, cartpole_dataset, seed=0, reward={"type": "constant", "value": 7.0})
    constant.reset()
    assert torch.all(constant.step(torch.ones(32, dtype=torch.long))[1] == 7.0)


def test_the_limits_are_checked_settings():
    with pytest.raises(GenrlError, match="^dream support: expected a number >= 0"):
        TrainConfig.from_dict({"env_id": "CartPole-v1"}, dream={"support": -1})
    with pytest.raises(GenrlError, match="^dream clip_reward: expected true or false, got 'yes'"):
        TrainConfig.from_dict({"env_id": "CartPole-v1"}, dream={"clip_reward": "yes"})
    off = TrainConfig.from_dict({"env_id": "CartPole-v1"}, dream={"support": None, "clip_reward": False})
    assert (off.dream.support, off.dream.clip_reward) == (None, False)


def test_the_loop_reports_dreams_that_left_the_support(tmp_path):
    result = genrl.train_in_imagination(
        "CartPole-v1",
        seed=0,
        run_dir=tmp_path / "run",
        progress=False,
        **ONE_QUICK_ITERATION,
        # A tight limit, so that some dreams leave the support of 200 random steps.
        dream={"support": 0.0},
    )
    [row] = result.history
    assert row["dream_episodes"] > 0 and 0 < row["dream_left_support"] <= row["dream_episodes"]
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tmp_path / "run" / "tb"))
    acc.Reload()
    [event] = acc.Scalars("dream/left_support")
    assert event.value == pytest.approx(row["dream_left_support"] / row["dream_episodes"])
