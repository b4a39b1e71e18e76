"""Anomaly detection through a world model's likelihood: how surprised is the model by what happened?

The surprise of step ``t`` (the transition ``obs[t] -> obs[t + 1]`` under ``action[t]``) is the
negative log-likelihood, in nats, of the next latent ``z_{t+1} = encode(obs[t + 1])`` under the
model's one-step prediction given the real history ``obs[0..t]``, ``action[0..t]``
(:meth:`WorldModel.predict_sequence`). A broken sensor, a changed physical parameter or an action
the env did not carry out all make the real next observation unlikely under the dynamics the model
learned from normal data.

No observation-space term is added: nothing measured so far shows it would help. For the
clearest miss of benchmarks/anomaly.py, a stuck CartPole cart position, the fault moves the next
observation by ``0.02 * x_dot`` (std 0.007), the size of the model's own error on that dimension
after decoding (std 0.008 on clean data, 0.009 with the fault), so a decoded residual would not
separate it either. (The observation term was checked for that fault only, not end to end.)

One step's surprise is noisy; subtle faults (a changed gravity) raise it a little on every step.
The alarm statistic is therefore the mean surprise over the last ``window`` steps (fewer at an
episode's start), thresholded at a quantile of its values on normal episodes the model never
trained on. The first ``window - 1`` steps each get their own threshold: their statistic averages
fewer steps, and the model, with no history yet, is more surprised there (a CartPole model's first
step scores about 10 nats above the rest); one pooled threshold would raise an alarm at the start
of nearly every normal episode.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from genrl.data.dataset import RolloutDataset
from genrl.data.episode import Episode, cut_windows
from genrl.errors import GenrlError
from genrl.model.world_model import WorldModel
from genrl.util.checks import check_float, check_int, describe, is_real

BATCH_EPISODES = 64  # episodes scored in one torch batch by calibrate


def windowed_mean(scores: np.ndarray, window: int) -> np.ndarray:
    """Mean of ``scores[max(0, t - window + 1) : t + 1]`` for every ``t``: the alarm statistic."""
    scores = np.asarray(scores, dtype=np.float64)
    sums = np.concatenate([[0.0], np.cumsum(scores)])
    t = np.arange(1, len(scores) + 1)
    start = np.maximum(t - window, 0)
    return (sums[t] - sums[start]) / (t - start)


class SurpriseDetector:
    """Per-step surprise of a real episode under a :class:`WorldModel`, and a calibrated alarm.

    :param model: a fitted world model
    :param window: the alarm statistic averages the surprise of the last ``window`` steps
    """

    def __init__(self, model: WorldModel, window: int = 1):
        if not isinstance(model, WorldModel):
            raise GenrlError(f"SurpriseDetector: expected a WorldModel, got {type(model).__name__}")
        self.model = model
        self.window = _check_window(window)
        self.threshold: float | None = None  # for steps with a full window (t >= window - 1)
        self.start_thresholds: list[float] = []  # for steps t < window - 1, one each
        self.fpr: float | None = None

    # ---- scoring -----------------------------------------------------------------------------

    def score_episode(self, observations: Any, actions: Any) -> np.ndarray:
        """Surprise of each step: T+1 observations and T actions in, T scores (nats) out."""
        obs, act = self._check_episode(observations, actions)
        steps = len(act)
        episode = Episode(obs, act, np.zeros(steps, np.float32), np.zeros(steps, bool), np.zeros(steps, bool))
        return self._score_batch([episode])[0]

    def statistic(self, observations: Any, actions: Any) -> np.ndarray:
        """The alarm statistic of each step: the windowed mean surprise, (T,)."""
        return windowed_mean(self.score_episode(observations, actions), self.window)

    def is_anomaly(self, observations: Any, actions: Any) -> np.ndarray:
        """Which steps raise the alarm (statistic above the calibrated threshold), (T,) bool."""
        return self.alarms(self.statistic(observations, actions))

    def threshold_at(self, step: int) -> float:
        """The calibrated threshold of step ``step`` (0-based) of an episode."""
        if self.threshold is None:
            raise GenrlError("SurpriseDetector: expected a calibrated detector; call calibrate first")
        return self.start_thresholds[step] if step < len(self.start_thresholds) else self.threshold

    def alarms(self, statistic: np.ndarray) -> np.ndarray:
        """Which steps of one episode's alarm statistic (from :meth:`statistic`) raise the alarm."""
        statistic = np.asarray(statistic, dtype=np.float64)
        if len(statistic):
            self.threshold_at(0)  # one clear error for an uncalibrated detector
        limits = np.full(len(statistic), self.threshold, dtype=np.float64)
        early = min(len(statistic), len(self.start_thresholds))
        limits[:early] = self.start_thresholds[:early]
        return statistic > limits

    def score_dataset(
        self, dataset: RolloutDataset, episodes: Sequence[int] | None = None
    ) -> list[np.ndarray]:
        """The surprise of every step of the chosen episodes (default: all), batched."""
        if not isinstance(dataset, RolloutDataset):
            raise GenrlError(f"expected a RolloutDataset, got {type(dataset).__name__}")
        dataset.check_spaces(self.model.observation_space, self.model.action_space)
        chosen = range(len(dataset)) if episodes is None else episodes
        eps = [dataset.episodes[i] for i in chosen]
        # Similar lengths share a batch, so little padding is scored.
        order = sorted(range(len(eps)), key=lambda i: eps[i].length)
        out: list[np.ndarray] = [np.empty(0)] * len(eps)
        for start in range(0, len(order), BATCH_EPISODES):
            part = order[start : start + BATCH_EPISODES]
            for i, scores in zip(part, self._score_batch([eps[i] for i in part]), strict=True):
                out[i] = scores
        return out

    @torch.inference_mode()
    def _score_batch(self, episodes: list[Episode]) -> list[np.ndarray]:
        """Score episodes of any lengths in one batch, as windows from their first step. Shorter ones
        are padded with their last observation and action: the model is causal, so padding never
        changes earlier steps."""
        steps = max(ep.length for ep in episodes)
        windows = cut_windows(episodes, range(len(episodes)), [0] * len(episodes), steps)
        device = self.model.device
        nll = self.model.predict_sequence(
            torch.as_tensor(windows.obs, device=device), torch.as_tensor(windows.action, device=device)
        )
        scores = nll.nll.double().cpu().numpy()
        return [scores[i, : ep.length] for i, ep in enumerate(episodes)]

    def _check_episode(self, observations: Any, actions: Any) -> tuple[np.ndarray, np.ndarray]:
        obs_shape = tuple(self.model.observation_space.shape)
        try:
            obs = np.asarray(observations, dtype=np.float32)
        except (TypeError, ValueError):
            raise GenrlError(f"expected observations as an array, got {describe(observations)}") from None
        if obs.ndim != 1 + len(obs_shape) or obs.shape[1:] != obs_shape or len(obs) < 2:
            want = ", ".join(["T+1", *map(str, obs_shape)])
            raise GenrlError(f"expected observations of shape ({want}) with T >= 1, got {obs.shape}")
        steps = len(obs) - 1
        want_act = (steps,) if self.model.actions.discrete else (steps, *self.model.action_space.shape)
        act = np.asarray(actions)
        if act.shape != want_act:
            raise GenrlError(
                f"expected actions of shape {want_act} (one per step between the {steps + 1} "
                f"observations), got {act.shape}"
            )
        if not np.all(np.isfinite(obs)):
            raise GenrlError("expected finite observations, got NaN or inf")
        self.model.actions.check_batch(act)
        return obs, act.astype(np.int64 if self.model.actions.discrete else np.float32)

    # ---- calibration -------------------------------------------------------------------------

    def calibrate(self, dataset: RolloutDataset, fpr: float = 0.01) -> float:
        """Set the threshold to the (1 - fpr) quantile of the alarm statistic over every step of the
        episodes of ``dataset`` the model never trained on; returns it.

        Training episodes would understate normal surprise, so they are never used. Each of the
        first ``window - 1`` steps gets the quantile of that step over the episodes: with ``n``
        episodes its false-positive rate cannot go below about ``1 / (n + 1)``, so a warning asks
        for at least ``1 / fpr`` episodes.
        """
        fpr = check_float(fpr, "calibrate fpr", 0.0, 1.0, low_open=True, high_open=True)
        if not isinstance(dataset, RolloutDataset):
            raise GenrlError(f"calibrate: expected a RolloutDataset, got {type(dataset).__name__}")
        held_out = self.model.held_out_episodes(dataset)
        if not held_out:
            raise GenrlError(
                "calibrate: expected episodes the model never trained on (held-out normal data), "
                f"got a dataset whose {len(dataset)} episodes were all used to train it"
            )
        stats = [windowed_mean(s, self.window) for s in self.score_dataset(dataset, held_out)]
        full = np.concatenate([s[self.window - 1 :] for s in stats])
        if not len(full):
            longest = max(len(s) for s in stats)
            raise GenrlError(
                f"calibrate: expected held-out episodes longer than the window ({self.window} steps), "
                f"got none longer than {longest}"
            )
        self.threshold = float(np.quantile(full, 1.0 - fpr))
        self.start_thresholds = [
            float(np.quantile([s[t] for s in stats if len(s) > t], 1.0 - fpr)) for t in range(self.window - 1)
        ]
        self.fpr = float(fpr)
        if self.window > 1 and len(held_out) < 1 / fpr:
            warnings.warn(
                f"calibrate: {len(held_out)} held-out episodes set the thresholds of the first "
                f"{self.window - 1} steps; for a {fpr:g} false-positive rate there, give at least "
                f"{int(np.ceil(1 / fpr))} (with n episodes the rate there is up to about 1/(n+1))",
                stacklevel=2,
            )
        return self.threshold

    def to_dict(self) -> dict[str, Any]:
        """The detector's settings (not the model), as JSON-ready values."""
        return {
            "window": self.window,
            "threshold": self.threshold,
            "start_thresholds": self.start_thresholds,
            "fpr": self.fpr,
        }

    @classmethod
    def from_dict(cls, model: WorldModel, data: Any) -> SurpriseDetector:
        """A detector for ``model`` with settings from :meth:`to_dict`."""
        if not isinstance(data, dict) or not {"window", "threshold", "fpr"} <= set(data):
            raise GenrlError(
                f"expected detector settings with window, threshold and fpr, got {describe(data)}"
            )
        detector = cls(model, data["window"])
        threshold, fpr = data["threshold"], data["fpr"]
        if (threshold is None) != (fpr is None):
            raise GenrlError(f"expected threshold and fpr both set or both null, got {describe(data)}")
        if threshold is not None:
            detector.threshold = check_float(threshold, "detector threshold")
            detector.fpr = check_float(fpr, "detector fpr", 0.0, 1.0, low_open=True, high_open=True)
            starts = data.get("start_thresholds", [])
            if (
                not isinstance(starts, list)
                or len(starts) not in (0, detector.window - 1)
                or not all(is_real(v) and np.isfinite(v) for v in starts)
            ):
                raise GenrlError(
                    f"expected start_thresholds: {detector.window - 1} finite numbers, got {describe(starts)}"
                )
            detector.start_thresholds = [float(v) for v in starts]
        return detector


def _check_window(window: Any) -> int:
    return check_int(window, "SurpriseDetector window", 1)
