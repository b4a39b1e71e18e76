"""Stable-baselines3 callbacks: Dyna-style training in a dream beside real learning, real evaluation.

:class:`DreamTraining` is Dyna (Sutton, 1990) for unmodified SB3 agents. The agent learns from the
real env as usual; the callback records every real transition it sees, and::

    after start_after real steps, then every `every`   refits a world model on them and trains the
                                                       same agent for dream_steps agent steps in a
                                                       DreamVecEnv of the model

The dream phase runs at the start of the agent's next rollout (before it collects more real data),
with the agent's own ``collect_rollouts`` and ``train``: on-policy agents fill a rollout buffer of
the dream's size, off-policy ones a replay buffer of dream transitions. Everything the real
learning depends on is put back afterwards (:func:`real_state_kept`), so it continues where it was
and dream steps never count as real ones.

:class:`RealEvaluation` plays deterministic episodes in the real env every ``every`` agent steps
and logs ``real/*`` to the agent's own SB3 logger (its TensorBoard run), whether the agent learns
from the real env or in a dream. With ``save_dir``, DreamTraining writes a run folder at the end
of training (:func:`~genrl.training.run.save_run`) that ``genrl eval`` reads.
"""

from __future__ import annotations

import contextlib
import copy
import math
import os
import time
import warnings
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.buffers import ReplayBuffer, RolloutBuffer
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import is_wrapped
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.noise import ActionNoise, VectorizedActionNoise
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm
from stable_baselines3.common.type_aliases import TrainFreq, TrainFrequencyUnit
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv, VecMonitor, VecNormalize, is_vecenv_wrapped

from genrl.data.dataset import RolloutDataset
from genrl.data.envs import make_env
from genrl.dream.vec_env import DreamVecEnv
from genrl.errors import GenrlError
from genrl.guidance.augment import DEFAULT_MODEL
from genrl.model.losses import total_loss
from genrl.model.world_model import WorldModel
from genrl.training.run import save_run
from genrl.util.checks import check_choice, check_float, check_int, describe
from genrl.util.seeding import fresh_seed
from genrl.util.spaces import check_spaces_match

DEFAULT_HORIZON = 1000  # dream episodes' time limit when the real env has none
MAX_EVAL_ENVS = 32  # real evaluation episodes played as one batch
# What the real learning depends on and a dream phase changes: put back afterwards.
REAL_STATE = (
    "_last_obs",
    "_last_original_obs",
    "_last_episode_starts",
    "num_timesteps",
    "_episode_num",
    "_n_calls",
    "_current_progress_remaining",
    "ep_info_buffer",
    "ep_success_buffer",
    "rollout_buffer",
    "replay_buffer",
)


# ---- real transitions, as episodes -----------------------------------------------------------


class EpisodeRecorder:
    """The transitions of a VecEnv under SB3's auto-reset contract, as whole episodes.

    An episode ends where ``dones[i]``: its last observation is ``infos[i]["terminal_observation"]``
    (the observation returned there already starts the next episode, so no reset step is
    recorded), a truncation if ``infos[i]["TimeLimit.truncated"]``, else a termination.
    """

    def __init__(self, observation_space: spaces.Space, action_space: spaces.Space):
        self.dataset = RolloutDataset(observation_space, action_space)  # finished episodes
        self.steps = 0
        self._open: list[dict[str, list]] = []

    def start(self, obs: np.ndarray) -> None:
        """The observations the next step starts from; an open episode that is not there is cut."""
        obs = np.asarray(obs, dtype=np.float32)
        for i in range(len(obs), len(self._open)):  # an env with fewer envs than before
            self._finish(i, terminated=False)
        del self._open[len(obs) :]
        for i, first in enumerate(obs):
            if i >= len(self._open):
                self._open.append(_new_episode(first))
            elif not np.array_equal(self._open[i]["obs"][-1], first):  # else continued, not reset
                self._finish(i, terminated=False)
                self._open[i] = _new_episode(first)

    def step(self, actions: Any, rewards: Any, dones: Any, infos: list[dict], new_obs: Any) -> None:
        """One step of every env, as SB3's ``VecEnv.step`` returned it, with the actions sent."""
        for i, episode in enumerate(self._open):
            episode["action"].append(np.array(actions[i]))
            episode["reward"].append(float(rewards[i]))
            if dones[i]:
                final = infos[i].get("terminal_observation")
                if final is None:
                    raise GenrlError(
                        "expected infos[i]['terminal_observation'] where an episode ends (SB3's VecEnv "
                        f"contract), got info keys {sorted(infos[i])}"
                    )
                episode["obs"].append(np.array(final, dtype=np.float32))
                self._finish(i, terminated=not infos[i].get("TimeLimit.truncated", False))
                self._open[i] = _new_episode(new_obs[i])
            else:
                episode["obs"].append(np.array(new_obs[i], dtype=np.float32))
        self.steps += len(self._open)

    def snapshot(self) -> RolloutDataset:
        """The finished episodes and the open ones so far (cut there: truncated), in memory."""
        dataset = self.dataset.subset(range(len(self.dataset)))
        for episode in self._open:
            if episode["action"]:
                dataset.add_episode(*_arrays(episode, terminated=False))
        return dataset

    def _finish(self, i: int, terminated: bool) -> None:
        if self._open[i]["action"]:
            self.dataset.add_episode(*_arrays(self._open[i], terminated))


