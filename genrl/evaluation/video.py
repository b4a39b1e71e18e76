"""Watching dreams: the open-loop video report of an image world model, and GIF helpers.

As DreamerV3's open-loop report: from a window of a real episode the model observes ``context``
real transitions (its recurrent state follows the real history), then imagines ``horizon`` more
from the last observed frame under the same real actions, with its mean prediction
(temperature 0)::

    h = predict_sequence(o_0..o_k, a_0..a_{k-1}).h,   z_k = encode(o_k)
    z_{k+1..k+H} = unroll(z_k, h, a_k..a_{k+H-1}),    o'_t = decode(z_t)

Errors are per pixel, in [0, 1] units (the space's range mapped to [0, 1]): the mean squared
error and the PSNR (peak 1) of each imagined frame against the real one, per horizon, beside the
repeat-last-frame baseline (the last observed real frame, forever). The pictures show real,
dreamed (reconstructions while observing, then imagined) and error frames side by side, as a
GIF, a PNG strip (rows real, dream, error; columns time) and a TensorBoard animated image.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from gymnasium import spaces

from genrl.data.dataset import RolloutDataset
from genrl.data.episode import cut_windows
from genrl.dream.render import render_observation
from genrl.errors import GenrlError
from genrl.model.world_model import WorldModel
from genrl.util.checks import check_int
from genrl.util.files import atomic_write
from genrl.util.spaces import is_binary, is_image

if TYPE_CHECKING:
    from matplotlib.figure import Figure

PREDICTORS = ("model", "repeat last")
COLOURS = {"model": "tab:blue", "repeat last": "tab:grey"}
# A frame with no error has an infinite PSNR: an MSE floor of 1e-10 caps it at 100 dB.
MSE_FLOOR = 1e-10
GAP = 2  # pixels between pictures
BAR = 4  # height of the bar that tells observed frames (green) from imagined ones (red)
OBSERVED, IMAGINED, BACKGROUND = (40, 170, 60), (210, 50, 40), (255, 255, 255)


@dataclass
class OpenLoopVideo:
    """An open-loop report: per-horizon errors over many windows, and the frames of a few.

    ``mse`` and ``psnr`` map each predictor (``"model"``, ``"repeat last"``) to (H,) curves: at
    horizon k (1..H), the mean over windows of the imagined frame's mean squared error per pixel
    in [0, 1] units, and the PSNR in dB of that mean error (of the mean, not a mean of per-frame
    PSNRs, which a few exactly repeated frames, at the 100 dB cap, would swamp). ``counts`` (H,)
    is how many windows reach each horizon inside their episode (a horizon none reaches is NaN).

    ``real`` and ``dream`` hold ``T = context + 1 + horizon`` frames of a few windows,
    (n, T, H, W, C) in the space's values: frames 0..context are observed (the dream shows their
    reconstructions), the rest imagined. ``valid`` (n, T) is False past the episode's end.
    """

    observation_space: spaces.Box
    context: int
    horizon: int
    windows: int
    mse: dict[str, np.ndarray] = field(default_factory=dict)
    psnr: dict[str, np.ndarray] = field(default_factory=dict)
    counts: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    real: np.ndarray = field(default_factory=lambda: np.zeros(0))
    dream: np.ndarray = field(default_factory=lambda: np.zeros(0))
    valid: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))

    @property
    def error(self) -> np.ndarray:
        """|dream - real| of the shown frames, (n, T, H, W, C) in [0, 1] units."""
        return np.abs(
            to_unit(self.dream, self.observation_space) - to_unit(self.real, self.observation_space)
        )

    def curves(self) -> dict[str, np.ndarray]:
        """The curves by TensorBoard-style name: ``open_loop_pixels/<mse|psnr>/<predictor>``."""
        out = {f"open_loop_pixels/mse/{name}": curve for name, curve in self.mse.items()}
        out.update({f"open_loop_pixels/psnr/{name}": curve for name, curve in self.psnr.items()})
        return out

    def scalars(self) -> dict[str, float]:
        """Flat numbers: the curves at horizons 1, 5, 10, 25 and H, and the window count."""
        out = {
            "open_loop_pixels/windows": float(self.windows),
            "open_loop_pixels/context": float(self.context),
        }
        for k in report_horizons(self.horizon):
            for name, curve in self.curves().items():
                out[f"{name}/h{k}"] = float(curve[k - 1])
        return out


def report_horizons(horizon: int) -> list[int]:
    """The horizons a report names in its tables: 1, 5, 10, 25 and the longest, up to it."""
    return sorted({1, 5, 10, 25, horizon} & set(range(1, horizon + 1)))


def to_unit(values: np.ndarray, space: spaces.Box) -> np.ndarray:
    """Observations (..., H, W, C) in the space's values -> float32 in [0, 1] (its range)."""
    low = np.where(np.isfinite(space.low), space.low, 0.0).astype(np.float32)
    high = np.where(np.isfinite(space.high), space.high, 255.0).astype(np.float32)
    return (np.asarray(values, dtype=np.float32) - low) / np.maximum(high - low, 1e-6)


