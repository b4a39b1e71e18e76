"""Bad input, at every boundary where it enters genrl: one table, one rule.

Each case must raise :class:`genrl.GenrlError` with a one-line message that names both what was
expected and what was given. Run checkpoints have more cases in tests/test_resume.py (they need
a real run to corrupt).
"""

from __future__ import annotations

import io
import json
import re
import shutil
import zipfile
from collections.abc import Callable
from functools import cached_property
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces

import genrl
from genrl import DreamEnv, DreamVecEnv, GenrlError, RolloutDataset, WorldModel
from genrl.training.checkpoint import read_checkpoint

NAN, INF = float("nan"), float("inf")
TINY = {"hidden_dim": 8, "rnn_dim": 8, "latent_dim": 8}
BOX2 = spaces.Box(-1.0, 1.0, (2,), np.float32)


class BadEnv(gym.Env):
    """A tiny env with the given spaces; ``where`` it returns ``value`` at step ``at``.

    ``where``: "reset" (the first observation), "obs", "reward", or "final" (the observation of
    the step that ends the episode, which SAME_STEP vector envs hand over in ``info``).
    """

    def __init__(self, where=None, value=NAN, at=3, observation_space=BOX2, action_space=None, length=10):
        self.observation_space = observation_space
        self.action_space = action_space or spaces.Discrete(2)
        self.where, self.value, self.at, self.length = where, value, at, length

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        obs = np.zeros(2, np.float32)
        if self.where == "reset":
            obs[1] = self.value
        return obs, {}

    def step(self, action):
        self.t += 1
        obs, reward = np.full(2, 0.1 * self.t, np.float32), 1.0
        if self.t == self.at:
            if self.where in ("obs", "final"):
                obs[0] = self.value
            if self.where == "reward":
                reward = self.value
        return obs, reward, self.t >= self.length, False, {}


def _same_step(env: gym.Env) -> gym.vector.VectorEnv:
    return gym.vector.SyncVectorEnv([lambda: env], autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)


class World:
    """The inputs the cases start from, built once per module and only when a case needs them.

    Cases never change these objects; anything they corrupt lives under ``tmp``, one per case.
    """

    def __init__(self, tmp: Path):
        self.tmp = tmp

    @cached_property
    def cartpole_data(self) -> RolloutDataset:
        return genrl.collect("CartPole-v1", 60, seed=0, progress=False)

    @cached_property
    def pendulum_data(self) -> RolloutDataset:
        return genrl.collect("Pendulum-v1", 30, seed=0, progress=False)

    def _model(self, data: RolloutDataset, **overrides) -> WorldModel:
        model = WorldModel(data.observation_space, data.action_space, **{**TINY, **overrides})
        model.set_start_states(data.start_states())
        return model

    def fresh_cartpole_model(self, **overrides) -> WorldModel:
        return self._model(self.cartpole_data, **overrides)

    @cached_property
    def cartpole_model(self) -> WorldModel:
        return self._model(self.cartpole_data)

    @cached_property
    def pendulum_model(self) -> WorldModel:
        return self._model(self.pendulum_data)

    @cached_property
    def square_action_model(self) -> WorldModel:
        """Box actions of shape (2, 2): their descriptions span rows."""
        model = WorldModel(BOX2, spaces.Box(-1.0, 1.0, (2, 2), np.float32), **TINY)
        model.set_start_states(np.zeros((1, 2), np.float32))
        return model

    def saved_model(self, name: str = "model", model: WorldModel | None = None) -> Path:
        path = self.tmp / name
        (model or self.cartpole_model).save(path)
        return path

    def saved_dataset(self, name: str = "dataset") -> Path:
        path = self.tmp / name
        genrl.collect("CartPole-v1", 30, seed=0, path=path, progress=False)
        return path

    def dream(self, model: WorldModel) -> DreamEnv:
        env = DreamEnv(model)
        env.reset(seed=0)
        return env

    def dreams(self, model: WorldModel, n: int) -> DreamVecEnv:
        venv = DreamVecEnv(model, n, device="cpu", seed=0)
        venv.reset()
        return venv


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> World:
    return World(tmp_path_factory.mktemp("world"))


# ---- helpers the cases use ----------------------------------------------------------------------


