"""Fuzzing of every genrl loader: hostile files must load into a valid result or raise GenrlError.

A seed corpus of real files is written once per module by genrl itself (a short CartPole dataset,
a tiny world model, a policy, a run checkpoint, the shipped presets, the JSON of real spaces),
together with malicious pickles placed where each loader reads. Hypothesis mutates them: random
bytes, bit flips, overwrites with boundary values, truncation, insertion, deletion, duplication and
splicing of spans, and structural edits of JSON and YAML trees, of zip archives (``.npz``, ``.pt``)
and the ``.npy`` headers inside them, and of the safetensors header. Each mutated file is written
into place and loaded. Any outcome other than a valid result or a one-line :class:`GenrlError` is a
crash: another exception type, a hang, an allocation past the memory cap, or an executed payload.
Crashes are collected (with the bytes that caused them) and reported together at the end of each
loader's run; the counts go to the ``fuzz:`` line of the test summary (``tests/conftest.py``;
``-v`` adds a line per loader).

The corpus is byte-identical on every run and Hypothesis is derandomized, so a run is reproducible.
Adding a loader is one more entry in ``LOADERS``; a crash in code this file's author may not fix is
recorded as the entry's ``known_crash`` (a strict xfail: it fails once the crash is gone, as a
reminder to drop the mark). ``GENRL_FUZZ_SCALE`` and ``GENRL_FUZZ_SEED`` run longer campaigns.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import math
import os
import pickle
import random
import resource
import shutil
import signal
import subprocess
import sys
import traceback
import warnings
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import hypothesis
import numpy as np
import pytest
import torch
import yaml
from conftest import FUZZ_STATS
from gymnasium import spaces
from hypothesis import HealthCheck, given, settings
from hypothesis import Phase as HypothesisPhase
from hypothesis import strategies as st
from stable_baselines3 import DQN, PPO

import genrl
from genrl import GenrlError, RolloutDataset, WorldModel
from genrl.data.dataset import KEYS
from genrl.training.agents import load_policy, save_policy
from genrl.training.checkpoint import Checkpoint, CheckpointStore, Phase, read_checkpoint
from genrl.training.presets import load_preset
from genrl.util.files import read_json
from genrl.util.spaces import check_supported, space_from_json, space_to_json, spaces_equal

pytestmark = pytest.mark.slow  # about 10,000 mutated files in all

TARGET = 1150  # mutated files per loader and run
# Longer campaigns, off CI: GENRL_FUZZ_SCALE=10 multiplies every target; GENRL_FUZZ_SEED=N draws
# other files than the reproducible default.
SCALE = float(os.environ.get("GENRL_FUZZ_SCALE", "1"))
SEED = os.environ.get("GENRL_FUZZ_SEED")
MIN_TOTAL = 10_000  # the bar for one run across all loaders
TIMEOUT_S = 10.0  # one load taking longer is a hang
MEMORY_HEADROOM = 2 << 30  # address space a loader may add before an allocation fails (a crash)
REPO = Path(__file__).resolve().parents[1]


# ---- the seed corpus -------------------------------------------------------------------------


class _Payload:
    """Unpickling this calls ``func(*args)``: the classic pickle exploit."""

    def __init__(self, func: Callable, *args: Any):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


@dataclass
class Corpus:
    root: Path
    dataset: Path  # a dataset folder written by genrl.collect
    model: Path  # a world model folder written by WorldModel.save
    policy: Path  # a policy written by save_policy
    agent: PPO  # the agent load_policy loads into
    model_shapes: dict[str, tuple[int, ...]]
    policy_shapes: dict[str, tuple[int, ...]]
    markers: Path  # every payload creates a file here when it runs
    checkpoint: Path  # a run checkpoint written by CheckpointStore.save (with a DQN and its replay buffer)
    restore_model: WorldModel  # what Checkpoint.restore loads into
    restore_agent: DQN
    dqn_shapes: dict[str, tuple[int, ...]]
    payloads: dict[str, bytes] = field(default_factory=dict)

    @property
    def episodes(self) -> list[Path]:
        return sorted((self.dataset / "episodes").glob("*.npz"))


# Payloads find the marker folder through this variable, so their bytes (like every seed's) are the
# same on every run and derandomized Hypothesis makes the same files.
MARKERS_VAR = "GENRL_FUZZ_MARKERS"


def _zip(members: list[tuple[str, bytes]], compression: int = zipfile.ZIP_STORED) -> bytes:
    """A zip archive with fixed timestamps (np.savez and ZipFile.writestr stamp the current time)."""
    buf = io.BytesIO()
    with warnings.catch_warnings(), zipfile.ZipFile(buf, "w") as zf:
        warnings.simplefilter("ignore")  # duplicate member names are sometimes on purpose
        for name, data in members:
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = compression
            zf.writestr(info, data)
    return buf.getvalue()


def _npy(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=array.dtype.hasobject)  # object arrays are pickles
    return buf.getvalue()


def _rezip(path: Path) -> None:
    """Rewrite an archive in place with fixed timestamps: the same content, the same bytes every run."""
    with zipfile.ZipFile(path) as zf:
        members = [(info.filename, zf.read(info)) for info in zf.infolist()]
    path.write_bytes(_zip(members))


def _resave_torch(path: Path) -> None:
    """torch.save names its records after the file it writes (a random temporary name in checkpoints)."""
    buf = io.BytesIO()
    torch.save(torch.load(path, weights_only=True), buf)
    path.write_bytes(buf.getvalue())


def _payloads(episode: genrl.Episode) -> dict[str, bytes]:
    """Malicious files, each creating ``$GENRL_FUZZ_MARKERS/<its name>`` if anything ever unpickles it."""

    def touch(name: str) -> _Payload:
        return _Payload(os.system, f'touch "${MARKERS_VAR}/{name}"')

    real = [(f"{key}.npy", _npy(value)) for key, value in episode.arrays().items() if key != "obs"]
    return {
        "pickle_os_system": pickle.dumps(touch("pickle_os_system"), protocol=2),
        "pickle_exec": pickle.dumps(
            _Payload(exec, f"import os; open(os.environ['{MARKERS_VAR}'] + '/pickle_exec', 'w').close()")
        ),
        # A real episode whose obs is an object array: only np.load(allow_pickle=True) reads it.
        "npz_object_array": _zip(
            [*real, ("obs.npy", _npy(np.array([touch("npz_object_array")], dtype=object)))]
        ),
        "npy_object_array": _npy(np.array([touch("npy_object_array")], dtype=object)),
        # An .npz whose obs member is a bare pickle, not an .npy.
        "npz_pickle_member": _zip([*real, ("obs.npy", pickle.dumps(touch("npz_pickle_member")))]),
        # What a checkpoint's .pt file would hold if someone replaced it: torch.load must refuse it.
        "torch_save_pt": _torch_bytes({"state": touch("torch_save_pt"), "param_groups": []}),
        "yaml_python_object": (
            f"!!python/object/apply:os.system ['touch \"${MARKERS_VAR}/yaml_python_object\"']\n".encode()
        ),
    }


def _torch_bytes(obj: Any) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Iterator[Corpus]:
    root = tmp_path_factory.mktemp("fuzz_corpus")
    dataset = genrl.collect("CartPole-v1", 40, seed=0, path=root / "dataset", progress=False)
    assert len(dataset) >= 2
    torch.manual_seed(0)
    model = WorldModel(
        dataset.observation_space,
        dataset.action_space,
        latent_dim=4,
        hidden_dim=8,
        rnn_dim=8,
        num_mixtures=2,
        seed=0,  # the same weights (and model.json) on every run
    )
    model.set_start_states(dataset.start_states())
    model.save(root / "model")
    agent = PPO(
        "MlpPolicy",
        gym.make("CartPole-v1"),
        n_steps=16,
        batch_size=16,
        policy_kwargs={"net_arch": [8]},
        device="cpu",
        seed=0,
    )
    save_policy(agent, root / "policy.safetensors")
    # A checkpoint of an off-policy agent, so that it has every file a checkpoint can have.
    dqn = DQN(
        "MlpPolicy",
        gym.make("CartPole-v1"),
        buffer_size=64,
        learning_starts=1000,  # collect only: no gradient steps
        policy_kwargs={"net_arch": [8]},
        device="cpu",
        seed=0,
    )
    dqn.learn(24)
    checkpoint = CheckpointStore(root / "checkpoints").save(
        0, Phase.FITTED, model, dqn, episodes=len(dataset), real_steps=40, elapsed_s=1.0, history=[]
    )
    restore_agent = DQN(
        "MlpPolicy", gym.make("CartPole-v1"), buffer_size=64, policy_kwargs={"net_arch": [8]}, device="cpu"
    )
    for file in [*(root / "dataset" / "episodes").glob("*.npz"), checkpoint / "replay_buffer.npz"]:
        _rezip(file)
    for file in (checkpoint / "model_optimizer.pt", checkpoint / "agent.pt"):
        _resave_torch(file)
    markers = root / "markers"
    markers.mkdir()
    previous = os.environ.get(MARKERS_VAR)
    os.environ[MARKERS_VAR] = str(markers)
    c = Corpus(
        root=root,
        dataset=root / "dataset",
        model=root / "model",
        policy=root / "policy.safetensors",
        agent=agent,
        model_shapes={k: tuple(v.shape) for k, v in model.state_dict().items()},
        policy_shapes={k: tuple(v.shape) for k, v in agent.policy.state_dict().items()},
        markers=markers,
        checkpoint=checkpoint,
        restore_model=WorldModel(dataset.observation_space, dataset.action_space, model.config, seed=0),
        restore_agent=restore_agent,
        dqn_shapes={k: tuple(v.shape) for k, v in restore_agent.policy.state_dict().items()},
    )
    c.payloads = _payloads(dataset.episodes[0])
    yield c
    if previous is None:
        os.environ.pop(MARKERS_VAR, None)
    else:
        os.environ[MARKERS_VAR] = previous


# ---- mutations -------------------------------------------------------------------------------
#
# Hypothesis picks the seed file and the kind of mutation, and hands over a Random it seeded; the
# mutation's details (positions, values) come from that Random. Drawing each of them as a separate
# Hypothesis choice would make its bookkeeping, not the loaders, the cost of a run.

INTERESTING_BYTES = [
    b"\x00",
    b"\xff",
    b"\x7f",
    b"\x80",
    b"\x00\x00\x00\x00",
    b"\xff\xff\xff\xff",
    b"\xff\xff\xff\xff\xff\xff\xff\x7f",
    b"\x00\x00\x00\x00\x00\x00\x00\x80",
    b"\xff" * 8,
    b"0",
    b"-1",
    b"9999999999999",
    b"1" + b"0" * 5000,  # past Python's int-to-str digit limit
    b"1e309",
    b"NaN",
    b"Infinity",
    b"null",
    b"true",
    b'"',
    b"'",
    b"{",
    b"}",
    b"[" * 100_000,  # deeper than any recursive parser goes
    b"]",
    b":",
    b",",
    b"\n",
    b"\\",
    b"(",
    b")",
    b"<f4",
    b"|O",
    b"<c16",
    b"F64",
    b"I64",
    b"BOOL",
    b"!!python/object/apply:os.system",
    b"&a [*a, *a]",
    b"2001-13-45",  # a YAML timestamp with no such date
    b"\xef\xbb\xbf",
    b"\xc3\x28",
]
INTERESTING_INTS = [0, 1, -1, 2, 3, 255, 2**31 - 1, 2**31, 2**32, 2**53 + 1, 2**63 - 1, 2**63, 2**64, 10**12]
INTERESTING_INTS += [10**30, 10**400]
INTERESTING_FLOATS = [0.0, -0.0, 0.5, 1e-300, 1e308, 3.5e38, math.inf, -math.inf, math.nan]
INTERESTING_STRS = ["", "x", "Box", "Discrete", "float32", "float16", "int64", "uint8", "bool", "object"]
INTERESTING_STRS += ["<f4", "|O", "V0", "complex64", "datetime64", "U", "inf", "-inf", "nan", "1e309"]
INTERESTING_STRS += ["F32", "F16", "BF16", "F64", "I64", "I32", "U8", "BOOL", "F8_E4M3", "genrl.rollouts"]
INTERESTING_STRS += ["genrl.world_model", "__metadata__", "ppo", "lin_0.001", "CartPole-v1", "collected"]
JSON_KEYS = ["type", "n", "start", "shape", "dtype", "low", "high", "format", "version", "config"]
JSON_KEYS += ["hidden_dim", "latent_dim", "data_offsets", "__metadata__", "algorithm", "x"]


def _random_json(r: random.Random, depth: int = 0) -> Any:
    kind = r.randrange(9 if depth < 2 else 7)
    if kind == 0:
        return r.choice([None, True, False])
    if kind == 1:
        return r.choice(INTERESTING_INTS) * r.choice([1, -1])
    if kind == 2:
        return r.randint(-1000, 1000)
    if kind == 3:
        return r.choice(INTERESTING_FLOATS)
    if kind == 4:
        return r.uniform(-1e6, 1e6)
    if kind == 5:
        return r.choice(INTERESTING_STRS)
    if kind == 6:
        return "".join(chr(r.randrange(0x20, 0x2FF)) for _ in range(r.randrange(8)))
    if kind == 7:
        return [_random_json(r, depth + 1) for _ in range(r.randrange(4))]
    return {r.choice(JSON_KEYS): _random_json(r, depth + 1) for _ in range(r.randrange(4))}


def _pos(r: random.Random, n: int) -> int:
    """Anywhere, or near the start or the end, where headers and zip directories are."""
    where = r.randrange(4)
    if where == 0:
        return r.randint(0, min(n, 300))
    if where == 1:
        return r.randint(max(0, n - 300), n)
    return r.randint(0, n)


def _byte_edit(r: random.Random, data: bytearray, seeds: list[bytes]) -> bytearray:
    n = len(data)
    op = r.choice(["flip", "overwrite", "interesting", "truncate", "insert", "delete", "dup", "splice"])
    span = r.choice([1, 2, 4, 8, 64, 1024, 4096])
    if op == "flip" and n:
        data[_pos(r, n - 1)] ^= 1 << r.randrange(8)
    elif op == "overwrite" and n:
        i = _pos(r, n - 1)
        data[i : i + span] = r.randbytes(min(span, 8))
    elif op == "interesting":
        i, new = _pos(r, n), r.choice(INTERESTING_BYTES)
        data[i : i + (len(new) if r.random() < 0.5 else 0)] = new
    elif op == "truncate":
        del data[_pos(r, n) :]
    elif op == "insert":
        i = _pos(r, n)
        data[i:i] = r.randbytes(r.randint(1, 32))
    elif op == "delete" and n:
        i = _pos(r, n)
        del data[i : i + span]
    elif op == "dup" and n:
        a, i = _pos(r, n), _pos(r, n)
        data[i:i] = data[a : a + span]
    elif op == "splice":
        other = r.choice(seeds)
        data = data[: _pos(r, n)] + bytearray(other[_pos(r, len(other)) :])
    return data


def _paths(value: Any, prefix: tuple = (), depth: int = 0) -> Iterator[tuple]:
    yield prefix
    if depth >= 6:
        return
    if isinstance(value, dict):
        for key, child in value.items():
            yield from _paths(child, (*prefix, key), depth + 1)
    elif isinstance(value, list):
        for i, child in enumerate(value[:50]):
            yield from _paths(child, (*prefix, i), depth + 1)


def _get(root: Any, path: tuple) -> Any:
    for key in path:
        root = root[key]
    return root


def _set(root: Any, path: tuple, value: Any) -> Any:
    if not path:
        return value
    _get(root, path[:-1])[path[-1]] = value
    return root


def _tree_edit(r: random.Random, root: Any) -> Any:
    """One structural edit of a JSON-like tree: replace, retype, tweak, delete, add, wrap or swap a node."""
    root = copy.deepcopy(root)
    paths = list(_paths(root))
    path = r.choice(paths)
    node = _get(root, path)
    op = r.choice(["replace", "retype", "tweak", "tweak", "delete", "add", "wrap", "swap"])
    if op == "retype":  # the same content as another JSON type
        try:
            text = json.dumps(node)
        except (TypeError, ValueError):
            text = repr(node)
        options = [None, True, 0, 1.5, "", [], {}, text, [node], {"x": node}]
        if isinstance(node, dict):
            options.append(list(node.values()))
        if isinstance(node, list):
            options.append({str(i): v for i, v in enumerate(node)})
        return _set(root, path, r.choice(options))
    if op == "tweak" and isinstance(node, (int, float)) and not isinstance(node, bool):
        factor = r.choice([-1, 0, 2, 10, 1000, 10**9, 10**20, 0.5])
        try:
            new = r.choice([node * factor, node + 1, node - 1, float(node) + 0.5, -node])
        except OverflowError:  # an int past float range, from an earlier edit
            new = node + 1
        return _set(root, path, new)
    if op == "delete" and path:
        del _get(root, path[:-1])[path[-1]]
        return root
    if op == "add" and isinstance(node, dict):
        node[r.choice(JSON_KEYS)] = _random_json(r)
        return root
    if op == "add" and isinstance(node, list):
        node.insert(r.randint(0, len(node)), _random_json(r))
        return root
    if op == "wrap":
        return _set(root, path, [node])
    if op == "swap":
        other = r.choice(paths)
        if path[: len(other)] != other and other[: len(path)] != path:  # neither contains the other
            a, b = copy.deepcopy(node), copy.deepcopy(_get(root, other))
            _set(root, path, b)
            _set(root, other, a)
        return root
    return _set(root, path, _random_json(r))


def _json_structural(r: random.Random, data: bytes) -> bytes:
    try:
        tree = json.loads(data)
    except (ValueError, RecursionError):
        return data
    for _ in range(r.randint(1, 3)):
        tree = _tree_edit(r, tree)
    return json.dumps(tree).encode()


def _yaml_structural(r: random.Random, data: bytes) -> bytes:
    try:
        tree = yaml.safe_load(data)
    except yaml.YAMLError:
        return data
    for _ in range(r.randint(1, 3)):
        tree = _tree_edit(r, tree)
    return yaml.safe_dump(tree).encode()


_DESCRS = ["<f4", ">f4", "<f8", "<f2", "|b1", "<i8", "<i4", "|u1", "<u8", "|O", "<c8", "<U4", "|S4"]
_DESCRS += ["|V8", "<M8[s]", "<m8[s]", "<f16", "|V0", "<f5", [("a", "<f4"), ("b", "|O")]]
_DIMS = [0, 1, 2, 3, 4, 5, 21, 40, 2**31, 10**9, 10**12, 2**62, 2**63 - 1, 2**63, -1]


def _npy_header_edit(r: random.Random, blob: bytes) -> bytes:
    """Rewrite an .npy member's header (shape, dtype or order) over its original data."""
    fp = io.BytesIO(blob)
    major, _ = np.lib.format.read_magic(fp)
    read = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
    shape, fortran, dtype = read(fp)
    body = blob[fp.tell() :]
    header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": fortran, "shape": shape}
    what = r.choice(["shape", "dim", "dim", "descr", "fortran"])
    if what == "shape":
        header["shape"] = tuple(r.choice(_DIMS) for _ in range(r.randrange(5)))
    elif what == "dim" and shape:
        dims = list(shape)
        dims[r.randrange(len(dims))] = r.choice(_DIMS)
        header["shape"] = tuple(dims)
    elif what == "descr":
        header["descr"] = r.choice(_DESCRS)
    else:
        header["fortran_order"] = not fortran
    # Written by hand: numpy's writers refuse what this is here to produce.
    text = repr(header).encode("latin1")
    text += b" " * ((64 - (len(text) + 11) % 64) % 64) + b"\n"
    return np.lib.format.magic(1, 0) + len(text).to_bytes(2, "little") + text + body