def psnr(mse: np.ndarray) -> np.ndarray:
    """Peak signal-to-noise ratio in dB of errors in [0, 1] units (peak 1): 10 log10(1 / mse)."""
    return -10.0 * np.log10(np.maximum(np.asarray(mse, dtype=np.float64), MSE_FLOOR))


# ---- the report ----------------------------------------------------------------------------------


@torch.inference_mode()
def open_loop_video(
    model: WorldModel,
    dataset: RolloutDataset,
    context: int = 5,
    horizon: int = 16,
    windows: int = 32,
    show: int = 4,
    seed: int = 0,
    batch_size: int = 16,
) -> OpenLoopVideo:
    """The open-loop video report of an image ``model`` on windows of ``dataset``'s episodes.

    :param context: real transitions the model observes before it imagines (0: it sees one frame)
    :param horizon: imagined steps, under the real actions
    :param windows: windows the errors average over, sampled (by ``seed``) among those whose
        context lies inside their episode, preferring windows that reach the whole horizon
    :param show: windows whose frames are kept for the pictures (those that reach furthest)
    :param batch_size: windows imagined at once (bounds the memory for large images)
    """
    space = model.observation_space
    if not is_image(space):
        raise GenrlError(
            f"open-loop video: expected a model of image observations (H, W, C), got observation "
            f"shape {tuple(space.shape or ())}"
        )
    dataset.check_spaces(space, model.action_space)
    context, horizon = check_int(context, "context", 0), check_int(horizon, "horizon", 1)
    windows, show = check_int(windows, "windows", 1), check_int(show, "show", 0)
    batch_size = check_int(batch_size, "batch_size", 1)
    which, start = _sample_windows(dataset, context, horizon, windows, np.random.default_rng(seed))
    cut = cut_windows(dataset.episodes, which, start, context + horizon)
    reach = cut.mask[:, context:]  # (N, H): imagined step inside the episode
    video = OpenLoopVideo(space, context, horizon, len(which))
    errors: dict[str, list[np.ndarray]] = {name: [] for name in PREDICTORS}
    for lo in range(0, len(which), batch_size):
        obs, actions = cut.obs[lo : lo + batch_size], cut.action[lo : lo + batch_size]
        dreamed = _imagine(model, obs, actions, context)
        real = to_unit(obs[:, context + 1 :], space)
        last = to_unit(obs[:, context : context + 1], space)
        for name, pred in (("model", to_unit(dreamed, space)), ("repeat last", last)):
            errors[name].append(((pred - real) ** 2).reshape(len(obs), horizon, -1).mean(-1))
    video.counts = reach.sum(0)
    weights = reach / np.maximum(video.counts, 1)
    for name in PREDICTORS:
        mse = np.concatenate(errors[name])  # (N, H) per frame
        video.mse[name] = _per_horizon(mse, weights, video.counts)
        video.psnr[name] = psnr(video.mse[name])
    shown = np.argsort(-reach.sum(1), kind="stable")[:show]
    if len(shown):
        obs = cut.obs[shown]
        recon = _reconstruct(model, obs[:, : context + 1])
        video.real = obs
        video.dream = np.concatenate([recon, _imagine(model, obs, cut.action[shown], context)], 1)
        video.valid = np.concatenate([np.ones((len(shown), 1), bool), cut.mask[shown]], 1)
    return video


