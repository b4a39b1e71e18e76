"""SurpriseDetector and AnomalyMonitor: the model's surprise flags what its dynamics cannot explain."""

from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import pytest
import torch

import genrl
from genrl import AnomalyMonitor, GenrlError, SurpriseDetector
from genrl.anomaly import windowed_mean
from genrl.anomaly.faults import StuckSensor


@pytest.fixture(scope="module")
def fresh_cartpole() -> genrl.RolloutDataset:
    """Random CartPole episodes the session's model never saw (for calibration and testing)."""
    return genrl.collect("CartPole-v1", 6000, seed=8, progress=False)


@pytest.fixture(scope="module")
def calibrated(cartpole_model, fresh_cartpole) -> SurpriseDetector:
    detector = SurpriseDetector(cartpole_model, window=3)
    detector.calibrate(fresh_cartpole.subset(range(0, len(fresh_cartpole), 2)), fpr=0.05)
    return detector


def held_out(model, dataset) -> genrl.Episode:
    return dataset.episodes[model.held_out_episodes(dataset)[0]]


def test_surprise_is_the_models_nll_of_each_step(cartpole_model, cartpole_dataset):
    ep = held_out(cartpole_model, cartpole_dataset)
    scores = SurpriseDetector(cartpole_model).score_episode(ep.obs, ep.action)
    assert scores.shape == ep.action.shape and scores.dtype == np.float64
    nll = cartpole_model.predict_sequence(torch.as_tensor(ep.obs)[None], torch.as_tensor(ep.action)[None])
    np.testing.assert_allclose(scores, nll.nll[0].numpy(), rtol=1e-5, atol=1e-5)


def test_surprise_is_higher_on_shuffled_and_noisy_episodes(cartpole_model, fresh_cartpole):
    detector = SurpriseDetector(cartpole_model)
    rng = np.random.default_rng(0)
    gaps_shuffled, gaps_noisy = [], []
    for ep in fresh_cartpole.episodes[:20]:
        obs, act = ep.obs, ep.action
        base = detector.score_episode(obs, act).mean()
        shuffled = np.concatenate([obs[:1], rng.permutation(obs[1:])])
        noisy = obs + rng.normal(0, 0.3, obs.shape).astype(np.float32) * obs.std(0)
        gaps_shuffled.append(detector.score_episode(shuffled, act).mean() - base)
        gaps_noisy.append(detector.score_episode(noisy, act).mean() - base)
    assert min(gaps_shuffled) > 0 and np.median(gaps_shuffled) > 5
    assert np.mean(np.array(gaps_noisy) > 0) >= 0.9 and np.median(gaps_noisy) > 2


def test_surprise_of_a_flipped_action_is_higher(cartpole_model, fresh_cartpole):
    """The logged action disagrees with what the env did: the model must notice."""
    detector = SurpriseDetector(cartpole_model)
    ep = max(fresh_cartpole.episodes, key=lambda e: len(e.action))
    clean = detector.score_episode(ep.obs, ep.action)
    flipped = detector.score_episode(ep.obs, 1 - ep.action)
    assert np.median(flipped - clean) > 1


def test_dataset_scores_match_episode_scores(cartpole_model, fresh_cartpole):
    """Batching episodes of different lengths (padded) changes no step's score."""
    detector = SurpriseDetector(cartpole_model)
    chosen = [3, 0, 17, 8]
    batched = detector.score_dataset(fresh_cartpole, chosen)
    assert len({len(s) for s in batched}) > 1
    for i, scores in zip(chosen, batched, strict=True):
        ep = fresh_cartpole.episodes[i]
        np.testing.assert_allclose(scores, detector.score_episode(ep.obs, ep.action), rtol=1e-5, atol=1e-4)


def test_statistic_is_the_mean_over_the_window():
    scores = np.array([1.0, 3.0, 5.0, 7.0, 0.0])
    np.testing.assert_allclose(windowed_mean(scores, 1), scores)
    np.testing.assert_allclose(windowed_mean(scores, 3), [1.0, 2.0, 3.0, 5.0, 4.0])
    np.testing.assert_allclose(windowed_mean(scores, 10), np.cumsum(scores) / np.arange(1, 6))


