"""Write an :class:`~genrl.evaluate.EvaluationReport`: ``report.md``, PNG plots and TensorBoard.

Every number of the markdown is also a TensorBoard scalar under ``eval/``, the curves are
scalars over the horizon (``eval/open_loop/<predictor>`` at step k), and the plots are images,
so a reader of the run's TensorBoard sees the whole report.

A model of images also gets its open-loop video report (:mod:`genrl.evaluation.video`):
``open_loop.gif``, the strip ``open_loop.png`` and the plot ``open_loop_error.png``, and in
TensorBoard the GIF (played by the image dashboard), the strip and the per-horizon curves. Its
report leaves out what is per observation dimension (per pixel): tables, plots and scalars; its
open-loop table has the predictors of ``report.predictors`` (the mean frame besides the others).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from genrl.evaluation.evaluate import EvaluationReport
from genrl.evaluation.video import PREDICTORS as VIDEO_PREDICTORS
from genrl.evaluation.video import error_figure, report_horizons, write_video_files
from genrl.util.files import atomic_write, write_json

if TYPE_CHECKING:
    from matplotlib.figure import Figure

COLOURS = {"model": "tab:blue", "repeat last": "tab:grey", "linear": "tab:orange", "mean frame": "tab:green"}


def write_report(report: EvaluationReport, folder: str | os.PathLike, writer: Any | None = None) -> Path:
    """Write ``report.md``, ``report.json`` and the PNG plots into ``folder``; log to ``writer``.

    :param writer: a ``torch.utils.tensorboard.SummaryWriter``; scalars are logged at the model's
        trained steps, so evaluations of a model as it trains line up
    :return: the path of ``report.md``
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    figures = figures_of(report)
    for name, figure in figures.items():
        atomic_write(folder / f"{name}.png", lambda tmp, f=figure: f.savefig(tmp, format="png", dpi=110))
    markdown = to_markdown(report, images=[f"{name}.png" for name in figures])
    atomic_write(folder / "report.md", lambda tmp: Path(tmp).write_text(markdown))
    write_json(folder / "report.json", to_json(report))
    if report.video is not None:
        write_video_files(report.video, folder, writer, report.trained_steps)
    if writer is not None:
        log_report(report, writer, figures, markdown)
    return folder / "report.md"


def to_json(report: EvaluationReport) -> dict[str, Any]:
    """The report as plain JSON (NaN, where a metric is undefined, becomes null)."""

    def clean(value: Any) -> Any:
        if isinstance(value, np.ndarray):
            return clean(value.tolist())
        if isinstance(value, (list, tuple)):
            return [clean(v) for v in value]
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        if isinstance(value, (float, np.floating)):
            return None if not np.isfinite(value) else float(value)
        return value.item() if isinstance(value, np.generic) else value

    out = {
        "format": "genrl.evaluation",
        "version": 1,
        "trained_steps": report.trained_steps,
        "scalars": _scalars(report),
        "curves": _curves(report),
        "window_counts": report.window_counts,
        "dream_gap": report.gap,
        "data": report.data,
        "model_beats_baselines": report.beats_baselines(),
    }
    if report.video is not None:
        v = report.video
        out["open_loop_video"] = {
            "context": v.context,
            "horizon": v.horizon,
            "windows": v.windows,
            "window_counts": v.counts,
            "mse": v.mse,
            "psnr": v.psnr,
            "files": ["open_loop.gif", "open_loop.png", "open_loop_error.png"],
        }
    return clean(out)


# A model of images has one observation dimension per pixel: its per-dimension numbers would be
# tens of thousands of scalars, curves and plots, so its report keeps the overall ones.
def _scalars(report: EvaluationReport) -> dict[str, float]:
    if report.video is None:
        return report.scalars
    return {k: v for k, v in report.scalars.items() if not k.startswith("reconstruction/mse_dim")}


def _curves(report: EvaluationReport) -> dict[str, np.ndarray]:
    if report.video is None:
        return report.curves
    return {k: v for k, v in report.curves.items() if not k.startswith("open_loop_dims/")}