def _sample_windows(
    dataset: RolloutDataset, context: int, horizon: int, count: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """(episode, start) of up to ``count`` windows: whole ones if there are enough, else any whose
    context and first imagined step lie inside the episode."""
    lengths = [ep.length for ep in dataset.episodes]
    full = [(e, t) for e, n in enumerate(lengths) for t in range(n - context - horizon + 1)]
    if len(full) < count:
        full = [(e, t) for e, n in enumerate(lengths) for t in range(n - context)]
    if not full:
        raise GenrlError(
            f"open-loop video: expected an episode longer than the context ({context} steps), "
            f"got {len(lengths)} episodes of at most {max(lengths, default=0)} steps"
        )
    pick = np.sort(rng.choice(len(full), size=min(count, len(full)), replace=False))
    which, start = np.array([full[i] for i in pick]).T
    return which, start


def _imagine(model: WorldModel, obs: np.ndarray, actions: np.ndarray, context: int) -> np.ndarray:
    """Observe obs[:, :context+1] and actions[:, :context], imagine the rest: (B, H, *obs_shape)."""
    device = model.device
    o = torch.as_tensor(obs, device=device).float()
    a = torch.as_tensor(actions, device=device)
    n = len(o)
    if context > 0:
        h = model.predict_sequence(o[:, : context + 1], a[:, :context]).h
    else:
        h = model.initial_state(n)
    z = model.encode(o[:, context])
    member = torch.arange(n, device=device) % model.ensemble_size  # each window follows one member
    dream = model.unroll(z, h, a[:, context:], temperature=0.0, member=member)
    frames = [model.decode(dream.z[:, k]) for k in range(dream.z.shape[1])]
    return torch.stack(frames, 1).cpu().numpy()


def _reconstruct(model: WorldModel, obs: np.ndarray) -> np.ndarray:
    """decode(encode(o)) of frames (B, T, *obs_shape)."""
    o = torch.as_tensor(obs, device=model.device).float()
    flat = o.flatten(0, 1)
    return model.decode(model.encode(flat)).reshape(o.shape).cpu().numpy()


def _per_horizon(values: np.ndarray, weights: np.ndarray, counts: np.ndarray) -> np.ndarray:
    curve = (values * weights).sum(0)
    curve[counts == 0] = np.nan
    return curve


# ---- pictures --------------------------------------------------------------------------------------


def _pictures(video: OpenLoopVideo) -> np.ndarray:
    """(n, 3, T, h, w, 3) uint8: real, dream and error pictures of each shown window and frame."""
    space = video.observation_space
    error = video.error
    if is_binary(space):
        error_obs = error > 0.5  # a binary grid's error: the cells that differ, in their channel's colour
    else:
        low = np.where(np.isfinite(space.low), space.low, 0.0)
        high = np.where(np.isfinite(space.high), space.high, 255.0)
        error_obs = low + error * (high - low)
    rows = (video.real, video.dream, error_obs)
    n, steps = video.real.shape[:2]
    return np.stack(
        [
            np.stack([np.stack([render_observation(row[i, t], space) for t in range(steps)]) for row in rows])
            for i in range(n)
        ]
    )


def _grid(tiles: list[list[np.ndarray]], bars: list[tuple[int, int, int]] | None = None) -> np.ndarray:
    """Equal-sized pictures in rows and columns on white, ``GAP`` apart; ``bars`` colour a bar over
    each column."""
    h, w = tiles[0][0].shape[:2]
    rows, cols = len(tiles), len(tiles[0])
    top = BAR + GAP if bars is not None else 0
    image = np.full((top + rows * (h + GAP) - GAP, cols * (w + GAP) - GAP, 3), BACKGROUND, dtype=np.uint8)
    for c in range(cols):
        x = c * (w + GAP)
        if bars is not None:
            image[:BAR, x : x + w] = bars[c]
        for r in range(rows):
            y = top + r * (h + GAP)
            image[y : y + h, x : x + w] = tiles[r][c]
    return image


def _phase(video: OpenLoopVideo, t: int) -> tuple[int, int, int]:
    return OBSERVED if t <= video.context else IMAGINED


def strip(video: OpenLoopVideo) -> np.ndarray:
    """A PNG-ready (H, W, 3) uint8 picture: per shown window three rows (real, dream, error), one
    column per time step; a green bar over observed steps, red over imagined ones."""
    pictures = _pictures(video)
    if not len(pictures):
        raise GenrlError("open-loop video: expected at least one shown window, got none (show=0)")
    steps = pictures.shape[2]
    bars = [_phase(video, t) for t in range(steps)]
    blocks = [_grid([list(p[r]) for r in range(3)], bars) for p in pictures]
    width = blocks[0].shape[1]
    gap = np.full((3 * GAP, width, 3), BACKGROUND, dtype=np.uint8)
    parts = [part for block in blocks for part in (block, gap)][:-1]
    return np.concatenate(parts, 0)


def video_frames(video: OpenLoopVideo) -> list[np.ndarray]:
    """The GIF's frames, one per time step: the shown windows side by side, each a column of real,
    dream and error; a bar over them, green while observing and red while imagining."""
    pictures = _pictures(video)
    if not len(pictures):
        raise GenrlError("open-loop video: expected at least one shown window, got none (show=0)")
    n, _, steps = pictures.shape[:3]
    return [
        _grid([[pictures[i, r, t] for i in range(n)] for r in range(3)], [_phase(video, t)] * n)
        for t in range(steps)
    ]


# ---- GIF, PNG and TensorBoard ----------------------------------------------------------------------


def gif_bytes(frames: list[np.ndarray] | np.ndarray, fps: float = 10.0) -> bytes:
    """An endlessly looping animated GIF of (H, W, 3) uint8 frames, ``fps`` frames a second.

    Identical consecutive frames become one frame shown as long (the GIF plays the same).
    """
    from PIL import Image  # Pillow comes with matplotlib; imported on use, as matplotlib is

    frames = [np.asarray(f) for f in frames]
    if not frames:
        raise GenrlError("GIF: expected at least one frame, got none")
    shapes = {f.shape for f in frames}
    if len(shapes) != 1 or frames[0].ndim != 3 or frames[0].shape[-1] != 3 or frames[0].dtype != np.uint8:
        raise GenrlError(f"GIF: expected (H, W, 3) uint8 frames of one shape, got shapes {sorted(shapes)}")
    if not fps > 0:
        raise GenrlError(f"GIF: expected fps > 0, got {fps!r}")
    images = [Image.fromarray(f) for f in frames]
    buffer = io.BytesIO()
    duration = max(20, int(round(1000.0 / fps)))  # browsers play faster GIFs at 10 fps anyway
    images[0].save(buffer, format="GIF", save_all=True, append_images=images[1:], duration=duration, loop=0)
    return buffer.getvalue()


def write_gif(path: str | os.PathLike, frames: list[np.ndarray] | np.ndarray, fps: float = 10.0) -> Path:
    """Write ``frames`` as an animated GIF at ``path``, atomically; returns the path."""
    data = gif_bytes(frames, fps)
    atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))
    return Path(path)


