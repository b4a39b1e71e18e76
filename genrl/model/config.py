"""The world model's settings, in two groups: what the model *is* (its sizes) and how it is fitted.

A flat mapping of both (genrl 0.1.0's ``WorldModelConfig``, and the ``world_model`` section of
its presets and run configs) splits into the two by name: :func:`split_settings`.
"""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass
from typing import Any

from genrl.errors import GenrlError
from genrl.util.checks import check_choice, check_float, check_int, describe, set_field

ENCODERS = ("auto", "vae", "identity")
LIKELIHOODS = ("auto", "gaussian", "bernoulli")
LR_SCHEDULES = ("constant", "cosine")


@dataclass(frozen=True)
class WorldModelConfig:
    """Sizes of the networks. ``latent_dim=None`` picks twice the observation size (8 to 64).

    ``encoder="vae"``: a VAE encodes observations into a latent. ``"identity"`` (vector
    observations): the latent is the standardised observation itself, exact, and the dynamics gain
    a linear core set by least squares on the first fit, the networks learning what it misses.
    Precise dynamics matter more than compression for low-dimensional state, as in PETS and MBPO.
    ``"auto"`` (the default) picks ``identity`` for vector observations (unless ``latent_dim``
    asks for another size) and the VAE otherwise. ``num_mixtures=None``: 1 Gaussian for the
    identity encoder (precise state), 5 components for a VAE's latent. ``rnn_dim=None``: 0 for the
    identity encoder (Markov dynamics: a vector state is all there is to know, and without a GRU a
    fit step is about 3x faster), 128 for a VAE's latent, which may summarise history.

    ``transition_heads``: the reward and termination heads see the whole transition, the latent
    before the step as well as after it. Markov dynamics have no recurrent state to carry the
    latent before, and a reward that is a difference of two states (LunarLander's shaping) or a
    function of the state before the step (Pendulum's) cannot be read from the state after alone.
    Model files of format 4 and earlier saw only the state after, and load with ``False``.

    ``terminal_reward``: the reward of a step that ends the episode has its own head, and the
    reward head fits the other steps. Endings often pay what no other step does (LunarLander's
    +100 landing or -100 crash beside shaping of a few units a step); one head fitting both
    explained the shaping worse than its mean did (held-out error 16.4 against a variance of
    7.5, benchmarks/RESULTS.md). A step's reward is the terminal head's where the termination
    logit is > 0. Model files of format 5 and earlier load with ``False``.

    ``ensemble_size``: K dynamics members (each its own GRU, mixture and heads, over one shared
    encoder), as in PETS and MBPO. Each fit trains every member on its own bootstrap of each
    batch; a dream follows one member, and the spread of the members' predictions is the
    model's disagreement: epistemic uncertainty, large where the data is thin.

    Image observations (a Box of shape (H, W, C)) get a convolutional VAE (``encoder`` "auto" or
    "vae"). ``image_size``: the square resolution it works at (None: 64 for natural images
    larger than that, a small grid such as MinAtar's keeps its own size); frames are resized in
    and out, so decoded frames have the env's own shape. ``conv_channels``: the width of its
    first layer, doubled at each halving. ``likelihood``: "bernoulli" for binary grids (a bool
    observation space), "gaussian" otherwise ("auto" picks). ``latent_dim=None`` is 32 for images.
    Model files of format 6 and earlier hold vector models only, and load with the defaults.
    """

    encoder: str = "auto"
    latent_dim: int | None = None
    hidden_dim: int = 128
    rnn_dim: int | None = None
    num_mixtures: int | None = None
    ensemble_size: int = 1
    transition_heads: bool = True
    terminal_reward: bool = True
    image_size: int | None = None
    conv_channels: int = 16
    likelihood: str = "auto"

    def __post_init__(self) -> None:
        check_choice(self.encoder, "world model setting encoder", ENCODERS)
        check_choice(self.likelihood, "world model setting likelihood", LIKELIHOODS)
        for name in ("transition_heads", "terminal_reward"):
            if not isinstance(getattr(self, name), bool):
                raise GenrlError(
                    f"world model setting {name}: expected true or false, got {describe(getattr(self, name))}"
                )
        for name in ("latent_dim", "num_mixtures", "rnn_dim", "image_size"):
            if getattr(self, name) is not None:
                # rnn_dim 0: Markov dynamics, no recurrent state; a picture needs a few pixels.
                low = {"rnn_dim": 0, "image_size": 4}.get(name, 1)
                set_field(
                    self, name, check_int(getattr(self, name), f"world model setting {name}", low, 2**63 - 1)
                )
        for name in ("hidden_dim", "ensemble_size", "conv_channels"):
            set_field(self, name, check_int(getattr(self, name), f"world model setting {name}", 1, 2**63 - 1))