def test_calibrate_reaches_the_target_rate_on_other_clean_episodes(calibrated, fresh_cartpole):
    assert calibrated.fpr == 0.05
    calib = [calibrated.statistic(ep.obs, ep.action) for ep in fresh_cartpole.episodes[0::2]]
    # The threshold is the (1 - fpr) quantile of the full-window steps of the calibration episodes;
    # each earlier step has its own, so no position of an episode alarms more often than the rest.
    full = np.concatenate([stat[2:] for stat in calib])
    assert np.mean(full > calibrated.threshold) == pytest.approx(0.05, abs=0.005)
    assert len(calibrated.start_thresholds) == 2
    for t, limit in enumerate(calibrated.start_thresholds):
        at_t = np.array([stat[t] for stat in calib if len(stat) > t])
        assert np.mean(at_t > limit) <= 0.05 + 1 / len(at_t)
        assert calibrated.threshold_at(t) == limit
    assert calibrated.threshold_at(2) == calibrated.threshold_at(400) == calibrated.threshold
    # ...and generalises to clean episodes it never saw. The tiny model's surprise is heavy-tailed on
    # the rare states random CartPole visits, so halves of this size differ by up to ~3 points.
    flags = np.concatenate([calibrated.is_anomaly(ep.obs, ep.action) for ep in fresh_cartpole.episodes[1::2]])
    assert abs(flags.mean() - 0.05) < 0.03


@pytest.mark.filterwarnings(
    "ignore:calibrate. .* held-out episodes set the thresholds"
)  # tiny data on purpose
def test_calibrate_uses_only_held_out_episodes(cartpole_model, cartpole_dataset):
    detector = SurpriseDetector(cartpole_model, window=2)
    held = cartpole_model.held_out_episodes(cartpole_dataset)
    threshold = detector.calibrate(cartpole_dataset, fpr=0.1)
    stats = np.concatenate([detector.statistic(**_ep(cartpole_dataset, i))[1:] for i in held])
    assert threshold == pytest.approx(np.quantile(stats, 0.9))
    training_only = cartpole_dataset.subset([i for i in range(len(cartpole_dataset)) if i not in held])
    with pytest.raises(
        GenrlError, match=r"expected episodes the model never trained on .*got a dataset whose"
    ):
        SurpriseDetector(cartpole_model).calibrate(training_only)


def _ep(dataset, i) -> dict:
    return {"observations": dataset.episodes[i].obs, "actions": dataset.episodes[i].action}


def test_a_stuck_sensor_raises_the_alarm(calibrated):
    env = StuckSensor(gym.make("CartPole-v1"), dim=3, onset=5)
    flagged_before, flagged_after = [], []
    for seed in range(5):
        obs, _ = env.reset(seed=seed)
        observations, actions = [obs], []
        for _ in range(30):
            action = int(obs[2] + 0.3 * obs[3] > 0)  # keep the pole up so the episode lasts
            obs, _, terminated, truncated, _ = env.step(action)
            observations.append(obs)
            actions.append(action)
            if terminated or truncated:
                break
        flags = calibrated.is_anomaly(np.array(observations), np.array(actions))
        flagged_before.append(flags[:5].mean())
        flagged_after.append(flags[8:].mean())
    assert np.mean(flagged_after) > 0.5 > np.mean(flagged_before) + 0.3


def test_monitor_reports_the_detectors_numbers(calibrated):
    env = AnomalyMonitor(gym.make("CartPole-v1"), calibrated)
    obs, info = env.reset(seed=3)
    assert "surprise" not in info and "anomaly" not in info
    observations, actions, surprise, anomaly = [obs], [], [], []
    rng = np.random.default_rng(0)
    for _ in range(2):  # two episodes: the state is reset between them
        done = False
        while not done:
            action = int(rng.integers(2))
            obs, _, terminated, truncated, info = env.step(action)
            observations.append(obs)
            actions.append(action)
            surprise.append(info["surprise"])
            anomaly.append(info["anomaly"])
            done = terminated or truncated
        assert isinstance(info["surprise"], float) and isinstance(info["anomaly"], bool)
        # float32: batched and one-step GRU kernels agree to a few 1e-5 relative (2e-5 seen).
        np.testing.assert_allclose(
            surprise, calibrated.score_episode(observations, actions), rtol=5e-5, atol=1e-4
        )
        assert anomaly == calibrated.is_anomaly(observations, actions).tolist()
        obs, _ = env.reset(seed=4)
        observations, actions, surprise, anomaly = [obs], [], [], []


@pytest.mark.filterwarnings(
    "ignore:calibrate. .* held-out episodes set the thresholds"
)  # tiny data on purpose
def test_monitor_with_continuous_actions(pendulum_model):
    detector = SurpriseDetector(pendulum_model, window=4)
    detector.calibrate(genrl.collect("Pendulum-v1", 400, seed=5, progress=False), fpr=0.1)
    env = AnomalyMonitor(gym.make("Pendulum-v1"), detector)
    obs, _ = env.reset(seed=0)
    observations, actions, surprise = [obs], [], []
    for t in range(12):
        action = np.array([np.sin(t)], dtype=np.float32)
        obs, _, _, _, info = env.step(action)
        observations.append(obs)
        actions.append(action)
        surprise.append(info["surprise"])
    np.testing.assert_allclose(surprise, detector.score_episode(observations, actions), rtol=1e-5, atol=1e-4)


