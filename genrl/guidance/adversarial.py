"""Adversarial start states: where a given agent's return in the dream is lowest.

The search is a population of hill climbers (a (1+1) evolution strategy each) with truncation
selection. Each member holds a centre (a real start state, or a draw of the prior) and a
perturbation of it of at most ``radius`` in every value, in standardised units
(:mod:`genrl.guidance.starts`), so the starts stay near the data, where the model can be trusted,
and inside the observation space. Each generation every member proposes a Gaussian step; both
positions are dreamed afresh in one batch, so a lucky dream does not stick, and the member moves
when the proposal's return is no higher. Then the easiest quarter restarts from copies of the
hardest quarter. The ``n`` hardest distinct starts are dreamed once more with fresh noise for the
reported returns: picked for their low returns, they would otherwise look harder than they are.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from genrl.dream.play import dream_returns
from genrl.dream.reward import RewardFn
from genrl.guidance.starts import StandardUnits
from genrl.model.world_model import WorldModel
from genrl.util.checks import check_float, check_int, set_field
from genrl.util.progress import progress_bar


@dataclass(frozen=True)
class SearchSettings:
    """How hard the adversarial search looks."""

    population: int = 256  # members searching at once (at least the number of starts wanted)
    generations: int = 8
    step: float = 0.3  # the proposals' standard deviation, as a fraction of the radius
    replace: float = 0.25  # the fraction of easiest members moved onto the hardest each generation
    horizon: int | None = None  # dream length while searching; None: the package's horizon

    def __post_init__(self) -> None:
        set_field(self, "population", check_int(self.population, "search population", 1))
        set_field(self, "generations", check_int(self.generations, "search generations", 0))
        set_field(self, "step", check_float(self.step, "search step", 0.0, low_open=True))
        set_field(self, "replace", check_float(self.replace, "search replace", 0.0, 1.0, high_open=True))
        if self.horizon is not None:
            set_field(self, "horizon", check_int(self.horizon, "search horizon", 1))


@dataclass
class HardStarts:
    """The hardest starts found, hardest first, and the agent's dream returns from them."""

    starts: np.ndarray  # (n, *obs_shape)
    returns: np.ndarray  # (n,) dreamed afresh after the search
    history: list[float]  # the population's mean return after each generation


def find_hard_starts(
    model: WorldModel,
    policy: Any,
    centres: np.ndarray,
    n: int,
    *,
    radius: float,
    horizon: int,
    temperature: float = 1.0,
    reward: dict | RewardFn | None = None,
    search: SearchSettings | None = None,
    seed: int = 0,
    progress: bool = True,
) -> HardStarts:
    """Search within ``radius`` of ``centres`` for the ``n`` starts where ``policy`` does worst."""
    search = search or SearchSettings()
    units, rng = StandardUnits(model), np.random.default_rng(seed)
    size = max(search.population, n)
    centre = units.to_standard(centres)[rng.integers(len(centres), size=size)]
    delta = rng.uniform(-radius, radius, size=centre.shape)

    def returns(centres_: np.ndarray, deltas: np.ndarray, steps: int) -> np.ndarray:
        obs = units.to_obs(centres_ + deltas)
        return dream_returns(model, policy, obs, steps, temperature, reward, int(rng.integers(2**31)))

    history: list[float] = []
    with progress_bar(search.generations, "adversarial search", "generation", disable=not progress) as bar:
        for generation in range(search.generations):
            proposal = np.clip(delta + rng.normal(0.0, search.step * radius, delta.shape), -radius, radius)
            both = returns(
                np.tile(centre, (2, 1)), np.concatenate([delta, proposal]), search.horizon or horizon
            )
            moved = both[size:] <= both[:size]
            delta[moved] = proposal[moved]
            now = np.where(moved, both[size:], both[:size])
            history.append(float(now.mean()))
            k = int(search.replace * size)
            if k and generation + 1 < search.generations:
                # The easiest members restart from copies of the hardest: the search goes where it pays.
                order = np.argsort(now, kind="stable")
                easy, hard = order[size - k :], order[rng.integers(k, size=k)]
                centre[easy], delta[easy] = centre[hard], delta[hard]
            bar.update(1)
    last = returns(centre, delta, search.horizon or horizon)
    starts = units.to_obs(centre + delta)[_distinct_first(units.to_obs(centre + delta), last)[:n]]
    fresh = dream_returns(model, policy, starts, horizon, temperature, reward, int(rng.integers(2**31)))
    order = np.argsort(fresh, kind="stable")
    return HardStarts(starts[order], fresh[order], history)


def _distinct_first(starts: np.ndarray, returns: np.ndarray) -> np.ndarray:
    """Indices by increasing return, each distinct start before any repeat of one (copies of a
    member made late in the search may not have moved apart yet)."""
    order = np.argsort(returns, kind="stable")
    _, first = np.unique(starts[order].reshape(len(order), -1), axis=0, return_index=True)
    seen = np.zeros(len(order), dtype=bool)
    seen[first] = True
    return np.concatenate([order[seen], order[~seen]])
