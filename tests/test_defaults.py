"""Settings left to genrl: the world model from the observation space, the loop's settings from the
env's spec and the agent, and files of earlier versions keeping the defaults they were written with."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces

import genrl
from genrl import TrainConfig, WorldModel
from genrl.model.config import BEFORE_V3_FIT, FitConfig
from genrl.training.defaults import FALLBACK_HORIZON, with_env_defaults


def test_vector_observations_get_precise_dynamics_by_default():
    box = spaces.Box(-1, 1, (4,), np.float32)
    model = WorldModel(box, spaces.Discrete(2))
    assert (model.config.encoder, model.config.num_mixtures, model.config.latent_dim) == ("identity", 1, 4)
    assert model.encoder.exact
    # Asking for another latent size asks for compression: the VAE, with its mixture.
    vae = WorldModel(box, spaces.Discrete(2), latent_dim=8)
    assert (vae.config.encoder, vae.config.num_mixtures) == ("vae", 5) and not vae.encoder.exact
    assert WorldModel(box, spaces.Discrete(2), encoder="vae", num_mixtures=2).config.num_mixtures == 2
    # The fit's defaults are the precise settings the presets were tuned with.
    fit = FitConfig()
    assert (fit.nll_beta, fit.prediction_weight, fit.lr_schedule, fit.termination_weight) == (
        1.0,
        10.0,
        "cosine",
        10.0,
    )


@pytest.mark.parametrize(
    "env_id, agent, n_envs, horizon, dream_steps, target",
    [
        ("CartPole-v1", "ppo", 64, 500, 100_000, 475.0),
        ("Pendulum-v1", "sac", 8, 200, 16_000, None),
        ("MountainCar-v0", "ppo", 64, 200, 100_000, -110.0),
    ],
)
def test_loop_settings_come_from_the_env_and_the_agent(env_id, agent, n_envs, horizon, dream_steps, target):
    env = gym.make(env_id)
    cfg = with_env_defaults(TrainConfig.from_dict({"env_id": env_id}), env)
    assert (cfg.agent, cfg.dream.n_envs, cfg.dream.horizon) == (agent, n_envs, horizon)
    assert (cfg.train.dream_steps, cfg.train.target_return) == (dream_steps, target)
    assert cfg.dream.temperature == (0.3 if agent == "sac" else 1.0)  # Box actions: 0.3
    # What a caller sets stays as it is.
    given = TrainConfig.from_dict(
        {"env_id": env_id},
        agent="td3" if agent == "sac" else "dqn",
        n_envs=3,
        horizon=7,
        dream_steps=11,
        temperature=0.5,
    )
    kept = with_env_defaults(given.replace(train={"target_return": 1.5}), env)
    assert (kept.dream.n_envs, kept.dream.horizon, kept.train.dream_steps, kept.train.target_return) == (
        3,
        7,
        11,
        1.5,
    )
    assert kept.agent == ("td3" if agent == "sac" else "dqn") and kept.dream.temperature == 0.5


class _NoLimit(gym.Env):
    observation_space = spaces.Box(-1, 1, (2,), np.float32)
    action_space = spaces.Box(-1, 1, (1,), np.float32)


def test_an_env_without_a_spec_gets_the_fallback_horizon_and_no_target():
    cfg = with_env_defaults(TrainConfig.from_dict({"env_id": "mine"}), _NoLimit())
    assert (cfg.agent, cfg.dream.horizon, cfg.train.target_return) == ("sac", FALLBACK_HORIZON, None)


def test_a_config_of_an_earlier_version_keeps_the_defaults_it_was_written_with():
    old = TrainConfig.from_dict({"env_id": "CartPole-v1", "fit": {"steps": 30}}, version=2)
    assert (old.agent, old.collect.initial_steps, old.collect.initial_episodes) == ("ppo", 1000, 0)
    assert (old.dream.n_envs, old.dream.horizon, old.dream.start) == (64, 500, "initial")
    assert (old.dream.support, old.dream.clip_reward, old.train.target_return) == (None, False, None)
    assert (old.world_model.encoder, old.world_model.num_mixtures) == ("vae", 5)
    assert old.fit.steps == 30 and old.fit.nll_beta == BEFORE_V3_FIT["nll_beta"] == 0.0
    new = TrainConfig.from_dict({"env_id": "CartPole-v1"})
    assert (new.agent, new.dream.support, new.world_model.encoder) == ("auto", 3.0, "auto")
    # A written config is version 6 and reads back to itself.
    assert new.to_dict()["version"] == 7 and TrainConfig.from_dict(new.to_dict(), version=7) == new
    # Version 3 truncated dreams that left the support and had a GRU of 128 for vector state.
    v3 = TrainConfig.from_dict({"env_id": "CartPole-v1"}, version=3)
    assert (v3.dream.off_support, v3.world_model.rnn_dim) == ("truncate", 128)
    assert (new.dream.off_support, new.world_model.rnn_dim) == ("auto", None)
    # Version 4's heads saw only the latent after a step.
    v4 = TrainConfig.from_dict({"env_id": "CartPole-v1"}, version=4)
    assert v4.world_model.transition_heads is False and new.world_model.transition_heads is True
    # Version 5's reward head also scored the steps that end an episode.
    v5 = TrainConfig.from_dict({"env_id": "CartPole-v1"}, version=5)
    assert v5.world_model.terminal_reward is False and v5.world_model.transition_heads is True
    assert new.world_model.terminal_reward is True and v4.world_model.terminal_reward is False


@pytest.mark.slow
def test_long_episodes_get_whole_initial_episodes(tmp_path):
    # Pendulum's episodes last 200 steps: 200 initial steps hold one, and two are asked for.
    result = genrl.train_in_imagination(
        "Pendulum-v1",
        seed=0,
        run_dir=tmp_path / "run",
        progress=False,
        iterations=1,
        initial_steps=200,
        initial_episodes=2,
        fit_steps=5,
        dream_steps=64,
        eval_episodes=1,
        hidden_dim=16,
        rnn_dim=16,
    )
    assert (len(result.dataset), result.dataset.num_steps) == (2, 400)
    assert all(ep.length == 200 and ep.truncated[-1] for ep in result.dataset.episodes)
    assert not np.array_equal(result.dataset.episodes[0].obs[0], result.dataset.episodes[1].obs[0])
    assert result.config.agent == "sac" and result.config.dream.horizon == 200
