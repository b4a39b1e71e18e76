"""The one-component fast paths of the mixture compute what the general ones do."""

import torch

from genrl.model.networks import mixture_mean, mixture_nll, mixture_sample, mixture_std


def test_one_component_fast_paths_equal_the_general_mixture():
    torch.manual_seed(0)
    logits, mean, log_std = torch.randn(9, 1), torch.randn(9, 1, 3), torch.randn(9, 1, 3) * 0.3
    target = torch.randn(9, 3)
    torch.testing.assert_close(mixture_mean(logits, mean), mean[:, 0], rtol=0, atol=0)
    torch.testing.assert_close(
        mixture_nll(logits, mean, log_std, target),
        mixture_nll(torch.cat([logits, logits], -1), mean.repeat(1, 2, 1), log_std.repeat(1, 2, 1), target),
        rtol=1e-6,
        atol=1e-6,
    )
    w = torch.ones(9, 1, 1)
    second = (w * (log_std.exp().pow(2) + mean.pow(2))).sum(-2)
    expected = (second - mean[:, 0].pow(2)).clamp_min(0).sqrt().mean(-1)
    torch.testing.assert_close(mixture_std(logits, mean, log_std), expected, rtol=0, atol=0)


def test_one_component_sample_is_the_component_plus_scaled_noise():
    torch.manual_seed(0)
    logits, mean, log_std = torch.randn(17, 1), torch.randn(17, 1, 4), torch.randn(17, 1, 4) * 0.3
    fast = mixture_sample(logits, mean, log_std, 0.7, torch.Generator().manual_seed(3))
    noise = torch.randn(17, 4, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(fast, mean[:, 0] + log_std[:, 0].exp() * 0.7**0.5 * noise, rtol=0, atol=0)
