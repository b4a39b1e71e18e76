"""How good is the dream? Numbers about a world model, computed on held-out real data only.

``evaluate(model, dataset, policy, env=...)`` measures, on the episodes of ``dataset`` the model
never trained on (plus fresh real episodes when a policy and env are given):

- the VAE's reconstruction error;
- the open-loop prediction error against horizon (the compounding-error curve), beside two
  naive predictors fitted on the model's own training episodes: repeat the last observation,
  and linear dynamics (:mod:`genrl.baselines`); overall and per observation dimension;
- the reward error, the termination head's precision, recall and AUROC, and the per-step
  negative log-likelihood of what really happened;
- with a policy: its return in the dream against its return in the real env from the same
  start states, at several sampling temperatures (World Models' table);
- a realism critic's held-out accuracy at telling real clips from dreamed ones (:mod:`genrl.critic`);
- for a model of images, the open-loop video report (:mod:`genrl.evaluation.video`): per-pixel
  error and PSNR against horizon after a few observed steps, and the frames of a few windows.

Errors are mean squared errors of standardised observations (each dimension divided by the
training data's standard deviation), so dimensions and tasks compare. :mod:`genrl.report`
writes the result as markdown, PNG plots and TensorBoard scalars.

A model of images (``model.image``) is evaluated in bounded memory, whatever the frames' size
(a CarRacing frame has 27,648 values: float64 windows of every pixel would take 22 GB):

- open-loop windows are cut, imagined and scored a chunk at a time (``IMAGE_CHUNK`` windows),
  in float32, keeping only each window's per-step error; by default at most ``IMAGE_WINDOWS``
  windows (decoding a frame costs about a millisecond of CPU, a vector model's step microseconds);
- errors are per pixel, in [0, 1] units (an image model's standard deviation is the space's
  range), and nothing is reported per observation dimension (one per pixel);
- the baselines are repeat the last frame, the training data's mean frame, and linear dynamics
  of the model's latents, decoded (:mod:`genrl.evaluation.baselines`);
- the reconstruction error is over a bounded sample of frames (``IMAGE_FRAMES``), never every
  frame, and the one-step heads score episodes in segments (``IMAGE_SEGMENT`` steps);
- the realism critic sees clips through the model's encoder (latents, not pixels): see
  :func:`_critic_images`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from genrl.data.collect import collect
from genrl.data.dataset import RolloutDataset
from genrl.data.envs import make_env
from genrl.data.episode import Windows, cut_windows
from genrl.dream.batch import as_model
from genrl.dream.play import dream_returns
from genrl.errors import GenrlError
from genrl.evaluation.baselines import LatentLinear, LinearDynamics, MeanFrame, RepeatLast
from genrl.evaluation.critic import realism_critic
from genrl.evaluation.metrics import precision_recall, rank_correlation, roc_auc
from genrl.evaluation.video import OpenLoopVideo, open_loop_video
from genrl.model.world_model import WorldModel
from genrl.util.checks import check_int
from genrl.util.seeding import fresh_seed
from genrl.util.spaces import ActionCodec, is_image

PREDICTORS = ("model", "repeat last", "linear")
# A model of images: its linear baseline runs in the model's latent space, and the mean frame joins.
IMAGE_PREDICTORS = (*PREDICTORS, "mean frame")
IMAGE_WINDOWS = 256  # open-loop and critic windows of a model of images, unless max_windows says
IMAGE_CHUNK = 32  # windows of a model of images imagined and scored at once
IMAGE_FRAMES = 2048  # frames for its reconstruction error and its mean-frame baseline
IMAGE_PAIRS = 4096  # transitions its latent linear baseline is fitted on
IMAGE_SEGMENT = 64  # steps of an episode its one-step heads score at once
# Frames encoded or decoded at once: a decoder's last feature maps are large (16 channels at 64 x 64
# for CarRacing: 256 frames would take 270 MB).
FRAME_CHUNK = 64


@dataclass
class EvaluationReport:
    """Every number of an evaluation. ``scalars`` holds them flat, under TensorBoard-style names."""

    scalars: dict[str, float] = field(default_factory=dict)
    # "open_loop/<predictor>": (H,) error at horizon 1..H; "open_loop_dims/<predictor>": (H, D)
    curves: dict[str, np.ndarray] = field(default_factory=dict)
    window_counts: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    # One row per temperature: temperature, dream and real return means, their gap.
    gap: list[dict[str, float]] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)  # where the held-out data came from
    # One held-out window: true and predicted observations (H+1, D) per predictor, for a plot.
    example: dict[str, np.ndarray] = field(default_factory=dict)
    trained_steps: int = 0
    # A model of images: the open-loop video report (its curves and scalars are also above).
    video: OpenLoopVideo | None = None
    # The open-loop predictors, the model first: PREDICTORS, or IMAGE_PREDICTORS for images.
    predictors: tuple[str, ...] = PREDICTORS

    def beats_baselines(self) -> bool:
        """True when the model's open-loop error is below every baseline at every horizon."""
        model = self.curves["open_loop/model"]
        return bool(all((model < self.curves[f"open_loop/{name}"]).all() for name in self.predictors[1:]))