def log_report(report: EvaluationReport, writer: Any, figures: dict[str, Figure], markdown: str) -> None:
    step = report.trained_steps
    for name, value in _scalars(report).items():
        writer.add_scalar(f"eval/{name}", value, step)
    for name, curve in _curves(report).items():
        if curve.ndim == 1:
            for k, value in enumerate(curve, start=1):
                writer.add_scalar(f"eval/{name}", value, k)
        else:
            predictor = name.split("/", 1)[1]
            for d in range(curve.shape[1]):
                for k, value in enumerate(curve[:, d], start=1):
                    writer.add_scalar(f"eval/open_loop_dim{d}/{predictor}", value, k)
    for name, figure in figures.items():
        writer.add_figure(f"eval/{name}", figure, step, close=False)
    writer.add_text("eval/report", markdown, step)
    writer.flush()


# ---- markdown --------------------------------------------------------------------------------------


def _fmt(value: float) -> str:
    if value is None or not np.isfinite(value):
        return "n/a"
    return f"{value:.4g}"


def to_markdown(report: EvaluationReport, images: list[str] | None = None) -> str:
    """The report as markdown: the data, then one section per part, then the plots."""
    lines = _data_section(report) + _open_loop_section(report) + _video_section(report)
    lines += _heads_section(report)
    lines += _critic_section(report) + _gap_section(report)
    if images:
        lines += ["", "## Plots", ""] + [f"![{Path(i).stem}]({i})" for i in images]
    return "\n".join(lines) + "\n"


def _data_section(report: EvaluationReport) -> list[str]:
    d, fresh = report.data, report.data.get("fresh_episodes", 0)
    return [
        "# World-model evaluation",
        "",
        f"Model after {report.trained_steps} training steps. Held-out data only: "
        f"{d['episodes']} episodes ({d['steps']} steps): {d['dataset_held_out_episodes']} held-out "
        f"episodes of the dataset (the model trained on {d['dataset_training_episodes']} others)"
        + (f" and {fresh} fresh real episodes played by the policy." if fresh else "."),
        "Errors are mean squared errors of standardised observations (each dimension divided by "
        "the training data's standard deviation)."
        if report.video is None  # a model of images scales its pixels by the space's range
        else "Errors are mean squared errors per pixel, in [0, 1] units (the pixels' range).",
    ]


def _open_loop_section(report: EvaluationReport) -> list[str]:
    s, d = report.scalars, report.data
    lines = [
        "",
        "## Open-loop prediction error (compounding error)",
        "",
        f"From one real observation, under the real actions; the model uses its mean prediction "
        f"(temperature 0). {int(s['open_loop/windows'])} windows; the linear baseline is fitted on "
        f"{d['linear_fitted_on']}.",
    ]
    if report.video is not None:
        lines += [
            "For a model of images the linear baseline is linear dynamics of the model's own latents "
            f"(fitted on {d.get('linear_transitions', 'n/a')} encoded transitions, its predictions "
            "decoded by the model's decoder), and the mean frame predicts the mean of "
            f"{d.get('mean_frame_frames', 'n/a')} frames of those episodes at every step.",
        ]
    lines.append("")
    predictors = report.predictors
    horizons = sorted(int(k.rsplit("/h", 1)[1]) for k in s if k.startswith("open_loop/model/h"))
    lines.append("| predictor | " + " | ".join(f"h={k}" for k in horizons) + " |")
    lines.append("| --- |" + " --- |" * len(horizons))
    for name in predictors:
        lines.append(f"| {name} | " + " | ".join(_fmt(s[f"open_loop/{name}/h{k}"]) for k in horizons) + " |")
    baselines = "both baselines" if len(predictors) == 3 else "every baseline"
    verdict = f"below {baselines} at every horizon" if report.beats_baselines() else f"NOT below {baselines}"
    curve = report.curves["open_loop/model"]
    lines += ["", f"The model's curve is {verdict} up to h={len(curve)}."]
    losing = [
        k + 1
        for k in range(len(curve))
        if any(curve[k] >= report.curves[f"open_loop/{n}"][k] for n in predictors[1:])
    ]
    if losing:
        lines.append(f"Horizons where a baseline is as good or better: {_ranges(losing)}.")
    if report.video is not None:  # a model of images: no table of its pixels
        return lines + _ensemble_lines(report)
    dims = report.curves["open_loop_dims/model"].shape[1]
    lines += ["", "Per observation dimension, at the longest horizon:", ""]
    lines.append("| predictor | " + " | ".join(f"dim {i}" for i in range(dims)) + " |")
    lines.append("| --- |" + " --- |" * dims)
    for name in predictors:
        last = report.curves[f"open_loop_dims/{name}"][-1]
        lines.append(f"| {name} | " + " | ".join(_fmt(v) for v in last) + " |")
    return lines + _ensemble_lines(report)