def _zip_structural(r: random.Random, data: bytes) -> bytes:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            members = [(info.filename, zf.read(info)) for info in zf.infolist()]
    except Exception:  # not a readable zip (a payload seed): nothing structural to edit
        return data
    if not members:
        return data
    i = r.randrange(len(members))
    name, blob = members[i]
    op = r.choice(["header", "header", "header", "drop", "rename", "duplicate", "swap", "compress"])
    compression = zipfile.ZIP_STORED
    if op == "header":
        with contextlib.suppress(Exception):  # the member is not an .npy with a readable header
            members[i] = (name, _npy_header_edit(r, blob))
    elif op == "drop":
        del members[i]
    elif op == "rename":
        members[i] = (r.choice(["obs", "obs.npy.npy", "x.npy", "../obs.npy", "/obs.npy", "OBS.npy"]), blob)
    elif op == "duplicate":
        members.append((name, r.choice(members)[1]))
    elif op == "swap":
        members[i] = (name, r.choice(members)[1])
    else:
        compression = r.choice([zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA])
    return _zip(members, compression)


def _safetensors_structural(r: random.Random, data: bytes) -> bytes:
    """Edit the JSON header (dtypes, shapes, offsets) and write it back with a matching length."""
    if len(data) < 8:
        return data
    n = int.from_bytes(data[:8], "little")
    try:
        header = json.loads(data[8 : 8 + n])
    except (ValueError, RecursionError):
        return data
    for _ in range(r.randint(1, 2)):
        header = _tree_edit(r, header)
    body = data[8 + n :]
    if r.random() < 0.2:
        body = body[: r.randint(0, len(body))]
    raw = json.dumps(header).encode()
    return len(raw).to_bytes(8, "little") + raw + body