def evaluate(
    model: WorldModel | str | os.PathLike,
    dataset: RolloutDataset,
    policy: Any | None = None,
    *,
    env: str | gym.Env | None = None,
    episodes: int = 20,
    horizon: int = 50,
    temperatures: Sequence[float] = (0.0, 0.5, 1.0, 1.15, 1.5),
    clip_length: int = 16,
    max_windows: int | None = None,
    seed: int | None = None,
    video_context: int = 5,
) -> EvaluationReport:
    """Evaluate ``model`` on the held-out episodes of ``dataset``; see the module's docstring.

    :param policy: an SB3 model or a callable from a batch of observations to actions; with
        ``env``, it plays ``episodes`` fresh real episodes (deterministic actions), whose returns
        are compared with dreams from the same start states and which join the held-out data
    :param horizon: the longest open-loop prediction, in steps
    :param max_windows: open-loop (and critic) windows sampled from the held-out steps; None:
        2000, or ``IMAGE_WINDOWS`` for a model of images
    :param seed: seeds the real episodes, the sampled windows, the dreams and the critic; None
        draws one (recorded in ``report.data["seed"]``)
    :param video_context: for a model of images, the real steps its open-loop video report
        observes before imagining ``horizon`` more
    """
    seed = fresh_seed(seed)
    # A model object stays on its device; a saved one is evaluated on the CPU.
    model = as_model(model, "auto" if isinstance(model, WorldModel) else "cpu")
    image = bool(model.image)  # frames are bounded in memory: see the module's docstring
    max_windows = max_windows if max_windows is not None else IMAGE_WINDOWS if image else 2000
    sizes = {"episodes": episodes, "horizon": horizon, "clip_length": clip_length, "max_windows": max_windows}
    _check_arguments(model, dataset, policy, env, sizes)
    model.eval()
    held = model.held_out_episodes(dataset)
    trained = sorted(set(range(len(dataset))) - set(held))
    predictors = IMAGE_PREDICTORS if image else PREDICTORS
    report = EvaluationReport(trained_steps=int(model.trained_steps), predictors=predictors)
    report.data = {
        "dataset_held_out_episodes": len(held),
        "dataset_training_episodes": len(trained),
        "seed": seed,
    }
    evaluation = dataset.subset(held)
    if policy is not None:
        _against_reality(model, policy, env, int(episodes), temperatures, seed, evaluation, report)
    if not len(evaluation):
        raise GenrlError(
            f"expected held-out episodes to evaluate on, but the model trained on all {len(dataset)} "
            "episodes of the dataset; give it fresh episodes, or a policy and an env to play some"
        )
    report.data["episodes"], report.data["steps"] = len(evaluation), evaluation.num_steps
    # The linear baseline learns from what the model learnt from; without those episodes at hand,
    # from half of the held-out ones (and is scored on all: a slight advantage to the baseline).
    baseline_data = dataset.subset(trained) if trained else evaluation.subset(range(0, len(evaluation), 2))
    report.data["linear_fitted_on"] = "the model's training episodes" if trained else "held-out episodes"
    sizes = {"horizon": int(horizon), "clip_length": int(clip_length), "max_windows": max_windows}
    _measure(model, evaluation, baseline_data, sizes, video_context, seed, report)
    return report