def _new_episode(first_obs: np.ndarray) -> dict[str, list]:
    return {"obs": [np.array(first_obs, dtype=np.float32)], "action": [], "reward": []}


def _arrays(episode: dict[str, list], terminated: bool) -> tuple[np.ndarray, ...]:
    """obs, action, reward, terminated, truncated: one of the last two set at the last step."""
    last = np.arange(len(episode["action"])) == len(episode["action"]) - 1
    obs, action, reward = np.stack(episode["obs"]), np.stack(episode["action"]), np.array(episode["reward"])
    return obs, action, reward, last & terminated, last & (not terminated)


# ---- the agent's real state, kept across a dream phase ---------------------------------------


@contextlib.contextmanager
def real_state_kept(agent: BaseAlgorithm, real_envs: int) -> Iterator[None]:
    """Run a dream phase, then put back what the agent's real learning depends on.

    The attributes in ``REAL_STATE`` are rebound, never mutated, by SB3's collection, so keeping
    references is enough; the episode buffers are swapped for fresh ones, so dream episodes never
    reach ``rollout/ep_rew_mean``. The policy goes back to evaluation mode (SB3 collects in it) and
    gSDE's noise is resampled for the real envs.
    """
    kept = {name: getattr(agent, name) for name in REAL_STATE if hasattr(agent, name)}
    agent.ep_info_buffer, agent.ep_success_buffer = deque(maxlen=100), deque(maxlen=100)
    try:
        yield
    finally:
        for name, value in kept.items():
            setattr(agent, name, value)
        agent.policy.set_training_mode(False)
        if agent.use_sde:
            if isinstance(agent, OffPolicyAlgorithm):
                agent.actor.reset_noise(real_envs)
            else:
                agent.policy.reset_noise(real_envs)


class _DreamEpisodes(BaseCallback):
    """The callback of the agent's dream collection: keeps the returns of finished dream episodes."""

    def __init__(self) -> None:
        super().__init__()
        self.returns: list[float] = []

    def _on_step(self) -> bool:
        self.returns.extend(float(info["episode"]["r"]) for info in self.locals["infos"] if "episode" in info)
        return True


# ---- Dyna ------------------------------------------------------------------------------------


