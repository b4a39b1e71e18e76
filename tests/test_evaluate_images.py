"""`genrl.evaluate` on a model of images: bounded memory, pixel units, baselines that fit pixels."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from gymnasium import spaces

import genrl
from genrl.data.dataset import RolloutDataset
from genrl.evaluation import evaluate as evaluate_module
from genrl.evaluation.evaluate import IMAGE_PREDICTORS, EvaluationReport
from genrl.evaluation.report import to_json, write_report
from genrl.model.world_model import WorldModel

torch.set_num_threads(1)

RGB = spaces.Box(0, 255, (24, 24, 3), np.uint8)
ACTIONS = spaces.Discrete(3)
SIDE = 5
STEPS = 30


def _square_episodes(episodes: int = 8, seed: int = 0) -> RolloutDataset:
    """A red square on a dark blue frame, moved left, not at all or right by the action."""
    rng = np.random.default_rng(seed)
    data = RolloutDataset(RGB, ACTIONS)
    for _ in range(episodes):
        x, y = (int(v) for v in rng.integers(0, 24 - SIDE, 2))
        actions = rng.integers(0, 3, STEPS)
        frames = []
        for t in range(STEPS + 1):
            frame = np.zeros((24, 24, 3), np.uint8)
            frame[..., 2] = 60
            frame[y : y + SIDE, x : x + SIDE] = (230, 40, 40)
            frames.append(frame)
            if t < STEPS:
                x = int(np.clip(x + actions[t] - 1, 0, 24 - SIDE))
        done, truncated = np.zeros(STEPS, bool), np.zeros(STEPS, bool)
        truncated[-1] = True
        data.add_episode(np.stack(frames), actions, np.ones(STEPS, np.float32), done, truncated)
    return data


@pytest.fixture(scope="module")
def image_setup():
    data = _square_episodes()
    model = WorldModel(
        RGB,
        ACTIONS,
        latent_dim=6,
        hidden_dim=16,
        rnn_dim=16,
        conv_channels=4,
        ensemble_size=2,
        batch_size=4,
        seq_len=8,
        seed=0,
    )
    model.fit(data.subset(range(5)), steps=50, progress=False)  # 3 episodes held out
    return model.eval(), data


@pytest.fixture(scope="module")
def image_report(image_setup):
    model, data = image_setup
    with pytest.MonkeyPatch.context() as patch:
        # The memory check, not a timing test: no part of an image evaluation gathers every frame.
        def every_frame(self):
            raise AssertionError("evaluate() called all_states() on an image dataset")

        patch.setattr(RolloutDataset, "all_states", every_frame)
        return genrl.evaluate(model, data, horizon=8, seed=0)


def _pixel_mse(a: np.ndarray, b: np.ndarray) -> float:
    return float((((a.astype(np.float64) - b.astype(np.float64)) / 255.0) ** 2).mean())


def test_image_report_keys_and_units(image_report):
    r = image_report
    assert r.predictors == IMAGE_PREDICTORS == ("model", "repeat last", "linear", "mean frame")
    assert r.scalars["open_loop/windows"] == 3 * STEPS  # every held-out start: fewer than the cap
    for name in IMAGE_PREDICTORS:
        curve = r.curves[f"open_loop/{name}"]
        assert curve.shape == (8,) and np.isfinite(curve).all()
        assert ((curve >= 0) & (curve <= 1)).all()  # per pixel, in [0, 1] units
        assert r.scalars[f"open_loop/{name}/h1"] == pytest.approx(curve[0])
    # Nothing per observation dimension (one per pixel), and no example window of frames.
    assert not any(k.startswith("open_loop_dims/") for k in r.curves)
    assert not any(k.startswith("reconstruction/mse_dim") for k in r.scalars)
    assert r.example == {}
    assert 0 <= r.scalars["reconstruction/mse"] <= 1 and r.data["reconstruction_frames"] == 3 * (STEPS + 1)
    assert r.beats_baselines() == bool(r.scalars["open_loop/model_beats_baselines"])
    # The ensemble's disagreement is reported along the windows.
    assert r.curves["open_loop/disagreement"].shape == (8,) and r.scalars["ensemble/members"] == 2
    assert np.isfinite(r.scalars["nll/per_step"]) and r.scalars["reward/mae"] >= 0
    for name in ("transition", "clip"):
        assert 0.0 <= r.scalars[f"critic/{name}_accuracy"] <= 1.0
        assert r.scalars[f"critic/{name}_test_pairs"] > 0
    assert r.data["critic_features"] == "latent"
    assert r.video is not None and "open_loop_pixels/psnr/model/h1" in r.scalars


def test_repeat_last_and_mean_frame_are_exact(image_report, image_setup):
    """Every held-out start is a window: at h=1 (every window valid) the baselines' errors are
    means over the held-out transitions, computed here directly."""
    model, data = image_setup
    held = data.subset(model.held_out_episodes(data))
    trained = data.subset([i for i in range(len(data)) if i not in model.held_out_episodes(data)])
    repeat = np.mean([_pixel_mse(ep.obs[t], ep.obs[t + 1]) for ep in held.episodes for t in range(STEPS)])
    assert image_report.curves["open_loop/repeat last"][0] == pytest.approx(repeat, rel=1e-5)
    mean = np.concatenate([ep.obs for ep in trained.episodes]).astype(np.float64).mean(0)
    frame = np.mean([_pixel_mse(mean, ep.obs[t + 1]) for ep in held.episodes for t in range(STEPS)])
    assert image_report.curves["open_loop/mean frame"][0] == pytest.approx(frame, rel=1e-4)
    # The square moves: repeating the last frame gets worse with the horizon.
    curve = image_report.curves["open_loop/repeat last"]
    assert curve[-1] > curve[0] > 0
    assert image_report.data["linear_transitions"] == 5 * STEPS


def test_image_windows_are_capped_and_seeded(image_setup):
    model, data = image_setup
    first = genrl.evaluate(model, data, horizon=4, max_windows=40, clip_length=4, seed=3)
    again = genrl.evaluate(model, data, horizon=4, max_windows=40, clip_length=4, seed=3)
    assert first.scalars["open_loop/windows"] == 40  # 2 chunks of windows
    for name in IMAGE_PREDICTORS:
        np.testing.assert_array_equal(first.curves[f"open_loop/{name}"], again.curves[f"open_loop/{name}"])
    assert first.scalars["critic/clip_accuracy"] == again.scalars["critic/clip_accuracy"]


def test_heads_scored_in_segments_match_whole_episodes(image_setup, monkeypatch):
    model, data = image_setup
    held = data.subset(model.held_out_episodes(data))
    whole, parts = EvaluationReport(), EvaluationReport()
    with torch.inference_mode():
        evaluate_module._teacher_forced(model, held, whole)
        evaluate_module._teacher_forced(model, held, parts, segment=7)
    for key in ("nll/per_step", "reward/mse", "termination/terminal_steps"):
        assert parts.scalars[key] == pytest.approx(whole.scalars[key], rel=1e-4, abs=1e-6)


def test_image_report_is_written(image_report, tmp_path):
    path = write_report(image_report, tmp_path)
    text = path.read_text()
    assert "| mean frame |" in text and "every baseline" in text
    assert "linear dynamics of the model's own latents" in text
    saved = json.loads((tmp_path / "report.json").read_text())
    assert set(saved["curves"]) >= {f"open_loop/{name}" for name in IMAGE_PREDICTORS}
    assert to_json(image_report)["scalars"]["open_loop/mean frame/h1"] is not None
    assert (tmp_path / "open_loop.gif").is_file() and not (tmp_path / "open_loop_dims.png").exists()
