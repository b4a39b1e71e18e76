"""Environment synthesis: a world model written out as a self-contained environment package.

``synthesize(model, out, ...)`` picks the start states (real, perturbed real, drawn from the
model's prior, or found adversarially against an agent), fixes the difficulty (the dynamics'
temperature), the horizon and a reward override, evaluates the model on held-out real data for
the card, and writes the package (:mod:`genrl.dream.package`) that
``gymnasium.make("genrl/Dream-v0", model=out)`` opens.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from genrl.data.collect import collect
from genrl.data.dataset import RolloutDataset
from genrl.dream.batch import as_model
from genrl.dream.package import PackageSettings, write_package
from genrl.dream.play import dream_returns
from genrl.dream.reward import check_reward
from genrl.errors import GenrlError
from genrl.evaluation.evaluate import evaluate
from genrl.guidance.adversarial import HardStarts, SearchSettings, find_hard_starts
from genrl.guidance.card import build_card, card_evaluation, card_markdown
from genrl.guidance.starts import START_CHOICES, ordinary_starts
from genrl.model.world_model import WorldModel
from genrl.util.checks import check_choice, check_float, check_int, from_mapping
from genrl.util.seeding import fresh_seed


@dataclass
class SynthesisResult:
    """A written package: where it is, its start states and its card."""

    path: Path
    starts: np.ndarray
    card: dict[str, Any]
    hard: HardStarts | None = None  # the adversarial search's result, in adversarial mode

    @property
    def summary(self) -> str:
        return self.card["summary"]


def synthesize(
    model: WorldModel | str | os.PathLike,
    out: str | os.PathLike,
    *,
    dataset: RolloutDataset | None = None,
    env: str | gym.Env | None = None,
    horizon: int = 500,
    temperature: float = 1.0,
    obs_mode: str = "decoded",
    start: str = "real",
    perturbation: float = 0.5,
    n_starts: int = 256,
    reward: dict[str, Any] | None = None,
    agent: Any | None = None,
    adversarial: bool = False,
    search: SearchSettings | dict[str, Any] | None = None,
    evaluation_episodes: int = 20,
    overwrite: bool = False,
    seed: int | None = None,
    device: str | torch.device = "auto",
    progress: bool = True,
) -> SynthesisResult:
    """Write an environment package of ``model`` into the new folder ``out``.

    :param dataset: real episodes: the real start states, and held-out data for the card's figures
    :param env: the real env (an id or an instance): named in the card as the source, and used to
        play fresh episodes for the evaluation (the agent's, for the dream-to-real gap)
    :param temperature: the difficulty: the dynamics' sampling temperature (0: their mean)
    :param start: ``n_starts`` start states: ``"real"`` reset observations (at most all of them);
        ``"perturbed"``: those moved uniformly by up to ``perturbation`` standard deviations of the
        data per value; ``"prior"``: decoded draws of the latent prior (for the identity encoder:
        a Gaussian with the data's mean and std)
    :param reward: a reward override, e.g. ``{"type": "constant", "value": 1.0}`` (genrl.dream.reward)
    :param agent: an SB3 model or a policy callable; with ``env``, the card gets its dream-real gap
    :param adversarial: search within ``perturbation`` of the ordinary starts for the ``n_starts``
        where ``agent`` does worst in the dream (:mod:`genrl.guidance.adversarial`); the card
        reports its dream return from them against the ordinary starts
    :param seed: seeds the start states, the search, the dreams and the evaluation; None draws one
    """
    seed = fresh_seed(seed)
    model = as_model(model, device)
    settings = _check(model, dataset, env, horizon, temperature, obs_mode, start, perturbation, n_starts)
    settings["reward"] = check_reward(reward, int(np.prod(model.observation_space.shape)))
    ordinary, centres = ordinary_starts(model, dataset, start, n_starts, perturbation, seed)
    hard = adv = None
    if adversarial:
        starts = (ordinary, centres, "prior" if start == "prior" else "real")
        hard, adv = _adversarial(model, agent, starts, settings, perturbation, search, seed, progress)
    starts = hard.starts if hard is not None else ordinary
    mode = "adversarial" if adversarial else start
    settings["start"] = {"mode": mode, "count": len(starts), "perturbation": float(perturbation)}
    evaluation, note = _evaluation(model, dataset, env, agent, settings, evaluation_episodes, seed)
    source = env if isinstance(env, str) else getattr(getattr(env, "spec", None), "id", None)
    card = build_card(model, dataset, settings, evaluation, adv, source_env=source, note=note, seed=seed)
    dream = {k: settings[k] for k in ("horizon", "temperature", "obs_mode", "reward")}
    package = PackageSettings(**dream, start=mode, source_env=source, summary=card["summary"])
    path = write_package(out, model, starts, package, card, card_markdown(card), overwrite)
    return SynthesisResult(path, starts, card, hard)


def _check(
    model: WorldModel,
    dataset: Any,
    env: Any,
    horizon: Any,
    temperature: Any,
    obs_mode: Any,
    start: Any,
    perturbation: Any,
    n_starts: Any,
) -> dict[str, Any]:
    """The dream settings, checked; and the dataset and env against the model's spaces."""
    if dataset is not None:
        if not isinstance(dataset, RolloutDataset):
            raise GenrlError(f"dataset: expected a RolloutDataset or None, got {type(dataset).__name__}")
        dataset.check_spaces(model.observation_space, model.action_space)
    if env is not None and not isinstance(env, (str, gym.Env)):
        raise GenrlError(f"env: expected an env id, a gymnasium.Env or None, got {type(env).__name__}")
    if isinstance(env, gym.Env):
        model.check_env_spaces(env.observation_space, env.action_space)
    check_choice(start, "start", START_CHOICES)
    check_int(n_starts, "n_starts", 1)
    check_float(perturbation, "perturbation", 0.0)
    return {
        "horizon": check_int(horizon, "horizon", 1),
        "temperature": check_float(temperature, "temperature", 0.0),
        "obs_mode": check_choice(obs_mode, "obs_mode", ("decoded", "latent")),
    }


def _adversarial(
    model: WorldModel,
    agent: Any,
    starts: tuple[np.ndarray, np.ndarray, str],
    settings: dict[str, Any],
    radius: float,
    search: SearchSettings | dict[str, Any] | None,
    seed: int,
    progress: bool,
) -> tuple[HardStarts, dict[str, Any]]:
    """The hard starts, and the card's account of them against the ordinary ones.

    ``starts``: the ordinary starts, the states the search perturbs, and what those are.
    """
    if agent is None:
        raise GenrlError("adversarial synthesis: expected an agent (an SB3 model or a policy), got None")
    search = from_mapping(SearchSettings, search if search is not None else {}, "search settings")
    ordinary, centres, kind = starts
    horizon, temperature, reward = settings["horizon"], settings["temperature"], settings["reward"]
    hard = find_hard_starts(
        model,
        agent,
        centres,
        len(ordinary),
        radius=radius,
        horizon=horizon,
        temperature=temperature,
        reward=reward,
        search=search,
        seed=seed + 1,
        progress=progress,
    )
    usual = dream_returns(model, agent, ordinary, horizon, temperature, reward, seed + 2)
    return hard, {
        "agent": _name(agent),
        "count": len(hard.starts),
        "radius": float(radius),
        "centres": kind,
        "search": dataclasses.asdict(search),
        "hard_return": float(hard.returns.mean()),
        "hard_return_std": float(hard.returns.std()),
        "ordinary_return": float(usual.mean()),
        "ordinary_return_std": float(usual.std()),
        "ordinary_count": len(usual),
        "history": hard.history,
    }


def _evaluation(
    model: WorldModel,
    dataset: RolloutDataset | None,
    env: str | gym.Env | None,
    agent: Any,
    settings: dict[str, Any],
    episodes: int,
    seed: int,
) -> tuple[dict[str, Any] | None, str]:
    """The card's evaluation figures, from held-out real data; or None and the reason."""
    if dataset is None and env is None:
        return None, "no held-out real data or env was given"
    data = dataset if dataset is not None else RolloutDataset(model.observation_space, model.action_space)
    policy = agent if env is not None else None
    if policy is None and not model.held_out_episodes(data):
        if env is None:
            return None, "the model trained on every episode of the dataset, and no env was given"
        data = collect(env, policy=None, episodes=episodes, seed=seed + 3, progress=False)
    temperatures = sorted({1.0, settings["temperature"]})
    report = evaluate(
        model, data, policy, env=env, episodes=episodes, temperatures=temperatures, seed=seed + 3
    )
    return card_evaluation(report), ""


def _name(agent: Any) -> str:
    """An agent as the card names it: its SB3 class, or a callable's name."""
    return type(agent).__name__ if hasattr(agent, "predict") else getattr(agent, "__name__", "a policy")
