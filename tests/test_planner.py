"""genrl.Planner: model-predictive control in a world model, behind SB3's predict."""

import gymnasium as gym
import numpy as np
import pytest
import torch
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.monitor import Monitor

import genrl
from genrl import GenrlError, Planner
from genrl.guidance.planner import colored_noise, value_function

QUICK = dict(horizon=8, population=32, elites=4, iterations=2)
# Enough search to find the optimum of a smooth objective over a few steps.
SEARCH = dict(horizon=3, population=64, elites=8, iterations=6)


def _returns(policy, episodes: int = 2, seed: int = 0) -> float:
    env = gym.make("CartPole-v1")
    totals = []
    for episode in range(episodes):
        obs, _ = env.reset(seed=seed + episode)
        total, done = 0.0, False
        while not done:
            action = policy(obs)
            obs, reward, terminated, truncated, _ = env.step(action)
            total, done = total + reward, terminated or truncated
        totals.append(total)
    return float(np.mean(totals))


def test_the_planner_beats_random_actions_in_the_real_env(cartpole_model, cartpole_dataset):
    planner = Planner(cartpole_model, support=cartpole_dataset, seed=0, **QUICK)
    planned = _returns(lambda obs: planner.predict(obs, deterministic=True)[0])
    rng = np.random.default_rng(0)
    random = _returns(lambda obs: int(rng.integers(2)), episodes=20)
    assert planned > 3 * random, (planned, random)


@pytest.mark.parametrize("method", ["cem", "icem", "mppi"])
def test_each_method_maximises_a_given_objective_for_box_actions(pendulum_model, method):
    # The objective only scores actions, so the best plan is known whatever the model predicts.
    objective = lambda obs, action, next_obs: -((action[:, 0] - 1.0) ** 2)  # noqa: E731
    planner = Planner(pendulum_model, method=method, reward_fn=objective, seed=0, **SEARCH)
    obs = np.zeros((3, 3), dtype=np.float32)
    obs[:, 0] = 1.0
    action, state = planner.predict(obs, deterministic=True)
    assert state is None and action.shape == (3, 1) and action.dtype == np.float32
    np.testing.assert_allclose(action[:, 0], 1.0, atol=0.25)


@pytest.mark.parametrize("method", ["cem", "icem", "mppi"])
def test_each_method_maximises_a_given_objective_for_discrete_actions(cartpole_model, method):
    objective = lambda obs, action, next_obs: (action == 0).float()  # noqa: E731
    planner = Planner(cartpole_model, method=method, reward_fn=objective, seed=0, **QUICK)
    action, _ = planner.predict(np.zeros((5, 4), dtype=np.float32), deterministic=True)
    assert action.tolist() == [0] * 5
    assert planner.model_steps > 0


def test_a_terminal_value_steers_the_plan(cartpole_model):
    # One step ahead, no reward: only the value of the state reached can tell the actions apart.
    for sign, expected in ((1.0, 1), (-1.0, 0)):
        planner = Planner(
            cartpole_model,
            horizon=1,
            population=16,
            elites=2,
            iterations=2,
            reward_fn=lambda o, a, o2: torch.zeros(len(o)),
            value=lambda obs, s=sign: s * obs[:, 1],  # cart velocity: pushing right raises it
            seed=0,
        )
        assert planner.predict(np.zeros(4, dtype=np.float32), deterministic=True)[0] == expected


def test_an_sb3_agents_critic_is_a_terminal_value(cartpole_model):
    from stable_baselines3 import DQN, PPO

    dream = genrl.DreamVecEnv(cartpole_model, n_envs=2, horizon=10, seed=0)
    obs = torch.zeros(6, 4)
    for agent in (
        PPO("MlpPolicy", dream, n_steps=8, batch_size=8, device="cpu"),
        DQN("MlpPolicy", dream, device="cpu"),
    ):
        with torch.no_grad():
            assert value_function(agent)(obs).shape == (6,)
    planner = Planner(cartpole_model, value=agent, seed=0, **QUICK)
    assert planner.predict(np.zeros(4, dtype=np.float32))[0] in (0, 1)


def test_predict_follows_sb3s_contract_in_collect_and_evaluate_policy(cartpole_model):
    planner = Planner(cartpole_model, seed=0, **QUICK)
    single, _ = planner.predict(np.zeros(4, dtype=np.float32))
    assert np.shape(single) == () and planner.action_space.contains(int(single))
    venv = gym.make_vec("CartPole-v1", num_envs=2, vectorization_mode="sync")
    data = genrl.collect(venv, 30, policy=planner, seed=0, progress=False)
    assert data.num_steps >= 30
    mean, _ = evaluate_policy(planner, Monitor(gym.make("CartPole-v1")), n_eval_episodes=1)
    assert mean > 0


