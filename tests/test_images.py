"""Image observations: the convolutional VAE, image datasets, latent features and the pixel loop."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from genrl import (
    DreamEnv,
    DreamVecEnv,
    LatentObservation,
    LatentPolicy,
    RolloutDataset,
    WorldModel,
    collect,
    train_in_imagination,
)
from genrl.cli import main
from genrl.errors import GenrlError
from genrl.training.defaults import off_support

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
sys.path.insert(0, str(EXAMPLES))
from pixel_corridor import PixelCorridor  # noqa: E402

SMALL = {"latent_dim": 8, "conv_channels": 8, "rnn_dim": 32, "hidden_dim": 64}


@pytest.fixture(scope="module")
def corridor_data() -> RolloutDataset:
    return collect(PixelCorridor(), 600, seed=0, progress=False)


@pytest.fixture(scope="module")
def corridor_model(corridor_data) -> WorldModel:
    torch.manual_seed(0)
    model = WorldModel(corridor_data.observation_space, corridor_data.action_space, seed=0, **SMALL)
    model.fit(corridor_data, steps=300, progress=False)
    return model


def test_the_encoder_is_chosen_from_the_observation_space():
    natural = WorldModel(spaces.Box(0, 255, (96, 96, 3), np.uint8), spaces.Discrete(3), seed=0)
    assert (natural.config.encoder, natural.config.likelihood) == ("vae", "gaussian")
    assert natural.config.image_size == 64 and natural.config.latent_dim == 32  # World Models' sizes
    grid = WorldModel(spaces.Box(0, 1, (10, 10, 4), bool), spaces.Discrete(3), seed=0)
    assert (grid.config.likelihood, grid.config.image_size) == ("bernoulli", 10)  # a grid keeps its size
    small = WorldModel(spaces.Box(0, 255, (16, 16, 1), np.uint8), spaces.Discrete(2), seed=0)
    assert small.config.image_size == 16


@pytest.mark.parametrize(
    "space", [spaces.Box(0, 255, (96, 96, 3), np.uint8), spaces.Box(0, 1, (10, 10, 7), bool)], ids=str
)
def test_decoded_frames_have_the_env_shape_and_only_its_values(space):
    model = WorldModel(space, spaces.Discrete(3), seed=0, conv_channels=4)
    with torch.no_grad():
        frames = model.decode(torch.randn(3, model.config.latent_dim) * 3)
    assert frames.shape == (3, *space.shape)
    values = frames.numpy()
    assert np.array_equal(values, np.round(values)) and values.min() >= space.low.min()
    assert values.max() <= space.high.max()
    assert space.contains(values[0].astype(space.dtype))


def test_an_image_space_needs_finite_bounds():
    with pytest.raises(GenrlError, match="image observations: expected a Box with finite bounds"):
        WorldModel(spaces.Box(-np.inf, np.inf, (8, 8, 1), np.float32), spaces.Discrete(2))


def test_the_vae_reconstructs_the_frames(corridor_model, corridor_data):
    frames = corridor_data.episodes[0].obs
    with torch.no_grad():
        decoded = corridor_model.decode(corridor_model.encode(torch.as_tensor(frames))).numpy()
    # The bright column is where it was (the goal cell is seen once an episode: it may blur).
    where = decoded[..., 0].sum(1).argmax(-1) == frames[..., 0].sum(1).argmax(-1)
    assert where.mean() >= 0.95
    assert np.abs(decoded - frames).mean() < 10  # of 255


def test_a_fit_reports_each_stage_and_its_losses(corridor_model):
    assert set(corridor_model.trainer.stage_seconds) == {"vae", "encode", "dynamics"}
    assert corridor_model.trained_steps == 600  # 300 VAE steps, then 300 dynamics steps


def test_image_datasets_keep_frames_compressed_and_load_back(tmp_path, corridor_data):
    ds = RolloutDataset(corridor_data.observation_space, corridor_data.action_space, tmp_path / "d")
    for ep in corridor_data.episodes[:3]:
        ds.add(ep)
    again = RolloutDataset.load(tmp_path / "d")
    assert again.episodes[0].obs.dtype == np.uint8
    for a, b in zip(again.episodes, corridor_data.episodes[:3], strict=False):
        np.testing.assert_array_equal(a.obs, b.obs)
    raw = sum(ep.obs.nbytes for ep in corridor_data.episodes[:3])
    on_disk = sum(f.stat().st_size for f in (tmp_path / "d" / "episodes").glob("*.npz"))
    assert on_disk < raw / 5  # deflated
    assert '"version": 2' in (tmp_path / "d" / "dataset.json").read_text()


def test_image_datasets_sample_windows_and_frames_without_copying_them(corridor_data):
    assert "obs" not in corridor_data._flatten()
    batch = corridor_data.sample_sequences(4, 5, np.random.default_rng(0))
    assert batch["obs"].shape == (4, 6, 16, 16, 1) and batch["obs"].dtype == np.uint8
    frames = corridor_data.sample_states(7, np.random.default_rng(0))
    assert frames.shape == (7, 16, 16, 1)


def test_save_and_load_give_identical_predictions(tmp_path, corridor_model, corridor_data):
    corridor_model.save(tmp_path / "m")
    loaded = WorldModel.load(tmp_path / "m", device="cpu")
    ep = corridor_data.episodes[1]
    obs, act = torch.as_tensor(ep.obs[None]), torch.as_tensor(ep.action[None])
    a, b = corridor_model.predict_sequence(obs, act), loaded.predict_sequence(obs, act)
    for x, y in zip(a, b, strict=True):
        torch.testing.assert_close(x, y, rtol=0, atol=0)
    assert loaded.start_states.dtype == torch.uint8
    z = corridor_model.encode(obs[0, :3])
    torch.testing.assert_close(corridor_model.decode(z), loaded.decode(z), rtol=0, atol=0)


@pytest.mark.parametrize("obs_mode", ["decoded", "latent"])
def test_image_dreams_pass_both_env_checkers(corridor_model, corridor_data, obs_mode):
    env = DreamEnv(corridor_model, corridor_data, horizon=20, obs_mode=obs_mode, render_mode="rgb_array")
    gym_check_env(env, skip_render_check=False)
    sb3_check_env(env)
    obs, _ = env.reset(seed=0)
    if obs_mode == "decoded":
        assert obs.dtype == np.uint8 and obs.shape == (16, 16, 1)
    else:
        assert obs.shape == (corridor_model.feature_dim,) == (8 + 32,)
    frame = env.render()
    assert frame.ndim == 3 and frame.shape[-1] == 3 and frame.dtype == np.uint8
    venv = DreamVecEnv(corridor_model, 3, corridor_data, horizon=20, obs_mode=obs_mode, seed=0)
    assert venv.reset().shape == (3, *env.observation_space.shape)


def test_a_real_env_gives_the_features_a_latent_dream_gives(corridor_model, corridor_data):
    """LatentObservation carries h as a dream does: its features match a teacher-forced pass."""
    env = LatentObservation(PixelCorridor(), corridor_model)
    features, info = env.reset(seed=3)
    frames, actions = [info["frame"]], []
    for action in [1, 1, 0, 1, 1]:
        features, *_, info = env.step(action)
        frames.append(info["frame"])
        actions.append(action)
    with torch.no_grad():
        seq = corridor_model.predict_sequence(
            torch.as_tensor(np.stack(frames)[None]), torch.tensor([actions])
        )
        z = corridor_model.encode(torch.as_tensor(frames[-1][None]))
    np.testing.assert_allclose(features, torch.cat([z, seq.h], -1)[0].numpy(), atol=1e-5)
    with pytest.raises(GenrlError, match="observation space"):
        LatentObservation(gym.make("CartPole-v1"), corridor_model)


def test_a_latent_policy_collects_real_frames_and_restarts_its_state(corridor_model):
    class Agent:
        def __init__(self):
            self.seen = []

        def predict(self, features, deterministic=False):
            self.seen.append(features.copy())
            return np.ones(len(features), dtype=np.int64), None

    agent = Agent()
    data = collect(PixelCorridor(), 40, LatentPolicy(agent, corridor_model), seed=0, progress=False)
    assert data.episodes[0].obs.shape[1:] == (16, 16, 1)  # frames, not features
    first = data.episodes[0].length  # walking right: the episode ends, and the next one starts
    hidden = np.stack(agent.seen)[:, 0, 8:]
    assert np.abs(hidden[0]).max() == 0 and np.abs(hidden[1]).max() > 0
    assert np.abs(hidden[first + 1]).max() == 0  # NEXT_STEP: one step resets, then h starts again


def test_the_loop_learns_from_pixels(tmp_path):
    """Only frames reach the model; the agent learns in latent dreams and walks the real corridor."""
    result = train_in_imagination(
        "pixel_corridor:PixelCorridor-v0",
        seed=0,
        progress=False,
        run_dir=tmp_path / "run",
        iterations=4,
        world_model=SMALL,
        fit={"steps": 400, "refit_steps": 200},
        train={"dream_steps": 20_000, "eval_episodes": 10},
        collect={"initial_steps": 400},
    )
    first, last = result.history[0], result.history[-1]
    assert first["eval_return_mean"] < 0.5  # a random walk seldom gets there
    assert last["eval_return_mean"] >= 0.9 and last["real_steps"] <= 600
    assert result.model.image and result.history[-1]["dream_return_mean"] > 0.5
    # Every iteration logged what the model imagines beside what happened, as a GIF.
    events = EventAccumulator(str(tmp_path / "run" / "tb"))
    events.Reload()
    assert "dream/open_loop" in events.Tags()["images"]
    assert len(events.Images("dream/open_loop")) == len(result.history)
    # `genrl eval` rebuilds the run: its agent acts on the features of real frames, and in dreams.
    assert main(["eval", str(tmp_path / "run"), "--episodes", "4", "--horizon", "8", "--seed", "0"]) == 0
    report = json.loads((tmp_path / "run" / "eval" / "report.json").read_text())
    assert np.mean(report["data"]["real_returns"]) >= 0.9
    assert (tmp_path / "run" / "eval" / "open_loop.gif").is_file()


def test_dreams_of_an_image_model_truncate_where_they_leave_the_data(corridor_data):
    """A VAE latent's box is a loose picture of its data: leaving it must not teach that all ends."""
    assert corridor_data.image and any(ep.terminated[-1] for ep in corridor_data.episodes)
    assert corridor_data.episode_returns().sum() > 0  # CartPole-like data: vectors would terminate
    assert off_support("auto", corridor_data) == "truncate"
    assert off_support("terminate", corridor_data) == "terminate"
