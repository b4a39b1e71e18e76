"""The adversarial loss on an image model's decoder (FitConfig.adversarial_weight, a VAE-GAN)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from gymnasium import spaces

from genrl import RolloutDataset, WorldModel, collect
from genrl.errors import GenrlError
from genrl.model.adversarial import Adversary, discriminator_loss
from genrl.model.config import FitConfig

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
sys.path.insert(0, str(EXAMPLES))
from pixel_corridor import PixelCorridor  # noqa: E402

TINY = {"latent_dim": 8, "conv_channels": 8, "rnn_dim": 16, "hidden_dim": 32, "batch_size": 16, "seq_len": 8}


class Scalars:
    """A SummaryWriter's add_scalar, recorded."""

    def __init__(self):
        self.values: dict[str, list[float]] = {}

    def add_scalar(self, tag: str, value: float, step: int) -> None:
        self.values.setdefault(tag, []).append(float(value))


@pytest.fixture(scope="module")
def corridor() -> RolloutDataset:
    return collect(PixelCorridor(), 400, seed=0, progress=False)


def fitted(data: RolloutDataset, steps: int, writer=None, **settings) -> WorldModel:
    model = WorldModel(data.observation_space, data.action_space, seed=0, **TINY, **settings)
    model.fit(data, steps=steps, writer=writer, progress=False)
    return model


def test_it_is_off_by_default_and_changes_nothing_when_off(corridor):
    assert FitConfig().adversarial_weight == 0.0
    default = fitted(corridor, 20)
    explicit = fitted(corridor, 20, adversarial_weight=0.0)
    assert default.trainer._adversary is None and explicit.trainer._adversary is None
    a, b = default.state_dict(), explicit.state_dict()
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)


def test_a_fit_with_it_trains_a_discriminator_beside_the_decoder(corridor, tmp_path):
    writer = Scalars()
    model = fitted(corridor, 150, writer, adversarial_weight=0.1)
    adversary = model.trainer._adversary
    assert isinstance(adversary, Adversary)
    assert len(writer.values["world_model/train/adversarial_g"]) == 3  # every 50 steps
    d_losses = writer.values["world_model/train/adversarial_d"]
    assert len(d_losses) == 3 and all(np.isfinite(d_losses))
    # Untrained, the hinge loss is about 2 (logits near 0); trained, it tells the sides apart.
    assert d_losses[-1] < 1.9
    frames = torch.as_tensor(corridor.sample_states(256, np.random.default_rng(1)))
    with torch.no_grad():
        reconstructions = model.decode(model.encode(frames))
    real = adversary.logits(frames.float() / 255)
    fake = adversary.logits(reconstructions / 255)
    fresh = Adversary(model)  # a new discriminator's loss, for scale
    trained_loss = float(discriminator_loss(real, fake))
    assert trained_loss < float(
        discriminator_loss(fresh.logits(frames.float() / 255), fresh.logits(reconstructions / 255))
    )
    # It ranks real frames above reconstructions far better than chance (AUC 0.5).
    assert float((real[:, None] > fake[None]).float().mean()) > 0.75
    # The discriminator is training-only: the model file holds what a model without it holds.
    plain = WorldModel(corridor.observation_space, corridor.action_space, seed=0, **TINY)
    assert model.state_dict().keys() == plain.state_dict().keys()
    model.save(tmp_path / "m")
    loaded = WorldModel.load(tmp_path / "m", device="cpu")
    assert loaded.fit_config.adversarial_weight == 0.1 and loaded.trainer._adversary is None


def test_a_bernoulli_decoder_is_judged_by_its_probabilities():
    model = WorldModel(spaces.Box(0, 1, (8, 8, 2), bool), spaces.Discrete(3), seed=0, adversarial_weight=1.0)
    adversary = Adversary(model)
    frames = torch.as_tensor(np.random.default_rng(0).random((6, 8, 8, 2)) < 0.3)
    losses = adversary.vae_losses(frames)
    assert set(losses) == {"reconstruction", "kl", "adversarial_g"}
    real, fake = adversary._batch
    assert fake.min() >= 0 and fake.max() <= 1 and not fake.requires_grad
    losses["adversarial_g"].backward()
    assert all(p.grad is None for p in adversary.discriminator.parameters())  # it moves the decoder alone
    assert any(p.grad is not None for p in model.decoder.parameters())
    assert np.isfinite(adversary.step())


def test_a_vector_model_refuses_it():
    with pytest.raises(
        GenrlError,
        match=r"adversarial_weight: expected image observations \(H, W, C\), got observations of shape \(4,\)"
        r"$",
    ):
        WorldModel(spaces.Box(-1, 1, (4,), np.float32), spaces.Discrete(2), adversarial_weight=0.1)
    with pytest.raises(GenrlError, match="fit setting adversarial_weight"):
        FitConfig(adversarial_weight=-1.0)