class DreamTraining(BaseCallback):
    """Train an SB3 agent in a dream of its own real data while it learns from the real env (Dyna).

    ::

        agent = PPO("MlpPolicy", "CartPole-v1", n_steps=256)
        agent.learn(3_000, callback=DreamTraining(seed=0))

    Works with PPO and A2C (dream rollouts of ``rollout_steps`` steps per dream, then the agent's
    ``train``) and SAC, TD3, DDPG and DQN (dream transitions into a replay buffer of the last
    ``dream_steps``, and ``gradient_steps`` on it, the agent's exploration acting). Schedules
    (learning rate, DQN's epsilon) see the real progress. The agent's env must not be a
    VecNormalize: dreams are in the env's own units.

    It logs ``dyna/phases``, ``dyna/dream_steps`` (all phases), ``dyna/dream_return`` (finished
    dream episodes of the last phase), ``dyna/real_steps_recorded``, ``dyna/model_fit_loss`` and
    ``dyna/model_<loss>`` (held-out losses) to the agent's SB3 logger; ``history`` holds one row
    per phase and ``recorder.dataset`` the finished real episodes.

    :param world_model: the model to fit and dream in, used on its own device; None builds a small
        precise one (``DEFAULT_MODEL``) for the agent's spaces, on the agent's device
    :param dream_steps: agent steps (transitions) in the dream per phase
    :param every: real steps between dream phases (each refits the model first); a phase due
        waits for the agent's next rollout (PPO: every ``n_steps`` per env at most)
    :param start_after: real steps recorded before the first phase
    :param n_envs: dreams stepped as one batch
    :param horizon: a dream episode's time limit; None: the real env's (its spec's
        ``max_episode_steps``), else 1000
    :param temperature: the dynamics' sampling temperature
    :param start: dreams start from real reset observations (``"initial"``) or any real state
        (``"any"``, which practises states near failure)
    :param rollout_steps: steps per dream between updates. None: on-policy, as many transitions
        per update as the real rollout (``n_steps * n_envs`` of the agent); off-policy, the agent's
        ``train_freq`` (in steps)
    :param gradient_steps: off-policy gradient steps per phase; None: the agent's own ratio of
        gradient steps to env steps
    :param fit_steps: gradient steps of the model's first fit (None: its ``fit_config.steps``)
    :param refit_steps: gradient steps of each later fit (None: its ``fit_config.refit_steps``)
    :param save_dir: at the end of training, write a run folder there (:func:`save_run`): the
        agent, the model, the real episodes and, as its history, ``evaluation.history`` if given,
        else this callback's own rows
    :param env_id: the real env's Gymnasium id for ``save_dir``; None: the agent's env's spec id
    :param evaluation: a :class:`RealEvaluation` also passed to ``learn`` (``callback=[dyna, ev]``);
        it evaluates once more at the end, before the run is saved
    :param seed: seeds a default model and the dreams; None draws one
    """

    def __init__(
        self,
        world_model: WorldModel | None = None,
        *,
        dream_steps: int = 20_000,
        every: int = 1_000,
        start_after: int = 500,
        n_envs: int = 64,
        horizon: int | None = None,
        temperature: float = 1.0,
        start: str = "initial",
        rollout_steps: int | None = None,
        gradient_steps: int | None = None,
        fit_steps: int | None = None,
        refit_steps: int | None = None,
        save_dir: str | os.PathLike | None = None,
        env_id: str | None = None,
        evaluation: RealEvaluation | None = None,
        seed: int | None = None,
        verbose: int = 0,
    ):
        super().__init__(verbose)
        if world_model is not None and not isinstance(world_model, WorldModel):
            raise GenrlError(f"world_model: expected a WorldModel or None, got {type(world_model).__name__}")
        if evaluation is not None and not isinstance(evaluation, RealEvaluation):
            raise GenrlError(f"evaluation: expected a RealEvaluation or None, got {describe(evaluation)}")
        if save_dir is not None and not isinstance(save_dir, (str, os.PathLike)):
            raise GenrlError(f"save_dir: expected a folder path or None, got {describe(save_dir)}")
        if env_id is not None and (not isinstance(env_id, str) or not env_id):
            raise GenrlError(f"env_id: expected a Gymnasium environment id or None, got {describe(env_id)}")
        self.world_model = world_model
        self.dream_steps = check_int(dream_steps, "dream_steps", 1)
        self.every = check_int(every, "every", 1)
        self.start_after = check_int(start_after, "start_after", 1)
        self.n_envs = check_int(n_envs, "n_envs", 1)
        self.horizon = None if horizon is None else check_int(horizon, "horizon", 1)
        self.temperature = check_float(temperature, "temperature", 0.0)
        self.start = check_choice(start, "start", ("initial", "any"))
        self.rollout_steps = _optional_int(rollout_steps, "rollout_steps", 1)
        self.gradient_steps = _optional_int(gradient_steps, "gradient_steps", 0)
        self.fit_steps = _optional_int(fit_steps, "fit_steps", 0)
        self.refit_steps = _optional_int(refit_steps, "refit_steps", 0)
        self.save_dir = None if save_dir is None else Path(save_dir)
        self.env_id, self.evaluation = env_id, evaluation
        self.seed = fresh_seed(None if seed is None else check_int(seed, "seed", 0))
        self.recorder: EpisodeRecorder | None = None
        self.history: list[dict[str, Any]] = []
        self.phases = self.dream_steps_done = 0
        self._since_phase, self._due = 0, False
        self._rollout_buffer: RolloutBuffer | None = None
        self._replay_buffer: ReplayBuffer | None = None

    # ---- SB3's hooks --------------------------------------------------------------------------

    def _init_callback(self) -> None:
        agent = self.model
        check_agent(agent, "DreamTraining")
        if self.world_model is None:
            self.world_model = WorldModel(
                agent.observation_space, agent.action_space, seed=self.seed, **DEFAULT_MODEL
            ).to(agent.device)
        self.world_model.check_env_spaces(agent.observation_space, agent.action_space)
        if self.recorder is None:
            self.recorder = EpisodeRecorder(agent.observation_space, agent.action_space)
        spec = _env_spec(self.training_env)
        if self.horizon is None:
            limit = getattr(spec, "max_episode_steps", None)
            self.horizon = int(limit) if limit else DEFAULT_HORIZON
        if self.save_dir is not None and self.env_id is None:
            self.env_id = getattr(spec, "id", None)
            if not self.env_id:
                raise GenrlError(
                    "DreamTraining: expected env_id for save_dir (the agent's env has no Gymnasium spec id)"
                )

    def _on_training_start(self) -> None:
        if self.evaluation is not None and getattr(self.evaluation, "model", None) is not self.model:
            raise GenrlError(
                "DreamTraining evaluation: expected the RealEvaluation to be passed to learn() too, "
                "e.g. agent.learn(n, callback=[dyna, evaluation])"
            )
        self.recorder.start(self.model._last_obs)

    def _on_step(self) -> bool:
        # After the real env's step, before SB3 stores it: _last_obs is still the step's start.
        actions = (
            self.locals["clipped_actions"] if "clipped_actions" in self.locals else self.locals["actions"]
        )
        new_obs, rewards, dones, infos = (self.locals[k] for k in ("new_obs", "rewards", "dones", "infos"))
        self.recorder.step(actions, rewards, dones, infos, new_obs)
        self._since_phase += len(dones)
        if self.recorder.steps >= self.start_after and (self.phases == 0 or self._since_phase >= self.every):
            self._due = True
        return True

    def _on_rollout_start(self) -> None:
        # Between rollouts: an on-policy agent's next real rollout is then all of its new policy.
        if self._due:
            self.dream_phase()

    def _on_training_end(self) -> None:
        if self.save_dir is None:
            return
        if self.evaluation is not None:
            self.evaluation.finish()
        if int(self.world_model.trained_steps) == 0:
            warnings.warn(
                f"DreamTraining: the world model was never fitted ({self.recorder.steps} of "
                f"start_after={self.start_after} real steps recorded); nothing saved to {self.save_dir}",
                stacklevel=2,
            )
            return
        history = self.evaluation.history if self.evaluation is not None else self.history
        save_run(self.save_dir, self.model, self.world_model, self.recorder.snapshot(), self.env_id, history)

    # ---- a dream phase -----------------------------------------------------------------------

    def dream_phase(self) -> dict[str, Any]:
        """Refit the model on the real episodes so far, then train the agent in its dream."""
        started = time.time()
        dataset = self.recorder.snapshot()
        losses = self._fit(dataset)
        fitted = time.time()
        env = VecMonitor(
            DreamVecEnv(
                self.world_model,
                self.n_envs,
                dataset,
                self.horizon,
                temperature=self.temperature,
                start=self.start,
                seed=self.seed + self.phases,
                # No support limit: it cut this Dyna test's CartPole from 500 to 127 (issue 14 note).
                support=None,
            )
        )
        episodes = _DreamEpisodes()
        episodes.init_callback(self.model)
        with real_state_kept(self.model, self.training_env.num_envs):
            if isinstance(self.model, OnPolicyAlgorithm):
                steps, gradient_steps = self._dream_on_policy(env, episodes), None
            else:
                steps, gradient_steps = self._dream_off_policy(env, episodes)
        self.phases += 1
        self.dream_steps_done += steps
        self._since_phase, self._due = 0, False
        row = {
            "phase": self.phases,
            "real_steps": self.recorder.steps,
            "dream_steps": steps,
            "gradient_steps": gradient_steps,
            "dream_return_mean": float(np.mean(episodes.returns)) if episodes.returns else None,
            "dream_episodes": len(episodes.returns),
            "model_fit_loss": float(total_loss(losses, self.world_model.fit_config)),
            "model_losses": losses,
            "fit_time_s": fitted - started,
            "dream_time_s": time.time() - fitted,
        }
        self.history.append(row)
        self._log(row)
        return row

    def _fit(self, dataset: RolloutDataset) -> dict[str, float]:
        model = self.world_model
        first = int(model.trained_steps) == 0
        steps = self.fit_steps if first else self.refit_steps
        if steps is None:
            steps = model.fit_config.steps if first else model.fit_config.refit_steps
        return {k: float(v) for k, v in model.fit(dataset, steps=steps, progress=False).items()}

    def _dream_on_policy(self, env: VecEnv, episodes: _DreamEpisodes) -> int:
        """Rollouts of the agent in the dream, each followed by the agent's own ``train``."""
        agent: OnPolicyAlgorithm = self.model
        steps = self.rollout_steps or max(1, math.ceil(agent.n_steps * agent.n_envs / env.num_envs))
        if self._rollout_buffer is None:
            self._rollout_buffer = agent.rollout_buffer_class(
                steps,
                agent.observation_space,
                agent.action_space,
                device=agent.device,
                gamma=agent.gamma,
                gae_lambda=agent.gae_lambda,
                n_envs=env.num_envs,
                **agent.rollout_buffer_kwargs,
            )
        agent.rollout_buffer = self._rollout_buffer  # what agent.train() reads
        agent._last_obs, agent._last_episode_starts = env.reset(), np.ones(env.num_envs, dtype=bool)
        real_steps = agent.num_timesteps
        rollouts = max(1, round(self.dream_steps / (steps * env.num_envs)))
        for _ in range(rollouts):
            agent.collect_rollouts(env, episodes, self._rollout_buffer, steps)
            agent.num_timesteps = real_steps  # schedules and logs see the real progress
            agent.train()
        return rollouts * steps * env.num_envs

    def _dream_off_policy(self, env: VecEnv, episodes: _DreamEpisodes) -> tuple[int, int]:
        """Dream transitions into a replay buffer of the last ``dream_steps``, and gradient steps on it."""
        agent: OffPolicyAlgorithm = self.model
        if self._replay_buffer is None:
            self._replay_buffer = ReplayBuffer(
                max(self.dream_steps, env.num_envs),
                agent.observation_space,
                agent.action_space,
                device=agent.device,
                n_envs=env.num_envs,
            )
        agent.replay_buffer = self._replay_buffer  # what agent.train() samples from
        agent._last_obs = agent._last_original_obs = env.reset()
        chunk = self.rollout_steps or _train_freq_steps(agent)
        ratio = self._gradient_ratio(agent)
        noise = _dream_noise(agent.action_noise, env.num_envs)
        real_steps, steps, owed, gradient_steps = agent.num_timesteps, 0, 0.0, 0
        while steps < self.dream_steps:
            rollout = agent.collect_rollouts(
                env, episodes, TrainFreq(chunk, TrainFrequencyUnit.STEP), self._replay_buffer, noise, 0, None
            )
            agent.num_timesteps = real_steps  # schedules (DQN's epsilon) see the real progress
            steps += rollout.episode_timesteps
            owed += ratio * rollout.episode_timesteps
            if int(owed) > 0:
                agent.train(gradient_steps=int(owed), batch_size=agent.batch_size)
                gradient_steps += int(owed)
                owed -= int(owed)
        return steps, gradient_steps

    def _gradient_ratio(self, agent: OffPolicyAlgorithm) -> float:
        """Gradient steps per dream transition."""
        if self.gradient_steps is not None:
            return self.gradient_steps / self.dream_steps
        if agent.gradient_steps < 0:  # SB3's -1: one per env step collected
            return 1.0
        return agent.gradient_steps / (_train_freq_steps(agent) * agent.n_envs)

    def _log(self, row: dict[str, Any]) -> None:
        self.logger.record("dyna/phases", self.phases)
        self.logger.record("dyna/dream_steps", self.dream_steps_done)
        self.logger.record("dyna/real_steps_recorded", row["real_steps"])
        if row["dream_return_mean"] is not None:
            self.logger.record("dyna/dream_return", row["dream_return_mean"])
        self.logger.record("dyna/model_fit_loss", row["model_fit_loss"])
        for name, value in row["model_losses"].items():
            self.logger.record(f"dyna/model_{name}", value)
        if self.verbose:
            print(
                f"dyna phase {self.phases}: {row['real_steps']} real steps, {row['dream_steps']} dream "
                f"steps, dream return {row['dream_return_mean']}, model loss {row['model_fit_loss']:.4g}"
            )