STRUCTURAL = {
    "json": _json_structural,
    "yaml": _yaml_structural,
    "zip": _zip_structural,
    "safetensors": _safetensors_structural,
}
# How a file is made: random bytes or token soup, a structural edit (plus maybe a byte edit),
# 1 to 4 byte edits, or one bit flip anywhere (mostly inside the data: a file that should still load).
HOW = ["random"] + ["structural"] * 4 + ["bytes"] * 3 + ["flip"] * 2


def mutate(r: random.Random, how: str, seed: bytes, seeds: list[bytes], kind: str) -> bytes:
    if how == "random":
        if r.random() < 0.5:
            return r.randbytes(r.randrange(2048))
        return b"".join(
            r.choice(INTERESTING_BYTES[:12] + INTERESTING_BYTES[13:22]) for _ in range(r.randrange(64))
        )
    if how == "flip":
        data = bytearray(seed)
        if data:
            data[r.randrange(len(data))] ^= 1 << r.randrange(8)
        return bytes(data)
    edits = r.randint(1, 4)
    if how == "structural":
        seed, edits = STRUCTURAL[kind](r, seed), r.randint(0, 1)
    data = bytearray(seed)
    for _ in range(edits):
        data = _byte_edit(r, data, seeds)
    return bytes(data)


@st.composite
def mutated(draw, seeds: list[bytes], payloads: list[bytes], kind: str) -> bytes:
    """A file made from one of ``seeds`` (or, 1 in 5, a payload); ``kind``: which structural edits apply."""
    how = draw(st.sampled_from(HOW))
    seed = draw(st.sampled_from(payloads if draw(st.integers(0, 4)) == 0 else seeds))
    return mutate(draw(st.randoms(use_true_random=True)), how, seed, seeds + payloads, kind)


