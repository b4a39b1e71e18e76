"""collect(..., backend="ray"): copies of a real env on Ray workers, whole episodes into one dataset.

The unit of work is one whole episode. Episode ``k`` is played by whichever worker is free, from
seeds derived from ``(seed, k)`` alone, and the driver appends episodes to the dataset in the
order of ``k`` as soon as every earlier one has arrived. So:

- the dataset's guarantees hold: only the driver writes, through ``RolloutDataset.add_episode``
  (atomic appends), and workers return episodes that never include a reset step;
- the data depends on the seed, the env and the policy, never on the number of workers or on
  which finished first: 1 worker and 8 workers record the same episodes;
- a worker that dies takes only its unfinished episode with it. That episode was never written;
  a new worker plays the same ``k`` from the same seeds, so nothing is lost and nothing is stored
  twice.

With a step budget, episodes are played whole and the one that crosses the budget is cut there
(``truncated`` on its last step), as the local path does. Episodes started speculatively past the
budget are dropped unwritten.

Ray is the optional extra ``genrl[ray]``. The Ray this process already runs is used; else a new
local one is started (``num_cpus=workers``), or ``address`` (``"auto"`` or ``host:port``) joins
an existing cluster, whose workers need genrl and the env's package installed.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np

from genrl.data.dataset import RolloutDataset
from genrl.errors import GenrlError
from genrl.util.checks import one_line
from genrl.util.progress import progress_bar

MAX_TRIES = 3  # plays of one episode that may end with its worker dying
BUFFERED_PER_WORKER = 4  # finished episodes held per worker while an earlier one still runs


def require_ray() -> Any:
    """The ``ray`` module, or a one-line error saying how to install it."""
    try:
        import ray
    except ImportError:
        raise GenrlError(
            "backend='ray' needs Ray, which is not installed: pip install 'genrl[ray]'"
        ) from None
    return ray


def init_ray(workers: int | None, address: str | None) -> Any:
    """Ray, connected: to ``address``, to the Ray already running in this process, or a new local one."""
    ray = require_ray()
    if not ray.is_initialized():
        kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
        if address is None:
            # "local": a new instance even if this machine runs a cluster, which only an explicit
            # address (or "auto") joins.
            address = "local"
            kwargs["num_cpus"] = workers
        try:
            ray.init(address=address, **kwargs)
        except (ConnectionError, ValueError, RuntimeError) as exc:
            where = "a new local instance" if address == "local" else address
            raise GenrlError(f"cannot start or reach Ray at {where}: {one_line(exc)}") from None
    return ray


def portable_policy(policy: Any) -> Any:
    """What is sent to the workers: an SB3 agent's policy network on the CPU (a copy), else ``policy``.

    An SB3 algorithm holds its env and buffers, which need not pickle; its ``policy`` module has
    the same ``predict``. The caller's agent is never moved off its device.
    """
    inner = getattr(policy, "policy", None)
    if hasattr(policy, "predict") and hasattr(inner, "predict") and hasattr(inner, "state_dict"):
        return copy.deepcopy(inner).to("cpu")
    return policy


def episode_seeds(seed: int, index: int) -> tuple[int, int]:
    """(env reset seed, action and exploration seed) of episode ``index``: a function of both alone."""
    env_seed, act_seed = np.random.SeedSequence([seed, index]).generate_state(2)
    return int(env_seed), int(act_seed)


class EpisodeWorker:
    """Plays whole episodes of its own copy of the env (the body of a Ray actor)."""

    def __init__(self, make: Callable[[], gym.Env], policy: Any, epsilon: float, deterministic: bool):
        import torch

        from genrl.data.collect import as_policy
        from genrl.util.spaces import ActionCodec

        torch.set_num_threads(1)  # one worker per CPU: threads inside a worker would fight the others
        self.env = make()
        self.space = self.env.action_space
        random = lambda obs: np.stack([self.space.sample() for _ in obs])  # noqa: E731
        self.act = as_policy(policy, ActionCodec(self.space), deterministic, random)
        self.epsilon = epsilon

    def play(self, index: int, seed: int, max_steps: int) -> dict[str, np.ndarray]:
        """Episode ``index``: to its end, or cut (truncated) after ``max_steps`` transitions."""
        from genrl.data.collect import _Episode

        env_seed, act_seed = episode_seeds(seed, index)
        self.space.seed(act_seed)
        rng = np.random.default_rng(act_seed)
        obs, _ = self.env.reset(seed=env_seed)
        episode = _Episode(index, obs)
        done = False
        while not done and len(episode.action) < max_steps:
            if not np.isfinite(obs).all():
                episode.check_finite()
            action = self.act(np.asarray(obs)[None])[0]
            if self.epsilon > 0 and rng.random() < self.epsilon:
                action = self.space.sample()
            obs, reward, terminated, truncated, _ = self.env.step(action)
            episode.add(action, reward, terminated, truncated, obs)
            done = bool(terminated or truncated)
        if not done:
            episode.truncated[-1] = True
        episode.check_finite()
        return {
            "obs": np.stack(episode.obs),
            "action": np.stack(episode.action),
            "reward": np.array(episode.reward, dtype=np.float32),
            "terminated": np.array(episode.terminated),
            "truncated": np.array(episode.truncated),
        }


def collect_on_ray(
    make: Callable[[], gym.Env],
    dataset: RolloutDataset,
    policy: Any,
    *,
    steps: int | None,
    episodes: int | None,
    seed: int,
    epsilon: float,
    deterministic: bool,
    workers: int,
    address: str | None,
    progress: bool,
) -> RolloutDataset:
    """Play episodes 0, 1, ... on ``workers`` Ray actors and append them in order (see the module doc)."""
    ray = init_ray(workers, address)
    actor_class = ray.remote(num_cpus=1)(EpisodeWorker)
    shipped = ray.put(portable_policy(policy))
    pool = _Pool(ray, lambda: actor_class.remote(make, shipped, epsilon, deterministic), workers, seed, steps)
    total, unit = (steps, "step") if steps is not None else (episodes, "episode")
    try:
        with progress_bar(total=total, desc="collect (ray)", unit=unit, disable=not progress) as bar:
            order = _InOrder(dataset, steps, episodes)
            pool.fill(order)
            while not order.finished():
                index, episode = pool.next_result()
                if episode is not None:
                    bar.update(order.add(index, episode, unit))
                pool.fill(order)
    finally:
        pool.close()
    return dataset


class _InOrder:
    """Appends finished episodes to the dataset in the order of their index, to the budget."""

    def __init__(self, dataset: RolloutDataset, steps: int | None, episodes: int | None):
        self.dataset, self.steps, self.episodes = dataset, steps, episodes
        self.waiting: dict[int, dict[str, np.ndarray]] = {}  # finished, after one still running
        self.appended = self.recorded = 0

    def finished(self) -> bool:
        if self.steps is not None:
            return self.recorded >= self.steps
        return self.appended >= self.episodes

    def wanted(self, submitted: int) -> bool:
        """Whether more episodes may be needed, ``submitted`` having been handed out."""
        return submitted < self.episodes if self.episodes is not None else not self.finished()

    def add(self, index: int, episode: dict[str, np.ndarray], unit: str) -> int:
        """Take episode ``index``; append every episode now in order. Returns the progress made."""
        self.waiting[index] = episode
        progress = 0
        while self.appended in self.waiting and not self.finished():
            budget = None if self.steps is None else self.steps - self.recorded
            ep = _cut(self.waiting.pop(self.appended), budget)
            self.dataset.add_episode(**ep)
            self.appended += 1
            self.recorded += len(ep["action"])
            progress += len(ep["action"]) if unit == "step" else 1
        return progress


class _Pool:
    """Ray actors playing episodes; a dead one is replaced and its episode played again."""

    def __init__(self, ray: Any, spawn: Callable[[], Any], workers: int, seed: int, steps: int | None):
        self.ray, self.spawn, self.seed = ray, spawn, seed
        self.max_steps = steps if steps is not None else 2**62
        self.actors = [spawn() for _ in range(workers)]
        self.idle = list(range(workers))
        self.running: dict[Any, tuple[int, int]] = {}  # task -> (episode index, actor slot)
        self.tries: dict[int, int] = {}
        self.submitted = 0

    def submit(self, slot: int, index: int) -> None:
        self.running[self.actors[slot].play.remote(index, self.seed, self.max_steps)] = (index, slot)

    def fill(self, order: _InOrder) -> None:
        """Give idle workers the next episodes while more may be needed and memory allows."""
        # Under a step budget this is speculative: the episodes still running may cover it.
        # Episodes that wait for an earlier, slower one are capped, so memory stays bounded.
        limit = BUFFERED_PER_WORKER * len(self.actors)
        while self.idle and order.wanted(self.submitted) and len(order.waiting) < limit:
            self.submit(self.idle.pop(), self.submitted)
            self.submitted += 1

    def next_result(self) -> tuple[int, dict[str, np.ndarray] | None]:
        """(index, episode) of the next task to end; episode None if its worker died."""
        ray = self.ray
        ready, _ = ray.wait(list(self.running), num_returns=1)
        index, slot = self.running.pop(ready[0])
        try:
            episode = ray.get(ready[0])
            self.idle.append(slot)
            return index, episode
        except ray.exceptions.RayActorError:
            self.tries[index] = self.tries.get(index, 0) + 1
            if self.tries[index] >= MAX_TRIES:
                raise GenrlError(
                    f"Ray workers died {self.tries[index]} times while playing episode {index}: "
                    "expected the env to run on a worker (see the Ray logs)"
                ) from None
            self.actors[slot] = self.spawn()  # the episode is played again, from its own seeds
            self.submit(slot, index)
            return index, None
        except ray.exceptions.RayTaskError as exc:
            cause = exc.cause if isinstance(exc.cause, Exception) else exc
            if isinstance(cause, GenrlError):
                raise GenrlError(f"episode {index} on a Ray worker: {cause}") from None
            raise GenrlError(f"episode {index} on a Ray worker failed: {one_line(cause)}") from None

    def close(self) -> None:
        for actor in self.actors:
            self.ray.kill(actor)


def _cut(ep: dict[str, np.ndarray], budget: int | None) -> dict[str, np.ndarray]:
    """The episode, cut to ``budget`` transitions (its last one then truncated) if it is longer."""
    length = len(ep["action"])
    if budget is None or length <= budget:
        return ep
    out = {"obs": ep["obs"][: budget + 1]}
    for key in ("action", "reward", "terminated", "truncated"):
        out[key] = ep[key][:budget].copy()
    out["terminated"][-1] = False
    out["truncated"][-1] = True
    return out
