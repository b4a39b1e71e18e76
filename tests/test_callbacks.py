"""SB3 callbacks (genrl.training.callbacks): Dyna in a dream beside real learning, real evaluation,
and run folders written side by side (save_run) that `genrl eval` reads back."""

from __future__ import annotations

import json
import time
import warnings
from collections import Counter

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.wrappers import TimeLimit
from stable_baselines3 import DQN, PPO, SAC, TD3
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import DummyVecEnv, VecMonitor, VecNormalize
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch import nn

from genrl.cli import main
from genrl.data.collect import collect
from genrl.data.dataset import RolloutDataset
from genrl.dream.vec_env import DreamVecEnv
from genrl.errors import GenrlError
from genrl.model.world_model import WorldModel
from genrl.training.callbacks import DreamTraining, RealEvaluation
from genrl.training.run import load_run, save_run

torch.set_num_threads(1)
TINY = {
    "encoder": "identity",
    "hidden_dim": 16,
    "rnn_dim": 16,
    "batch_size": 8,
    "seq_len": 8,
    "num_mixtures": 1,
}
# Phases at 64, 128, 192... real steps, each a few model steps and a short dream.
QUICK = {"start_after": 64, "every": 64, "dream_steps": 256, "fit_steps": 5, "refit_steps": 2, "n_envs": 8}