# ---- the loaders -----------------------------------------------------------------------------


def _check_dataset(c: Corpus, ds: Any) -> None:
    assert isinstance(ds, RolloutDataset)
    check_supported(ds.observation_space, ds.action_space)
    assert len(ds) == len(c.episodes)
    discrete = isinstance(ds.action_space, spaces.Discrete)
    for ep in ds.episodes:
        assert isinstance(ep, genrl.Episode) and set(ep.arrays()) == set(KEYS)
        steps = len(ep.reward)
        assert steps >= 1
        assert ep.obs.dtype == np.float32 and ep.obs.shape == (steps + 1, *ds.observation_space.shape)
        act_shape = (steps,) if discrete else (steps, *ds.action_space.shape)
        assert ep.action.dtype == (np.int64 if discrete else np.float32) and ep.action.shape == act_shape
        if discrete:
            assert all(ds.action_space.contains(int(a)) for a in ep.action)
        assert ep.reward.dtype == np.float32 and ep.reward.shape == (steps,)
        arrays = ep.arrays()
        for key in ("obs", "action", "reward"):
            assert np.all(np.isfinite(arrays[key])), key
        for key in ("terminated", "truncated"):
            flags = arrays[key]
            assert flags.dtype == bool and flags.shape == (steps,) and not flags[:-1].any()