def _measure(
    model: WorldModel,
    evaluation: RolloutDataset,
    baseline_data: RolloutDataset,
    sizes: dict[str, int],
    video_context: int,
    seed: int,
    report: EvaluationReport,
) -> None:
    """Every part on the held-out data; a model of images gets the parts of bounded memory."""
    horizon, max_windows = sizes["horizon"], sizes["max_windows"]
    with torch.inference_mode():
        if model.image:
            _reconstruction_images(model, evaluation, seed, report)
            _teacher_forced(model, evaluation, report, segment=IMAGE_SEGMENT)
            _open_loop_images(model, evaluation, baseline_data, horizon, max_windows, seed, report)
        else:
            _reconstruction(model, evaluation, report)
            _teacher_forced(model, evaluation, report)
            _open_loop(model, evaluation, baseline_data, horizon, max_windows, seed, report)
        _video(model, evaluation, video_context, horizon, seed, report)
    critic = _critic_images if model.image else _critic
    critic(model, evaluation, sizes["clip_length"], max_windows, seed, report)


def _check_arguments(
    model: WorldModel, dataset: RolloutDataset, policy: Any, env: Any, sizes: dict[str, Any]
) -> None:
    if not isinstance(dataset, RolloutDataset):
        raise GenrlError(f"expected a RolloutDataset to evaluate on, got {type(dataset).__name__}")
    dataset.check_spaces(model.observation_space, model.action_space)
    for name, value in sizes.items():
        check_int(value, f"evaluate {name}", 1)
    if policy is not None and env is None:
        raise GenrlError("expected env (an id or a gymnasium.Env) to compare the policy's dream with reality")


# ---- the parts ---------------------------------------------------------------------------------


def _against_reality(
    model: WorldModel,
    policy: Any,
    env: str | gym.Env,
    episodes: int,
    temperatures: Sequence[float],
    seed: int,
    evaluation: RolloutDataset,
    report: EvaluationReport,
) -> None:
    """Play fresh real episodes (they join ``evaluation``) and dream from the same start states."""
    fresh, returns, max_steps = _play(env, model, policy, episodes, seed)
    for ep in fresh.episodes:
        evaluation.add(ep)  # fresh from the real env: never trained on
    report.data["fresh_episodes"] = len(fresh)
    report.data["real_returns"] = [float(r) for r in returns]
    report.gap = _dream_gap(model, policy, fresh, returns, temperatures, max_steps, seed)
    for row in report.gap:
        t = f"{row['temperature']:g}"
        report.scalars[f"dream_gap/t{t}/dream_return"] = row["dream_return"]
        report.scalars[f"dream_gap/t{t}/gap"] = row["gap"]
    report.scalars["dream_gap/real_return"] = float(np.mean(returns))


def _standardise(model: WorldModel, flat_obs: np.ndarray) -> np.ndarray:
    """Flattened observations (..., D) in units of the training data's standard deviation."""
    return np.asarray(flat_obs, dtype=np.float64) / model.obs_std.cpu().numpy().ravel()


def _reconstruction(model: WorldModel, data: RolloutDataset, report: EvaluationReport) -> None:
    obs = torch.as_tensor(data.all_states(), device=model.device)
    recon = model.decode(model.encode(obs))
    err = _standardise(model, (recon - obs).cpu().numpy().reshape(len(obs), -1)) ** 2
    report.scalars["reconstruction/mse"] = float(err.mean())
    for d, value in enumerate(err.mean(0)):
        report.scalars[f"reconstruction/mse_dim{d}"] = float(value)


def _reconstruction_images(
    model: WorldModel, data: RolloutDataset, seed: int, report: EvaluationReport
) -> None:
    """A model of images: the reconstruction error per pixel, in [0, 1] units, over at most
    ``IMAGE_FRAMES`` frames (every frame as floats would be 5.5 GB for 50,000 CarRacing frames; a
    few thousand pin the mean down well); no per-dimension scalars: there would be one per pixel."""
    total, count = 0.0, 0
    for frames in _frame_chunks(data, IMAGE_FRAMES, np.random.default_rng(seed + 3)):
        err = _pixel_errors(model, model.decode(model.encode(_as_frames(model, frames))), frames)
        total += float(err.sum())
        count += len(frames)
    report.scalars["reconstruction/mse"] = total / count
    report.data["reconstruction_frames"] = count


