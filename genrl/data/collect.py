"""collect(): run a real environment and append whole episodes to a RolloutDataset."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv

from genrl.data.dataset import RolloutDataset
from genrl.data.envs import make_env
from genrl.errors import GenrlError
from genrl.util.checks import check_choice, check_float, check_int
from genrl.util.progress import progress_bar
from genrl.util.seeding import fresh_seed
from genrl.util.spaces import ActionCodec

Policy = Callable[[np.ndarray], Any]
BACKENDS = ("local", "ray")


def collect(
    env: str | gym.Env | VectorEnv | Callable[[], gym.Env],
    steps: int | None = None,
    policy: Policy | Any | None = None,
    *,
    episodes: int | None = None,
    seed: int | None = None,
    path: str | os.PathLike | None = None,
    dataset: RolloutDataset | None = None,
    epsilon: float = 0.0,
    deterministic: bool = False,
    progress: bool = True,
    backend: str = "local",
    workers: int | None = None,
    address: str | None = None,
) -> RolloutDataset:
    """Record ``steps`` real transitions and append them, as episodes, to a dataset.

    :param env: an env id, a ``gymnasium.Env``, a ``gymnasium`` vector env, or a function that
        makes an env (for ``backend="ray"``: an id or such a function, as workers make their own)
    :param steps: transitions to record (reset steps of vector envs are never counted)
    :param episodes: instead of ``steps``, the number of whole episodes to record; episodes still
        running when they are complete are dropped, not cut
    :param policy: ``None`` for uniform random actions, an SB3 model (anything with ``predict``),
        or a callable mapping a batch of observations (n_envs, *obs_shape) to a batch of actions;
        a policy with an ``episode_start(starts)`` method is told, before each batch, which envs'
        observations begin an episode (a recurrent policy resets its state there)
    :param seed: seeds the env's reset and the random actions; None draws fresh entropy
    :param path: dataset folder to create or append to (ignored if ``dataset`` is given)
    :param dataset: an existing dataset to append to
    :param epsilon: probability of replacing the policy's action by a random one, per env and step
    :param deterministic: passed to an SB3 model's ``predict``
    :param backend: ``"local"`` steps the env in this process; ``"ray"`` plays whole episodes on
        ``workers`` Ray workers (the ``genrl[ray]`` extra; see :mod:`genrl.data.ray_collect`)
    :param workers: Ray workers (default: 2); only with ``backend="ray"``
    :param address: an existing Ray cluster to use (default: the running or a new local Ray)
    :return: the dataset, holding the new episodes. An episode still running when ``steps`` is
        reached is stored with ``truncated`` set on its last step.
    """
    if (steps is None) == (episodes is None):
        raise GenrlError(f"expected either steps or episodes, got steps={steps!r} and episodes={episodes!r}")
    if steps is not None:
        steps = check_int(steps, "collect steps", 1)
    else:
        episodes = check_int(episodes, "collect episodes", 1)
    epsilon = check_float(epsilon, "collect epsilon", 0.0, 1.0)
    args = (env, steps, episodes, policy, seed, path, dataset, epsilon, deterministic, progress)
    if check_choice(backend, "collect backend", BACKENDS) == "ray":
        return _collect_on_ray(*args, workers, address)
    if workers is not None or address is not None:
        raise GenrlError(
            f"workers and address are settings of backend='ray': expected backend='ray' with them, "
            f"got backend={backend!r}"
        )
    return _collect_locally(*args)


def _target(dataset: RolloutDataset | None, path, obs_space, act_space) -> RolloutDataset:
    """The dataset episodes go to: the caller's (its spaces checked), or one opened at ``path``."""
    if dataset is not None:
        dataset.check_spaces(obs_space, act_space)
        return dataset
    if path is not None:
        return RolloutDataset.open(path, obs_space, act_space)
    return RolloutDataset(obs_space, act_space)


def _collect_locally(
    env, steps, episodes, policy, seed, path, dataset, epsilon, deterministic, progress
) -> RolloutDataset:
    """collect() in this process, on a vector env of the given env."""
    venv, owned = _as_vector_env(env)
    try:
        obs_space, act_space = venv.single_observation_space, venv.single_action_space
        dataset = _target(dataset, path, obs_space, act_space)
        random = lambda obs: venv.action_space.sample()  # noqa: E731
        act = as_policy(policy, ActionCodec(act_space), deterministic, random)
        limit = _Limit(steps, episodes)
        hook = getattr(policy, "episode_start", None)
        _run(venv, limit, act, dataset, seed, epsilon, progress, check_obs=policy is not None, hook=hook)
    finally:
        if owned:
            venv.close()
    return dataset


