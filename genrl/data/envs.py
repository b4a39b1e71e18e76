"""Real environments by id, with a one-line error for an id Gymnasium does not know.

An id is a registered Gymnasium id (``CartPole-v1``), one that a module registers on import
(``my_package:MyEnv-v0``, as ``gymnasium.make`` reads it), or the entry point of an env class or
of a function that makes one (``my_package.envs:MyEnv``): no registration needed.

Some ids are registered on first use, as Gymnasium 1.x no longer loads env plugins:

- ``MinAtar/NAME-v0|v1`` (the ``minatar`` extra; v1 has each game's minimal action set). MinAtar
  registers them with no time limit; genrl adds one. Freeway's: 2,500 steps, its own clock, which
  the game ends with terminated=True one step later although the clock is not in the observation,
  so an agent is told the truth, a truncation. The other games end only when lost, which a good
  Breakout player never is: 1,000 steps, as gymnax's ports of MinAtar. A dream's horizon is
  the env's time limit by default.
- ``genrl/PixelCartPole-v1``: CartPole seen through 64x64 grayscale frames (genrl.data.pixels,
  the ``pixels`` extra for pygame).
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any

import gymnasium as gym
from gymnasium.envs.registration import EnvSpec

from genrl.errors import GenrlError
from genrl.util.checks import one_line

# MinAtar's time limits (see above): the games that do not end by themselves get gymnax's 1,000.
MINATAR_MAX_EPISODE_STEPS = {"Freeway": 2500}
MINATAR_DEFAULT_MAX_EPISODE_STEPS = 1000


def make_env(env_id: str, **kwargs: Any) -> gym.Env:
    """gym.make with a one-line GenrlError for an unknown id; ``module:Name`` entry points too."""
    register_on_demand(env_id)
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


def register_on_demand(env_id: Any) -> None:
    """Registers the ids that a plugin or genrl provides (MinAtar's, genrl/PixelCartPole-v1) on first use."""
    if not isinstance(env_id, str) or env_id in gym.registry:
        return
    if env_id.startswith("MinAtar/"):
        _register_minatar(env_id)
    elif env_id.startswith("genrl/Pixel"):
        from genrl.data.pixels import register_envs

        register_envs()


def _register_minatar(env_id: str) -> None:
    if any(name.startswith("MinAtar/") for name in gym.registry):
        return  # registered already, by genrl or the user (theirs are left as they are)
    try:
        import minatar.gym
    except ModuleNotFoundError as exc:
        if exc.name is not None and exc.name.split(".")[0] == "minatar":
            raise GenrlError(f"environment {env_id!r} needs MinAtar: pip install genrl[minatar]") from None
        raise GenrlError(f"environment {env_id!r}: importing minatar failed ({one_line(exc)})") from None
    minatar.gym.register_envs()
    for name, spec in list(gym.registry.items()):
        if name.startswith("MinAtar/") and spec.max_episode_steps is None:
            game = name.split("/", 1)[1].split("-", 1)[0]
            limit = MINATAR_MAX_EPISODE_STEPS.get(game, MINATAR_DEFAULT_MAX_EPISODE_STEPS)
            gym.registry[name] = dataclasses.replace(spec, max_episode_steps=limit)
