"""TrainConfig: every setting of a run of the loop, nested as the YAML presets are.

A preset (``envs/NAME.yaml``) and a run's ``config.json`` have the same sections::

    id / env_id, agent, seed, device
    collect:      initial_steps, steps_per_iteration, collect_fraction, epsilon, explore, planner
    world_model:  encoder, latent_dim, hidden_dim, rnn_dim, num_mixtures   (WorldModelConfig)
    fit:          steps, refit_steps, learning_rate, ... loss weights      (FitConfig)
    dream:        n_envs, horizon, temperature, start
    train:        iterations, dream_steps, eval_episodes, target_return, keep_checkpoints

Each setting has one home. Flat forms keep working: genrl 0.1.0's ``config.json`` and keyword
overrides name settings without their section (``iterations=3``, ``fit_steps=100``), and a
0.1.0 ``world_model`` section may hold fit settings; :func:`route` puts each where it lives.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from genrl.errors import GenrlError
from genrl.model.config import (
    BEFORE_V3_FIT,
    BEFORE_V3_MODEL,
    BEFORE_V5_MODEL,
    BEFORE_V6_MODEL,
    FitConfig,
    WorldModelConfig,
    split_settings,
)
from genrl.util.checks import check_choice, check_float, check_int, describe, from_mapping, set_field

FORMAT = "genrl.train_config"
VERSION = 7  # 0.1.0 wrote a flat config.json with no format field: version 1
READS = (1, 2, 3, 4, 5, 6, 7)


@dataclass(frozen=True)
class CollectSettings:
    """Real data: random steps before the first fit, then the agent's steps after each iteration."""

    # At least 200 random steps and 4 whole episodes: CartPole's random episodes last about 22
    # steps, so 200 hold about 9; Pendulum's last 200, and from fewer than 4 the first model
    # flattered the agent (envs/pendulum.yaml).
    initial_steps: int = 200
    initial_episodes: int = 4
    steps_per_iteration: int = 20
    # Later iterations collect at least this fraction of the real steps so far: a geometric
    # schedule, so that "steps to reach a return" is resolved to that fraction of itself.
    collect_fraction: float = 0.1
    epsilon: float = 0.0  # chance of a random action while the agent collects
    # "planner": after the first iteration, real steps come from a genrl.Planner in the refitted
    # model (its terminal value the agent's critic) instead of the agent; ``planner`` holds its
    # settings (genrl.Planner's keyword arguments). "both": the planner on odd iterations and the
    # agent on even ones, so the model sees where the planner explores and where the agent goes.
    explore: str = "agent"
    planner: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_choice(self.explore, "collect explore", ("agent", "planner", "both"))
        if not isinstance(self.planner, dict):
            raise GenrlError(
                f"collect planner: expected a mapping of Planner settings, got {describe(self.planner)}"
            )
        set_field(self, "initial_steps", check_int(self.initial_steps, "collect initial_steps", 1))
        set_field(self, "initial_episodes", check_int(self.initial_episodes, "collect initial_episodes", 0))
        set_field(
            self, "steps_per_iteration", check_int(self.steps_per_iteration, "collect steps_per_iteration", 1)
        )
        set_field(self, "collect_fraction", check_float(self.collect_fraction, "collect_fraction", 0.0, 10.0))
        set_field(self, "epsilon", check_float(self.epsilon, "collect epsilon", 0.0, 1.0))