@pytest.fixture(autouse=True)
def _one_thread(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # keeps genrl.cli.main from raising torch's thread count


def tiny_model(env_id: str) -> WorldModel:
    env = gym.make(env_id)
    return WorldModel(env.observation_space, env.action_space, seed=0, **TINY)


def real_data(env_id: str, steps: int = 40) -> RolloutDataset:
    return collect(env_id, steps, seed=0, progress=False)


def small(cls: type, env, **settings):
    """A small, quick SB3 agent on CPU."""
    extra = {"learning_starts": 32, "buffer_size": 2000, "batch_size": 16} if cls in (SAC, TD3, DQN) else {}
    return cls(
        "MlpPolicy", env, seed=0, device="cpu", policy_kwargs={"net_arch": [16]}, **{**extra, **settings}
    )


class Log(gym.Wrapper):
    """Keeps every real transition, episode by episode, as the env saw it."""

    def __init__(self, env: gym.Env, episodes: list):
        super().__init__(env)
        self.episodes = episodes

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        self.current = {"obs": [obs], "action": [], "reward": [], "end": None}
        self.episodes.append(self.current)
        return obs, info

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.current["obs"].append(obs)
        self.current["action"].append(np.array(action))
        self.current["reward"].append(float(reward))
        if terminated or truncated:
            self.current["end"] = "terminated" if terminated else "truncated"
        return obs, reward, terminated, truncated, info


def key(obs, action, reward, end) -> tuple:
    """An episode, hashable, to compare two collections of episodes as multisets."""
    as_bytes = lambda x: np.asarray(x, dtype=np.float32).tobytes()  # noqa: E731
    return as_bytes(obs), as_bytes(action), as_bytes(reward), end


def logged_envs(env_id: str, n: int, limit: int) -> tuple[DummyVecEnv, list]:
    episodes: list = []
    make = lambda: Monitor(Log(TimeLimit(gym.make(env_id).unwrapped, limit), episodes))  # noqa: E731
    return DummyVecEnv([make for _ in range(n)]), episodes


# ---- what DreamTraining records -------------------------------------------------------------


def episode_keys(episodes) -> Counter:
    """Recorded episodes as a multiset of keys."""
    return Counter(
        key(ep.obs, ep.action, ep.reward, "terminated" if ep.terminated[-1] else "truncated")
        for ep in episodes
    )


@pytest.mark.parametrize("cls, env_id", [(PPO, "CartPole-v1"), (SAC, "Pendulum-v1")])
def test_the_recorded_episodes_are_the_real_ones(cls, env_id):
    """Two envs with a short time limit: episodes end in terminations and truncations, the
    terminal observation (not the next reset's) ends each one, and no reset step is recorded."""
    venv, logged = logged_envs(env_id, 2, limit=15)
    agent = small(cls, venv, **({"n_steps": 32} if cls is PPO else {}))
    dyna = DreamTraining(tiny_model(env_id), start_after=10**6, seed=0)  # records, never dreams
    agent.learn(200, callback=dyna)
    finished = [e for e in logged if e["end"] is not None]
    assert episode_keys(dyna.recorder.dataset.episodes) == Counter(
        key(e["obs"], e["action"], e["reward"], e["end"]) for e in finished
    )
    assert len(finished) >= 10
    ends = {e["end"] for e in finished}
    assert ends == ({"terminated", "truncated"} if env_id == "CartPole-v1" else {"truncated"})
    open_now = dyna.recorder.snapshot().episodes[len(finished) :]  # cut where learn() stopped
    assert len(open_now) == 2 and all(ep.truncated[-1] and not ep.terminated[-1] for ep in open_now)
    assert dyna.recorder.steps == agent.num_timesteps == sum(len(e["action"]) for e in logged)


@pytest.mark.parametrize("reset", [False, True])
def test_a_second_learn_continues_or_cuts_the_open_episodes(reset):
    """learn() again without a reset continues each env's episode; with one, the open episodes
    end there (truncated) and new ones start from the reset observations."""
    venv, logged = logged_envs("CartPole-v1", 2, limit=40)
    agent = small(PPO, venv, n_steps=16, batch_size=32)
    dyna = DreamTraining(tiny_model("CartPole-v1"), start_after=10**6, seed=0)
    agent.learn(32, callback=dyna)
    agent.learn(32, callback=dyna, reset_num_timesteps=reset)
    everything = [e for e in logged if e["action"]]
    want = Counter(key(e["obs"], e["action"], e["reward"], e["end"] or "truncated") for e in everything)
    assert episode_keys(dyna.recorder.snapshot().episodes) == want
    assert dyna.recorder.steps == 64
    # Cut: the two open at the end, and with a reset the two it interrupted.
    assert sum(e["end"] is None for e in everything) == (4 if reset else 2)


# ---- a dream phase leaves the real learning where it was -------------------------------------


class Before(BaseCallback):
    """Before DreamTraining in a CallbackList: what the agent's real state is at a rollout's start."""

    def _on_rollout_start(self) -> None:
        agent = self.model
        self.state = {
            "num_timesteps": agent.num_timesteps,
            "_last_obs": agent._last_obs.copy(),
            "_last_episode_starts": np.array(getattr(agent, "_last_episode_starts", None)),
            "_episode_num": agent._episode_num,
            "ep_info_buffer": list(agent.ep_info_buffer),
            "buffer": agent.rollout_buffer if hasattr(agent, "rollout_buffer") else agent.replay_buffer,
        }

    def _on_step(self) -> bool:
        return True


class After(BaseCallback):
    """After DreamTraining: the same state again, checked whenever a dream phase just ran."""

    def __init__(self, before: Before, dyna: DreamTraining):
        super().__init__()
        self.before, self.dyna, self.checked, self.phases = before, dyna, 0, 0

    def _on_rollout_start(self) -> None:
        if self.dyna.phases == self.phases:
            return
        self.phases = self.dyna.phases
        agent, state = self.model, self.before.state
        assert agent.num_timesteps == state["num_timesteps"]
        np.testing.assert_array_equal(agent._last_obs, state["_last_obs"])
        np.testing.assert_array_equal(
            np.array(getattr(agent, "_last_episode_starts", None)), state["_last_episode_starts"]
        )
        assert agent._episode_num == state["_episode_num"]
        assert list(agent.ep_info_buffer) == state["ep_info_buffer"]  # no dream episode in it
        buffer = agent.rollout_buffer if hasattr(agent, "rollout_buffer") else agent.replay_buffer
        assert buffer is state["buffer"]
        assert not agent.policy.training  # SB3 collects in evaluation mode
        self.checked += 1

    def _on_step(self) -> bool:
        return True


@pytest.mark.parametrize("cls, env_id", [(PPO, "CartPole-v1"), (SAC, "Pendulum-v1"), (DQN, "CartPole-v1")])
def test_a_dream_phase_puts_the_real_state_back(cls, env_id):
    agent = small(cls, env_id, **({"n_steps": 32, "batch_size": 32} if cls is PPO else {}))
    real_buffer = getattr(agent, "replay_buffer", None)
    before = Before()
    dyna = DreamTraining(tiny_model(env_id), seed=0, **QUICK)
    after = After(before, dyna)
    agent.learn(256, callback=[before, dyna, after])
    assert after.checked == dyna.phases >= 3
    assert agent.num_timesteps == dyna.recorder.steps == 256  # dream steps never count as real
    assert dyna.dream_steps_done >= 3 * QUICK["dream_steps"]
    if real_buffer is not None:  # off-policy: the real replay buffer, holding the real steps only
        assert agent.replay_buffer is real_buffer and real_buffer.size() == 256
        assert all(row["gradient_steps"] > 0 for row in dyna.history)


def test_off_policy_dreams_train_the_agent_with_its_own_ratio():
    """SAC on Pendulum: gradient steps per dream transition are the agent's (2 per 1 real step)."""
    agent = small(SAC, "Pendulum-v1", gradient_steps=2)
    dyna = DreamTraining(tiny_model("Pendulum-v1"), seed=0, **QUICK)
    weights = [p.detach().clone() for p in agent.actor.parameters()]
    agent.learn(64, callback=dyna)
    assert dyna.phases == 0  # a phase runs at the next rollout's start
    dyna.dream_phase()
    assert dyna.history[-1]["gradient_steps"] == 2 * dyna.history[-1]["dream_steps"] == 2 * 256
    assert any(not torch.equal(a, b) for a, b in zip(weights, agent.actor.parameters(), strict=True))
    assert agent.num_timesteps == 64 and agent.replay_buffer.size() == 64


# ---- logging: dyna/* and real/* in the agent's own TensorBoard run ---------------------------


def scalar_tags(folder) -> set[str]:
    files = list(folder.rglob("events.out.tfevents.*"))
    assert len(files) == 1, files  # one run: the agent's own
    events = EventAccumulator(str(files[0]))
    events.Reload()
    return set(events.Tags()["scalars"])


def test_both_callbacks_log_to_the_agents_tensorboard_run(tmp_path):
    agent = small(PPO, "CartPole-v1", n_steps=64, batch_size=32, tensorboard_log=str(tmp_path))
    evaluation = RealEvaluation("CartPole-v1", every=128, n_episodes=2)
    dyna = DreamTraining(tiny_model("CartPole-v1"), seed=0, **QUICK)
    agent.learn(256, callback=[dyna, evaluation])
    tags = scalar_tags(tmp_path)
    assert {"real/eval_return_mean", "real/eval_return_std", "real/eval_episode_length"} <= tags
    assert {
        "dyna/dream_steps",
        "dyna/dream_return",
        "dyna/model_fit_loss",
        "dyna/real_steps_recorded",
    } <= tags
    assert "rollout/ep_rew_mean" in tags
    assert [row["timesteps"] for row in evaluation.history] == [128, 256]  # none more at the end


def test_real_evaluation_of_an_agent_in_a_dream_warns_nothing(tmp_path):
    data = real_data("CartPole-v1", 200)
    model = tiny_model("CartPole-v1")
    model.fit(data, steps=5, progress=False)
    dream = VecMonitor(DreamVecEnv(model, n_envs=8, dataset=data, horizon=50, seed=0))
    agent = small(PPO, dream, n_steps=16, batch_size=64, tensorboard_log=str(tmp_path))
    evaluation = RealEvaluation(gym.make("CartPole-v1"), every=128, n_episodes=2, final=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        agent.learn(256, callback=evaluation)
    assert [row["timesteps"] for row in evaluation.history] == [128, 256]
    assert all(row["eval_episodes"] == 2 and row["eval_return_mean"] > 0 for row in evaluation.history)
    assert "real/eval_return_mean" in scalar_tags(tmp_path)


def test_real_evaluation_normalises_as_the_agents_vec_normalize_does():
    normalized = VecNormalize(DummyVecEnv([lambda: gym.make("CartPole-v1")]))
    agent = small(PPO, normalized, n_steps=32, batch_size=32)
    evaluation = RealEvaluation("CartPole-v1", every=32, n_episodes=2, final=False)
    agent.learn(64, callback=evaluation)
    assert len(evaluation.history) == 2
    np.testing.assert_array_equal(evaluation._normalized.obs_rms.mean, normalized.obs_rms.mean)
    assert not evaluation._normalized.training  # evaluation never updates the statistics


# ---- the run folder: save_run, genrl eval, load_run ------------------------------------------


def test_dream_training_saves_a_run_that_genrl_eval_reads(tmp_path, capsys):
    run_dir = tmp_path / "run"
    agent = small(PPO, "CartPole-v1", n_steps=64, batch_size=32)
    evaluation = RealEvaluation("CartPole-v1", every=10**6, n_episodes=2)
    dyna = DreamTraining(tiny_model("CartPole-v1"), seed=0, save_dir=run_dir, evaluation=evaluation, **QUICK)
    agent.learn(192, callback=[dyna, evaluation])
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["history"] == evaluation.history and len(evaluation.history) == 1  # the final one
    assert (run_dir / "agent.zip").is_file()
    run = load_run(run_dir, device="cpu")
    assert run.dataset.num_steps == 192 and run.config.env_id == "CartPole-v1"
    obs = np.stack([gym.make("CartPole-v1").observation_space.sample() for _ in range(64)])
    np.testing.assert_array_equal(
        run.agent.predict(obs, deterministic=True)[0], agent.predict(obs, deterministic=True)[0]
    )
    capsys.readouterr()
    assert main(["eval", str(run_dir), "--episodes", "2", "--horizon", "5", "--no-progress"]) == 0
    assert "CartPole-v1: real return" in capsys.readouterr().out


@pytest.mark.parametrize(
    "cls, env_id, kwargs",
    [
        (DQN, "CartPole-v1", {"net_arch": [8, 8], "activation_fn": nn.ReLU}),
        (SAC, "Pendulum-v1", {"net_arch": [8], "n_critics": 1}),
    ],
)
def test_save_run_rebuilds_the_policy_architecture(tmp_path, cls, env_id, kwargs):
    agent = cls("MlpPolicy", env_id, seed=0, device="cpu", buffer_size=100, policy_kwargs=kwargs)
    model = tiny_model(env_id)
    dataset = real_data(env_id)
    save_run(tmp_path, agent, model, dataset, env_id, history=[{"step": 1}])
    preset = json.loads((tmp_path / "config.json").read_text())["agent"]
    assert preset["algorithm"] == cls.__name__.lower() and preset["policy"] == "MlpPolicy"
    run = load_run(tmp_path, device="cpu")
    assert run.history == [{"step": 1}] and run.dataset.num_steps == dataset.num_steps
    obs = np.stack([agent.observation_space.sample() for _ in range(32)])
    np.testing.assert_array_equal(
        run.agent.predict(obs, deterministic=True)[0], agent.predict(obs, deterministic=True)[0]
    )


# ---- bad arguments ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: DreamTraining(dream_steps=0), r"^dream_steps: expected an integer >= 1, got 0$"),
        (lambda: DreamTraining("model"), r"^world_model: expected a WorldModel or None, got str$"),
        (lambda: DreamTraining(start="all"), r"^start: expected one of \['initial', 'any'\], got 'all'$"),
        (lambda: DreamTraining(evaluation=3), r"^evaluation: expected a RealEvaluation or None, got 3$"),
        (lambda: DreamTraining(gradient_steps=-1), r"^gradient_steps: expected an integer >= 0, got -1$"),
        (lambda: RealEvaluation("CartPole-v1", every=0), r"^every: expected an integer >= 1, got 0$"),
        (
            lambda: RealEvaluation(5),
            r"^env: expected a Gymnasium id, a gymnasium.Env or an SB3 VecEnv, got int$",
        ),
        (lambda: RealEvaluation("NoSuchEnv-v9"), r"^unknown environment 'NoSuchEnv-v9'"),
    ],
)
def test_bad_arguments_are_one_line_errors(make, match):
    with pytest.raises(GenrlError, match=match):
        make()