def _as_frames(model: WorldModel, frames: np.ndarray | torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(frames, device=model.device)


def _pixel_errors(model: WorldModel, predicted: torch.Tensor, real: np.ndarray | torch.Tensor) -> np.ndarray:
    """(B,) mean squared error per pixel, in [0, 1] units, of frames (B, H, W, C) (a prediction
    may be one frame, broadcast): an image model's standard deviation is the space's range."""
    real = _as_frames(model, real).float()
    err = ((predicted.float() - real) / model.obs_std) ** 2
    return err.flatten(1).mean(1).cpu().numpy()


def _teacher_forced(
    model: WorldModel, data: RolloutDataset, report: EvaluationReport, segment: int | None = None
) -> None:
    """The one-step heads on every held-out step, each episode in one pass, or for a model of
    images in ``segment``-step parts that carry the recurrent state over (a whole episode of
    CarRacing frames, as floats with the encoder's activations, is some GB)."""
    nll, reward_err, logits, terminated = [], [], [], []
    for ep in data.episodes:
        step = segment or max(ep.length, 1)
        parts, h = [], None
        for t in range(0, ep.length, step):
            out = model.predict_sequence(
                torch.as_tensor(ep.obs[t : t + step + 1], device=model.device)[None],
                torch.as_tensor(ep.action[t : t + step], device=model.device)[None],
                h,
            )
            h = out.h
            parts.append((out.nll[0], out.reward[0], out.termination_logit[0]))
        if not parts:  # an episode of no steps
            continue
        nll.append(torch.cat([p[0] for p in parts]).cpu().numpy())
        reward_err.append(torch.cat([p[1] for p in parts]).cpu().numpy() - ep.reward)
        logits.append(torch.cat([p[2] for p in parts]).cpu().numpy())
        terminated.append(ep.terminated)
    nll_all, err, logit, label = map(np.concatenate, (nll, reward_err, logits, terminated))
    report.scalars["nll/per_step"] = float(nll_all.mean())
    report.scalars["nll/per_latent_dim"] = float(nll_all.mean() / model.config.latent_dim)
    report.scalars["reward/mse"] = float((err**2).mean())
    report.scalars["reward/mae"] = float(np.abs(err).mean())
    precision, recall = precision_recall(logit > 0, label)
    report.scalars["termination/precision"] = precision
    report.scalars["termination/recall"] = recall
    report.scalars["termination/auroc"] = roc_auc(logit, label)
    report.scalars["termination/terminal_steps"] = float(label.sum())


def _window_starts(
    data: RolloutDataset, horizon: int, max_windows: int, rng: np.random.Generator, full_only: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """(episode, start) of up to ``max_windows`` windows drawn without replacement, in order;
    ``full_only``: only windows whose ``horizon`` steps all lie inside their episode."""
    shorter = horizon - 1 if full_only else 0
    starts = [(e, t) for e, ep in enumerate(data.episodes) for t in range(ep.length - shorter)]
    if not starts:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    pick = np.sort(rng.choice(len(starts), size=min(max_windows, len(starts)), replace=False))
    episode, start = np.array([starts[i] for i in pick]).T
    return episode, start


def _windows(
    data: RolloutDataset, horizon: int, max_windows: int, rng: np.random.Generator, full_only: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Sampled windows: obs (N, H+1, D), actions (N, H, ...), valid (N, H) and episode (N,)."""
    episode, start = _window_starts(data, horizon, max_windows, rng, full_only)
    if not len(episode):
        empty = np.zeros((0, horizon))
        return np.zeros((0, horizon + 1, 1)), empty, empty.astype(bool), np.zeros(0)
    windows = cut_windows(data.episodes, episode, start, horizon)
    return windows.obs.reshape(len(episode), horizon + 1, -1), windows.action, windows.mask, episode


def _window_chunks(
    data: RolloutDataset, episode: np.ndarray, start: np.ndarray, horizon: int
) -> Iterator[tuple[slice, Windows]]:
    """A model of images: the windows cut ``IMAGE_CHUNK`` at a time (frames in their dtype), so that
    only one chunk of frames is ever held."""
    for lo in range(0, len(episode), IMAGE_CHUNK):
        rows = slice(lo, min(lo + IMAGE_CHUNK, len(episode)))
        yield rows, cut_windows(data.episodes, episode[rows], start[rows], horizon)


def _frame_chunks(
    data: RolloutDataset, most: int, rng: np.random.Generator, chunk: int = FRAME_CHUNK
) -> Iterator[np.ndarray]:
    """Frames of ``data`` a chunk at a time: every frame when there are at most ``most``, else
    ``most`` drawn uniformly (with replacement, :meth:`RolloutDataset.sample_states`)."""
    if sum(ep.length + 1 for ep in data.episodes) <= most:
        for ep in data.episodes:
            for lo in range(0, len(ep.obs), chunk):
                yield ep.obs[lo : lo + chunk]
        return
    for lo in range(0, most, chunk):
        yield data.sample_states(min(chunk, most - lo), rng)


def _transition_chunks(
    data: RolloutDataset, most: int, rng: np.random.Generator, chunk: int = FRAME_CHUNK
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(frames, actions, next frames) of ``data`` a chunk at a time: every transition when there
    are at most ``most``, else ``most`` drawn uniformly (:meth:`RolloutDataset.sample_sequences`)."""
    if data.num_steps <= most:
        for ep in data.episodes:
            for lo in range(0, ep.length, chunk):
                hi = min(lo + chunk, ep.length)
                yield ep.obs[lo:hi], ep.action[lo:hi], ep.obs[lo + 1 : hi + 1]
        return
    for lo in range(0, most, chunk):
        batch = data.sample_sequences(min(chunk, most - lo), 1, rng)
        keep = batch["mask"][:, 0]
        yield batch["obs"][keep, 0], batch["action"][keep, 0], batch["obs"][keep, 1]


@torch.inference_mode()
def _model_rollout(
    model: WorldModel,
    first_obs: np.ndarray,
    actions: np.ndarray,
    temperature: float,
    seed: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Dream open loop from real first observations under real actions: (N, H, D) observations
    and each step's ensemble disagreement (N, H). Window i follows member i mod K, as a dream
    follows one."""
    generator = torch.Generator(device=model.device).manual_seed(seed)
    n = len(first_obs)
    z = model.encode(
        torch.as_tensor(first_obs, dtype=torch.float32, device=model.device).reshape(
            n, *model.observation_space.shape
        )
    )
    act = torch.as_tensor(actions, device=model.device)
    member = torch.arange(n, device=model.device) % model.ensemble_size
    dream = model.unroll(z, model.initial_state(n), act, temperature, generator, member)
    # Decoded step by step, as a dream decodes them.
    out = [model.decode(dream.z[:, k]).reshape(n, -1) for k in range(actions.shape[1])]
    return torch.stack(out, 1).cpu().numpy(), dream.disagreement.cpu().numpy()


def _open_loop(
    model: WorldModel,
    data: RolloutDataset,
    baseline_data: RolloutDataset,
    horizon: int,
    max_windows: int,
    seed: int,
    report: EvaluationReport,
) -> None:
    obs, actions, valid, _ = _windows(data, horizon, max_windows, np.random.default_rng(seed))
    predicted, spread = _model_rollout(model, obs[:, 0], actions, temperature=0.0, seed=seed)
    predictions = {
        "model": predicted,
        "repeat last": RepeatLast().rollout(obs[:, 0], actions),
        "linear": LinearDynamics(model.observation_space, model.action_space)
        .fit(baseline_data)
        .rollout(obs[:, 0], actions),
    }
    counts = valid.sum(0)
    report.window_counts = counts
    report.scalars["open_loop/windows"] = float(len(obs))
    weights = valid[..., None] / np.maximum(counts, 1)[None, :, None]
    for name, pred in predictions.items():
        err = _standardise(model, pred - obs[:, 1:]) ** 2  # (N, H, D)
        per_dim = (err * weights).sum(0)  # (H, D); horizons no window reaches stay NaN below
        per_dim[counts == 0] = np.nan
        report.curves[f"open_loop_dims/{name}"] = per_dim
        report.curves[f"open_loop/{name}"] = per_dim.mean(1)
        for k in sorted({1, 5, 10, 25, horizon} & set(range(1, horizon + 1))):
            report.scalars[f"open_loop/{name}/h{k}"] = float(per_dim[k - 1].mean())
    report.scalars["open_loop/model_beats_baselines"] = float(report.beats_baselines())
    if model.ensemble_size > 1:
        error = (_standardise(model, predicted - obs[:, 1:]) ** 2).mean(-1)
        _disagreement(model, spread, error, valid, weights[..., 0], report)
    longest = int(np.argmax(valid.sum(1)))  # a window that reaches far, for the example plot
    report.example = {"true": obs[longest], "valid": valid[longest]}
    for name, pred in predictions.items():
        report.example[name] = np.concatenate([obs[longest, :1], pred[longest]])


def _open_loop_images(
    model: WorldModel,
    data: RolloutDataset,
    baseline_data: RolloutDataset,
    horizon: int,
    max_windows: int,
    seed: int,
    report: EvaluationReport,
) -> None:
    """The open-loop error of a model of images, beside its baselines, in bounded memory.

    The windows are sampled as a vector model's are, then cut, imagined and scored
    ``IMAGE_CHUNK`` at a time, a step at a time, in float32: only each window's per-step error
    per pixel (N, H) is kept, never frames of every window (float64 (N, H+1, D) arrays would be
    22 GB for 2,000 windows of 50 CarRacing steps). The baselines are repeat the last frame, the
    training data's mean frame, and linear dynamics of the model's latents, decoded.
    """
    episode, start = _window_starts(data, horizon, max_windows, np.random.default_rng(seed))
    if not len(episode):
        raise GenrlError("expected held-out episodes with at least one step to evaluate on, got none")
    mean_frame, linear = _image_baselines(model, baseline_data, seed, report)
    n = len(episode)
    errors = {name: np.zeros((n, horizon)) for name in IMAGE_PREDICTORS}
    spread, valid = np.zeros((n, horizon)), np.zeros((n, horizon), dtype=bool)
    mean = torch.as_tensor(mean_frame.frame, device=model.device)
    generator = torch.Generator(device=model.device).manual_seed(seed)
    for rows, cut in _window_chunks(data, episode, start, horizon):
        obs, actions = _as_frames(model, cut.obs), torch.as_tensor(cut.action, device=model.device)
        z = model.encode(obs[:, 0])
        member = torch.arange(rows.start, rows.stop, device=model.device) % model.ensemble_size
        dream = model.unroll(z, model.initial_state(len(z)), actions, 0.0, generator, member)
        z_linear = torch.as_tensor(
            linear.rollout(z.cpu().numpy(), cut.action), dtype=torch.float32, device=model.device
        )
        for k in range(horizon):  # decoded step by step, as a dream decodes them
            predictions = {
                "model": model.decode(dream.z[:, k]),
                "repeat last": obs[:, 0],
                "linear": model.decode(z_linear[:, k]),
                "mean frame": mean,
            }
            for name, pred in predictions.items():
                errors[name][rows, k] = _pixel_errors(model, pred, obs[:, k + 1])
        spread[rows], valid[rows] = dream.disagreement.cpu().numpy(), cut.mask
    _image_curves(model, errors, spread, valid, horizon, report)


def _image_baselines(
    model: WorldModel, data: RolloutDataset, seed: int, report: EvaluationReport
) -> tuple[MeanFrame, LatentLinear]:
    """A model of images' baselines besides repeat-last, fitted on bounded samples of ``data``."""
    rng = np.random.default_rng(seed + 2)
    mean_frame = MeanFrame().fit(_frame_chunks(data, IMAGE_FRAMES, rng))
    linear = LatentLinear(model).fit(_transition_chunks(data, IMAGE_PAIRS, rng))
    report.data["mean_frame_frames"] = min(IMAGE_FRAMES, sum(ep.length + 1 for ep in data.episodes))
    report.data["linear_transitions"] = linear.transitions
    return mean_frame, linear


def _image_curves(
    model: WorldModel,
    errors: dict[str, np.ndarray],
    spread: np.ndarray,
    valid: np.ndarray,
    horizon: int,
    report: EvaluationReport,
) -> None:
    """Per-window, per-step errors (N, H) of each predictor -> the report's curves and scalars."""
    counts = valid.sum(0)
    report.window_counts = counts
    report.scalars["open_loop/windows"] = float(len(valid))
    weights = valid / np.maximum(counts, 1)[None, :]
    for name in IMAGE_PREDICTORS:
        curve = (errors[name] * weights).sum(0)
        curve[counts == 0] = np.nan  # horizons no window reaches
        report.curves[f"open_loop/{name}"] = curve
        for k in sorted({1, 5, 10, 25, horizon} & set(range(1, horizon + 1))):
            report.scalars[f"open_loop/{name}/h{k}"] = float(curve[k - 1])
    report.scalars["open_loop/model_beats_baselines"] = float(report.beats_baselines())
    if model.ensemble_size > 1:
        _disagreement(model, spread, errors["model"], valid, weights, report)


def _video(
    model: WorldModel, data: RolloutDataset, context: int, horizon: int, seed: int, report: EvaluationReport
) -> None:
    """A model of images: the open-loop video report, its curves and scalars beside the others."""
    if is_image(model.observation_space):
        report.video = open_loop_video(model, data, context, horizon, seed=seed)
        report.curves.update(report.video.curves())
        report.scalars.update(report.video.scalars())


def _disagreement(
    model: WorldModel,
    spread: np.ndarray,
    error: np.ndarray,
    valid: np.ndarray,
    weights: np.ndarray,
    report: EvaluationReport,
) -> None:
    """The ensemble's disagreement along the open-loop windows, and whether it tracks the error.

    ``spread``, ``error`` (each window's squared standardised error, the mean over its
    dimensions), ``valid`` and ``weights`` (each window's weight in its horizon's mean) are (N, H).

    ``ensemble/error_correlation`` is the rank correlation, over every valid (window, step), of
    the disagreement with the squared standardised error: near 1, uncertainty says where the
    model is wrong; near 0, it says nothing.
    """
    curve = (spread * weights).sum(0)
    curve[valid.sum(0) == 0] = np.nan
    report.curves["open_loop/disagreement"] = curve
    report.scalars["ensemble/members"] = float(model.ensemble_size)
    report.scalars["ensemble/disagreement_h1"] = float(curve[0])
    report.scalars["ensemble/error_correlation"] = rank_correlation(spread[valid], error[valid])


def _critic(
    model: WorldModel,
    data: RolloutDataset,
    length: int,
    max_windows: int,
    seed: int,
    report: EvaluationReport,
) -> None:
    codec = ActionCodec(model.action_space)
    for name, clip in (("transition", 1), ("clip", length)):
        obs, actions, _, episode = _windows(data, clip, max_windows, np.random.default_rng(seed + 1), True)
        if len(np.unique(episode)) < 2:
            report.scalars[f"critic/{name}_accuracy"] = float("nan")
            continue
        dreamed = _model_rollout(model, obs[:, 0], actions, temperature=1.0, seed=seed)[0]
        a = codec.encode(torch.as_tensor(actions).flatten(0, 1)).reshape(len(obs), -1).numpy()
        real_clips = _clip_features(model, obs[:, 0], obs[:, 1:], a)
        dream_clips = _clip_features(model, obs[:, 0], dreamed, a)
        result = realism_critic(real_clips, dream_clips, episode, seed=seed)
        report.scalars[f"critic/{name}_accuracy"] = result.accuracy
        report.scalars[f"critic/{name}_test_pairs"] = float(result.test_pairs)
    report.data["critic_clip_length"] = length


def _clip_features(
    model: WorldModel, first: np.ndarray, future: np.ndarray, actions: np.ndarray
) -> np.ndarray:
    """What the critic sees of a clip: its standardised observations, their changes, the actions."""
    return _path_features(_standardise(model, np.concatenate([first[:, None], future], 1)), actions)


def _path_features(path: np.ndarray, actions: np.ndarray) -> np.ndarray:
    """A clip's path (N, L+1, F), its changes and its actions (N, ...), flat: (N, ...)."""
    steps = np.diff(path, axis=1)
    return np.concatenate([path.reshape(len(path), -1), steps.reshape(len(path), -1), actions], 1)


def _critic_images(
    model: WorldModel,
    data: RolloutDataset,
    length: int,
    max_windows: int,
    seed: int,
    report: EvaluationReport,
) -> None:
    """The realism critic of a model of images, on latent clips: what it sees of a clip is the
    model's encoding (latent means) of each frame, their changes and the actions.

    Real clips are their frames encoded; dreamed ones (temperature 1, from the same first frame
    under the same actions) are the imagined frames decoded, then encoded again, so that both go
    through the same encoder as frames. Why latents: a 16-step clip of CarRacing frames has 17 x
    27,648 pixel values (34 with their changes): a discriminator on them would overfit a few
    hundred clips and its inputs alone would take GBs. The encoder sees what the model learnt to
    keep of a frame: a flaw it cannot see (a detail it drops) passes this critic unnoticed; the
    open-loop video shows the frames themselves. Clips are cut, imagined and encoded
    ``IMAGE_CHUNK`` at a time.
    """
    for name, clip in (("transition", 1), ("clip", length)):
        rng = np.random.default_rng(seed + 1)
        episode, start = _window_starts(data, clip, max_windows, rng, full_only=True)
        if len(np.unique(episode)) < 2:
            report.scalars[f"critic/{name}_accuracy"] = float("nan")
            continue
        real, dreamed = _latent_clips(model, data, episode, start, clip, seed)
        result = realism_critic(real, dreamed, episode, seed=seed)
        report.scalars[f"critic/{name}_accuracy"] = result.accuracy
        report.scalars[f"critic/{name}_test_pairs"] = float(result.test_pairs)
    report.data["critic_clip_length"] = length
    report.data["critic_features"] = "latent"


@torch.inference_mode()
def _latent_clips(
    model: WorldModel, data: RolloutDataset, episode: np.ndarray, start: np.ndarray, clip: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """The critic's features (N, F) of the real clips and of the dreamed ones (see _critic_images)."""
    codec = ActionCodec(model.action_space)
    generator = torch.Generator(device=model.device).manual_seed(seed)
    real, dreamed = [], []
    for rows, cut in _window_chunks(data, episode, start, clip):
        obs, actions = _as_frames(model, cut.obs), torch.as_tensor(cut.action, device=model.device)
        b = len(obs)
        z = model.encode(obs.flatten(0, 1)).reshape(b, clip + 1, -1)
        member = torch.arange(rows.start, rows.stop, device=model.device) % model.ensemble_size
        dream = model.unroll(z[:, 0], model.initial_state(b), actions, 1.0, generator, member)
        again = torch.stack([model.encode(model.decode(dream.z[:, k])) for k in range(clip)], 1)
        a = codec.encode(actions.flatten(0, 1)).reshape(b, -1).cpu().numpy()
        real.append(_path_features(z.cpu().numpy(), a))
        dreamed.append(_path_features(torch.cat([z[:, :1], again], 1).cpu().numpy(), a))
    return np.concatenate(real), np.concatenate(dreamed)


# ---- dream against reality -----------------------------------------------------------------------


def _play(
    env: str | gym.Env, model: WorldModel, policy: Any, episodes: int, seed: int
) -> tuple[RolloutDataset, list[float], int]:
    """Play whole real episodes with the policy: (their dataset, returns, the env's step limit)."""
    real = make_env(env) if isinstance(env, str) else env
    if not isinstance(real, gym.Env):
        raise GenrlError(f"env must be an env id or a gymnasium.Env, got {type(env).__name__}")
    try:
        model.check_env_spaces(real.observation_space, real.action_space)
        data = collect(real, policy=policy, episodes=episodes, seed=seed, deterministic=True, progress=False)
        limit = real.spec.max_episode_steps if real.spec is not None else None
    finally:
        if isinstance(env, str):
            real.close()
    return data, list(data.episode_returns()), int(limit or max(ep.length for ep in data.episodes))


def _dream_gap(
    model: WorldModel,
    policy: Any,
    real: RolloutDataset,
    real_returns: list[float],
    temperatures: Sequence[float],
    max_steps: int,
    seed: int,
) -> list[dict[str, float]]:
    """The policy's mean return in dreams started from the real episodes' first states."""
    starts = real.start_states()
    rows = []
    for temperature in temperatures:
        if temperature < 0:
            raise GenrlError(f"expected temperatures >= 0, got {temperature!r}")
        returns = dream_returns(model, policy, starts, max_steps, float(temperature), seed=seed)
        dream_return = float(returns.mean())
        real_return = float(np.mean(real_returns))
        rows.append(
            {
                "temperature": float(temperature),
                "dream_return": dream_return,
                "real_return": real_return,
                "gap": dream_return - real_return,
                "abs_error_per_episode": float(np.mean(np.abs(returns - np.array(real_returns)))),
            }
        )
    return rows
