"""The card of a synthesised environment: what it came from and how far its dreams can be trusted.

``card.json`` holds, besides its format and version::

    summary        one line (also in package.json, and in a dream env's metadata["genrl_card"])
    source_env     the real env's id, or null
    real_data      episodes and steps of real data the model was fitted on, and its fit steps
    settings       horizon, temperature, obs_mode, reward, and how the start states were made
    evaluation     from genrl.evaluate on held-out real data: the open-loop error (standardised
                   mean squared error) of the model and of the naive baselines by horizon, reward
                   and termination errors, the realism critic, and the dream-to-real return gap
                   when an agent was given; null when there was nothing to evaluate on (see note)
    adversarial    the agent's dream return from the hard starts against the ordinary ones, or null
    seed           the seed the synthesis drew its start states and dreams from

``CARD.md`` is the same for people.
"""

from __future__ import annotations

import math
from importlib import metadata
from typing import Any

import numpy as np

from genrl.data.dataset import RolloutDataset
from genrl.dream.reward import describe_reward
from genrl.evaluation.evaluate import EvaluationReport
from genrl.model.world_model import WorldModel


def _number(value: Any) -> float | None:
    """A figure for JSON: a float, or None where it is undefined (NaN)."""
    value = float(value)
    return value if math.isfinite(value) else None


def real_data(model: WorldModel, dataset: RolloutDataset | None) -> dict[str, Any]:
    """How much real data the model saw; steps only when ``dataset`` holds all of its episodes."""
    trained = model.trained_episodes.cpu().numpy()
    steps = None
    if dataset is not None and len(dataset) and len(trained):
        found = np.isin(dataset.episode_digests(), trained)
        if len(np.unique(dataset.episode_digests()[found])) == len(trained):
            steps = int(sum(ep.length for ep, hit in zip(dataset.episodes, found, strict=True) if hit))
    return {"episodes": len(trained), "steps": steps, "fit_steps": int(model.trained_steps)}


def card_evaluation(report: EvaluationReport) -> dict[str, Any]:
    """The figures of an evaluation a card keeps."""
    s = report.scalars
    horizons = sorted(int(k.rsplit("/h", 1)[1]) for k in s if k.startswith("open_loop/model/h"))
    return {
        "held_out_episodes": int(report.data["episodes"]),
        "held_out_steps": int(report.data["steps"]),
        "open_loop_error": {
            name: {f"h{k}": _number(s[f"open_loop/{name}/h{k}"]) for k in horizons}
            for name in report.predictors
        },
        "beats_baselines": bool(report.beats_baselines()),
        "reward_mae": _number(s["reward/mae"]),
        "termination_auroc": _number(s["termination/auroc"]),
        "critic_clip_accuracy": _number(s["critic/clip_accuracy"]),
        "dream_to_real_gap": [{k: _number(v) for k, v in row.items()} for row in report.gap] or None,
        "seed": int(report.data["seed"]),
    }


def build_card(
    model: WorldModel,
    dataset: RolloutDataset | None,
    settings: dict[str, Any],
    evaluation: dict[str, Any] | None,
    adversarial: dict[str, Any] | None,
    *,
    source_env: str | None,
    note: str = "",
    seed: int,
) -> dict[str, Any]:
    """The card's contents (without its format and version, which the package adds)."""
    card = {
        "source_env": source_env,
        "genrl_version": _version(),
        "real_data": real_data(model, dataset),
        "model": {k: getattr(model.config, k) for k in ("encoder", "latent_dim", "num_mixtures")},
        "settings": settings,
        "evaluation": evaluation,
        "evaluation_note": note,
        "adversarial": adversarial,
        "seed": seed,
    }
    return {"summary": card_summary(card), **card}


def card_summary(card: dict[str, Any]) -> str:
    """The card in one line: source, data, errors, starts and settings."""
    data, s = card["real_data"], card["settings"]
    seen = f"{data['steps']:,} real steps" if data["steps"] is not None else "real data"
    source = card["source_env"] or "an environment"
    parts = [f"{source} dreamed by genrl from {seen} ({data['episodes']} episodes)"]
    ev = card["evaluation"]
    if ev is None:
        parts.append("not evaluated")
    else:
        errors = ev["open_loop_error"]
        key = "h10" if errors["model"].get("h10") is not None else _longest(errors["model"])
        if key is not None:
            repeat = errors["repeat last"][key]
            parts.append(
                f"open-loop error {errors['model'][key]:.3g} at {key[1:]} steps"
                + (f" (repeat-last {repeat:.3g})" if repeat is not None else "")
            )
        gap = [r for r in ev["dream_to_real_gap"] or [] if r["temperature"] == s["temperature"]]
        if gap and gap[0]["gap"] is not None:
            parts.append(f"dream-real return gap {gap[0]['gap']:+.1f}")
    starts = s["start"]
    parts.append(f"{starts['count']} {starts['mode']} starts")
    adv = card["adversarial"]
    if adv is not None:
        parts[-1] += (
            f" (agent's dream return {adv['hard_return']:.1f} vs {adv['ordinary_return']:.1f} ordinary)"
        )
    reward = describe_reward(s["reward"])
    parts.append(f"horizon {s['horizon']}, temperature {s['temperature']:g}, reward {reward}")
    return "; ".join(parts)


