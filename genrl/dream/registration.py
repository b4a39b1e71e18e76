"""Registers ``genrl/Dream-v0`` so a saved world model is a shareable Gymnasium environment."""

from __future__ import annotations

import gymnasium as gym

DREAM_ID = "genrl/Dream-v0"


def register_envs() -> None:
    if DREAM_ID not in gym.registry:
        # gym.make("genrl/Dream-v0", model=PATH, horizon=..., ...) forwards its kwargs to DreamEnv.
        gym.register(DREAM_ID, entry_point="genrl.dream.env:DreamEnv", disable_env_checker=True)