def _check_tensors(state: dict[str, torch.Tensor], shapes: dict[str, tuple[int, ...]]) -> None:
    assert set(state) == set(shapes)
    for key, tensor in state.items():
        if key == "start_states":
            assert tensor.shape[1:] == shapes[key][1:], key
        else:
            assert tuple(tensor.shape) == shapes[key], key
        # An unbounded observation space has infinite bounds; a model no fit has seen, no support.
        if key in ("_obs_low", "_obs_high", "support_low", "support_high", "reward_low", "reward_high"):
            assert not tensor.isnan().any(), f"{key} holds NaN"
        elif tensor.is_floating_point():
            assert torch.isfinite(tensor).all(), f"{key} holds NaN or inf"


def _check_model(c: Corpus, model: Any) -> None:
    assert isinstance(model, WorldModel)
    check_supported(model.observation_space, model.action_space)
    _check_tensors(model.state_dict(), c.model_shapes)


def _check_policy(c: Corpus, agent: Any) -> None:
    assert agent is c.agent
    _check_tensors(agent.policy.state_dict(), c.policy_shapes)


def _check_dict(c: Corpus, data: Any) -> None:
    assert isinstance(data, dict)


def _check_space(c: Corpus, space: Any) -> None:
    assert isinstance(space, (spaces.Discrete, spaces.Box))
    assert spaces_equal(space_from_json(space_to_json(space)), space)


