"""Real environments by id, with a one-line error for an id Gymnasium does not know."""

from __future__ import annotations

from typing import Any

import gymnasium as gym

from genrl.errors import GenrlError


def make_env(env_id: str, **kwargs: Any) -> gym.Env:
    """gym.make with a one-line GenrlError for an unknown id."""
    try:
        return gym.make(env_id, **kwargs)
    except (gym.error.NameNotFound, gym.error.NamespaceNotFound, gym.error.VersionNotFound) as exc:
        raise GenrlError(f"unknown environment {env_id!r}: {exc}") from None
    except gym.error.Error as exc:
        raise GenrlError(f"cannot make environment {env_id!r}: {exc}") from None
