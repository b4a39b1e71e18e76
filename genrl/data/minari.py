"""Minari datasets in and out: import one into a RolloutDataset, export a RolloutDataset to Minari.

Minari (https://minari.farama.org) is an optional extra (``pip install 'genrl[minari]'``); it is
imported only when these functions run, and only locally installed datasets are read: nothing is
ever downloaded (``minari download ID`` fetches a remote one).

Mapping, per episode (Minari ``EpisodeData`` <-> genrl :class:`~genrl.data.episode.Episode`)::

    observations  (T+1, ...)  <->  obs         float32 in genrl, the space's own dtype in Minari
    actions       (T, ...)    <->  action      int64 (Discrete) or float32 (Box) in genrl;
                                               int64 / the Box's dtype in Minari
    rewards       (T,)        <->  reward      float32 in genrl, float64 in Minari
    terminations  (T,)        <->  terminated  bool
    truncations   (T,)        <->  truncated   bool
    id                         ->  info["minari"] = {"dataset_id": ..., "episode_id": ...}

The observation and action spaces are the Minari dataset's own (genrl supports a Box of
observations and Discrete or bounded Box actions; anything else, e.g. Dict, is refused).

Not carried: Minari's per-step ``infos``, episode seeds and options, and the dataset's metadata
(author, env spec, reference scores) on import; genrl's episode ``info`` on export. genrl stores
rewards and observations as float32 (its schema), so float64 rewards or observations (Minari
writes rewards as float64) lose precision on import: exports of genrl data round-trip exactly,
imports of float64 data only up to float32. Every imported episode is checked as genrl checks its
own (at least one step, finite numbers, termination or truncation on the last step only); the
first that fails ends the import with a GenrlError naming its Minari episode id.
"""

from __future__ import annotations

import inspect
import os
import re
import shutil
import warnings
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np
from gymnasium import spaces

from genrl.data.dataset import RolloutDataset
from genrl.data.envs import make_env
from genrl.errors import GenrlError
from genrl.util.checks import check_int, describe, one_line
from genrl.util.spaces import check_spaces_match, check_supported

if TYPE_CHECKING:
    import minari

# Minari's own grammar is (namespace/)name(-vN), but it cannot load an id without its version.
_ID = re.compile(r"(?:[-\w]+(?:/[-\w]+)*/)?[-\w]+-v\d+")
# Exports are for sharing, so they take the documented form namespace/name-vN.
_EXPORT_ID = re.compile(r"(?P<stem>[-\w]+(?:/[-\w]+)*/[-\w]+)-v(?P<version>\d+)")


def from_minari(
    dataset: str | minari.MinariDataset,
    path: str | os.PathLike | None = None,
    *,
    episodes: int | None = None,
) -> RolloutDataset:
    """A RolloutDataset of a Minari dataset's episodes, one genrl episode per Minari episode.

    :param dataset: the id of a locally installed Minari dataset, or a ``minari.MinariDataset``
    :param path: folder to write the RolloutDataset to; ``None`` keeps it in memory
    :param episodes: import only the first ``episodes`` episodes (all when ``None`` or more)
    """
    minari = _import_minari("from_minari")
    if episodes is not None:
        episodes = check_int(episodes, "episodes", 1)
    # Checked before reading any episode, so that a taken folder fails fast.
    if path is not None and (Path(path) / "dataset.json").exists():
        raise GenrlError(f"a dataset already exists at {path}; open it with RolloutDataset.load")
    source = _load(minari, dataset) if isinstance(dataset, str) else dataset
    if not isinstance(source, minari.MinariDataset):
        raise GenrlError(
            "from_minari: expected a Minari dataset id (str) or a minari.MinariDataset, "
            f"got {describe(dataset)}"
        )
    dataset_id = source.id
    try:
        check_supported(source.observation_space, source.action_space)
    except GenrlError as exc:
        raise GenrlError(f"Minari dataset {dataset_id!r}: {exc}") from None

    # Validated in memory first, so that a bad episode never leaves half a dataset on disk.
    memory = RolloutDataset(source.observation_space, source.action_space)
    indices = source.episode_indices if episodes is None else source.episode_indices[:episodes]
    try:
        for ep in source.iterate_episodes(indices):
            info = {"minari": {"dataset_id": dataset_id, "episode_id": int(ep.id)}}
            try:
                memory.add_episode(
                    ep.observations, ep.actions, ep.rewards, ep.terminations, ep.truncations, info
                )
            except GenrlError as exc:
                message = str(exc).removeprefix("add_episode: ")
                raise GenrlError(f"Minari dataset {dataset_id!r}, episode {ep.id}: {message}") from None
    except ImportError as exc:  # a storage backend (h5py, pyarrow) that is not installed
        raise _missing(f"reading Minari dataset {dataset_id!r}", exc) from None
    if path is None:
        return memory
    out = RolloutDataset(memory.observation_space, memory.action_space, path)
    for ep in memory.episodes:
        out.add(ep)
    return out