def test_agents_and_envs_the_callbacks_cannot_use_are_refused(tmp_path):
    with pytest.raises(GenrlError, match=r"^DreamTraining: expected an SB3 on-policy .* agent, got str$"):
        DreamTraining().init_callback("ppo")
    cartpole = small(PPO, "CartPole-v1", n_steps=16, batch_size=16)
    with pytest.raises(GenrlError, match=r"^observation space mismatch: model has .*, env has "):
        cartpole.learn(16, callback=DreamTraining(tiny_model("Pendulum-v1")))
    with pytest.raises(GenrlError, match=r"^observation space mismatch: agent has .*, evaluation env has "):
        cartpole.learn(16, callback=RealEvaluation("Pendulum-v1"))
    normalized = VecNormalize(DummyVecEnv([lambda: gym.make("CartPole-v1")]))
    normalized = small(PPO, normalized, n_steps=16, batch_size=16)
    with pytest.raises(GenrlError, match=r"not a VecNormalize"):
        normalized.learn(16, callback=DreamTraining(tiny_model("CartPole-v1")))
    with pytest.raises(GenrlError, match=r"^RealEvaluation.evaluate: expected the callback to be passed to"):
        RealEvaluation("CartPole-v1").evaluate()
    with pytest.raises(GenrlError, match=r"passed to learn\(\) too"):
        cartpole.learn(16, callback=DreamTraining(evaluation=RealEvaluation("CartPole-v1")))
    with pytest.raises(GenrlError, match=r"^save_run: expected an SB3 agent, got str$"):
        save_run(tmp_path, "agent", tiny_model("CartPole-v1"), None, "CartPole-v1")
    model = tiny_model("CartPole-v1")
    with pytest.raises(GenrlError, match=r"^save_run: expected history as a list of dicts, got 5$"):
        save_run(tmp_path, cartpole, model, real_data("CartPole-v1"), "CartPole-v1", history=5)
    with pytest.raises(GenrlError, match=r"^observation space mismatch: model has .*, env has "):
        save_run(tmp_path, cartpole, model, real_data("CartPole-v1"), "Pendulum-v1")
    assert not list(tmp_path.iterdir())  # refused before anything was written