def test_a_seed_reproduces_the_plan_and_none_draws(pendulum_model):
    obs = np.array([[1.0, 0.0, 0.0]], dtype=np.float32)
    plans = [Planner(pendulum_model, seed=3, **QUICK).predict(obs)[0] for _ in range(2)]
    np.testing.assert_array_equal(plans[0], plans[1])
    drawn = {float(Planner(pendulum_model, **QUICK).predict(obs)[0][0, 0]) for _ in range(3)}
    assert len(drawn) > 1


def test_the_support_penalty_is_zero_on_the_data_and_grows_away_from_it(cartpole_model, cartpole_dataset):
    planner = Planner(cartpole_model, support=cartpole_dataset, **QUICK)
    states = torch.as_tensor(cartpole_dataset.all_states()[:50])
    with torch.no_grad():
        on = planner._off_support(cartpole_model.encode(states))
        far = planner._off_support(cartpole_model.encode(states + torch.tensor([2.0, 3.0, 0.0, 3.0])))
    assert on.max() == 0 and far.min() > 0


def test_the_exploration_bonus_pays_for_the_distance_the_penalty_charges(cartpole_model, cartpole_dataset):
    with torch.inference_mode():
        z = cartpole_model.encode(torch.as_tensor(cartpole_dataset.all_states()[:20]))
    plans = torch.zeros(20, 2, 5, dtype=torch.long)
    scores = {}
    for name, settings in {
        "penalty": {"support_penalty": 1.0},
        "bonus": {"exploration_bonus": 1.0},
        "neither": {"support_penalty": 0.0},
    }.items():
        planner = Planner(
            cartpole_model, support=cartpole_dataset, temperature=0.0, seed=0, **QUICK, **settings
        )
        with torch.inference_mode():
            scores[name] = planner.score(z, plans)
    # Pushing left five times from anywhere leaves the data for some states: the penalty charges
    # what the bonus pays, the same amount either side of the plain return.
    off = scores["bonus"] - scores["neither"]
    assert off.max() > 0
    torch.testing.assert_close(scores["neither"] - scores["penalty"], off)
    with pytest.raises(GenrlError, match="^exploration_bonus: expected the real data as support="):
        Planner(cartpole_model, exploration_bonus=1.0)


@pytest.mark.slow
def test_an_exploring_planner_reaches_the_flag_random_data_never_sees():
    """MountainCar: 600 random steps never reach the flag; a planner paid for novelty does.

    With a bonus of 3, model seeds 0-2 found it on the 3rd to 5th episode with model format 5, and
    on the 10th, 3rd and 3rd with format 6 (its terminal reward head changes the initial
    weights; seed 0's 3rd episode reached x = 0.45 of the flag's 0.5). Seed 1, within 6
    episodes, keeps a margin of 3 (benchmarks/RESULTS.md, 2026-12-07)."""
    data = genrl.collect("MountainCar-v0", 600, seed=0, progress=False)
    assert not any(ep.terminated[-1] for ep in data.episodes)
    model = genrl.WorldModel(data.observation_space, data.action_space, seed=1)
    model.fit(data, 400, progress=False)
    for episode in range(6):
        planner = Planner(model, horizon=30, support=data, exploration_bonus=3.0, seed=episode)
        genrl.collect(
            "MountainCar-v0", episodes=1, policy=planner, dataset=data, seed=episode, progress=False
        )
        if data.episodes[-1].terminated[-1]:
            break
        model.fit(data, 200, progress=False)
    assert data.episodes[-1].terminated[-1], [float(ep.obs[:, 0].max()) for ep in data.episodes]


def test_colored_noise_has_unit_variance_and_beta_makes_it_smoother():
    gen = torch.Generator().manual_seed(0)
    white = colored_noise((2000, 32, 1), 0.0, gen, torch.device("cpu"))
    brown = colored_noise((2000, 32, 1), 2.0, gen, torch.device("cpu"))
    for noise in (white, brown):
        assert abs(noise.std().item() - 1.0) < 0.15

    def lag_one(x):
        return torch.corrcoef(torch.stack([x[:, :-1].flatten(), x[:, 1:].flatten()]))[0, 1].item()

    assert abs(lag_one(white)) < 0.05 and lag_one(brown) > 0.5


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"method": "pets"}, "method: expected one of"),
        ({"horizon": 0}, "horizon"),
        ({"elites": 1000, "population": 10}, "elites"),
        ({"reward_fn": 3}, "reward_fn must be callable"),
        ({"value": 3}, "value must be an SB3 agent or a callable"),
        ({"support": np.zeros((5, 3))}, "support: expected at least 2 observations of shape (4,)"),
    ],
)
def test_bad_settings_fail_in_one_line(cartpole_model, kwargs, message):
    with pytest.raises(GenrlError, match=None) as info:
        Planner(cartpole_model, **kwargs)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_a_wrong_observation_shape_fails_in_one_line(cartpole_model):
    with pytest.raises(GenrlError, match=r"observation: expected shape \(4,\)"):
        Planner(cartpole_model, **QUICK).predict(np.zeros(3))