def _ensemble_lines(report: EvaluationReport) -> list[str]:
    s, lines = report.scalars, []
    if "ensemble/members" in s:
        spread = report.curves["open_loop/disagreement"]
        lines += [
            "",
            f"Ensemble of {int(s['ensemble/members'])} members (each window follows one): their "
            f"disagreement is {_fmt(spread[0])} at h=1 and {_fmt(spread[-1])} at h={len(spread)}; its "
            f"rank correlation with the error is {_fmt(s['ensemble/error_correlation'])} "
            "(near 1: the disagreement says where the model is wrong).",
        ]
    return lines


def _video_section(report: EvaluationReport) -> list[str]:
    v = report.video
    if v is None:
        return []
    horizons = report_horizons(v.horizon)
    lines = [
        "",
        "## Open-loop video",
        "",
        f"The model observes {v.context} real steps of a held-out window, then imagines {v.horizon} "
        f"more under the real actions (temperature 0), over {v.windows} windows. Errors per pixel, "
        "in [0, 1] units; PSNR in dB (higher is better); repeat last shows the last observed "
        "frame throughout.",
        "",
        "| predictor | metric | " + " | ".join(f"h={k}" for k in horizons) + " |",
        "| --- | --- |" + " --- |" * len(horizons),
    ]
    for name in VIDEO_PREDICTORS:
        for metric, curve in (("MSE", v.mse[name]), ("PSNR", v.psnr[name])):
            lines.append(f"| {name} | {metric} | " + " | ".join(_fmt(curve[k - 1]) for k in horizons) + " |")
    lines += [
        "",
        "Rows: real, dream (reconstructions while observing, under the green bar; imagined under "
        "the red), error.",
        "",
        "![open-loop video](open_loop.gif)",
        "",
        "![open-loop strip](open_loop.png)",
    ]
    return lines


def _heads_section(report: EvaluationReport) -> list[str]:
    s = report.scalars
    return [
        "",
        "## One-step heads (teacher forced on the real history)",
        "",
        "| metric | value |",
        "| --- | --- |",
        f"| reconstruction error (encode, then decode) | {_fmt(s['reconstruction/mse'])} |",
        f"| negative log-likelihood per step (nats, latent) | {_fmt(s['nll/per_step'])} |",
        f"| reward mean squared error | {_fmt(s['reward/mse'])} |",
        f"| reward mean absolute error | {_fmt(s['reward/mae'])} |",
        f"| termination precision | {_fmt(s['termination/precision'])} |",
        f"| termination recall | {_fmt(s['termination/recall'])} |",
        f"| termination AUROC | {_fmt(s['termination/auroc'])} |",
        f"| terminal steps in the data | {int(s['termination/terminal_steps'])} |",
    ]


def _critic_section(report: EvaluationReport) -> list[str]:
    s, d = report.scalars, report.data
    lines = [
        "",
        "## Realism critic",
        "",
        "A discriminator trained on half of the episodes to tell real from dreamed (temperature 1, "
        "same first observation and actions); its accuracy on the other half. 50% means "
        "indistinguishable.",
        "",
        "| what it sees | held-out accuracy | test pairs |",
        "| --- | --- | --- |",
    ]
    for name, label in (
        ("transition", "one transition"),
        ("clip", f"{d.get('critic_clip_length')}-step clip"),
    ):
        acc = s.get(f"critic/{name}_accuracy", float("nan"))
        pairs = s.get(f"critic/{name}_test_pairs")
        lines.append(f"| {label} | {_fmt(100 * acc)}% | {int(pairs) if pairs else 'n/a'} |")
    return lines


def _gap_section(report: EvaluationReport) -> list[str]:
    if not report.gap:
        return []
    fresh = report.data.get("fresh_episodes", 0)
    lines = [
        "",
        "## Dream against reality",
        "",
        f"The policy's return in {fresh} real episodes, and in dreams from the same start states.",
        "",
        "| temperature | dream return | real return | dream - real | mean per-episode difference |",
        "| --- | --- | --- | --- | --- |",
    ]
    for row in report.gap:
        lines.append(
            f"| {row['temperature']:g} | {row['dream_return']:.1f} | {row['real_return']:.1f} | "
            f"{row['gap']:+.1f} | {row['abs_error_per_episode']:.1f} |"
        )
    return lines