def _episode(steps=5, obs_dim=4, **changes) -> dict[str, np.ndarray]:
    ep = {
        "obs": np.zeros((steps + 1, obs_dim), np.float32),
        "action": np.zeros(steps, np.int64),
        "reward": np.ones(steps, np.float32),
        "terminated": np.arange(steps) == steps - 1,
        "truncated": np.zeros(steps, bool),
    }
    for key, change in changes.items():
        ep[key] = change(ep[key].copy())
    return ep


def _set(index, value):
    def change(array):
        array[index] = value
        return array

    return change


def _add_episode(w: World, data: RolloutDataset | None = None, **changes) -> None:
    data = data or w.cartpole_data
    fresh = RolloutDataset(data.observation_space, data.action_space)
    fresh.add_episode(**_episode(**changes))


def _first_episode_file(path: Path) -> Path:
    return sorted((path / "episodes").glob("*.npz"))[0]


def _truncate(file: Path) -> None:
    data = file.read_bytes()
    file.write_bytes(data[: len(data) * 2 // 3])


def _write_npz(file: Path, **arrays) -> None:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    file.write_bytes(buffer.getvalue())


def _load_with_nan_episode(w: World) -> None:
    path = w.saved_dataset()
    _write_npz(_first_episode_file(path), **_episode(obs=_set((2, 1), NAN)))
    RolloutDataset.load(path)


def _load_with_unknown_compression(w: World) -> None:
    path = w.saved_dataset()
    file = _first_episode_file(path)
    data = bytearray(file.read_bytes())
    # Mark every member as compressed with method 97 (WavPack), which zipfile cannot read.
    for sig, offset in ((b"PK\x03\x04", 8), (b"PK\x01\x02", 10)):
        for match in re.finditer(re.escape(sig), bytes(data)):
            data[match.start() + offset : match.start() + offset + 2] = (97).to_bytes(2, "little")
    file.write_bytes(bytes(data))
    with zipfile.ZipFile(file) as archive:  # the archive itself is still a readable zip
        assert archive.infolist()[0].compress_type == 97
    RolloutDataset.load(path)


def _load_with_truncated_json(w: World) -> None:
    path = w.saved_dataset()
    (path / "dataset.json").write_text('{"format": "genrl.rollouts", "vers')
    RolloutDataset.load(path)


def _load_with_truncated_episode(w: World) -> None:
    path = w.saved_dataset()
    _truncate(_first_episode_file(path))
    RolloutDataset.load(path)


def _load_with_episode_missing_rewards(w: World) -> None:
    path = w.saved_dataset()
    _write_npz(_first_episode_file(path), **{k: v for k, v in _episode().items() if k != "reward"})
    RolloutDataset.load(path)


def _fit_on_folder_without_episodes(w: World) -> None:
    RolloutDataset(BOX2, spaces.Discrete(2), w.tmp / "empty")  # writes dataset.json, no episodes
    WorldModel(BOX2, spaces.Discrete(2), **TINY).fit(RolloutDataset.load(w.tmp / "empty"), 1, progress=False)


def _load_model_json_of_a_dataset(w: World) -> None:
    path = w.saved_model()
    shutil.copy(w.saved_dataset() / "dataset.json", path / "model.json")
    WorldModel.load(path)


def _load_model_with_truncated_weights(w: World) -> None:
    path = w.saved_model()
    _truncate(path / "weights.safetensors")
    WorldModel.load(path)


def _load_model_without_weights(w: World) -> None:
    path = w.saved_model()
    (path / "weights.safetensors").unlink()
    WorldModel.load(path)


def _load_optimizer_state_of_another_model(w: World) -> None:
    other = w.fresh_cartpole_model(hidden_dim=16)
    other.fit(w.cartpole_data, 1, progress=False)  # so that its state holds tensors of its shapes
    w.fresh_cartpole_model().trainer.load_state_dict(other.trainer.state_dict())


def _env_spaces(env_id: str) -> tuple[spaces.Space, spaces.Space]:
    env = gym.make(env_id)
    env.close()
    return env.observation_space, env.action_space


def _edit_json(file: Path, **changes) -> Path:
    file.write_text(json.dumps({**json.loads(file.read_text()), **changes}))
    return file.parent


def _load_model_with_other_weights(w: World) -> None:
    path = w.saved_model()
    other = w.saved_model("other", w.pendulum_model)
    shutil.copy(other / "weights.safetensors", path / "weights.safetensors")
    WorldModel.load(path)


def _model_of_spaces(observation_space: spaces.Space, action_space: spaces.Space) -> Callable[[World], Any]:
    return lambda w: WorldModel(observation_space, action_space, **TINY)


def _collect_with_spaces(
    observation_space: spaces.Space, action_space: spaces.Space
) -> Callable[[World], Any]:
    env = BadEnv(observation_space=observation_space, action_space=action_space)
    return lambda w: genrl.collect(env, 10, seed=0, progress=False)


def _collect_with_policy(env_id: str, policy: Callable) -> Callable[[World], Any]:
    return lambda w: genrl.collect(env_id, 10, policy=policy, seed=0, progress=False)


def _non_finite(what: str, given: str, step: int) -> str:
    reset = ", its reset" if step == 0 else ""
    return (
        rf"the env returned non-finite {what}: expected finite values, "
        rf"got {given} \(env 0, step {step} of an episode{reset}\)$"
    )


def _box_mismatch(owner: str, owner_dim: int, other: str, other_dim: int) -> str:
    """The message for observation spaces Box(..., (owner_dim,)) and Box(..., (other_dim,))."""
    return (
        rf"observation space mismatch: {owner} has Box\(.*\({owner_dim},\), float32\), "
        rf"{other} has Box\(.*\({other_dim},\), float32\)"
    )


def _long_box(offset: float) -> spaces.Box:
    low = np.linspace(-5.0, 5.0, 20).astype(np.float32)
    return spaces.Box(low, low + offset, dtype=np.float32)


UNSUPPORTED_SPACES = [
    ("dict-observations", spaces.Dict({"x": BOX2}), spaces.Discrete(2), r"expected a Box, got Dict\("),
    ("tuple-observations", spaces.Tuple((BOX2, BOX2)), spaces.Discrete(2), r"expected a Box, got Tuple\("),
    ("discrete-observations", spaces.Discrete(5), spaces.Discrete(2), r"expected a Box, got Discrete\(5\)"),
    ("tuple-actions", BOX2, spaces.Tuple((spaces.Discrete(2),)), r"expected Discrete or Box, got Tuple\("),
    ("dict-actions", BOX2, spaces.Dict({"a": spaces.Discrete(2)}), r"expected Discrete or Box, got Dict\("),
    ("multibinary-actions", BOX2, spaces.MultiBinary(3), r"expected Discrete or Box, got MultiBinary\(3\)"),
    (
        "multidiscrete-actions",
        BOX2,
        spaces.MultiDiscrete([2, 3]),
        r"expected Discrete or Box, got MultiDiscrete\(\[2 3\]\)",
    ),
    (
        "unbounded-box-actions",
        BOX2,
        spaces.Box(-np.inf, np.inf, (2,), np.float32),
        r"expected a bounded Box, got Box\(-inf, inf, \(2,\), float32\)",
    ),
]

CASES = [
    # ---- genrl.collect: what the env returns, its spaces, what the policy returns ----
    pytest.param(
        lambda w: genrl.collect(BadEnv("obs", NAN), 30, seed=0, progress=False),
        _non_finite("observations", "nan", 3),
        id="collect-nan-observation",
    ),
    pytest.param(
        lambda w: genrl.collect(BadEnv("obs", INF), 30, seed=0, progress=False),
        _non_finite("observations", "inf", 3),
        id="collect-inf-observation",
    ),
    pytest.param(
        lambda w: genrl.collect(BadEnv("reset", NAN), 30, seed=0, progress=False),
        _non_finite("observations", "nan", 0),
        id="collect-nan-reset-observation",
    ),
    pytest.param(
        lambda w: genrl.collect(_same_step(BadEnv("final", NAN, at=10)), 30, seed=0, progress=False),
        _non_finite("observations", "nan", 10),
        id="collect-nan-final-observation-same-step-autoreset",
    ),
    pytest.param(
        # The policy turns the env's NaN into a NaN action: the env is named, not the policy.
        lambda w: genrl.collect(
            BadEnv("obs", NAN, action_space=spaces.Box(-1, 1, (1,))),
            30,
            policy=lambda obs: obs[:, :1],
            seed=0,
            progress=False,
        ),
        _non_finite("observations", "nan", 3),
        id="collect-nan-observation-given-to-a-policy",
    ),
    pytest.param(
        lambda w: genrl.collect(BadEnv("reward", NAN), 30, seed=0, progress=False),
        _non_finite("rewards", "nan", 3),
        id="collect-nan-reward",
    ),
    pytest.param(
        lambda w: genrl.collect(BadEnv("reward", -INF), 30, seed=0, progress=False),
        _non_finite("rewards", "-inf", 3),
        id="collect-inf-reward",
    ),
    *(
        pytest.param(_collect_with_spaces(obs, act), r"unsupported \w+ space: " + match, id=f"collect-{name}")
        for name, obs, act, match in UNSUPPORTED_SPACES
    ),
    pytest.param(
        _collect_with_policy("Pendulum-v1", lambda obs: np.full((1, 1), NAN, np.float32)),
        r"invalid actions from the policy: expected finite numbers, got nan at batch index 0",
        id="collect-policy-nan-box-action",
    ),
    pytest.param(
        _collect_with_policy("Pendulum-v1", lambda obs: np.zeros((1, 3), np.float32)),
        r"invalid actions from the policy: expected shape \(1, 1\), got shape \(1, 3\)",
        id="collect-policy-wrong-action-shape",
    ),
    pytest.param(
        _collect_with_policy("CartPole-v1", lambda obs: np.array([5])),
        r"invalid actions from the policy: expected integers in Discrete\(2\), got 5 at batch index 0",
        id="collect-policy-out-of-range-discrete-action",
    ),
    pytest.param(
        _collect_with_policy("CartPole-v1", lambda obs: np.array([0.5])),
        r"invalid actions from the policy: expected integers in Discrete\(2\), got 0\.5",
        id="collect-policy-float-discrete-action",
    ),
    pytest.param(
        _collect_with_policy("CartPole-v1", lambda obs: "left"),
        r"invalid actions from the policy: expected shape \(1,\), got shape \(\) \('left'\)",
        id="collect-policy-str-action",
    ),
    pytest.param(
        lambda w: genrl.collect("Pendulum-v1", 10, dataset=w.cartpole_data, progress=False),
        _box_mismatch("dataset", 4, "input", 3),
        id="collect-into-dataset-of-other-spaces",
    ),
    pytest.param(
        lambda w: genrl.collect("Acrobot-v1", 10, path=w.saved_dataset(), progress=False),
        _box_mismatch("dataset", 4, "input", 6),
        id="collect-into-folder-of-other-spaces",
    ),
    # ---- RolloutDataset: episodes added in memory, folders loaded from disk ----
    pytest.param(
        lambda w: _add_episode(w, obs=_set((2, 1), NAN)),
        r"add_episode: expected finite obs, got NaN or inf",
        id="add-episode-nan-observation",
    ),
    pytest.param(
        lambda w: _add_episode(w, reward=_set(1, INF)),
        r"add_episode: expected finite reward, got NaN or inf",
        id="add-episode-inf-reward",
    ),
    pytest.param(
        lambda w: _add_episode(
            w, w.pendulum_data, obs_dim=3, action=lambda a: np.array([[0.0], [NAN], [0.0], [0.0], [0.0]])
        ),
        r"add_episode: expected finite action, got NaN or inf",
        id="add-episode-nan-box-action",
    ),
    pytest.param(
        lambda w: _add_episode(w, action=_set(1, 2)),
        r"add_episode: invalid actions: expected integers in Discrete\(2\), got 2 at batch index 1",
        id="add-episode-out-of-range-discrete-action",
    ),
    pytest.param(
        lambda w: _add_episode(w, action=lambda a: a[:4]),
        r"add_episode: expected action of shape \(5,\), got \(4,\)",
        id="add-episode-truncated-actions",
    ),
    pytest.param(
        lambda w: _add_episode(w, steps=0),
        r"add_episode: expected obs of shape \(T\+1, 4\) with T >= 1, got \(1, 4\)",
        id="add-episode-empty",
    ),
    pytest.param(
        lambda w: _add_episode(w, obs=lambda o: o[:, :3]),
        r"add_episode: expected obs of shape \(T\+1, 4\) with T >= 1, got \(6, 3\)",
        id="add-episode-observations-of-other-shape",
    ),
    pytest.param(
        lambda w: RolloutDataset(BOX2, spaces.MultiBinary(3)),
        r"unsupported action space: expected Discrete or Box, got MultiBinary\(3\)",
        id="dataset-of-unsupported-spaces",
    ),
    pytest.param(
        lambda w: RolloutDataset.load(w.tmp),
        r"expected a genrl dataset \(dataset\.json\) at \S+dataset\.json, found no such file",
        id="load-dataset-from-empty-folder",
    ),
    pytest.param(
        lambda w: RolloutDataset.load(w.saved_model()),
        r"expected a genrl dataset \(dataset\.json\) at \S+model/dataset\.json, found no such file",
        id="load-dataset-from-model-folder",
    ),
    pytest.param(
        lambda w: RolloutDataset.load(_edit_json(w.saved_dataset() / "dataset.json", version=3)),
        r"dataset\.json is genrl\.rollouts version 3; this genrl reads version 1 or 2",
        id="load-dataset-of-newer-version",
    ),
    pytest.param(
        lambda w: RolloutDataset.load(
            _edit_json(w.saved_dataset() / "dataset.json", format="genrl.world_model")
        ),
        r"expected a genrl\.rollouts file at \S+dataset\.json, got format 'genrl\.world_model'",
        id="load-dataset-of-foreign-format",
    ),
    pytest.param(
        _load_with_truncated_json,
        r"expected a genrl dataset \(dataset\.json\) in \S+, got a file that is not valid JSON",
        id="load-dataset-with-truncated-json",
    ),
    pytest.param(
        _load_with_truncated_episode,
        r"000000\.npz: expected a genrl episode \(\.npz\), got an unreadable file \(.+\)$",
        id="load-dataset-with-truncated-episode-file",
    ),
    pytest.param(
        _load_with_nan_episode,
        r"000000\.npz: expected finite obs, got NaN or inf",
        id="load-dataset-with-nan-in-episode-file",
    ),
    pytest.param(
        _load_with_episode_missing_rewards,
        r"000000\.npz: expected episode arrays \[.*\], missing \['reward'\]",
        id="load-dataset-with-episode-file-missing-an-array",
    ),
    pytest.param(
        _load_with_unknown_compression,
        r"000000\.npz: expected a genrl episode \(\.npz\), got an unreadable file",
        id="load-dataset-with-episode-file-of-unknown-compression",
    ),
    pytest.param(
        lambda w: RolloutDataset.open(
            w.saved_dataset(), w.cartpole_data.observation_space, spaces.Discrete(3)
        ),
        r"action space mismatch: dataset has Discrete\(2\), input has Discrete\(3\)",
        id="open-dataset-with-other-spaces",
    ),
    # ---- WorldModel: construction, fit, load ----
    *(
        pytest.param(_model_of_spaces(obs, act), r"unsupported \w+ space: " + match, id=f"model-{name}")
        for name, obs, act, match in UNSUPPORTED_SPACES
    ),
    pytest.param(
        _model_of_spaces(spaces.Box(-np.inf, np.inf, (8, 8, 3), np.float32), spaces.Discrete(2)),
        r"image observations: expected a Box with finite bounds \(such as 0 and 255\), "
        r"got Box\(-inf, inf, \(8, 8, 3\), float32\)",
        id="model-image-observations",
    ),
    pytest.param(
        lambda w: WorldModel(BOX2, spaces.Discrete(2), hiden_dim=3),
        r"unknown world model settings \['hiden_dim'\]; expected some of \[.*'hidden_dim'.*\]",
        id="model-unknown-setting",
    ),
    pytest.param(
        lambda w: genrl.FitConfig(lr_schedule="linear"),
        r"^fit setting lr_schedule: expected one of \['constant', 'cosine'\], got 'linear'$",
        id="fit-config-unknown-schedule",
    ),
    pytest.param(
        lambda w: WorldModel(BOX2, spaces.Discrete(2), genrl.WorldModelConfig(**TINY), {"fit_stepz": 3}),
        r"^unknown fit settings \['fit_stepz'\]; expected some of \[.*'steps'.*\]$",
        id="model-unknown-fit-setting",
    ),
    pytest.param(
        lambda w: WorldModel(BOX2, spaces.Discrete(2), learning_rate=-1.0),
        r"^fit setting learning_rate: expected a number >= 0, got -1\.0$",
        id="model-negative-learning-rate",
    ),
    pytest.param(
        lambda w: w.cartpole_model.fit(w.pendulum_data, steps=1, progress=False),
        _box_mismatch("dataset", 3, "input", 4),
        id="fit-on-dataset-of-other-spaces",
    ),
    pytest.param(
        lambda w: w.cartpole_model.fit(RolloutDataset.load(w.saved_dataset()).subset([]), 1, progress=False),
        r"the dataset is empty: expected at least one episode",
        id="fit-on-empty-dataset",
    ),
    pytest.param(
        _fit_on_folder_without_episodes,
        r"the dataset is empty: expected at least one episode",
        id="fit-on-loaded-folder-without-episodes",
    ),
    pytest.param(
        lambda w: w.cartpole_model.fit(str(w.saved_dataset()), 1, progress=False),
        r"expected a RolloutDataset.*got str",
        id="fit-on-a-path",
    ),
    pytest.param(
        lambda w: WorldModel.load(w.saved_dataset()),
        r"expected a genrl world model \(model\.json\) at \S+dataset/model\.json, found no such file",
        id="load-model-from-dataset-folder",
    ),
    pytest.param(
        lambda w: WorldModel.load(_edit_json(w.saved_model() / "model.json", version=8)),
        r"model\.json is genrl\.world_model version 8; "
        r"this genrl reads version 1 or 2 or 3 or 4 or 5 or 6 or 7$",
        id="load-model-of-newer-version",
    ),
    pytest.param(
        _load_model_json_of_a_dataset,
        r"expected a genrl\.world_model file at \S+model\.json, got format 'genrl\.rollouts'",
        id="load-model-json-of-a-dataset",
    ),
    pytest.param(
        _load_model_with_other_weights,
        r"weights\.safetensors: weights do not match the model described in model\.json \("
        # checked before loading (expected ... got ...), or torch's own message (both name the two shapes)
        r"(expected obs_mean of shape \(4,\), got \(3,\)|size mismatch for obs_mean: .*\[3\].*\[4\])\)",
        id="load-model-with-weights-of-another-model",
    ),
    pytest.param(
        _load_model_with_truncated_weights,
        r"weights\.safetensors: expected a safetensors file, got an unreadable one \(.+\)",
        id="load-model-with-truncated-weights",
    ),
    pytest.param(
        _load_model_without_weights,
        r"expected model weights at \S+weights\.safetensors, found no such file",
        id="load-model-without-weights",
    ),
    pytest.param(
        _load_optimizer_state_of_another_model,
        r"expected the optimizer state of this world model, got another",
        id="load-optimizer-state-of-another-model",
    ),
    pytest.param(
        lambda w: w.fresh_cartpole_model().trainer.load_state_dict(None),
        r"expected the optimizer state of this world model, got None",
        id="load-optimizer-state-none",
    ),
    # ---- TrainConfig: settings of a run ----
    pytest.param(
        lambda w: genrl.TrainConfig.from_dict({"env_id": "CartPole-v1"}, epsilon=2),
        r"^collect epsilon: expected a number >= 0 and <= 1, got 2$",
        id="train-config-epsilon-above-one",
    ),
    pytest.param(
        lambda w: genrl.TrainConfig.from_dict({"env_id": "CartPole-v1"}, dream={"start": "middle"}),
        r"^dream start: expected one of \['initial', 'any'\], got 'middle'$",
        id="train-config-unknown-dream-start",
    ),
    pytest.param(
        lambda w: genrl.TrainConfig.from_dict({"env_id": "CartPole-v1"}, fit={"stepz": 3}),
        r"^unknown fit settings \['stepz'\]; expected some of \[.*'steps'.*\]$",
        id="train-config-unknown-fit-setting",
    ),
    pytest.param(
        lambda w: read_checkpoint(w.saved_model()),
        r"expected a genrl run checkpoint \(checkpoint\.json\) at \S+checkpoint\.json, found no such file",
        id="read-checkpoint-from-model-folder",
    ),
    # ---- a model against a real env or a dataset of other spaces ----
    pytest.param(
        lambda w: w.cartpole_model.check_env_spaces(*_env_spaces("Acrobot-v1")),
        _box_mismatch("model", 4, "env", 6),
        id="model-vs-env-of-other-observations",
    ),
    pytest.param(
        lambda w: w.cartpole_model.check_env_spaces(w.cartpole_model.observation_space, spaces.Discrete(3)),
        r"action space mismatch: model has Discrete\(2\), env has Discrete\(3\)",
        id="model-vs-env-of-other-actions",
    ),
    pytest.param(
        lambda w: WorldModel(_long_box(1.0), spaces.Discrete(2), **TINY).check_env_spaces(
            _long_box(2.0), spaces.Discrete(2)
        ),
        _box_mismatch("model", 20, "env", 20),
        id="model-vs-env-of-other-long-box",
    ),
    pytest.param(
        lambda w: DreamEnv(w.cartpole_model, w.pendulum_data),
        _box_mismatch("model", 4, "dataset", 3),
        id="dream-env-with-dataset-of-other-spaces",
    ),
    pytest.param(
        lambda w: DreamVecEnv(w.cartpole_model, 4, w.pendulum_data, device="cpu"),
        _box_mismatch("model", 4, "dataset", 3),
        id="dream-vec-env-with-dataset-of-other-spaces",
    ),
    pytest.param(
        lambda w: DreamEnv(w.cartpole_model, horizon=0),
        r"^horizon: expected an integer >= 1, got 0$",
        id="dream-env-zero-horizon",
    ),
    pytest.param(
        lambda w: DreamVecEnv(w.cartpole_model, 2, temperature=-0.5),
        r"^temperature: expected a number >= 0, got -0\.5$",
        id="dream-vec-env-negative-temperature",
    ),
    pytest.param(
        lambda w: DreamEnv(w.cartpole_model, device="cuda"),
        r"^the world model is on cpu: expected device='auto' or 'cpu', got 'cuda'",
        id="dream-env-on-another-device",
    ),
    pytest.param(
        lambda w: DreamEnv(w.cartpole_model, str(w.saved_dataset())),
        r"dataset must be a RolloutDataset \(RolloutDataset\.load\(path\) opens a folder\) or None, got str",
        id="dream-env-with-dataset-path",
    ),
    pytest.param(
        lambda w: DreamEnv(w.saved_dataset()),
        r"expected a genrl world model \(model\.json\) at \S+model\.json, found no such file",
        id="dream-env-from-dataset-folder",
    ),
    # ---- DreamEnv.reset / DreamEnv.step: one action ----
    pytest.param(
        lambda w: DreamEnv(w.cartpole_model).reset(options={"initial_obs": np.zeros(3)}),
        r"initial_obs: expected a finite array of shape \(4,\), got shape \(3,\)",
        id="dream-env-initial-obs-of-wrong-shape",
    ),
    pytest.param(
        lambda w: DreamEnv(w.cartpole_model).reset(options={"initial_obs": np.array([0, NAN, 0, INF])}),
        r"initial_obs: expected a finite array of shape \(4,\), got one with 2 NaN or inf value\(s\)",
        id="dream-env-nan-initial-obs",
    ),
    pytest.param(
        lambda w: DreamEnv(w.cartpole_model).reset(options={"initial_obs": "abcd"}),
        r"initial_obs: expected a finite array of shape \(4,\), got a str that is not one",
        id="dream-env-str-initial-obs",
    ),
    *(
        pytest.param(
            lambda w, a=action: w.dream(w.cartpole_model).step(a),
            r"invalid action: expected an integer in Discrete\(2\), got " + given,
            id=f"dream-env-discrete-{name}",
        )
        for name, action, given in [
            ("out-of-range", 2, "2$"),
            ("negative", np.int64(-1), "-1$"),
            ("float", 0.5, r"0\.5"),
            ("nan", NAN, "nan"),
            ("inf", np.inf, "inf"),
            ("list", [0, 1], r"\[0, 1\]"),
            ("str", "left", "'left'"),
            ("none", None, "None"),
            ("bool", True, "True"),
            ("matrix", np.array([[1]]), r"array\(\[\[1\]\], dtype=int64\)$"),
        ]
    ),
    *(
        pytest.param(
            lambda w, a=action: w.dream(w.pendulum_model).step(a),
            "invalid action: " + match,
            id=f"dream-env-box-{name}",
        )
        for name, action, match in [
            (
                "wrong-shape",
                np.zeros(2),
                r"expected shape \(1,\), got shape \(2,\) \(array\(\[0\., 0\.\], dtype=float64\)\)",
            ),
            ("scalar", 0.3, r"expected shape \(1,\), got shape \(\) \(0\.3\)"),
            (
                "nan",
                np.array([NAN], np.float32),
                r"expected finite numbers, got array\(\[nan\], dtype=float32\)",
            ),
            ("inf", np.array([-INF]), r"expected finite numbers, got array\(\[-inf\], dtype=float64\)"),
            ("str", ["a"], r"expected finite numbers, got \['a'\]"),
            (
                "ragged-list",
                [[0.0], [0.0, 1.0]],
                r"expected an array, got \[\[0\.0\], \[0\.0, 1\.0\]\], which is not one",
            ),
        ]
    ),
    pytest.param(
        lambda w: w.dream(w.square_action_model).step(np.zeros((3, 3))),
        r"invalid action: expected shape \(2, 2\), got shape \(3, 3\) "
        r"\(array\(\[\[0\., 0\., 0\.\], \[0\., 0\., 0\.\],",
        id="dream-env-box-matrix-of-wrong-shape",
    ),
    # ---- DreamVecEnv.step: one action per env, validated as a batch ----
    *(
        pytest.param(
            lambda w, a=actions: w.dreams(w.cartpole_model, 4).step(a),
            "invalid actions: " + match,
            id=f"dream-vec-env-discrete-{name}",
        )
        for name, actions, match in [
            ("too-few", np.zeros(3, np.int64), r"expected shape \(4,\), got shape \(3,\)"),
            ("regrouped", np.zeros((2, 2), np.int64), r"expected shape \(4,\), got shape \(2, 2\)"),
            ("out-of-range", [0, 1, 2, 0], r"expected integers in Discrete\(2\), got 2 at batch index 2"),
            ("float", [0.0, 0.5, 1.0, 0.0], r"expected integers in Discrete\(2\), got 0\.5 at batch index 1"),
            ("nan", [0.0, NAN, 1.0, 0.0], r"expected integers in Discrete\(2\), got nan at batch index 1"),
            ("bool", np.ones(4, bool), r"expected integers in Discrete\(2\), got dtype bool"),
            ("str", ["a", "b", "c", "d"], r"expected integers in Discrete\(2\), got dtype <U1"),
            (
                "ragged-list",
                [[0], [0, 1], [0], [1]],
                r"expected an array, got \[\[0\], \[0, 1\], \[0\], \[1\]\], which is not one",
            ),
            ("none", None, r"expected shape \(4,\), got shape \(\) \(None\)"),
        ]
    ),
    *(
        pytest.param(
            lambda w, a=actions: w.dreams(w.pendulum_model, 2).step(a),
            "invalid actions: " + match,
            id=f"dream-vec-env-box-{name}",
        )
        for name, actions, match in [
            ("wrong-shape", np.zeros((2, 3), np.float32), r"expected shape \(2, 1\), got shape \(2, 3\)"),
            (
                "nan",
                np.array([[0.0], [NAN]], np.float32),
                r"expected finite numbers, got nan at batch index 1",
            ),
            ("inf", np.array([[INF], [0.0]]), r"expected finite numbers, got inf at batch index 0"),
            ("complex", np.zeros((2, 1), complex), r"expected finite numbers, got dtype complex128"),
            ("str", [["a"], ["b"]], r"expected finite numbers, got dtype <U1"),
        ]
    ),
    pytest.param(
        lambda w: w.dreams(w.cartpole_model, 1024).step(np.arange(1024)),
        r"invalid actions: expected integers in Discrete\(2\), got 2 at batch index 2$",
        id="dream-vec-env-large-batch-message-stays-short",
    ),
]


@pytest.mark.parametrize("bad_input, expected", CASES)
def test_bad_input_is_a_one_line_genrl_error(world, tmp_path, bad_input, expected):
    world.tmp = tmp_path  # what a case writes or corrupts is its own
    with pytest.raises(GenrlError) as info:
        bad_input(world)
    message = str(info.value)
    assert "\n" not in message, f"a multi-line message: {message!r}"
    assert len(message) < 400, f"an overlong message: {message!r}"
    assert re.search(expected, message), f"{message!r} does not match {expected!r}"
