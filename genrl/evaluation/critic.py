"""A realism critic: a discriminator trained to tell real clips from dreamed ones.

As a GAN's discriminator judges a generator, its accuracy on clips it never trained on says how
far the dream is from reality: 50% means it cannot tell them apart, 100% that every dream gives
itself away. Each dreamed clip is paired with the real clip it was dreamed from (same first
observation, same actions), and a pair is always on the same side of the train/test split.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from genrl.errors import GenrlError
from genrl.model.networks import mlp
from genrl.util.seeding import fresh_seed, seeded


@dataclass
class CriticResult:
    accuracy: float  # held-out accuracy of real-vs-dreamed; 0.5 is indistinguishable
    train_pairs: int
    test_pairs: int


def realism_critic(
    real: np.ndarray,
    dreamed: np.ndarray,
    groups: np.ndarray,
    seed: int | None = None,
    steps: int = 400,
    hidden: int = 64,
) -> CriticResult:
    """Train a discriminator on half of the groups and report its accuracy on the other half.

    :param real: (N, F) features of real clips
    :param dreamed: (N, F) features of the dreamed clip paired with each real one
    :param groups: (N,) the episode each pair comes from; episodes, not clips, are split, so the
        critic is tested on episodes it has not seen
    :param seed: seeds the split and the discriminator; None draws one
    """
    real, dreamed = np.asarray(real, dtype=np.float32), np.asarray(dreamed, dtype=np.float32)
    groups = np.asarray(groups)
    if real.shape != dreamed.shape or real.ndim != 2 or groups.shape != real.shape[:1]:
        raise GenrlError(
            f"expected real and dreamed features of one shape (N, F) and N groups, got {real.shape}, "
            f"{dreamed.shape} and {groups.shape}"
        )
    seed = fresh_seed(seed)
    rng = np.random.default_rng(seed)
    unique = rng.permutation(np.unique(groups))
    test_groups = unique[: len(unique) // 2]
    test = np.isin(groups, test_groups)
    if test.all() or not test.any():
        raise GenrlError(
            f"expected clips from at least 2 episodes to train and test a critic, got {len(unique)}"
        )
    x_train = np.concatenate([real[~test], dreamed[~test]])
    y_train = np.concatenate([np.ones((~test).sum()), np.zeros((~test).sum())]).astype(np.float32)
    mean, std = x_train.mean(0), x_train.std(0) + 1e-6
    x_train = torch.as_tensor((x_train - mean) / std)
    y_train = torch.as_tensor(y_train)
    gen = torch.Generator().manual_seed(seed)
    with seeded(seed):
        net = mlp(real.shape[1], hidden, 1)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3, weight_decay=1e-4)
    for _ in range(steps):
        idx = torch.randint(len(x_train), (min(256, len(x_train)),), generator=gen)
        loss = F.binary_cross_entropy_with_logits(net(x_train[idx]).squeeze(-1), y_train[idx])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    net.eval()
    with torch.no_grad():
        real_logit = _logits(net, real[test], mean, std)
        dream_logit = _logits(net, dreamed[test], mean, std)
    correct = (real_logit > 0).sum() + (dream_logit <= 0).sum()
    return CriticResult(float(correct) / (2 * test.sum()), int((~test).sum()), int(test.sum()))


def _logits(net: nn.Module, x: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    return net(torch.as_tensor((x - mean) / std)).squeeze(-1).numpy()