def _ranges(values: list[int]) -> str:
    parts, start = [], values[0]
    for prev, cur in zip(values, values[1:] + [None], strict=True):
        if cur != prev + 1:
            parts.append(f"{start}" if start == prev else f"{start}-{prev}")
            start = cur
    return ", ".join(parts)


# ---- plots -----------------------------------------------------------------------------------------


def _figure(**kwargs: Any) -> Figure:
    # matplotlib takes about a second to import: only a command that draws pays for it.
    from matplotlib.figure import Figure

    return Figure(**kwargs)


def figures_of(report: EvaluationReport) -> dict[str, Figure]:
    """The report's plots, by file name (without extension)."""
    if report.video is not None:  # open_loop.png is the video's strip
        figures = {"open_loop_error": error_figure(report.video)}
    else:
        figures = {"open_loop": _open_loop_figure(report), "open_loop_dims": _dims_figure(report)}
        figures["open_loop_example"] = _example_figure(report)
    if report.gap:
        figures["dream_gap"] = _gap_figure(report)
    return figures


def _open_loop_figure(report: EvaluationReport) -> Figure:
    fig = _figure(figsize=(6, 4))
    ax = fig.subplots()
    for name in report.predictors:
        curve = report.curves[f"open_loop/{name}"]
        ax.plot(np.arange(1, len(curve) + 1), curve, label=name, color=COLOURS[name])
    ax.set(
        xlabel="horizon (steps)",
        ylabel="MSE (standardised)",
        yscale="log",
        title="Open-loop prediction error",
    )
    ax.legend()
    fig.tight_layout()
    return fig


def _dims_figure(report: EvaluationReport) -> Figure:
    dims = report.curves["open_loop_dims/model"].shape[1]
    cols = min(dims, 4)
    rows = -(-dims // cols)
    fig = _figure(figsize=(3.2 * cols, 2.6 * rows))
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    for d in range(dims):
        for name in report.predictors:
            curve = report.curves[f"open_loop_dims/{name}"][:, d]
            axes[d].plot(np.arange(1, len(curve) + 1), curve, label=name, color=COLOURS[name])
        axes[d].set(title=f"dim {d}", yscale="log", xlabel="horizon")
    for ax in axes[dims:]:
        ax.set_visible(False)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    return fig


def _example_figure(report: EvaluationReport) -> Figure:
    """True, predicted and error traces of one held-out window, side by side (as dreamerv3's report)."""
    ex = report.example
    valid = np.concatenate([[True], ex["valid"]])
    true = ex["true"][valid]
    dims = true.shape[1]
    fig = _figure(figsize=(9, 1.8 * dims + 0.6))
    axes = fig.subplots(dims, 2, squeeze=False)
    steps = np.arange(len(true))
    for d in range(dims):
        axes[d, 0].plot(steps, true[:, d], color="black", label="real")
        for name in report.predictors:
            pred = ex[name][valid]
            axes[d, 0].plot(steps, pred[:, d], color=COLOURS[name], label=name, alpha=0.8)
            axes[d, 1].plot(steps, np.abs(pred[:, d] - true[:, d]), color=COLOURS[name], label=name)
        axes[d, 0].set_ylabel(f"dim {d}")
    axes[0, 0].set_title("real and predicted")
    axes[0, 1].set_title("absolute error")
    axes[0, 0].legend(fontsize=7)
    axes[-1, 0].set_xlabel("step")
    axes[-1, 1].set_xlabel("step")
    fig.tight_layout()
    return fig


def _gap_figure(report: EvaluationReport) -> Figure:
    fig = _figure(figsize=(6, 4))
    ax = fig.subplots()
    temps = [row["temperature"] for row in report.gap]
    ax.plot(temps, [row["dream_return"] for row in report.gap], "o-", label="dream")
    ax.axhline(report.gap[0]["real_return"], color="black", linestyle="--", label="real")
    ax.set(xlabel="temperature", ylabel="mean return", title="The policy in the dream and in reality")
    ax.legend()
    fig.tight_layout()
    return fig