def to_minari(
    dataset: RolloutDataset,
    dataset_id: str,
    *,
    env: str | None = None,
    algorithm_name: str = "genrl",
    author: str | set[str] | None = None,
    author_email: str | set[str] | None = None,
    code_permalink: str | None = None,
    description: str | None = None,
) -> minari.MinariDataset:
    """Write a RolloutDataset as a new local Minari dataset (never overwriting one) and return it.

    :param dataset: the episodes to export
    :param dataset_id: the new dataset's id, ``namespace/name-vN`` (e.g. ``genrl/cartpole-random-v0``)
    :param env: the Gymnasium id of the env the data comes from, whose spec Minari records (its
        spaces must be the dataset's); ``None`` records the dataset's spaces alone
    :param algorithm_name: what collected the data; ``author``, ``author_email``,
        ``code_permalink`` and ``description`` are Minari's metadata of the same names
        (``description`` defaults to a line naming the episodes and steps)
    """
    minari = _import_minari("to_minari")
    match = _check_export(
        dataset, dataset_id, env, algorithm_name, author, author_email, code_permalink, description
    )
    from minari.storage import get_dataset_path

    where = get_dataset_path(dataset_id)
    if where.exists():
        bumped = f"{match['stem']}-v{int(match['version']) + 1}"
        raise GenrlError(
            f"to_minari: a Minari dataset {dataset_id!r} already exists at {where}: expected a new id "
            f"(e.g. {bumped!r}); minari.delete_dataset({dataset_id!r}) removes the old one"
        )
    options = _options(minari, dataset, description)
    with warnings.catch_warnings():
        # genrl takes no evaluation env, and passes the spaces itself when env is None.
        warnings.filterwarnings("ignore", message=r"`eval_env` is set to None")
        warnings.filterwarnings("ignore", message=r"env_spec is None")
        try:
            return minari.create_dataset_from_buffers(
                dataset_id,
                [_buffer(dataset, i) for i in range(len(dataset))],
                env=env,
                algorithm_name=algorithm_name,
                author=author,
                author_email=author_email,
                code_permalink=code_permalink,
                observation_space=dataset.observation_space,
                action_space=dataset.action_space,
                **options,
            )
        except (ImportError, ValueError, TypeError, AssertionError) as exc:  # what Minari raises
            # The folder did not exist before: remove what Minari left, so that the id stays free.
            shutil.rmtree(where, ignore_errors=True)
            if isinstance(exc, ImportError):
                raise _missing(f"writing Minari dataset {dataset_id!r}", exc) from None
            raise GenrlError(f"to_minari: Minari could not create {dataset_id!r}: {one_line(exc)}") from None


# ---- helpers -------------------------------------------------------------------------------------


def _options(minari: ModuleType, dataset: RolloutDataset, description: str | None) -> dict[str, Any]:
    """create_dataset_from_buffers' options beyond the caller's: no lossy JPEG, a description."""
    options: dict[str, Any] = {}
    # Image-like observations would be JPEG-encoded (lossy) by default; genrl's data stays exact.
    if "jpeg_encoding" in inspect.signature(minari.create_dataset_from_buffers).parameters:
        options["jpeg_encoding"] = False
    options["description"] = description or (
        f"{len(dataset)} episodes ({dataset.num_steps} steps) exported from a genrl RolloutDataset"
    )
    return options