def _dataset_work(c: Corpus, work: Path) -> None:
    shutil.copytree(c.dataset, work / "dataset")


def _model_work(c: Corpus, work: Path) -> None:
    shutil.copytree(c.model, work / "model")


def _no_work(c: Corpus, work: Path) -> None:
    pass


def _load_dataset_json(c: Corpus, work: Path, data: bytes) -> Any:
    (work / "dataset" / "dataset.json").write_bytes(data)
    return RolloutDataset.load(work / "dataset")


def _load_episode(c: Corpus, work: Path, data: bytes) -> Any:
    (work / "dataset" / "episodes" / c.episodes[0].name).write_bytes(data)
    return RolloutDataset.load(work / "dataset")


def _load_model_json(c: Corpus, work: Path, data: bytes) -> Any:
    (work / "model" / "model.json").write_bytes(data)
    return WorldModel.load(work / "model")


def _load_model_weights(c: Corpus, work: Path, data: bytes) -> Any:
    (work / "model" / "weights.safetensors").write_bytes(data)
    return WorldModel.load(work / "model")


def _load_policy(c: Corpus, work: Path, data: bytes) -> Any:
    (work / "policy.safetensors").write_bytes(data)
    return load_policy(c.agent, work / "policy.safetensors")


def _read_json(c: Corpus, work: Path, data: bytes) -> Any:
    (work / "file.json").write_bytes(data)
    return read_json(work / "file.json", "a JSON object")


def _space_from_json(c: Corpus, work: Path, data: bytes) -> Any:
    # space_from_json takes what a caller parsed from JSON: any JSON value, or text that was not JSON.
    try:
        value = json.loads(data)
    except (ValueError, RecursionError):
        value = data.decode("latin1")
    return space_from_json(value)


def _load_preset(c: Corpus, work: Path, data: bytes) -> Any:
    (work / "preset.yaml").write_bytes(data)
    return load_preset("envs", work / "preset.yaml")


def _checkpoint_work(c: Corpus, work: Path) -> None:
    shutil.copytree(c.checkpoint, work / "checkpoint")


def _load_checkpoint_json(c: Corpus, work: Path, data: bytes) -> Any:
    (work / "checkpoint" / "checkpoint.json").write_bytes(data)
    return read_checkpoint(work / "checkpoint")


def _restore(name: str) -> Callable[[Corpus, Path, bytes], Any]:
    def load(c: Corpus, work: Path, data: bytes) -> Any:
        (work / "checkpoint" / name).write_bytes(data)
        read_checkpoint(work / "checkpoint").restore(c.restore_model, c.restore_agent)
        return c.restore_model, c.restore_agent

    return load


def _check_checkpoint(c: Corpus, ckpt: Any) -> None:
    assert isinstance(ckpt, Checkpoint)


def _check_restored(c: Corpus, result: Any) -> None:
    model, agent = result
    _check_tensors(model.state_dict(), c.model_shapes)
    _check_tensors(agent.policy.state_dict(), c.dqn_shapes)
    buffer = agent.replay_buffer
    for key in ("observations", "actions", "rewards", "dones"):
        assert np.all(np.isfinite(getattr(buffer, key)[: buffer.pos])), key


def _space_seeds(c: Corpus) -> list[bytes]:
    meta = json.loads((c.dataset / "dataset.json").read_bytes())
    boxes = [
        spaces.Box(-1.0, 2.0, (3, 2), np.float32),
        spaces.Box(0, 255, (4,), np.uint8),
        spaces.Discrete(5, start=-2),
    ]
    return [json.dumps(s).encode() for s in (meta["observation_space"], meta["action_space"])] + [
        json.dumps(space_to_json(s)).encode() for s in boxes
    ]


@dataclass(frozen=True)
class Loader:
    name: str
    kind: str  # which structural mutations apply: json, yaml, zip (.npz, .pt) or safetensors
    seeds: Callable[[Corpus], list[bytes]]  # real files; the payloads are added to every loader
    prepare: Callable[[Corpus, Path], None]  # once per run: set up the work folder
    load: Callable[[Corpus, Path, bytes], Any]  # write the bytes into place and call the loader
    check: Callable[[Corpus, Any], None]  # a successful load must give a valid result
    target: int = TARGET  # mutated files per run
    known_crash: str = ""  # a crash found in code this test may not fix: the entry is a strict xfail