def _as_vector_env(env: str | gym.Env | VectorEnv | Callable[[], gym.Env]) -> tuple[VectorEnv, bool]:
    if isinstance(env, str):
        make_env(env).close()  # fail fast with a clear message for an unknown id
        return gym.make_vec(env, num_envs=1, vectorization_mode="sync"), True
    if isinstance(env, VectorEnv):
        return env, False
    if isinstance(env, gym.Env):
        # The user keeps ownership of their instance; we never close it.
        return gym.vector.SyncVectorEnv([lambda: env]), False
    if callable(env):
        return gym.vector.SyncVectorEnv([_checked_maker(env)]), True
    raise GenrlError(
        f"env must be an env id, a gymnasium.Env, a vector env or a function making an env, "
        f"got {type(env).__name__}"
    )


def _checked_maker(make: Callable[[], Any]) -> Callable[[], gym.Env]:
    """``make``, checked to return a ``gymnasium.Env`` when it is called."""

    def checked() -> gym.Env:
        env = make()
        if not isinstance(env, gym.Env):
            raise GenrlError(f"the env function must return a gymnasium.Env, got {type(env).__name__}")
        return env

    return checked


def _collect_on_ray(
    env, steps, episodes, policy, seed, path, dataset, epsilon, deterministic, progress, workers, address
) -> RolloutDataset:
    """collect() on Ray workers: each makes its own env, from an id or a function."""
    from genrl.data.ray_collect import collect_on_ray, require_ray

    require_ray()
    workers = check_int(2 if workers is None else workers, "collect workers", 1)
    if isinstance(env, str):
        probe = make_env(env)  # fail fast, here, for an unknown id; and the spaces
        make: Callable[[], gym.Env] = functools.partial(make_env, env)
    elif isinstance(env, (gym.Env, VectorEnv)) or not callable(env):
        raise GenrlError(
            "backend='ray' needs an env id or a function that makes the env (each worker makes its "
            f"own): got {type(env).__name__}"
        )
    else:
        make = _checked_maker(env)
        probe = make()
    obs_space, act_space = probe.observation_space, probe.action_space
    probe.close()
    dataset = _target(dataset, path, obs_space, act_space)
    if policy is not None and not (hasattr(policy, "predict") or callable(policy)):
        raise GenrlError(f"policy must be None, an SB3 model or a callable, got {type(policy).__name__}")
    return collect_on_ray(
        make,
        dataset,
        policy,
        steps=steps,
        episodes=episodes,
        seed=fresh_seed(seed),
        epsilon=epsilon,
        deterministic=deterministic,
        workers=workers,
        address=address,
        progress=progress,
    )


def as_policy(
    policy: Any, codec: ActionCodec, deterministic: bool = False, random: Policy | None = None
) -> Policy:
    """The policy as a callable from a batch of observations to a validated batch of actions.

    :param policy: an SB3 model (anything with ``predict``), a callable, or ``None`` for ``random``
    """
    if policy is None and random is not None:
        return random
    if hasattr(policy, "predict"):
        act = lambda obs: policy.predict(obs, deterministic=deterministic)[0]  # noqa: E731
    elif callable(policy):
        act = policy
    else:
        allowed = "None, an SB3 model or a callable" if random is not None else "an SB3 model or a callable"
        raise GenrlError(f"policy must be {allowed}, got {type(policy).__name__}")
    # Checked here, where they enter: a bad action would otherwise fail inside the env or the dataset.
    return lambda obs: codec.as_batch(act(obs), len(obs), "actions from the policy")


class _Limit:
    """When collection stops: after a number of transitions, or of whole episodes."""

    def __init__(self, steps: int | None, episodes: int | None):
        self.steps, self.episodes = steps, episodes
        self.recorded = self.finished = 0

    @property
    def total(self) -> int:
        return int(self.steps if self.steps is not None else self.episodes)

    def done(self) -> bool:
        if self.steps is not None:
            return self.recorded >= self.steps
        return self.finished >= self.episodes


def _check_finite(values: np.ndarray, what: str, env: int, first_step: int) -> None:
    """Envs must return finite observations and rewards: NaN would poison the dataset and the model.

    ``values`` are one episode's, over time; ``values[0]`` belongs to step ``first_step`` (0: the reset).
    """
    finite = np.isfinite(values)
    if not finite.all():
        where = tuple(np.argwhere(~finite)[0])
        step = first_step + int(where[0])
        raise GenrlError(
            f"the env returned non-finite {what}: expected finite values, got {values[where].item()!r} "
            f"(env {env}, step {step} of an episode{', its reset' if step == 0 else ''})"
        )