@dataclass(frozen=True)
class FitConfig:
    """How a world model is fitted: the optimiser, the batches and the weight of each loss.

    ``steps`` gradient steps on a first fit, ``refit_steps`` on each later one (the loop's refits).
    ``lr_schedule="cosine"``: each fit anneals the learning rate to 1% of ``learning_rate``, for
    precise dynamics (then fit(n); fit(m) no longer equals fit(n + m)).

    ``adversarial_weight`` (image models only; 0, the default, is off): a VAE-GAN. During the VAE
    stage a small convolutional discriminator learns to tell real frames from reconstructions,
    and the decoder's loss adds this weight times its hinge generator loss, for sharper frames
    (:mod:`genrl.model.adversarial`). The discriminator lives in the trainer, not in the model
    file: a resumed run starts a new one.
    """

    # The defaults are the precise settings CartPole and Pendulum were tuned with (genrl eval's
    # report): beta-NLL, a heavy one-step error and a cosine learning rate keep predictions sharp,
    # and terminal steps, rare (about 1 in 25), weigh 10x so a missed one does not flatter agents.
    steps: int = 1500
    refit_steps: int = 750
    learning_rate: float = 1e-3
    lr_schedule: str = "cosine"
    batch_size: int = 32
    seq_len: int = 32
    grad_clip: float = 10.0
    val_every: int = 10  # every val_every-th episode is held out from training
    kl_weight: float = 1e-3
    prediction_weight: float = 10.0  # the decoded one-step prediction error
    open_loop_steps: int = 16  # steps of the open-loop prediction loss (0: off)
    termination_weight: float = 10.0  # weight of terminal steps in the termination loss (they are rare)
    nll_beta: float = 1.0  # beta-NLL weighting of the dynamics' likelihood (0: plain NLL)
    adversarial_weight: float = 0.0  # an image VAE's adversarial loss on its decoder (0: off)

    def __post_init__(self) -> None:
        check_choice(self.lr_schedule, "fit setting lr_schedule", LR_SCHEDULES)
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "lr_schedule":
                continue
            if f.type == "float":
                set_field(self, f.name, check_float(value, f"fit setting {f.name}", 0.0))
            else:
                low = 0 if f.name in ("steps", "refit_steps", "open_loop_steps") else 1
                set_field(self, f.name, check_int(value, f"fit setting {f.name}", low, 2**63 - 1))


# What genrl up to 0.3.0.dev (model format 2, run config 2) used for a setting a file left out.
BEFORE_V3_MODEL = {"encoder": "vae", "num_mixtures": 5}
BEFORE_V3_FIT = {
    "steps": 1000,
    "refit_steps": 500,
    "lr_schedule": "constant",
    "prediction_weight": 1.0,
    "termination_weight": 1.0,
    "nll_beta": 0.0,
}

# What model format 4 and run config 4 (and every version before them) used.
BEFORE_V5_MODEL = {"transition_heads": False}
# What model format 5 and run config 5 (and every version before them) used.
BEFORE_V6_MODEL = {"terminal_reward": False}

# genrl 0.1.0 named the first fit's steps fit_steps, beside the model's sizes.
_RENAMED = {"fit_steps": "steps"}


def split_settings(settings: Any, what: str = "world model settings") -> tuple[dict, dict, int | None]:
    """A flat mapping of model and fit settings (and ``seed``) -> (model, fit, seed), by name."""
    if not isinstance(settings, dict):
        raise GenrlError(f"expected {what} as a mapping, got {describe(settings)}")
    model_names = {f.name for f in dataclasses.fields(WorldModelConfig)}
    fit_names = {f.name for f in dataclasses.fields(FitConfig)}
    model, fit = {}, {}
    for key, value in settings.items():
        name = _RENAMED.get(key, key)
        if name in model_names:
            model[name] = value
        elif name in fit_names:
            fit[name] = value
        elif key != "seed":
            known = sorted(model_names | fit_names | {"seed"})
            # The closest names, where there are any: the whole list no longer fits on a line.
            close = difflib.get_close_matches(str(key), known, n=3)
            hint = f"{close} (closest; all are WorldModelConfig's and FitConfig's fields)" if close else known
            raise GenrlError(f"unknown {what} {[key]}; expected some of {hint}")
    seed = settings.get("seed")
    return model, fit, None if seed is None else check_int(seed, "world model seed", 0)
