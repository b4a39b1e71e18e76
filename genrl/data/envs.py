"""Real environments by id, with a one-line error for an id Gymnasium does not know.

An id is a registered Gymnasium id (``CartPole-v1``), one that a module registers on import
(``my_package:MyEnv-v0``, as ``gymnasium.make`` reads it), or the entry point of an env class or
of a function that makes one (``my_package.envs:MyEnv``): no registration needed.
"""

from __future__ import annotations

import importlib
from typing import Any

import gymnasium as gym
from gymnasium.envs.registration import EnvSpec

from genrl.errors import GenrlError
from genrl.util.checks import one_line


def make_env(env_id: str, **kwargs: Any) -> gym.Env:
    """gym.make with a one-line GenrlError for an unknown id; ``module:Name`` entry points too."""
    spec = _entry_point(env_id)
    try:
        return gym.make(spec if spec is not None else env_id, **kwargs)
    except (gym.error.NameNotFound, gym.error.NamespaceNotFound, gym.error.VersionNotFound) as exc:
        raise GenrlError(f"unknown environment {env_id!r}: {exc}") from None
    except ModuleNotFoundError as exc:
        raise GenrlError(f"environment {env_id!r}: cannot import module {exc.name!r} ({exc})") from None
    except gym.error.Error as exc:
        raise GenrlError(f"cannot make environment {env_id!r}: {exc}") from None


def _entry_point(env_id: str) -> EnvSpec | None:
    """A spec for ``module:Name`` when Name is an attribute of the module rather than an env id."""
    if not isinstance(env_id, str) or ":" not in env_id:
        return None
    module_name, name = env_id.split(":", 1)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise GenrlError(f"environment {env_id!r}: cannot import module {exc.name!r}") from None
    except Exception as exc:  # the user's module failed while importing
        raise GenrlError(
            f"environment {env_id!r}: importing {module_name!r} failed ({one_line(exc)})"
        ) from None
    target = getattr(module, name, None)
    if target is None or not callable(target):
        return None  # an id the import registered: gym.make looks it up
    # A class's own time limit, if it names one, as registered envs do.
    limit = getattr(target, "max_episode_steps", None)
    return EnvSpec(id=name, entry_point=env_id, max_episode_steps=limit if isinstance(limit, int) else None)