def _longest(errors: dict[str, float | None]) -> str | None:
    known = [k for k, v in errors.items() if v is not None]
    return max(known, key=lambda k: int(k[1:])) if known else None


def card_markdown(card: dict[str, Any]) -> str:
    """CARD.md: the card for people."""
    s, data = card["settings"], card["real_data"]
    lines = [
        f"# Environment card: {card['source_env'] or 'a synthesised environment'}",
        "",
        card["summary"],
        "",
        "## Where it came from",
        "",
        f"- Source env: {card['source_env'] or 'not recorded'}; genrl {card['genrl_version']}, "
        f"seed {card['seed']}.",
        f"- Real data: {data['episodes']} episodes"
        + (f", {data['steps']:,} steps" if data["steps"] is not None else " (steps unknown: no dataset)")
        + f"; {data['fit_steps']:,} fit steps. Model: {card['model']}.",
        f"- Settings: horizon {s['horizon']}, temperature {s['temperature']:g}, observations "
        f"{s['obs_mode']}, reward {describe_reward(s['reward'])}; {s['start']['count']} start states "
        f"({s['start']['mode']}"
        + (f", radius {s['start']['perturbation']:g} std" if s["start"]["mode"] != "real" else "")
        + ").",
        "",
        *_evaluation_lines(card["evaluation"], card.get("evaluation_note", "")),
        *_adversarial_lines(card["adversarial"]),
    ]
    return "\n".join(lines) + "\n"


def _evaluation_lines(ev: dict[str, Any] | None, note: str) -> list[str]:
    lines = ["## How far to trust it", ""]
    if ev is None:
        return [*lines, f"Not evaluated: {note or 'no held-out data was given'}.", ""]
    lines += [
        f"On {ev['held_out_episodes']} held-out real episodes ({ev['held_out_steps']} steps). Open-loop "
        "error (mean squared, in standard deviations of the data) by horizon:",
        "",
        "| predictor | " + " | ".join(ev["open_loop_error"]["model"]) + " |",
        "| --- |" + " --- |" * len(ev["open_loop_error"]["model"]),
    ]
    for name, row in ev["open_loop_error"].items():
        lines.append(f"| {name} | " + " | ".join(_cell(v) for v in row.values()) + " |")
    lines += [
        "",
        f"Below both baselines at every horizon: {'yes' if ev['beats_baselines'] else 'no'}. Reward MAE "
        f"{_cell(ev['reward_mae'])}, termination AUROC {_cell(ev['termination_auroc'])}, realism critic "
        f"accuracy {_cell(ev['critic_clip_accuracy'])} (0.5: dreams indistinguishable from real clips).",
        "",
    ]
    for row in ev["dream_to_real_gap"] or []:
        lines.append(
            f"- Temperature {row['temperature']:g}: agent's dream return {_cell(row['dream_return'])}, "
            f"real {_cell(row['real_return'])} (gap {_cell(row['gap'])})."
        )
    return [*lines, ""] if ev["dream_to_real_gap"] else lines


def _adversarial_lines(adv: dict[str, Any] | None) -> list[str]:
    if adv is None:
        return []
    return [
        "## Adversarial starts",
        "",
        f"{adv['count']} start states searched (radius {adv['radius']:g} std around {adv['centres']} starts, "
        f"population {adv['search']['population']}, {adv['search']['generations']} generations) for where "
        f"the agent ({adv['agent']}) does worst. Its dream return from them: {adv['hard_return']:.1f} "
        f"± {adv['hard_return_std']:.1f}; from ordinary starts: {adv['ordinary_return']:.1f} "
        f"± {adv['ordinary_return_std']:.1f}. These are dreamed figures; check them in the real env.",
        "",
    ]


def _cell(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def _version() -> str:
    try:
        return metadata.version("genrl")
    except metadata.PackageNotFoundError:
        return "unknown"
