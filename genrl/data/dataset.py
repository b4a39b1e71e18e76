"""RolloutDataset: whole episodes of a real environment, on disk, with sampling for training.

On-disk schema (version 2), one folder per dataset::

    dataset.json            {"format": "genrl.rollouts", "version": 2,
                             "observation_space": <space JSON>, "action_space": <space JSON>}
    episodes/000000.npz     one file per episode, written atomically, arrays:
        obs         (T+1, *obs_shape)           obs[0] is the reset observation, obs[t+1] follows action[t];
                                                float32, or for images (H, W, C) the space's own
                                                dtype (uint8 pixels, bool cells), deflated
        action      (T, *action_shape)          int64 for Discrete, float32 for Box
        reward      (T,) float32                reward[t] for the transition obs[t] -> obs[t+1]
        terminated  (T,) bool                   only the last step may be True
        truncated   (T,) bool                   last step only (time limit or collection stopped)
    episodes/000000.json    optional, beside its episode: a JSON object about the episode as a whole
                            (``Episode.info``; generated episodes record their guide and predicted
                            return). Readers that do not know it ignore it.

Version 1 (genrl 0.1 to 0.3) held vector observations only, as float32 in uncompressed archives;
it loads unchanged. Version 2 keeps image frames as the env gave them (uint8 is a quarter of
float32) and compresses their files (``np.savez_compressed``; CarRacing's frames deflate about
5x), and in memory an image dataset is never concatenated into one array: windows and frames are
gathered from the episodes, so memory holds each frame once.

Files are numpy ``.npz`` archives (as ``np.savez`` writes them). Loading reads arrays of numbers
and booleans only, never pickles, and checks each array's header against the bytes it holds, so
loading never runs code or allocates more than the file holds.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from gymnasium import spaces

from genrl.data.episode import FIELDS, Episode, window_index
from genrl.errors import GenrlError
from genrl.util.checks import describe, one_line
from genrl.util.files import check_format, read_json, read_npz, write_json, write_npz
from genrl.util.spaces import (
    ActionCodec,
    check_spaces_match,
    check_supported,
    is_image,
    space_from_json,
    space_to_json,
)

FORMAT = "genrl.rollouts"
VERSION = 2
READS = (1, 2)
KEYS = FIELDS  # the arrays of each episode file


class RolloutDataset:
    """Episodes of (obs, action, reward, terminated, truncated), in memory and optionally on disk.

    :param observation_space: the real env's observation space
    :param action_space: the real env's action space
    :param path: folder to persist episodes in; ``None`` keeps them in memory only
    """

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        path: str | os.PathLike | None = None,
    ):
        check_supported(observation_space, action_space)
        self.observation_space = observation_space
        self.action_space = action_space
        self.image = is_image(observation_space)
        self.path = Path(path) if path is not None else None
        self.episodes: list[Episode] = []
        self._flat: dict[str, np.ndarray] | None = None
        if self.path is not None:
            meta_path = self.path / "dataset.json"
            if meta_path.exists():
                raise GenrlError(f"a dataset already exists at {self.path}; open it with RolloutDataset.load")
            write_json(meta_path, self._meta())

    # ---- persistence -------------------------------------------------------------------------

    def _meta(self) -> dict:
        return {
            "format": FORMAT,
            "version": VERSION,
            "observation_space": space_to_json(self.observation_space),
            "action_space": space_to_json(self.action_space),
        }

    @classmethod
    def load(cls, path: str | os.PathLike) -> RolloutDataset:
        """Open a dataset folder, validating every episode file."""
        path = Path(path)
        meta = read_json(path / "dataset.json", "a genrl dataset (dataset.json)")
        check_format(meta, FORMAT, READS, path / "dataset.json")
        try:
            obs_space = space_from_json(meta.get("observation_space"))
            act_space = space_from_json(meta.get("action_space"))
            check_supported(obs_space, act_space)
        except GenrlError as exc:
            raise GenrlError(f"{path / 'dataset.json'}: {exc}") from None
        ds = cls.__new__(cls)
        ds.observation_space, ds.action_space, ds.path = obs_space, act_space, path
        ds.image = is_image(obs_space)
        ds.episodes, ds._flat = [], None
        for file in sorted((path / "episodes").glob("*.npz")):
            info = file.with_suffix(".json")
            info = read_json(info, "an episode's info (JSON object)") if info.exists() else {}
            ds.episodes.append(ds._validate(_read_episode(file), source=str(file), info=info))
        return ds

    @classmethod
    def open(
        cls, path: str | os.PathLike, observation_space: spaces.Space, action_space: spaces.Space
    ) -> RolloutDataset:
        """Load the dataset at ``path`` if there is one (checking its spaces), else create it."""
        if (Path(path) / "dataset.json").exists():
            ds = cls.load(path)
            ds.check_spaces(observation_space, action_space)
            return ds
        return cls(observation_space, action_space, path)

    def check_spaces(self, observation_space: spaces.Space, action_space: spaces.Space) -> None:
        """Raise GenrlError if this dataset was recorded with other spaces."""
        check_spaces_match(
            (self.observation_space, self.action_space), (observation_space, action_space), "dataset", "input"
        )

    # ---- writing -----------------------------------------------------------------------------

    def add_episode(
        self,
        obs: np.ndarray,
        action: np.ndarray,
        reward: np.ndarray,
        terminated: np.ndarray,
        truncated: np.ndarray,
        info: dict[str, Any] | None = None,
    ) -> None:
        """Append one episode (validated), writing it to disk atomically if the dataset has a path."""
        self.add(Episode(obs, action, reward, terminated, truncated, dict(info or {})))

    def add(self, episode: Episode) -> None:
        """Append an :class:`Episode` (validated), written atomically if the dataset has a path."""
        if not isinstance(episode, Episode):
            raise GenrlError(f"add: expected an Episode, got {type(episode).__name__}")
        episode = self._validate(episode.arrays(), source="add_episode", info=episode.info)
        if self.path is not None:
            name = self.path / "episodes" / f"{self._next_index():06d}"
            if episode.info:  # first, so that an episode file never lacks the info it was given
                write_json(name.with_suffix(".json"), episode.info)
            write_npz(name.with_suffix(".npz"), episode.arrays(), compress=self.image)
        self.episodes.append(episode)
        self._flat = None

    def _next_index(self) -> int:
        existing = [int(p.stem) for p in (self.path / "episodes").glob("*.npz") if p.stem.isdigit()]
        return max(existing, default=-1) + 1

    def _validate(self, ep: dict, source: str, info: Any = None) -> Episode:
        missing = [k for k in KEYS if k not in ep]
        if missing:
            raise GenrlError(f"{source}: expected episode arrays {list(KEYS)}, missing {missing}")
        for key in KEYS:
            given = np.asarray(ep[key]).dtype
            if given.kind not in "biuf":  # strings, objects, complex or structured values cannot be cast
                raise GenrlError(f"{source}: expected {key} to hold numbers or booleans, got dtype {given}")
        # Frames stay in the space's dtype (uint8 is a quarter of float32); vectors are float32.
        obs = np.asarray(ep["obs"])
        obs = obs.astype(self.observation_space.dtype if self.image else np.float32, copy=False)
        steps = obs.shape[0] - 1 if obs.ndim > 0 else -1
        if steps < 1 or obs.shape[1:] != self.observation_space.shape:
            raise GenrlError(
                f"{source}: expected obs of shape (T+1, {', '.join(map(str, self.observation_space.shape))}) "
                f"with T >= 1, got {obs.shape}"
            )
        discrete = isinstance(self.action_space, spaces.Discrete)
        action = np.asarray(ep["action"])
        act_shape = (steps,) if discrete else (steps, *self.action_space.shape)
        if action.shape != act_shape:
            raise GenrlError(f"{source}: expected action of shape {act_shape}, got {action.shape}")
        if discrete:
            # Casting would turn 0.7 into 0 and keep 5 for Discrete(3), failing later inside the model.
            try:
                ActionCodec(self.action_space).check_batch(action)
            except GenrlError as exc:
                raise GenrlError(f"{source}: {exc}") from None
        action = action.astype(np.int64 if discrete else np.float32)
        out = {"obs": obs, "action": action}
        for key, dtype in (("reward", np.float32), ("terminated", bool), ("truncated", bool)):
            arr = np.asarray(ep[key])
            if arr.shape != (steps,):
                raise GenrlError(f"{source}: expected {key} of shape ({steps},), got {arr.shape}")
            if dtype is bool and arr.dtype != bool and not np.isin(arr, (0, 1)).all():
                raise GenrlError(f"{source}: expected {key} to hold booleans (or 0 and 1), got other values")
            out[key] = arr.astype(dtype)
        for key in ("obs", "action", "reward"):
            if not np.all(np.isfinite(out[key])):
                raise GenrlError(f"{source}: expected finite {key}, got NaN or inf")
        for key in ("terminated", "truncated"):
            if out[key][:-1].any():
                raise GenrlError(f"{source}: {key} may only be set on the last step of an episode")
        return Episode(**out, info=_check_info(info, source))

    # ---- reading -----------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.episodes)

    @property
    def num_steps(self) -> int:
        """Total recorded transitions."""
        return sum(ep.length for ep in self.episodes)

    def episode_returns(self) -> np.ndarray:
        return np.array([ep.episode_return for ep in self.episodes])

    def episode_digests(self) -> np.ndarray:
        """One 63-bit fingerprint per episode (of its observations and actions), (N,) int64.

        A world model records the digests of the episodes it trained on, so that evaluation can
        tell held-out episodes from training ones in any dataset, whatever its order.
        """
        out = np.empty(len(self.episodes), dtype=np.int64)
        for i, ep in enumerate(self.episodes):
            h = hashlib.blake2b(digest_size=8)
            for array in (ep.obs, ep.action):
                h.update(np.ascontiguousarray(array).tobytes())
            out[i] = int.from_bytes(h.digest(), "little") >> 1
        return out

    def subset(self, indices: Sequence[int]) -> RolloutDataset:
        """An in-memory dataset holding the chosen episodes (e.g. a held-out split)."""
        ds = RolloutDataset(self.observation_space, self.action_space)
        ds.episodes = [self.episodes[i] for i in indices]
        return ds

    def with_observations(self, space: spaces.Space, observations: Sequence[np.ndarray]) -> RolloutDataset:
        """An in-memory dataset of the same steps seen through other observations (one array of
        (T+1, *space.shape) per episode): an image dataset's frames replaced by their latents."""
        if len(observations) != len(self.episodes):
            raise GenrlError(f"expected {len(self.episodes)} observation arrays, got {len(observations)}")
        ds = RolloutDataset(space, self.action_space)
        ds.episodes = [
            Episode(
                np.asarray(o, dtype=np.float32), ep.action, ep.reward, ep.terminated, ep.truncated, ep.info
            )
            for ep, o in zip(self.episodes, observations, strict=True)
        ]
        return ds

    def _require_data(self) -> None:
        if not self.episodes:
            raise GenrlError("the dataset is empty: expected at least one episode, collect some data first")

    def _flatten(self) -> dict[str, np.ndarray]:
        """The episodes' arrays end to end, for fast indexing; an image dataset's frames are not
        copied (``obs`` is absent): they are gathered from the episodes."""
        if self._flat is None:
            lengths = np.array([ep.length for ep in self.episodes])
            keys = [k for k in KEYS if not (self.image and k == "obs")]
            self._flat = {
                "lengths": lengths,
                "act_offset": np.concatenate([[0], np.cumsum(lengths)[:-1]]),
                "obs_offset": np.concatenate([[0], np.cumsum(lengths + 1)[:-1]]),
                **{k: np.concatenate([getattr(ep, k) for ep in self.episodes]) for k in keys},
            }
        return self._flat

    def sample_sequences(
        self, batch_size: int, length: int, rng: np.random.Generator
    ) -> dict[str, np.ndarray]:
        """Windows of ``length`` steps starting at uniformly drawn transitions.

        Returns ``obs`` (B, L+1, ...), ``action`` (B, L, ...), ``reward``, ``terminated`` and
        ``mask`` (B, L); steps past an episode's end are padding with ``mask`` False.
        """
        self._require_data()
        flat = self._flatten()
        total = int(flat["lengths"].sum())
        start_global = rng.integers(0, total, size=batch_size)
        ep = np.searchsorted(flat["act_offset"], start_global, side="right") - 1
        start = start_global - flat["act_offset"][ep]
        index = window_index(start, flat["lengths"][ep], length)
        act_idx = flat["act_offset"][ep][:, None] + index.action
        if self.image:
            obs = np.stack([self.episodes[e].obs[index.obs[k]] for k, e in enumerate(ep)])
        else:
            obs = flat["obs"][flat["obs_offset"][ep][:, None] + index.obs]
        return {
            "obs": obs,
            "action": flat["action"][act_idx],
            "reward": flat["reward"][act_idx],
            "terminated": flat["terminated"][act_idx],
            "mask": index.mask,
        }

    def start_states(self) -> np.ndarray:
        """Every episode's reset observation, (N, *obs_shape)."""
        self._require_data()
        return np.stack([ep.obs[0] for ep in self.episodes])

    def all_states(self) -> np.ndarray:
        """Every recorded observation, (N, *obs_shape): a copy of every frame for an image dataset
        (:meth:`sample_states` and :meth:`iter_states` bound the memory)."""
        self._require_data()
        if self.image:
            return np.concatenate([ep.obs for ep in self.episodes])
        return self._flatten()["obs"]

    def sample_states(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` recorded observations drawn uniformly (with replacement), (n, *obs_shape)."""
        self._require_data()
        flat = self._flatten()
        index = rng.integers(0, int((flat["lengths"] + 1).sum()), size=n)
        ep = np.searchsorted(flat["obs_offset"], index, side="right") - 1
        return np.stack(
            [self.episodes[e].obs[i - flat["obs_offset"][e]] for e, i in zip(ep, index, strict=True)]
        )


def _check_info(info: Any, source: str) -> dict[str, Any]:
    """An episode's info as a JSON-safe dict (a copy), or a one-line error."""
    if info is None:
        return {}
    if not isinstance(info, dict) or not all(isinstance(k, str) for k in info):
        raise GenrlError(f"{source}: expected info to be a dict with string keys, got {describe(info)}")
    try:
        return json.loads(json.dumps(info, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise GenrlError(f"{source}: expected info to hold JSON values only ({one_line(exc)})") from None


def _read_episode(file: Path) -> dict[str, np.ndarray]:
    return read_npz(file, KEYS, "a genrl episode (.npz)")  # a missing array is reported by _validate
