"""Fault-injection wrappers: each fault starts exactly at its onset, is marked, and is undone on reset."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from genrl import GenrlError
from genrl.anomaly.faults import ActionCorruption, ChangedPhysics, SensorNoise, StuckSensor

ACTIONS = [0, 1, 1, 0, 1, 0, 0, 1, 1, 1, 0, 0]  # CartPole survives these from the seeds below


def rollout(env: gym.Env, actions, seed: int = 0) -> tuple[np.ndarray, list[dict]]:
    """Observations (T+1, ...) and the step infos of one run of ``actions``."""
    obs, info = env.reset(seed=seed)
    out, infos = [obs], []
    for a in actions:
        obs, _, terminated, truncated, info = env.step(a)
        out.append(obs)
        infos.append(info)
        assert not (terminated or truncated)
    return np.array(out), infos


def clean(actions, env_id: str = "CartPole-v1", seed: int = 0) -> np.ndarray:
    return rollout(gym.make(env_id), actions, seed)[0]


@pytest.mark.parametrize("onset", [0, 4])
def test_sensor_noise_starts_at_onset_on_chosen_dims(onset):
    env = SensorNoise(gym.make("CartPole-v1"), std=[0.5, 0.1], onset=onset, dims=[1, 3], seed=0)
    obs, infos = rollout(env, ACTIONS)
    reference = clean(ACTIONS)
    assert [i["fault"] for i in infos] == [t >= onset for t in range(len(ACTIONS))]
    # Step t returns obs[t + 1]: observations up to obs[onset] are untouched, later ones are noisy.
    np.testing.assert_array_equal(obs[: onset + 1], reference[: onset + 1])
    diff = obs[onset + 1 :] - reference[onset + 1 :]
    assert np.all(diff[:, [0, 2]] == 0) and np.all(diff[:, [1, 3]] != 0)
    # The noise is added to what the env returns; it does not change the env's own state.
    assert np.abs(diff[:, 1]).mean() > np.abs(diff[:, 3]).mean()


def test_sensor_noise_is_seeded_and_replays_on_reset_seed():
    a = rollout(SensorNoise(gym.make("CartPole-v1"), 0.1, seed=3), ACTIONS)[0]
    b = rollout(SensorNoise(gym.make("CartPole-v1"), 0.1, seed=3), ACTIONS)[0]
    c = rollout(SensorNoise(gym.make("CartPole-v1"), 0.1, seed=4), ACTIONS)[0]
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    env = SensorNoise(gym.make("CartPole-v1"), 0.1, seed=3)
    first, second = rollout(env, ACTIONS)[0], rollout(env, ACTIONS)[0]  # reset(seed=0) both times
    np.testing.assert_array_equal(first, second)


def test_stuck_sensor_holds_the_value_at_onset_and_recovers_on_reset():
    onset = 3
    env = StuckSensor(gym.make("CartPole-v1"), dim=2, onset=onset)
    obs, infos = rollout(env, ACTIONS)
    reference = clean(ACTIONS)
    assert [i["fault"] for i in infos] == [t >= onset for t in range(len(ACTIONS))]
    np.testing.assert_array_equal(obs[: onset + 1], reference[: onset + 1])
    assert np.all(obs[onset + 1 :, 2] == reference[onset, 2])
    assert len(np.unique(reference[onset:, 2])) > 1  # the real angle kept moving
    np.testing.assert_array_equal(obs[:, [0, 1, 3]], reference[:, [0, 1, 3]])
    # A new episode reads the sensor normally again until its own onset.
    obs2, _ = rollout(env, ACTIONS, seed=1)
    reference2 = clean(ACTIONS, seed=1)
    np.testing.assert_array_equal(obs2[: onset + 1], reference2[: onset + 1])
    assert np.all(obs2[onset + 1 :, 2] == reference2[onset, 2])


def test_stuck_sensor_at_onset_zero_holds_the_reset_value():
    obs, _ = rollout(StuckSensor(gym.make("CartPole-v1"), dim=3, onset=0), ACTIONS)
    assert np.all(obs[:, 3] == obs[0, 3])


def test_changed_physics_changes_dynamics_from_onset_and_restores_on_reset():
    onset = 5
    base = gym.make("CartPole-v1")
    length, pml = base.unwrapped.length, base.unwrapped.polemass_length
    env = ChangedPhysics(base, onset=onset, length=2 * length, polemass_length=2 * pml)
    obs, infos = rollout(env, ACTIONS)
    reference = clean(ACTIONS)
    assert [i["fault"] for i in infos] == [t >= onset for t in range(len(ACTIONS))]
    np.testing.assert_array_equal(obs[: onset + 1], reference[: onset + 1])
    assert not np.allclose(obs[onset + 1], reference[onset + 1])  # the first faulty step already differs
    assert env.unwrapped.length == 2 * length
    env.reset(seed=0)
    assert (env.unwrapped.length, env.unwrapped.polemass_length) == (length, pml)
    # Same faulty trajectory again: the change is re-applied at each episode's onset.
    np.testing.assert_array_equal(rollout(env, ACTIONS)[0], obs)


def test_changed_physics_on_pendulum_gravity():
    actions = [np.array([0.5], dtype=np.float32)] * 6
    obs, _ = rollout(ChangedPhysics(gym.make("Pendulum-v1"), onset=2, g=20.0), actions)
    reference = clean(actions, "Pendulum-v1")
    np.testing.assert_array_equal(obs[:3], reference[:3])
    assert not np.allclose(obs[3:], reference[3:])


def test_action_corruption_changes_the_env_but_not_the_logged_action():
    onset = 4
    env = ActionCorruption(gym.make("CartPole-v1"), p=1.0, onset=onset, seed=0)
    obs, infos = rollout(env, ACTIONS)
    # With p = 1 and two actions, the env receives the other action on every faulty step.
    sent = [a if t < onset else 1 - a for t, a in enumerate(ACTIONS)]
    np.testing.assert_array_equal(obs, clean(sent))
    assert [i["fault"] for i in infos] == [t >= onset for t in range(len(ACTIONS))]
    assert [i["action_corrupted"] for i in infos] == [t >= onset for t in range(len(ACTIONS))]
    assert not np.array_equal(obs, clean(ACTIONS))


def test_action_corruption_probability_and_seed():
    def corrupted(p: float, seed: int) -> list[bool]:
        env = ActionCorruption(gym.make("Pendulum-v1"), p=p, seed=seed)
        actions = [np.zeros(1, dtype=np.float32)] * 199  # the 200th step truncates
        return [i["action_corrupted"] for i in rollout(env, actions)[1]]

    assert not any(corrupted(0.0, 0))
    hits = corrupted(0.3, 0)
    assert 0.2 < np.mean(hits) < 0.4
    assert hits == corrupted(0.3, 0) and hits != corrupted(0.3, 1)


def test_action_corruption_with_discrete_never_sends_the_same_action():
    env = ActionCorruption(gym.make("MountainCar-v0"), p=1.0, seed=0)
    sent = []
    original_step = env.env.step
    env.env.step = lambda a: (sent.append(int(a)), original_step(a))[1]
    rollout(env, [1] * 100)
    assert set(sent) == {0, 2} and 30 < sent.count(0) < 70


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda e: SensorNoise(e, std=-1.0), "std: expected finite numbers >= 0"),
        (lambda e: SensorNoise(e, std=[0.1, 0.2, 0.3]), "expected a number or 4 numbers"),
        (
            lambda e: SensorNoise(e, std=0.1, dims=[4]),
            "SensorNoise dims: expected an integer from 0 to 3, got 4",
        ),
        (lambda e: SensorNoise(e, std=0.1, onset=-1), "onset: expected an integer >= 0, got -1"),
        (lambda e: SensorNoise(e, std=0.1, seed=1.5), "seed: expected an integer >= 0, got 1.5"),
        (lambda e: StuckSensor(e, dim=7), "StuckSensor dim: expected an integer from 0 to 3, got 7"),
        (lambda e: StuckSensor(e, dim=0, onset=True), "onset: expected an integer >= 0, got True"),
        (lambda e: ChangedPhysics(e), "expected at least one attribute"),
        (lambda e: ChangedPhysics(e, pole_colour=3), "got unknown ['pole_colour']"),
        (lambda e: ChangedPhysics(e, length=float("nan")), "length: expected a finite number"),
        (
            lambda e: ActionCorruption(e, p=1.5),
            "ActionCorruption p: expected a number >= 0 and <= 1, got 1.5",
        ),
    ],
)
def test_faults_validate_arguments(make, message):
    with pytest.raises(GenrlError) as err:
        make(gym.make("CartPole-v1"))
    assert message in str(err.value) and "\n" not in str(err.value)