@dataclass(frozen=True)
class DreamSettings:
    """The dreams the agent trains in. ``None`` settings are chosen from the env and the agent."""

    n_envs: int | None = None  # None: 64 for on-policy agents (PPO, A2C), 8 for off-policy ones
    horizon: int | None = None  # None: the env's time limit (max_episode_steps), else 1000
    temperature: float | None = None  # None: 1 for Discrete actions, 0.3 for Box (defaults.py)
    # "initial": real reset states; "any": any recorded state, so states the agent must recover
    # from (near failure) are practised.
    start: str = "any"
    # Truncate a dream that leaves the real data's range by more than this many data standard
    # deviations (None: never), and clip learned rewards to the real ones' range: past the data
    # the model extrapolates, and an agent learns to exploit it.
    support: float | None = 3.0
    clip_reward: bool = True
    # What leaving the support does to a training dream: "terminate" ends it (nothing after it,
    # as in MOReL's pessimistic MDP), "truncate" lets the agent bootstrap from its value there,
    # which extrapolates: CartPole seed 3's agent learned to leave the data for it. "auto":
    # terminate where the real data holds terminations and mostly positive rewards, else
    # truncate (Pendulum, which never ends, learned more slowly when they ended:
    # benchmarks/RESULTS.md; with MountainCar's -1 a step, ending would be a prize).
    # Evaluation dreams always truncate.
    off_support: str = "auto"
    # With an ensemble (world_model.ensemble_size > 1): truncate where its members disagree by
    # more than this (None: never), add exploration_bonus x disagreement to the training dreams'
    # rewards (never to the evaluation's), and follow one member per dream or draw one per step.
    # reward_penalty x the members' spread of predicted rewards is subtracted from the training
    # dreams' rewards (MOPO's pessimism; the evaluation dreams keep the model's own reward).
    max_disagreement: float | None = None
    exploration_bonus: float = 0.0
    member: str = "episode"
    reward_penalty: float = 0.0
    # What the agent sees: "decoded" observations in the real env's space, or "latent": the
    # model's features [z, h], which the real env then gives through genrl.LatentObservation.
    # None: latent for image models (a policy on 32 + 128 numbers learns far faster than on
    # frames, as World Models' controller did), decoded otherwise.
    obs_mode: str | None = None

    def __post_init__(self) -> None:
        if self.obs_mode is not None:
            check_choice(self.obs_mode, "dream obs_mode", ("decoded", "latent"))
        if self.support is not None:
            set_field(self, "support", check_float(self.support, "dream support", 0.0))
        if self.max_disagreement is not None:
            set_field(
                self, "max_disagreement", check_float(self.max_disagreement, "dream max_disagreement", 0.0)
            )
        set_field(
            self, "exploration_bonus", check_float(self.exploration_bonus, "dream exploration_bonus", 0.0)
        )
        set_field(self, "reward_penalty", check_float(self.reward_penalty, "dream reward_penalty", 0.0))
        check_choice(self.member, "dream member", ("episode", "step"))
        check_choice(self.off_support, "dream off_support", ("auto", "truncate", "terminate"))
        if not isinstance(self.clip_reward, bool):
            raise GenrlError(f"dream clip_reward: expected true or false, got {describe(self.clip_reward)}")
        for name in ("n_envs", "horizon"):
            if getattr(self, name) is not None:
                set_field(self, name, check_int(getattr(self, name), f"dream {name}", 1))
        if self.temperature is not None:
            set_field(self, "temperature", check_float(self.temperature, "dream temperature", 0.0))
        check_choice(self.start, "dream start", ("initial", "any"))

    def limits(self) -> dict[str, Any]:
        """The settings that keep a dream honest, as DreamVecEnv's keyword arguments."""
        return {
            "support": self.support,
            "clip_reward": self.clip_reward,
            "max_disagreement": self.max_disagreement,
            "member": self.member,
        }


@dataclass(frozen=True)
class LoopSettings:
    """How long the loop runs and how it is measured (the ``train`` section)."""

    iterations: int = 30  # with collect_fraction 0.1: up to 200 * 1.1**29, about 3,200 real steps
    # Agent steps in the dream per iteration; None: 100,000 for on-policy agents, 16,000 for
    # off-policy ones, whose every step is also a gradient step.
    dream_steps: int | None = None
    eval_episodes: int = 20
    # Stop once the real eval mean reaches this; "auto": the env's reward_threshold, if it has one.
    target_return: float | str | None = "auto"
    keep_checkpoints: int = 2  # newest run checkpoints kept on disk

    def __post_init__(self) -> None:
        set_field(self, "iterations", check_int(self.iterations, "train iterations", 1))
        if self.dream_steps is not None:
            set_field(self, "dream_steps", check_int(self.dream_steps, "train dream_steps", 1))
        set_field(self, "eval_episodes", check_int(self.eval_episodes, "train eval_episodes", 1))
        if self.target_return not in (None, "auto"):
            set_field(self, "target_return", check_float(self.target_return, "train target_return"))
        set_field(self, "keep_checkpoints", check_int(self.keep_checkpoints, "keep_checkpoints", 1))