# ---- learning: Dyna needs fewer real steps ---------------------------------------------------

# PPO's real rollouts of 256 steps; in the dream, as many transitions per update (4 steps of 64 dreams).
PPO_SETTINGS = dict(
    n_steps=256,
    batch_size=64,
    learning_rate=1e-3,
    gamma=0.98,
    gae_lambda=0.8,
    ent_coef=0.0,
    policy_kwargs={"net_arch": [64, 64]},
    device="cpu",
)
REAL_STEPS = 1_200


def real_return(agent) -> float:
    env = DummyVecEnv([lambda: Monitor(gym.make("CartPole-v1")) for _ in range(10)])
    env.seed(1000)
    returns, _ = evaluate_policy(agent, env, 10, deterministic=True, return_episode_rewards=True)
    return float(np.mean(returns))


@pytest.mark.slow
def test_dyna_learns_cartpole_from_few_real_steps():
    """1,200 real CartPole steps: plain PPO reaches about 60, PPO with DreamTraining (the default
    model, fitted at 256 and 768 real steps, 50,000 dream steps after each fit) 500."""
    started = time.time()
    plain = PPO("MlpPolicy", "CartPole-v1", seed=0, **PPO_SETTINGS).learn(REAL_STEPS)
    agent = PPO("MlpPolicy", "CartPole-v1", seed=0, **PPO_SETTINGS)
    dyna = DreamTraining(
        start_after=256, every=512, dream_steps=50_000, fit_steps=500, refit_steps=150, seed=0
    )
    agent.learn(REAL_STEPS, callback=dyna)
    with_dreams, without = real_return(agent), real_return(plain)
    assert dyna.phases == 2 and agent.num_timesteps == dyna.recorder.steps < REAL_STEPS + 256
    seconds = time.time() - started
    print(f"real return {with_dreams:.1f} with DreamTraining, {without:.1f} without ({seconds:.0f} s)")
    assert with_dreams >= 150 and with_dreams >= without + 100, (with_dreams, without)