def _check_export(
    dataset: Any,
    dataset_id: Any,
    env: Any,
    algorithm_name: Any,
    author: Any,
    author_email: Any,
    code_permalink: Any,
    description: Any,
) -> re.Match:
    """to_minari's arguments, checked before anything is written; the id's parts."""
    if not isinstance(dataset, RolloutDataset):
        raise GenrlError(f"to_minari: expected a RolloutDataset, got {describe(dataset)}")
    match = _EXPORT_ID.fullmatch(dataset_id) if isinstance(dataset_id, str) else None
    if match is None:
        raise GenrlError(
            "to_minari: expected a Minari dataset id of the form namespace/name-vN "
            f"(e.g. 'genrl/cartpole-random-v0'), got {describe(dataset_id)}"
        )
    if not dataset.episodes:
        raise GenrlError("to_minari: the dataset is empty: expected at least one episode to export")
    _check_metadata(algorithm_name=algorithm_name, code_permalink=code_permalink, description=description)
    _check_metadata(names=True, author=author, author_email=author_email)
    if env is not None:
        if not isinstance(env, str):
            raise GenrlError(f"to_minari: env: expected a Gymnasium id (str) or None, got {describe(env)}")
        real = make_env(env)
        try:
            given = (real.observation_space, real.action_space)
        finally:
            real.close()
        check_spaces_match(
            (dataset.observation_space, dataset.action_space), given, "dataset", f"env {env!r}"
        )
    return match


def _import_minari(what: str) -> ModuleType:
    try:
        import minari
    except ImportError as exc:
        raise _missing(what, exc) from None
    return minari


def _missing(what: str, exc: ImportError) -> GenrlError:
    """The one-line error for Minari (or one of its storage backends) not being installed."""
    # Name the failed import unless it is Minari itself, e.g. h5py that Minari's HDF5 storage needs.
    cause = "" if exc.name == "minari" else f" ({one_line(exc)})"
    return GenrlError(f"{what} needs Minari: pip install 'genrl[minari]'{cause}")


def _load(minari: ModuleType, dataset_id: str) -> minari.MinariDataset:
    """A locally installed Minari dataset by id (never downloaded), or a one-line GenrlError."""
    if not _ID.fullmatch(dataset_id):
        raise GenrlError(
            f"from_minari: expected a Minari dataset id of the form [namespace/]name-vN, got {dataset_id!r}"
        )
    try:
        return minari.load_dataset(dataset_id, download=False)
    except FileNotFoundError:
        root = os.environ.get("MINARI_DATASETS_PATH") or "~/.minari/datasets"
        with warnings.catch_warnings():  # Minari warns about each misconfigured folder it lists
            warnings.simplefilter("ignore")
            installed = sorted(minari.list_local_datasets())
        shown = ", ".join(map(repr, installed[:10])) + (", ..." if len(installed) > 10 else "")
        raise GenrlError(
            f"no Minari dataset {dataset_id!r} is installed in {root}: expected a local dataset id "
            f"({'installed: ' + shown if installed else 'none is installed'}); "
            f"`minari download {dataset_id}` fetches a remote one"
        ) from None
    except ImportError as exc:
        raise _missing(f"loading Minari dataset {dataset_id!r}", exc) from None
    except (ValueError, KeyError, OSError, AssertionError) as exc:  # unsupported version, broken files
        raise GenrlError(f"cannot load Minari dataset {dataset_id!r}: {one_line(exc)}") from None


def _check_metadata(names: bool = False, **values: object) -> None:
    """Minari's metadata are strings (``names``: a string or a set of them), or None."""
    for name, value in values.items():
        ok = value is None or isinstance(value, str)
        if names and isinstance(value, (set, frozenset)):
            ok = all(isinstance(v, str) for v in value)
        if not ok:
            expected = "a string, a set of strings or None" if names else "a string or None"
            raise GenrlError(f"to_minari: {name}: expected {expected}, got {describe(value)}")


def _buffer(dataset: RolloutDataset, index: int):
    """Episode ``index`` as a Minari EpisodeBuffer, in the dtypes of the dataset's spaces."""
    from minari.data_collector import EpisodeBuffer

    ep = dataset.episodes[index]
    obs = _cast(ep.obs, dataset.observation_space.dtype, f"episode {index}: observations")
    if isinstance(dataset.action_space, spaces.Discrete):
        action = ep.action.astype(np.int64)
    else:
        action = _cast(ep.action, dataset.action_space.dtype, f"episode {index}: actions")
    return EpisodeBuffer(
        observations=obs,
        actions=action,
        rewards=ep.reward.astype(np.float64),  # as Minari's own DataCollector writes them
        terminations=ep.terminated.copy(),
        truncations=ep.truncated.copy(),
    )


def _cast(values: np.ndarray, dtype: np.dtype, what: str) -> np.ndarray:
    """``values`` in a space's dtype; an integer space refuses values it cannot hold exactly."""
    out = values.astype(dtype)
    if np.dtype(dtype).kind in "biu" and not np.array_equal(out, values):
        raise GenrlError(
            f"to_minari: {what}: expected values that the space's dtype {np.dtype(dtype)} holds exactly, "
            "got fractions or values out of its range"
        )
    return out