LOADERS = [
    Loader(
        "RolloutDataset.load/dataset.json",
        "json",
        lambda c: [(c.dataset / "dataset.json").read_bytes()],
        _dataset_work,
        _load_dataset_json,
        _check_dataset,
    ),
    Loader(
        "RolloutDataset.load/episode.npz",
        "zip",
        lambda c: [p.read_bytes() for p in c.episodes],
        _dataset_work,
        _load_episode,
        _check_dataset,
    ),
    Loader(
        "WorldModel.load/model.json",
        "json",
        lambda c: [(c.model / "model.json").read_bytes()],
        _model_work,
        _load_model_json,
        _check_model,
    ),
    Loader(
        "WorldModel.load/weights.safetensors",
        "safetensors",
        lambda c: [(c.model / "weights.safetensors").read_bytes()],
        _model_work,
        _load_model_weights,
        _check_model,
    ),
    Loader(
        "agents.load_policy",
        "safetensors",
        lambda c: [c.policy.read_bytes()],
        _no_work,
        _load_policy,
        _check_policy,
    ),
    Loader(
        "files.read_json",
        "json",
        lambda c: [(c.dataset / "dataset.json").read_bytes(), (c.model / "model.json").read_bytes()],
        _no_work,
        _read_json,
        _check_dict,
    ),
    Loader("spaces.space_from_json", "json", _space_seeds, _no_work, _space_from_json, _check_space),
    Loader(
        "presets.load_preset",
        "yaml",
        lambda c: [
            (REPO / "envs" / "cartpole.yaml").read_bytes(),
            (REPO / "agents" / "ppo.yaml").read_bytes(),
        ],
        _no_work,
        _load_preset,
        _check_dict,
    ),
    # A run checkpoint: its JSON, then each file Checkpoint.restore reads after loading the world model
    # folder (whose files the WorldModel.load entries cover). Restoring costs about 30 ms a file, hence
    # the smaller targets. The torch_save_pt payload is aimed at the two torch.load files.
    Loader(
        "checkpoint.read_checkpoint/checkpoint.json",
        "json",
        lambda c: [(c.checkpoint / "checkpoint.json").read_bytes()],
        _checkpoint_work,
        _load_checkpoint_json,
        _check_checkpoint,
    ),
    # Longer campaigns (GENRL_FUZZ_SCALE=5 GENRL_FUZZ_SEED=2) find two more crashes here: an
    # AttributeError from torch's Optimizer.load_state_dict that the model's trainer.load_state_dict
    # lets through, and SB3's multi-line load_state_dict error inside _restore_agent's GenrlError.
    Loader(
        "Checkpoint.restore/model_optimizer.pt",
        "zip",
        lambda c: [(c.checkpoint / "model_optimizer.pt").read_bytes()],
        _checkpoint_work,
        _restore("model_optimizer.pt"),
        _check_restored,
        target=200,
    ),
    Loader(
        "Checkpoint.restore/agent.pt",
        "zip",
        lambda c: [(c.checkpoint / "agent.pt").read_bytes()],
        _checkpoint_work,
        _restore("agent.pt"),
        _check_restored,
        target=200,
    ),
    Loader(
        "Checkpoint.restore/replay_buffer.npz",
        "zip",
        lambda c: [(c.checkpoint / "replay_buffer.npz").read_bytes()],
        _checkpoint_work,
        _restore("replay_buffer.npz"),
        _check_restored,
        target=200,
    ),
]
assert sum(loader.target for loader in LOADERS) >= MIN_TOTAL


# ---- the harness -----------------------------------------------------------------------------


class _Hang(BaseException):
    """Raised by the timer; a BaseException so that a loader's ``except Exception`` cannot swallow it."""


@contextlib.contextmanager
def _time_limit(seconds: float) -> Iterator[None]:
    def _alarm(signum, frame):
        raise _Hang(f"no result after {seconds} s")

    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@contextlib.contextmanager
def _memory_cap(headroom: int) -> Iterator[None]:
    """Cap the address space so an allocation of gigabytes fails (and counts as a crash)."""
    status = Path("/proc/self/status")
    if not status.is_file():
        yield
        return
    vm_kb = next(
        int(line.split()[1]) for line in status.read_text().splitlines() if line.startswith("VmSize:")
    )
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    cap = vm_kb * 1024 + headroom
    if hard != resource.RLIM_INFINITY:
        cap = min(cap, hard)
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