def check_agent(agent: Any, who: str) -> None:
    """Raise GenrlError unless ``agent`` is an SB3 on- or off-policy algorithm on a plain env."""
    if not isinstance(agent, (OnPolicyAlgorithm, OffPolicyAlgorithm)):
        raise GenrlError(
            f"{who}: expected an SB3 on-policy (PPO, A2C) or off-policy (SAC, TD3, DDPG, DQN) agent, "
            f"got {type(agent).__name__}"
        )
    if agent.get_vec_normalize_env() is not None:
        raise GenrlError(
            f"{who}: expected an agent whose env is not a VecNormalize (dreams are not), got one"
        )
    if isinstance(agent, OnPolicyAlgorithm) and agent.rollout_buffer_class is not RolloutBuffer:
        raise GenrlError(
            f"{who}: expected the agent's rollout buffer to be SB3's RolloutBuffer, "
            f"got {agent.rollout_buffer_class.__name__}"
        )


def _optional_int(value: Any, name: str, low: int) -> int | None:
    return None if value is None else check_int(value, name, low)


def _env_spec(venv: VecEnv) -> Any:
    """The Gymnasium spec of a VecEnv's first env, or None."""
    try:
        return venv.get_attr("spec", [0])[0]
    except Exception:  # a VecEnv without specs (e.g. a DreamVecEnv), or a remote env that fails
        return None