SECTIONS = {
    "collect": CollectSettings,
    "world_model": WorldModelConfig,
    "fit": FitConfig,
    "dream": DreamSettings,
    "train": LoopSettings,
}
TOP = ("env_id", "agent", "seed", "device")


@dataclass(frozen=True)
class TrainConfig:
    """Everything one run of the loop needs; an ``envs/*.yaml`` preset fills it in."""

    env_id: str
    agent: str | dict = "auto"  # "auto": ppo for Discrete actions, sac for Box
    seed: int | None = None  # seeds collection, the model, the dreams and the agent; None: drawn per run
    device: str = "auto"  # the world model and the dreams (the agent's is its preset's)
    collect: CollectSettings = field(default_factory=CollectSettings)
    world_model: WorldModelConfig = field(default_factory=WorldModelConfig)
    fit: FitConfig = field(default_factory=FitConfig)
    dream: DreamSettings = field(default_factory=DreamSettings)
    train: LoopSettings = field(default_factory=LoopSettings)

    def __post_init__(self) -> None:
        if not isinstance(self.env_id, str) or not self.env_id:
            raise GenrlError(f"env_id: expected a Gymnasium environment id, got {describe(self.env_id)}")
        if not isinstance(self.agent, (str, dict)):
            raise GenrlError(f"agent: expected an agent preset name or mapping, got {describe(self.agent)}")
        if self.seed is not None:
            # SB3 seeds numpy's legacy generator, which takes seeds below 2**32.
            set_field(self, "seed", check_int(self.seed, "seed", 0, 2**32 - 1))
        set_field(self, "device", "auto" if self.device is None else str(self.device))
        for name, cls in SECTIONS.items():
            set_field(self, name, from_mapping(cls, getattr(self, name), f"{name} settings"))
        if self.dream.reward_penalty and self.world_model.ensemble_size == 1:
            raise GenrlError(
                f"dream reward_penalty: expected world_model ensemble_size >= 2 (one model has no "
                f"spread of rewards to charge for), got reward_penalty={self.dream.reward_penalty} "
                "and ensemble_size=1"
            )

    @classmethod
    def from_dict(cls, data: Any, version: int = VERSION, **overrides: Any) -> TrainConfig:
        """From a preset, a ``config.json`` (nested, or 0.1.0's flat one) or keyword settings.

        ``version``: the run config version ``data`` was written in; what an older version left
        out takes that version's default, so an old run resumes as it ran.
        """
        if not isinstance(data, dict):
            raise GenrlError(f"expected training settings as a mapping, got {describe(data)}")
        data = {k: v for k, v in data.items() if k not in ("format", "version", "name", "description")}
        if "id" in data:
            data["env_id"] = data.pop("id")
        sections = route(data)
        for before, defaults in ((3, BEFORE_V3), (4, BEFORE_V4), (5, BEFORE_V5), (6, BEFORE_V6)):
            if version < before:
                for key, value in defaults.items():
                    sections[key] = (
                        {**value, **sections[key]} if key in SECTIONS else sections.get(key, value)
                    )
        for key, value in route({k: v for k, v in overrides.items() if v is not None}).items():
            sections[key] = {**sections[key], **value} if key in SECTIONS else value
        if not sections.get("env_id"):
            raise GenrlError("the env preset has no 'id': expected a Gymnasium environment id")
        return cls(**sections)

    @classmethod
    def from_preset(cls, preset: dict[str, Any], **overrides: Any) -> TrainConfig:
        """An env preset's settings, with ``overrides`` (flat names or sections) applied."""
        return cls.from_dict(preset, **overrides)

    def to_dict(self) -> dict[str, Any]:
        """The nested JSON form that ``config.json`` holds and :meth:`from_dict` reads back."""
        return {"format": FORMAT, "version": VERSION, **dataclasses.asdict(self)}

    def agent_obs_mode(self, image: bool) -> str:
        """What the run's agent sees: ``dream.obs_mode``, or for an image model (``image``)
        latent features by default."""
        return self.dream.obs_mode or ("latent" if image else "decoded")

    def replace(self, **settings: Any) -> TrainConfig:
        """A copy with some settings changed, named flat (``iterations=8``) or by section."""
        return TrainConfig.from_dict(dataclasses.asdict(self), **settings)