def _run(
    venv: VectorEnv,
    limit: _Limit,
    policy: Policy,
    dataset: RolloutDataset,
    seed: int | None,
    epsilon: float,
    progress: bool,
    check_obs: bool,
    hook: Callable[[np.ndarray], None] | None = None,
) -> None:
    """Step ``venv`` until ``limit`` is reached; ``hook(starts)`` hears which observations begin episodes.

    Episodes are checked for NaN and inf as they are stored; ``check_obs`` also checks each step's
    observations before a policy acts on them, so that a bad env is not reported as a bad policy.
    """
    n = venv.num_envs
    mode = venv.metadata.get("autoreset_mode", AutoresetMode.NEXT_STEP)
    if mode not in (AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP):
        raise GenrlError(f"vector env autoreset mode must be NEXT_STEP or SAME_STEP, got {mode}")
    rng = np.random.default_rng(seed)
    venv.action_space.seed(seed)
    obs, _ = venv.reset(seed=seed)
    episodes = [_Episode(i, obs[i]) for i in range(n)]
    resetting = np.zeros(n, dtype=bool)  # NEXT_STEP: this env's next step() only resets it
    starts = np.ones(n, dtype=bool)  # which observations in obs begin an episode
    unit = "step" if limit.steps is not None else "episode"
    with progress_bar(total=limit.total, desc="collect", unit=unit, disable=not progress) as bar:
        while not limit.done():
            if check_obs and not np.isfinite(obs).all():
                episodes[int(np.argwhere(~np.isfinite(obs))[0][0])].check_finite()
            if hook is not None:
                hook(starts)
            action = _explore(np.asarray(policy(obs)), venv, rng, epsilon)
            next_obs, reward, terminated, truncated, info = venv.step(action)
            for i in range(n):
                if resetting[i]:
                    episodes[i] = _Episode(i, next_obs[i])
                    continue
                if limit.done():
                    continue
                done = bool(terminated[i] or truncated[i])
                final = next_obs[i]
                if done and mode == AutoresetMode.SAME_STEP:
                    final = info["final_obs"][i]
                episodes[i].add(action[i], reward[i], terminated[i], truncated[i], final)
                limit.recorded += 1
                if done:
                    episodes[i].flush(dataset)
                    episodes[i] = _Episode(i, next_obs[i])
                    limit.finished += 1
                bar.update(1 if unit == "step" else int(done))
            ended = np.asarray(terminated | truncated)
            # NEXT_STEP: the step after an episode's last is the reset; SAME_STEP: that step itself.
            starts = resetting.copy() if mode == AutoresetMode.NEXT_STEP else ended
            resetting = ended if mode == AutoresetMode.NEXT_STEP else np.zeros(n, bool)
            obs = next_obs
    if limit.steps is not None:
        for episode in episodes:
            episode.flush(dataset, cut=True)


def _explore(action: np.ndarray, venv: VectorEnv, rng: np.random.Generator, epsilon: float) -> np.ndarray:
    """``action`` with each env's replaced by a random one with probability ``epsilon``."""
    if epsilon > 0:
        n = len(action)
        explore = rng.random(n) < epsilon
        if explore.any():
            random_action = venv.action_space.sample()
            action = np.where(explore.reshape((n,) + (1,) * (action.ndim - 1)), random_action, action)
    return action


class _Episode:
    """One env's episode being recorded."""

    def __init__(self, env: int, first_obs: np.ndarray):
        self.env = env
        self.obs = [np.array(first_obs)]
        self.action, self.reward, self.terminated, self.truncated = [], [], [], []

    def add(self, action, reward, terminated, truncated, next_obs) -> None:
        self.action.append(np.array(action))
        self.reward.append(float(reward))
        self.terminated.append(bool(terminated))
        self.truncated.append(bool(truncated))
        self.obs.append(np.array(next_obs))

    def check_finite(self) -> None:
        """Raise GenrlError naming the env and step if the env returned NaN or inf so far."""
        _check_finite(np.stack(self.obs), "observations", self.env, first_step=0)
        _check_finite(np.array(self.reward), "rewards", self.env, first_step=1)

    def flush(self, dataset: RolloutDataset, cut: bool = False) -> None:
        """Store the episode; ``cut`` marks one that collection stopped as truncated."""
        if not self.action:
            return
        if cut and not (self.terminated[-1] or self.truncated[-1]):
            self.truncated[-1] = True
        # Checked once per episode rather than on every step, so that collection stays fast.
        self.check_finite()
        dataset.add_episode(
            np.stack(self.obs),
            np.stack(self.action),
            np.array(self.reward, dtype=np.float32),
            np.array(self.terminated),
            np.array(self.truncated),
        )
        self.action = []