def _train_freq_steps(agent: OffPolicyAlgorithm) -> int:
    freq = agent.train_freq
    return max(1, int(freq.frequency)) if freq.unit == TrainFrequencyUnit.STEP else 1


def _dream_noise(noise: ActionNoise | None, n_envs: int) -> ActionNoise | None:
    """The agent's action noise for ``n_envs`` dreams: a copy, so the real noise keeps its state."""
    if noise is None:
        return None
    base = noise.base_noise if isinstance(noise, VectorizedActionNoise) else noise
    return VectorizedActionNoise(copy.deepcopy(base), n_envs) if n_envs > 1 else copy.deepcopy(base)


# ---- evaluation in the real env --------------------------------------------------------------


class RealEvaluation(BaseCallback):
    """Evaluate the agent in the real env every ``every`` agent steps, into its own TensorBoard run.

    Each evaluation plays ``n_episodes`` episodes (deterministic actions by default, the same
    start states each time: ``seed``), logs ``real/eval_return_mean``, ``real/eval_return_std`` and
    ``real/eval_episode_length`` through the agent's SB3 logger at the agent's step, and appends
    a row to ``history``. The agent may learn from the real env or in a dream (DreamVecEnv).

    :param env: a Gymnasium id (``n_episodes`` envs, up to 32, played as one batch), a gymnasium
        Env or an SB3 VecEnv; wrapped in a Monitor when it is not one
    :param every: agent steps between evaluations (``num_timesteps``: n per step of n envs)
    :param n_episodes: episodes per evaluation
    :param final: evaluate once more at the end of training (unless just done)
    :param seed: seeds the episodes' start states; None draws one
    """

    def __init__(
        self,
        env: str | gym.Env | VecEnv,
        every: int = 10_000,
        n_episodes: int = 10,
        *,
        deterministic: bool = True,
        final: bool = True,
        seed: int | None = 0,
        verbose: int = 0,
    ):
        super().__init__(verbose)
        self.every = check_int(every, "every", 1)
        self.n_episodes = check_int(n_episodes, "n_episodes", 1)
        self.deterministic, self.final = bool(deterministic), bool(final)
        self.seed = fresh_seed(None if seed is None else check_int(seed, "seed", 0, 2**32 - 1))
        self.env = _eval_env(env, min(self.n_episodes, MAX_EVAL_ENVS))
        self.history: list[dict[str, Any]] = []
        self._last: int | None = None
        self._normalized: VecNormalize | None = None

    def _init_callback(self) -> None:
        agent = self.model
        check_spaces_match(
            (agent.observation_space, agent.action_space),
            (self.env.observation_space, self.env.action_space),
            "agent",
            "evaluation env",
        )

    def _on_training_start(self) -> None:
        self._last = self.model.num_timesteps

    def _on_step(self) -> bool:
        if self.model.num_timesteps - self._last >= self.every:
            self.evaluate()
        return True

    def _on_training_end(self) -> None:
        self.finish()

    def finish(self) -> None:
        """The final evaluation, if ``final`` and none was made at the agent's current step."""
        if self.final and (not self.history or self.history[-1]["timesteps"] != self.model.num_timesteps):
            self.evaluate()

    def evaluate(self) -> dict[str, Any]:
        """Evaluate now: log, append and return one row of ``history``."""
        agent = getattr(self, "model", None)  # SB3 sets it when learn() starts
        if agent is None:
            raise GenrlError(
                "RealEvaluation.evaluate: expected the callback to be passed to agent.learn first"
            )
        env = self._synced_env(agent)
        env.seed(self.seed)
        returns, lengths = evaluate_policy(
            agent, env, self.n_episodes, deterministic=self.deterministic, return_episode_rewards=True
        )
        row = {
            "timesteps": int(agent.num_timesteps),
            "eval_return_mean": float(np.mean(returns)),
            "eval_return_std": float(np.std(returns)),
            "eval_episode_length": float(np.mean(lengths)),
            "eval_episodes": len(returns),
        }
        self.history.append(row)
        self._last = row["timesteps"]
        for key in ("eval_return_mean", "eval_return_std", "eval_episode_length"):
            self.logger.record(f"real/{key}", row[key])
        self.logger.dump(row["timesteps"])
        if self.verbose:
            print(f"real evaluation at {row['timesteps']} steps: return {row['eval_return_mean']:.1f}")
        return row

    def _synced_env(self, agent: BaseAlgorithm) -> VecEnv:
        """The eval env, normalised as the agent's training env is when that is a VecNormalize."""
        normalize = agent.get_vec_normalize_env()
        if normalize is None:
            return self.env
        if self._normalized is None:
            self._normalized = VecNormalize(self.env, training=False, norm_reward=False)
        for name in ("obs_rms", "clip_obs", "epsilon", "norm_obs"):
            setattr(self._normalized, name, copy.deepcopy(getattr(normalize, name)))
        return self._normalized


def _eval_env(env: Any, n: int) -> VecEnv:
    """A monitored VecEnv: ``n`` copies of an env id, or the given env."""
    if isinstance(env, str):
        make_env(env).close()  # an unknown id fails here, in one line, not in DummyVecEnv
        return DummyVecEnv([lambda: Monitor(make_env(env)) for _ in range(n)])
    if isinstance(env, VecEnv):
        monitored = is_vecenv_wrapped(env, VecMonitor) or env.env_is_wrapped(Monitor)[0]
        return env if monitored else VecMonitor(env)
    if isinstance(env, gym.Env):
        return DummyVecEnv([lambda: env if is_wrapped(env, Monitor) else Monitor(env)])
    raise GenrlError(
        f"env: expected a Gymnasium id, a gymnasium.Env or an SB3 VecEnv, got {type(env).__name__}"
    )