def test_monitor_requires_a_calibrated_detector_and_matching_spaces(cartpole_model, calibrated):
    with pytest.raises(GenrlError, match="expected a calibrated detector"):
        AnomalyMonitor(gym.make("CartPole-v1"), SurpriseDetector(cartpole_model))
    with pytest.raises(GenrlError):
        AnomalyMonitor(gym.make("MountainCar-v0"), calibrated)
    env = AnomalyMonitor(gym.make("CartPole-v1"), calibrated)
    with pytest.raises(GenrlError, match="expected reset"):
        env.step(0)


def test_settings_round_trip_through_json(calibrated, cartpole_model):
    data = json.loads(json.dumps(calibrated.to_dict()))
    again = SurpriseDetector.from_dict(cartpole_model, data)
    assert (again.window, again.threshold, again.start_thresholds, again.fpr) == (
        calibrated.window,
        calibrated.threshold,
        calibrated.start_thresholds,
        calibrated.fpr,
    )
    with pytest.raises(GenrlError, match="expected start_thresholds: 2 finite numbers"):
        SurpriseDetector.from_dict(cartpole_model, {**data, "start_thresholds": [1.0]})
    with pytest.raises(GenrlError, match="detector threshold: expected a number, got 'high'"):
        SurpriseDetector.from_dict(cartpole_model, {**data, "threshold": "high"})
    with pytest.raises(GenrlError, match="detector threshold: expected a number, got inf"):
        SurpriseDetector.from_dict(cartpole_model, {**data, "threshold": float("inf")})


def test_is_anomaly_requires_calibration(cartpole_model, cartpole_dataset):
    with pytest.raises(GenrlError, match="expected a calibrated detector; call calibrate first"):
        SurpriseDetector(cartpole_model).is_anomaly(**_ep(cartpole_dataset, 0))


@pytest.mark.parametrize(
    "obs_shape, actions, message",
    [
        ((6, 3), [0] * 5, r"expected observations of shape \(T\+1, 4\) with T >= 1, got \(6, 3\)"),
        ((1, 4), [], r"expected observations of shape \(T\+1, 4\) with T >= 1, got \(1, 4\)"),
        (
            (6, 4),
            [0] * 4,
            r"expected actions of shape \(5,\) \(one per step between the 6 observations\), got \(4,\)",
        ),
        ((6, 4), [0, 1, 2, 0, 1], r"invalid actions: expected integers in Discrete\(2\), got 2"),
        ((6, 4), [0.5] * 5, r"invalid actions: expected integers in Discrete\(2\), got 0.5"),
    ],
)
def test_score_episode_validates_input(cartpole_model, obs_shape, actions, message):
    with pytest.raises(GenrlError, match=message) as err:
        SurpriseDetector(cartpole_model).score_episode(np.zeros(obs_shape), np.array(actions))
    assert "\n" not in str(err.value)


def test_bad_settings_are_rejected(cartpole_model, cartpole_dataset):
    obs = np.zeros((3, 4))
    obs[1, 2] = np.nan
    with pytest.raises(GenrlError, match="expected finite observations"):
        SurpriseDetector(cartpole_model).score_episode(obs, [0, 1])
    with pytest.raises(GenrlError, match="SurpriseDetector window: expected an integer >= 1, got 0"):
        SurpriseDetector(cartpole_model, window=0)
    with pytest.raises(GenrlError, match="expected a WorldModel, got str"):
        SurpriseDetector("model")
    with pytest.raises(GenrlError, match="calibrate fpr: expected a number > 0 and < 1, got 1.0"):
        SurpriseDetector(cartpole_model).calibrate(cartpole_dataset, fpr=1.0)
    with pytest.raises(GenrlError, match="dataset"):
        SurpriseDetector(cartpole_model).calibrate(genrl.collect("Pendulum-v1", 10, seed=0, progress=False))


def test_calibrating_on_few_episodes_warns(cartpole_model, fresh_cartpole):
    few = fresh_cartpole.subset(range(5))
    with pytest.warns(UserWarning, match="5 held-out episodes set the thresholds of the first 2 steps"):
        SurpriseDetector(cartpole_model, window=3).calibrate(few, fpr=0.01)