@dataclass
class Run:
    loader: Loader
    corpus: Corpus
    work: Path
    stats: dict[str, int]
    crashes: dict[str, str] = field(default_factory=dict)  # first message per kind of crash -> its sample

    def crash(self, what: str, data: bytes, exc: BaseException | None = None) -> None:
        """Count a crash; keep the first sample of each kind (exception type and where it was raised)."""
        self.stats["crash"] += 1
        where = traceback.extract_tb(exc.__traceback__)[-1] if exc is not None else None
        kind = f"{what.split(':')[0]} at {Path(where.filename).name}:{where.lineno}" if where else what
        if kind not in self.crashes:
            sample = self.work / "crashes" / f"{len(self.crashes):03d}.bin"
            sample.parent.mkdir(exist_ok=True)
            sample.write_bytes(data)
            self.crashes[kind] = f"{what[:300]!r} (sample: {sample})"

    def one(self, data: bytes, counter: str = "files") -> None:
        self.stats[counter] += 1
        try:
            with warnings.catch_warnings(), _time_limit(TIMEOUT_S):
                warnings.simplefilter("ignore")
                result = self.loader.load(self.corpus, self.work, data)
        except GenrlError as exc:
            if "\n" in str(exc):
                self.crash(f"GenrlError on several lines: {exc!r}", data, exc)
            else:
                self.stats["genrl_error"] += 1
        except (Exception, _Hang) as exc:  # anything but GenrlError is what the fuzzing is here to find
            self.crash(f"{type(exc).__name__}: {exc}", data, exc)
        else:
            try:
                self.loader.check(self.corpus, result)
            except AssertionError as exc:
                self.crash(f"loaded an invalid result: {exc}", data, exc)
            else:
                self.stats["ok"] += 1
        fired = sorted(p.name for p in self.corpus.markers.iterdir())
        if fired:
            self.stats["payload"] += 1
            self.crash(f"payload executed: {fired}", data)
            for name in fired:
                (self.corpus.markers / name).unlink()


@pytest.mark.parametrize(
    "loader",
    [
        pytest.param(loader, marks=pytest.mark.xfail(reason=loader.known_crash, strict=True))
        if loader.known_crash
        else loader
        for loader in LOADERS
    ],
    ids=[loader.name for loader in LOADERS],
)
def test_fuzz_loader(loader: Loader, corpus: Corpus, tmp_path: Path) -> None:
    stats = FUZZ_STATS.setdefault(
        loader.name,
        {"files": 0, "payload_files": 0, "ok": 0, "genrl_error": 0, "crash": 0, "payload": 0},
    )
    stats["xfail"] = int(bool(loader.known_crash))
    run = Run(loader, corpus, tmp_path, stats)
    loader.prepare(corpus, tmp_path)
    seeds = loader.seeds(corpus)
    for real in seeds:  # the unmutated seeds must load
        loader.check(corpus, loader.load(corpus, tmp_path, real))
    for payload in corpus.payloads.values():  # every payload, as is, where this loader reads
        run.one(payload, counter="payload_files")
    first, target = stats["files"], int(loader.target * SCALE)

    @settings(
        max_examples=target,
        deadline=None,
        database=None,
        derandomize=SEED is None,
        phases=[HypothesisPhase.generate],  # crashes are collected, never raised: nothing to shrink
        suppress_health_check=list(HealthCheck),
    )
    @given(data=mutated(seeds, list(corpus.payloads.values()), loader.kind))
    def fuzz(data: bytes) -> None:
        run.one(data)

    if SEED is not None:
        fuzz = hypothesis.seed(int(SEED))(fuzz)

    with _memory_cap(MEMORY_HEADROOM):
        fuzz()
    fuzzed = stats["files"] - first
    assert not run.crashes, f"{loader.name}: {stats['crash']} crashes of {fuzzed} files:\n" + "\n".join(
        f"  {kind}: {first}" for kind, first in run.crashes.items()
    )
    assert stats["payload"] == 0
    assert fuzzed >= target, f"hypothesis stopped after {fuzzed} of {target} files"


def test_payloads_are_live(corpus: Corpus, tmp_path: Path) -> None:
    """The payloads do run when unpickled the unsafe way, so the fuzzing's zero means something."""
    for name, data in corpus.payloads.items():
        (tmp_path / name).write_bytes(data)
    script = """
import io, pickle, sys, zipfile
from pathlib import Path
import numpy as np, torch, yaml
d = Path(sys.argv[1])
pickle.loads((d / "pickle_os_system").read_bytes())
pickle.loads((d / "pickle_exec").read_bytes())
np.load(d / "npz_object_array", allow_pickle=True)["obs"]
np.load(d / "npy_object_array", allow_pickle=True)
pickle.loads(zipfile.ZipFile(d / "npz_pickle_member").read("obs.npy"))
torch.load(d / "torch_save_pt", weights_only=False)
yaml.unsafe_load((d / "yaml_python_object").read_bytes())
"""
    subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)], check=True, capture_output=True, timeout=120
    )
    try:
        assert sorted(p.name for p in corpus.markers.iterdir()) == sorted(corpus.payloads)
    finally:
        for marker in corpus.markers.iterdir():
            marker.unlink()
    # The checkpoint loader will read optimizer.pt with weights_only=True: that must refuse the payload.
    with pytest.raises(pickle.UnpicklingError):
        torch.load(io.BytesIO(corpus.payloads["torch_save_pt"]), weights_only=True)
    assert not any(corpus.markers.iterdir())