# The defaults of run config versions 1 and 2 (genrl up to 0.3.0.dev) that version 3 changed.
BEFORE_V3: dict[str, Any] = {
    "agent": "ppo",
    "collect": {
        "initial_steps": 1000,
        "initial_episodes": 0,
        "steps_per_iteration": 1000,
        "collect_fraction": 0.0,
    },
    "world_model": BEFORE_V3_MODEL,
    "fit": BEFORE_V3_FIT,
    "dream": {
        "n_envs": 64,
        "horizon": 500,
        "temperature": 1.0,
        "start": "initial",
        "support": None,
        "clip_reward": False,
    },
    "train": {"iterations": 5, "dream_steps": 50_000, "target_return": None},
}


# The defaults of run config version 3 that version 4 changed.
BEFORE_V4: dict[str, Any] = {"world_model": {"rnn_dim": 128}, "dream": {"off_support": "truncate"}}

# The defaults of run config version 4 that version 5 changed.
BEFORE_V5: dict[str, Any] = {"world_model": BEFORE_V5_MODEL}

# The defaults of run config version 5 that version 6 changed.
BEFORE_V6: dict[str, Any] = {"world_model": BEFORE_V6_MODEL}


def route(flat: dict[str, Any]) -> dict[str, Any]:
    """Settings named flat or by section -> {top-level name or section: value or dict}."""
    owner = {name: section for section, cls in SECTIONS.items() for name in _names(cls)}
    owner.update(fit_steps="fit")
    del owner["steps"]  # too generic to name without its section (fit.steps, or fit_steps)
    out: dict[str, Any] = {section: {} for section in SECTIONS}
    unknown = []
    for key, value in flat.items():
        if key in TOP:
            out[key] = value
        elif key == "world_model":
            _world_model_section(value, out)
        elif key in SECTIONS:
            if not isinstance(value, dict):
                raise GenrlError(f"{key} settings: expected a mapping, got {describe(value)}")
            out[key].update(value)
        elif key in owner:
            out[owner[key]]["steps" if key == "fit_steps" else key] = value
        else:
            unknown.append(key)
    if unknown:
        known = sorted([*TOP, *SECTIONS, *owner])
        raise GenrlError(f"unknown training settings {sorted(unknown, key=str)}; expected some of {known}")
    return out


def _world_model_section(value: Any, out: dict[str, Any]) -> None:
    """A ``world_model`` mapping, which genrl 0.1.0 let hold fit settings too."""
    model, fit, seed = split_settings(value, "world model settings")
    if seed is not None:
        raise GenrlError("world_model seed: expected the run's seed to seed the model (top-level seed)")
    out["world_model"].update(model)
    out["fit"].update(fit)


def _names(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def resolve_config(env: str, **overrides: Any) -> TrainConfig:
    """A preset name (``cartpole``), a preset file, or an env id (using its preset when one exists)."""
    from genrl.data.envs import make_env
    from genrl.training.presets import available, find_env_preset, load_preset

    if not isinstance(env, str):
        raise GenrlError(f"env: expected a preset name, a preset file or a Gymnasium id, got {describe(env)}")
    if env.endswith((".yaml", ".yml")):
        preset = load_preset("envs", env)
    else:
        preset = find_env_preset(env)
        if preset is None:
            try:
                preset = load_preset("envs", env)
            except GenrlError:
                try:
                    make_env(env).close()
                except GenrlError as exc:
                    raise GenrlError(
                        f"{exc}; expected a Gymnasium id or an env preset, one of {available('envs')}"
                    ) from None
                preset = {"id": env}
    return TrainConfig.from_preset(preset, **overrides)
