"""genrl.generate: imagined episodes steered by a guide, checked against the real env too."""

import gymnasium as gym
import numpy as np
import pytest
import torch

import genrl
from genrl import GenrlError, RolloutDataset, generate

COMMON = dict(horizon=40, temperature=0.0, seed=0)


def _real_return(model: genrl.WorldModel, episode: genrl.Episode) -> float:
    """Replay the episode's actions in the real CartPole from its real start state (set directly)."""
    env = gym.make("CartPole-v1")
    env.reset(seed=0)
    env.unwrapped.state = model.start_states[episode.info["start_index"]].numpy().astype(np.float64)
    total = 0.0
    for action in episode.action:
        _, reward, terminated, truncated, _ = env.step(int(action))
        total += reward
        if terminated or truncated:
            break
    return total


@pytest.mark.parametrize("guide", ["best-of-n", "cem"])
def test_guides_raise_the_return_over_unguided_sampling_in_the_dream_and_in_reality(cartpole_model, guide):
    unguided = generate(cartpole_model, 12, "none", **COMMON)
    guided = generate(cartpole_model, 12, guide, candidates=16, **COMMON)
    predicted = [np.mean([e.info["predicted_return"] for e in d.episodes]) for d in (unguided, guided)]
    real = [np.mean([_real_return(cartpole_model, e) for e in d.episodes]) for d in (unguided, guided)]
    assert predicted[1] > 1.5 * predicted[0], predicted
    assert real[1] > 1.5 * real[0], real


def test_episodes_record_their_guide_return_start_and_cost(cartpole_model):
    data = generate(cartpole_model, 5, "best-of-n", candidates=4, **COMMON)
    assert isinstance(data, RolloutDataset) and len(data) == 5
    assert data.observation_space == cartpole_model.observation_space
    for episode in data.episodes:
        info = episode.info
        assert info["guide"] == "best-of-n" and info["model_steps"] == 4 * 40
        assert info["predicted_return"] == pytest.approx(episode.episode_return, rel=1e-5)
        start = cartpole_model.start_states[info["start_index"]][None]
        with torch.no_grad():  # the first observation is the real start as the model sees it
            seen = cartpole_model.decode(cartpole_model.encode(start))[0].numpy()
        np.testing.assert_allclose(episode.obs[0], seen, atol=1e-5)
        assert episode.terminated[-1] or (episode.truncated[-1] and episode.length == 40)


def test_a_reward_fn_steers_generation_toward_any_objective(pendulum_model):
    right = lambda obs, action, next_obs: action[:, 0]  # noqa: E731  reward the torque itself
    plain = generate(pendulum_model, 6, "none", horizon=10, seed=0)
    steered = generate(pendulum_model, 6, "best-of-n", reward_fn=right, candidates=16, horizon=10, seed=0)
    mean_action = [np.mean([e.action.mean() for e in d.episodes]) for d in (plain, steered)]
    assert mean_action[1] > mean_action[0] + 0.5
    assert steered.episodes[0].info["predicted_return"] == pytest.approx(
        steered.episodes[0].action.sum(), rel=1e-4
    )


def test_the_policy_guide_lets_an_agent_act_in_the_dream(cartpole_model):
    class AlwaysRight:
        def predict(self, obs, deterministic=False):
            return np.ones(len(obs), dtype=np.int64), None

    data = generate(cartpole_model, 3, "policy", agent=AlwaysRight(), candidates=1, **COMMON)
    assert all((e.action == 1).all() for e in data.episodes)


def test_a_generated_dataset_on_disk_keeps_its_info_and_a_seed_reproduces(cartpole_model, tmp_path):
    data = generate(cartpole_model, 3, "best-of-n", candidates=4, horizon=20, seed=5, path=tmp_path / "gen")
    again = RolloutDataset.load(tmp_path / "gen")
    assert [e.info for e in again.episodes] == [e.info for e in data.episodes]
    same = generate(cartpole_model, 3, "best-of-n", candidates=4, horizon=20, seed=5)
    for a, b in zip(data.episodes, same.episodes, strict=True):
        np.testing.assert_array_equal(a.action, b.action)


def test_episode_info_must_be_json(tmp_path):
    data = genrl.collect("CartPole-v1", 20, seed=0, progress=False)
    episode = data.episodes[0]
    bad = genrl.Episode(
        *(getattr(episode, k) for k in ("obs", "action", "reward", "terminated", "truncated")),
        {"x": object()},
    )
    with pytest.raises(GenrlError, match="expected info to hold JSON values only"):
        data.add(bad)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"guide": "beam"}, "guide: expected one of"),
        ({"guide": "cem", "candidates": 4}, "candidates: expected at least 8"),
        ({"guide": "policy"}, "guide 'policy' needs an SB3 agent"),
        ({"starts": np.zeros((3, 2))}, "starts: expected finite observations of shape (N, 4)"),
        ({"reward_fn": "x"}, "reward_fn must be callable"),
    ],
)
def test_bad_arguments_fail_in_one_line(cartpole_model, kwargs, message):
    with pytest.raises(GenrlError) as info:
        generate(cartpole_model, 2, **kwargs)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_a_wrong_reward_fn_output_is_named(cartpole_model):
    with pytest.raises(GenrlError, match="reward_fn: expected 2 rewards"):
        generate(cartpole_model, 2, "none", reward_fn=lambda o, a, o2: torch.zeros(3), horizon=5)
