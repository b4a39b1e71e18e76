"""Watching dreams: pictures of observations, the open-loop video report, GIFs and `genrl dream --record`."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch
from gymnasium import spaces
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch.utils.tensorboard import SummaryWriter

from genrl.cli import main
from genrl.data.dataset import RolloutDataset
from genrl.dream.render import GRID_SIZE, channel_colours, render_observation
from genrl.errors import GenrlError
from genrl.evaluation.video import (
    BAR,
    GAP,
    IMAGINED,
    OBSERVED,
    OpenLoopVideo,
    add_gif,
    error_figure,
    gif_bytes,
    open_loop_video,
    psnr,
    strip,
    to_unit,
    video_frames,
    write_gif,
    write_video_files,
)
from genrl.model.world_model import WorldModel

torch.set_num_threads(1)

GREY = spaces.Box(0, 255, (16, 16, 1), np.uint8)
RGB = spaces.Box(0, 255, (8, 12, 3), np.uint8)
GRID = spaces.Box(0, 1, (10, 10, 4), np.bool_)


# ---- numbers -------------------------------------------------------------------------------------


def test_psnr_is_ten_log10_of_one_over_the_error():
    assert psnr(np.array([1.0, 0.1, 0.01, 1e-4])) == pytest.approx([0.0, 10.0, 20.0, 40.0])
    assert psnr(np.array([0.0]))[0] == pytest.approx(100.0)  # capped, never inf


def test_pixels_in_unit_range():
    frame = np.zeros((8, 12, 3), np.uint8)
    frame[0, 0] = (0, 51, 255)
    assert to_unit(frame, RGB)[0, 0] == pytest.approx([0.0, 0.2, 1.0])
    assert to_unit(np.ones((10, 10, 4), bool), GRID).max() == 1.0


# ---- pictures of observations --------------------------------------------------------------------


def test_natural_images_render_as_they_are():
    grey = np.arange(256, dtype=np.uint8).reshape(16, 16, 1)
    picture = render_observation(grey, GREY)
    assert picture.shape == (16, 16, 3) and picture.dtype == np.uint8
    assert (picture == grey).all()  # the grey repeated in every channel
    rgb = np.random.default_rng(0).integers(0, 256, (8, 12, 3), dtype=np.uint8)
    assert (render_observation(rgb, RGB) == rgb).all()
    # A decoded frame: floats of the space's values.
    assert (render_observation(rgb.astype(np.float32), RGB) == rgb).all()


def test_binary_grids_get_a_colour_per_channel_scaled_up():
    grid = np.zeros((10, 10, 4), bool)
    grid[0, 0, 1] = True
    grid[5, 5, 0] = grid[5, 5, 3] = True  # the last set channel is on top
    picture = render_observation(grid, GRID)
    factor = GRID_SIZE // 10
    assert picture.shape == (10 * factor, 10 * factor, 3) and picture.dtype == np.uint8
    colours = channel_colours(4)
    assert len({tuple(c) for c in colours}) == 4 and not (colours == 0).all(1).any()
    assert (picture[:factor, :factor] == colours[1]).all()
    assert (picture[5 * factor : 6 * factor, 5 * factor : 6 * factor] == colours[3]).all()
    assert (picture[-factor:, -factor:] == 0).all()  # an empty cell is black
    assert len({tuple(c) for c in channel_colours(20)}) == 20


def test_vectors_render_as_bars_and_bad_shapes_fail_clearly():
    box = spaces.Box(-1, 1, (4,), np.float32)
    assert render_observation(np.zeros(4), box).shape == (200, 200, 3)
    with pytest.raises(
        GenrlError, match=r"expected an observation of shape \(16, 16, 1\), got shape \(16, 16\)"
    ):
        render_observation(np.zeros((16, 16)), GREY)


# ---- the report's pictures, from a hand-made report ------------------------------------------------


def _video(space: spaces.Box = GREY, shown: int = 2, context: int = 2, horizon: int = 3) -> OpenLoopVideo:
    steps = context + 1 + horizon
    rng = np.random.default_rng(0)
    real = rng.integers(0, 2 if space.dtype == np.bool_ else 256, (shown, steps, *space.shape)).astype(
        space.dtype
    )
    for t in range(steps):  # every frame differs, so a GIF keeps each one
        real[:, t, 0, 0] = t % 2 if space.dtype == np.bool_ else 10 * t
    dream = real.astype(np.float32)
    dream[:, context + 1 :] = 0.0 if space.dtype == np.bool_ else 128.0
    video = OpenLoopVideo(space, context, horizon, windows=shown)
    video.real, video.dream, video.valid = real, dream, np.ones((shown, steps), bool)
    video.mse = {"model": np.array([0.01, 0.02, 0.04]), "repeat last": np.array([0.02, 0.03, 0.05])}
    video.psnr = {name: psnr(curve) for name, curve in video.mse.items()}
    video.counts = np.full(horizon, shown)
    return video


def test_strip_rows_are_real_dream_error_and_columns_time():
    video = _video()
    picture = strip(video)
    h, w = 16, 16
    steps = video.real.shape[1]
    block = BAR + GAP + 3 * (h + GAP) - GAP
    assert picture.shape == (2 * block + 3 * GAP, steps * (w + GAP) - GAP, 3)
    for t in range(steps):
        x = t * (w + GAP)
        assert (picture[:BAR, x : x + w] == (OBSERVED if t <= video.context else IMAGINED)).all()
        for i in range(2):
            y = i * (block + 3 * GAP) + BAR + GAP
            real = picture[y : y + h, x : x + w]
            dream = picture[y + h + GAP : y + 2 * h + GAP, x : x + w]
            error = picture[y + 2 * (h + GAP) : y + 3 * h + 2 * GAP, x : x + w]
            assert (real == render_observation(video.real[i, t], GREY)).all()
            assert (dream == render_observation(video.dream[i, t], GREY)).all()
            expected = np.abs(video.dream[i, t] - video.real[i, t].astype(np.float32))
            assert (error[..., 0] == np.rint(expected[..., 0])).all()  # |error| in grey, 0 is black
            if t <= video.context:
                assert (error == 0).all()


def test_binary_grid_errors_are_the_cells_that_differ():
    video = _video(GRID, shown=1)
    picture = strip(video)
    size = 10 * (GRID_SIZE // 10)
    assert picture.shape[0] == BAR + GAP + 3 * (size + GAP) - GAP
    t = video.context + 1
    x, y = t * (size + GAP), BAR + GAP + 2 * (size + GAP)
    error = picture[y : y + size, x : x + size]
    differs = video.real[0, t].any(-1)  # the dream is empty there
    assert ((error.reshape(10, size // 10, 10, size // 10, 3)[:, 0, :, 0] != 0).any(-1) == differs).all()


def test_gif_round_trip_keeps_every_frame(tmp_path):
    video = _video(RGB)
    frames = video_frames(video)
    steps = video.real.shape[1]
    assert len(frames) == steps
    path = write_gif(tmp_path / "clip.gif", frames, fps=5)
    with Image.open(path) as gif:
        assert gif.n_frames == steps
        assert gif.size == (frames[0].shape[1], frames[0].shape[0])
        assert gif.info["duration"] == 200 and gif.info["loop"] == 0
        gif.seek(steps - 1)
        last = np.asarray(gif.convert("RGB"))
    # The bar over the last frame is red: it is imagined.
    assert np.abs(last[:BAR, :4].astype(int) - IMAGINED).max() <= 8
    assert not list(tmp_path.glob(".*tmp"))  # written atomically: no temporary file left
    with pytest.raises(GenrlError, match="expected at least one frame"):
        gif_bytes([])


def test_tensorboard_gets_an_animated_gif(tmp_path):
    frames = video_frames(_video())
    writer = SummaryWriter(str(tmp_path))
    add_gif(writer, "dream/video", frames, step=3)
    writer.close()
    events = EventAccumulator(str(tmp_path), size_guidance={"images": 0}).Reload()
    assert "dream/video" in events.Tags()["images"]
    (image,) = events.Images("dream/video")
    assert image.step == 3 and (image.height, image.width) == frames[0].shape[:2]
    assert image.encoded_image_string.startswith(b"GIF89a")
    with Image.open(io.BytesIO(image.encoded_image_string)) as gif:
        assert gif.n_frames == len(frames)


def test_video_files_and_error_figure(tmp_path):
    video = _video()
    writer = SummaryWriter(str(tmp_path / "tb"))
    paths = write_video_files(video, tmp_path, writer, step=7)
    writer.close()
    assert sorted(paths) == ["open_loop.gif", "open_loop.png"]
    with Image.open(paths["open_loop.png"]) as png:
        assert np.asarray(png.convert("RGB")).shape == strip(video).shape
    tags = EventAccumulator(str(tmp_path / "tb"), size_guidance={"images": 0}).Reload().Tags()["images"]
    assert {"eval/open_loop_video", "eval/open_loop_strip"} <= set(tags)
    figure = error_figure(video)
    assert len(figure.axes) == 2 and len(figure.axes[0].lines) == 2
    assert video.scalars()["open_loop_pixels/psnr/model/h1"] == pytest.approx(20.0)


# ---- with a tiny image model ----------------------------------------------------------------------

SQUARE = 4


def _square_episodes(episodes: int = 6, steps: int = 24, seed: int = 0) -> RolloutDataset:
    """A bright square that moves left or right with the action, on a 16x16 grey frame."""
    rng = np.random.default_rng(seed)
    data = RolloutDataset(GREY, spaces.Discrete(2))
    for _ in range(episodes):
        x = int(rng.integers(0, 16 - SQUARE))
        actions = rng.integers(0, 2, steps)
        frames = []
        for t in range(steps + 1):
            frame = np.full((16, 16, 1), 20, np.uint8)
            frame[6 : 6 + SQUARE, x : x + SQUARE] = 230
            frames.append(frame)
            if t < steps:
                x = int(np.clip(x + (1 if actions[t] else -1), 0, 16 - SQUARE))
        done = np.zeros(steps, bool)
        truncated = done.copy()
        truncated[-1] = True
        data.add_episode(np.stack(frames), actions, np.ones(steps, np.float32), done, truncated)
    return data


@pytest.fixture(scope="module")
def image_model(tmp_path_factory):
    data = _square_episodes()
    model = WorldModel(
        GREY,
        spaces.Discrete(2),
        latent_dim=4,
        hidden_dim=16,
        rnn_dim=16,
        conv_channels=4,
        batch_size=4,
        seq_len=8,
        seed=0,
    )
    model.fit(data.subset(range(4)), steps=5, progress=False)
    folder = tmp_path_factory.mktemp("image_model")
    model.save(folder / "model")
    held = RolloutDataset(GREY, spaces.Discrete(2), folder / "held_out")
    for ep in data.subset(range(4, 6)).episodes:
        held.add(ep)
    return model, data.subset(range(4, 6)), folder


def test_open_loop_video_of_an_image_model(image_model):
    model, held, _ = image_model
    video = open_loop_video(model, held, context=3, horizon=8, windows=6, show=2, seed=1)
    assert video.windows == 6 and (video.counts == 6).all()
    for name in ("model", "repeat last"):
        assert video.mse[name].shape == (8,) and np.all((video.mse[name] >= 0) & (video.mse[name] <= 1))
        assert np.allclose(video.psnr[name] > 0, True)
    assert video.real.shape == video.dream.shape == (2, 12, 16, 16, 1)
    assert video.dream.min() >= 0 and video.dream.max() <= 255 and (video.dream == video.dream.round()).all()
    # The baseline repeats the last observed frame: its error at h=1 is that of one real step.
    ep = held.episodes
    assert video.mse["repeat last"][0] > 0
    assert len(video_frames(video)) == 12 and ep
    # Seeded: the same windows, the same numbers.
    again = open_loop_video(model, held, context=3, horizon=8, windows=6, show=2, seed=1)
    assert np.allclose(again.mse["model"], video.mse["model"])
    with pytest.raises(GenrlError, match="longer than the context"):
        open_loop_video(model, held, context=30, horizon=2)


def test_genrl_eval_writes_the_video_report(image_model, tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # else the command takes up to 4 threads of a shared machine
    _, _, folder = image_model
    out = tmp_path / "eval"
    code = main(
        [
            "eval",
            str(folder / "model"),
            "--data",
            str(folder / "held_out"),
            "--horizon",
            "6",
            "--out",
            str(out),
            "--no-progress",
        ]
    )
    assert code == 0
    for name in ("open_loop.gif", "open_loop.png", "open_loop_error.png", "report.md", "report.json"):
        assert (out / name).is_file(), name
    assert not (out / "open_loop_dims.png").exists()
    report = json.loads((out / "report.json").read_text())
    video = report["open_loop_video"]
    assert video["horizon"] == 6 and video["context"] == 5 and len(video["psnr"]["model"]) == 6
    assert "open_loop_pixels/psnr/model/h1" in report["scalars"]
    assert not any(k.startswith("open_loop_dims/") for k in report["curves"])
    assert not any(k.startswith("reconstruction/mse_dim") for k in report["scalars"])
    markdown = (out / "report.md").read_text()
    assert "## Open-loop video" in markdown and "open_loop.gif" in markdown
    tags = EventAccumulator(str(out / "tb"), size_guidance={"images": 0}).Reload().Tags()["images"]
    assert "eval/open_loop_video" in tags


def test_genrl_dream_records_a_gif(image_model, tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    _, _, folder = image_model
    gif = tmp_path / "dream.gif"
    code = main(["dream", str(folder / "model"), "--record", str(gif), "--steps", "7", "--horizon", "5"])
    assert code == 0
    with Image.open(gif) as clip:
        # 7 steps and each dream's reset frame (this barely fitted model's dreams may leave the
        # data's support at once); identical consecutive frames merge.
        assert 2 <= clip.n_frames <= 7 + 7
        assert clip.size == (16, 16)
    assert main(["dream", str(folder / "model"), "--record", str(tmp_path / "x.mp4")]) == 2


@pytest.fixture(scope="module")
def cartpole_run(tmp_path_factory):
    """A finished run folder of CartPole: a barely fitted model and an untrained PPO agent."""
    from stable_baselines3 import PPO

    from genrl.data.collect import collect
    from genrl.training.run import save_run

    data = collect("CartPole-v1", 100, seed=0, progress=False)
    model = WorldModel(data.observation_space, data.action_space, hidden_dim=16, rnn_dim=16, seed=0)
    model.fit(data, steps=3, progress=False)
    agent = PPO(
        "MlpPolicy", "CartPole-v1", n_steps=32, batch_size=32, seed=0, policy_kwargs={"net_arch": [8]}
    )
    return save_run(tmp_path_factory.mktemp("run") / "run", agent, model, data, "CartPole-v1")


def test_genrl_dream_records_a_runs_agent(cartpole_run, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    gif = tmp_path / "agent.gif"
    argv = ["dream", str(cartpole_run), "--agent", str(cartpole_run), "--record", str(gif), "--steps", "12"]
    assert main([*argv, "--horizon", "6", "--fps", "20"]) == 0
    out = capsys.readouterr().out
    assert "(the agent of" in out and "Recorded 15 frames (12 steps, 20 fps)" in out  # 3 dreams of 6, 6 and 0
    with Image.open(gif) as clip:
        assert clip.size == (200, 200)  # bars of the vector observation
        assert 2 <= clip.n_frames <= 15 and clip.info["duration"] == 50


def test_genrl_dream_refuses_an_agent_of_other_observations(cartpole_run, image_model, tmp_path, capsys):
    _, _, folder = image_model
    assert main(["dream", str(folder / "model"), "--agent", str(cartpole_run), "--steps", "2"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("genrl: error:") and len(err.splitlines()) == 1
    assert main(["dream", str(folder / "model"), "--agent", str(tmp_path), "--steps", "2"]) == 2
    assert "expected a genrl run folder (config.json)" in capsys.readouterr().err


def test_genrl_dream_records_a_latent_agent_of_an_image_run(tmp_path, monkeypatch, capsys):
    """An image run's agent acts on the model's features [z, h]: the dream gives them, and the
    recording shows the decoded frames."""
    from stable_baselines3 import PPO
    from stable_baselines3.common.vec_env import DummyVecEnv

    from genrl.data.envs import make_env
    from genrl.dream.latent import LatentObservation
    from genrl.training.agents import preset_of, save_policy
    from genrl.training.config import TrainConfig
    from genrl.util.files import write_json

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    env_id = "genrl/PixelCartPole-v1"
    real = make_env(env_id)
    frames = np.stack([real.reset(seed=s)[0] for s in range(3)])
    model = WorldModel(
        real.observation_space, real.action_space, latent_dim=4, rnn_dim=8, conv_channels=4, seed=0
    )
    model.set_start_states(frames)
    venv = DummyVecEnv([lambda: LatentObservation(real, model)])
    agent = PPO("MlpPolicy", venv, n_steps=32, batch_size=32, seed=0, policy_kwargs={"net_arch": [8]})
    run = tmp_path / "run"
    model.save(run / "model")
    save_policy(agent, run / "policy.safetensors")
    cfg = TrainConfig(
        env_id=env_id, agent=preset_of(agent), seed=0, world_model=model.config, fit=model.fit_config
    )
    write_json(run / "config.json", cfg.to_dict())
    venv.close()
    gif = tmp_path / "latent.gif"
    code = main(
        ["dream", str(run), "--agent", str(run), "--record", str(gif), "--steps", "4", "--horizon", "4"]
    )
    assert code == 0, capsys.readouterr().err
    with Image.open(gif) as clip:
        assert clip.size == (64, 64)  # the decoded frame, not bars of the features


def test_open_loop_video_of_a_binary_grid_model():
    rng = np.random.default_rng(0)
    data = RolloutDataset(GRID, spaces.Discrete(3))
    for _ in range(2):
        steps = 12
        obs = rng.random((steps + 1, 10, 10, 4)) < 0.1
        done = np.zeros(steps, bool)
        data.add_episode(obs, rng.integers(0, 3, steps), np.zeros(steps, np.float32), done, done)
    model = WorldModel(GRID, spaces.Discrete(3), latent_dim=4, rnn_dim=8, conv_channels=4, seed=0)
    video = open_loop_video(model, data, context=2, horizon=4, windows=4, show=1)
    assert set(np.unique(video.dream)) <= {0.0, 1.0}  # decoded cells are 0 or 1
    assert np.isfinite(video.psnr["model"]).all() and (video.counts == 4).all()
    frames = video_frames(video)
    assert len(frames) == 7 and frames[0].shape == (BAR + GAP + 3 * (GRID_SIZE + GAP) - GAP, GRID_SIZE, 3)