def write_png(path: str | os.PathLike, image: np.ndarray) -> Path:
    """Write an (H, W, 3) uint8 picture as a PNG at ``path``, atomically; returns the path."""
    from PIL import Image

    atomic_write(path, lambda tmp: Image.fromarray(np.asarray(image)).save(tmp, format="PNG"))
    return Path(path)


def add_gif(
    writer: Any, tag: str, frames: list[np.ndarray] | np.ndarray, step: int, fps: float = 10.0
) -> None:
    """Log an animated GIF to a ``SummaryWriter`` as an image, which TensorBoard plays.

    ``SummaryWriter.add_video`` needs moviepy (whose 2.x dropped what it imports); an image
    summary holding GIF bytes needs nothing.
    """
    from tensorboard.compat.proto.summary_pb2 import Summary

    data = gif_bytes(frames, fps)
    height, width = np.asarray(frames[0]).shape[:2]
    image = Summary.Image(height=height, width=width, colorspace=3, encoded_image_string=data)
    writer._get_file_writer().add_summary(Summary(value=[Summary.Value(tag=tag, image=image)]), step)


def error_figure(video: OpenLoopVideo) -> Figure:
    """Per-pixel MSE and PSNR against horizon, of the model and the repeat-last baseline."""
    from matplotlib.figure import Figure  # about a second to import: only what draws pays for it

    fig = Figure(figsize=(9, 3.6))
    mse_ax, psnr_ax = fig.subplots(1, 2)
    steps = np.arange(1, video.horizon + 1)
    for name in PREDICTORS:
        mse_ax.plot(steps, video.mse[name], label=name, color=COLOURS[name])
        psnr_ax.plot(steps, video.psnr[name], label=name, color=COLOURS[name])
    mse_ax.set(xlabel="horizon (steps)", ylabel="MSE per pixel ([0, 1] units)", yscale="log")
    psnr_ax.set(xlabel="horizon (steps)", ylabel="PSNR (dB)")
    mse_ax.set_title("Open-loop error", fontsize=10)
    psnr_ax.set_title(f"PSNR, after {video.context} observed steps", fontsize=10)
    mse_ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def write_video_files(
    video: OpenLoopVideo,
    folder: str | os.PathLike,
    writer: Any | None = None,
    step: int = 0,
    fps: float = 10.0,
) -> dict[str, Path]:
    """Write ``open_loop.gif`` and ``open_loop.png`` (the strip) into ``folder``; with a
    ``SummaryWriter``, log the GIF (``eval/open_loop_video``) and the strip (``eval/open_loop_strip``)
    at ``step``. The error figure is the caller's (:func:`error_figure`). Returns the paths by name.
    """
    folder = Path(folder)
    frames, picture = video_frames(video), strip(video)
    paths = {"open_loop.gif": write_gif(folder / "open_loop.gif", frames, fps)}
    paths["open_loop.png"] = write_png(folder / "open_loop.png", picture)
    if writer is not None:
        add_gif(writer, "eval/open_loop_video", frames, step, fps)
        writer.add_image("eval/open_loop_strip", picture, step, dataformats="HWC")
    return paths
