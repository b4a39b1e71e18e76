"""AnomalyMonitor: a real env scored step by step by a calibrated :class:`SurpriseDetector`."""

from __future__ import annotations

from collections import deque
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from genrl.anomaly.detector import SurpriseDetector
from genrl.errors import GenrlError


class AnomalyMonitor(gym.Wrapper):
    """Scores a live real env step by step: every step's ``info`` gains ``"surprise"`` (float, the
    step's surprise, equal to :meth:`SurpriseDetector.score_episode` on the episode so far) and
    ``"anomaly"`` (bool, the windowed statistic above the detector's threshold).

    :param detector: a calibrated :class:`SurpriseDetector`
    """

    def __init__(self, env: gym.Env, detector: SurpriseDetector):
        if not isinstance(detector, SurpriseDetector):
            raise GenrlError(f"AnomalyMonitor: expected a SurpriseDetector, got {type(detector).__name__}")
        if detector.threshold is None:
            raise GenrlError("AnomalyMonitor: expected a calibrated detector; call detector.calibrate first")
        if not isinstance(env, gym.Env):
            raise GenrlError(f"AnomalyMonitor: expected a gymnasium.Env, got {type(env).__name__}")
        detector.model.check_env_spaces(env.observation_space, env.action_space)
        super().__init__(env)
        self.detector = detector
        self._obs: torch.Tensor | None = None
        self._h: torch.Tensor | None = None
        self._recent: deque[float] = deque(maxlen=detector.window)
        self._t = 0

    def _as_tensor(self, obs: Any) -> torch.Tensor:
        return torch.as_tensor(np.asarray(obs, dtype=np.float32), device=self.detector.model.device)

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[Any, dict]:
        obs, info = self.env.reset(seed=seed, options=options)
        self._obs, self._h, self._t = self._as_tensor(obs), None, 0
        self._recent.clear()
        return obs, info

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict]:
        if self._obs is None:
            raise GenrlError("AnomalyMonitor.step: expected reset() before the first step")
        logged = self.detector.model.actions.check(action)
        obs, reward, terminated, truncated, info = self.env.step(action)
        next_obs = self._as_tensor(obs)
        with torch.inference_mode():
            pair = torch.stack([self._obs, next_obs])[None]
            act = torch.as_tensor(logged, device=next_obs.device).reshape(1, 1, *logged.shape)
            pred = self.detector.model.predict_sequence(pair, act, self._h)
        surprise = float(pred.nll.double()[0, 0])
        self._obs, self._h = next_obs, pred.h
        self._recent.append(surprise)
        info["surprise"] = surprise
        info["anomaly"] = bool(np.mean(self._recent) > self.detector.threshold_at(self._t))
        self._t += 1
        return obs, reward, terminated, truncated, info
