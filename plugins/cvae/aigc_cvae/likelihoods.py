"""Decoder likelihoods ``log p(x | mu, log_scale)`` summed over each row's dimensions.

- ``gaussian``: a density, for continuous data.
- ``discretized_logistic`` (PixelCNN++, Salimans et al. 2017) and ``discretized_gaussian``: the
  probability of the bin ``[x - h, x + h]`` of each of ``L`` levels evenly spaced on [-1, 1]
  (``h = 1 / (L - 1)``), the first and last bins open-ended, so the probabilities of the ``L``
  levels sum to 1: a true discrete likelihood for images with few levels (digits: 17).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

LOG_SCALE_MIN = -7.0  # as PixelCNN++: keeps the bins' probabilities finite in float32
LOG_SCALE_MAX = 7.0   # a bin's mass stays >= ~1e-4 of its tail's: no cancellation in float32


def gaussian(x: torch.Tensor, mu: torch.Tensor, log_scale: torch.Tensor) -> torch.Tensor:
    """log N(x | mu, exp(log_scale)^2), summed over all but the first dimension."""
    z = (x - mu) * torch.exp(-log_scale)
    lp = -0.5 * z * z - log_scale - 0.5 * math.log(2 * math.pi)
    return lp.flatten(1).sum(1)


def _log_sub_exp(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """log(exp(a) - exp(b)) for a >= b, stable (finite, with finite gradients, also where the
    caller's ``torch.where`` discards it)."""
    return a + torch.log1p(-torch.exp(torch.clamp(b - a, max=-1e-6)))


def discretized_logistic(x: torch.Tensor, mu: torch.Tensor, log_scale: torch.Tensor, levels: int) -> torch.Tensor:
    """log P(x) of a logistic(mu, s) integrated over x's bin, summed over all but the first dim:
    ``sigmoid((x + h - mu) / s) - sigmoid((x - h - mu) / s)``, the edge bins open-ended."""
    return _binned(x, mu, log_scale, levels, F.logsigmoid)


def discretized_gaussian(x: torch.Tensor, mu: torch.Tensor, log_scale: torch.Tensor, levels: int) -> torch.Tensor:
    """log P(x) of N(mu, s^2) integrated over x's bin (edge bins open-ended), summed per row."""
    return _binned(x, mu, log_scale, levels, torch.special.log_ndtr)


def _binned(x, mu, log_scale, levels: int, log_cdf) -> torch.Tensor:
    """log(CDF(x + h) - CDF(x - h)) for a symmetric standardised ``log_cdf``, computed from the
    tail the bin lies in (CDF differences below the mean, survival differences above it), so
    that no probability is lost to cancellation; edge bins take the whole tail."""
    h = 1.0 / (levels - 1)
    log_scale = log_scale.clamp(LOG_SCALE_MIN, LOG_SCALE_MAX)
    inv_s = torch.exp(-log_scale)
    plus, minus = inv_s * (x - mu + h), inv_s * (x - mu - h)
    below = _log_sub_exp(log_cdf(plus), log_cdf(minus))      # the bin below the mean
    above = _log_sub_exp(log_cdf(-minus), log_cdf(-plus))    # the bin above it
    log_mid = torch.where(x < mu, below, above)
    lp = torch.where(x < -1 + h / 2, log_cdf(plus), torch.where(x > 1 - h / 2, log_cdf(-minus), log_mid))
    return lp.flatten(1).sum(1)


def log_likelihood(kind: str, x: torch.Tensor, mu: torch.Tensor, log_scale: torch.Tensor, levels: int) -> torch.Tensor:
    if kind == "gaussian":
        return gaussian(x, mu, log_scale)
    if kind == "discretized_logistic":
        return discretized_logistic(x, mu, log_scale, levels)
    if kind == "discretized_gaussian":
        return discretized_gaussian(x, mu, log_scale, levels)
    raise ValueError(f"unknown decoder {kind!r}")


def sample(kind: str, mu: torch.Tensor, log_scale: torch.Tensor, levels: int) -> torch.Tensor:
    """A draw from the decoder distribution (discrete kinds: snapped to the nearest level)."""
    if kind == "discretized_logistic":
        u = torch.rand_like(mu).clamp(1e-5, 1 - 1e-5)
        x = mu + torch.exp(log_scale.clamp(min=LOG_SCALE_MIN)) * (torch.log(u) - torch.log1p(-u))
    else:
        x = mu + torch.exp(log_scale) * torch.randn_like(mu)
    return snap(x, levels) if kind != "gaussian" else x


def snap(x: torch.Tensor, levels: int) -> torch.Tensor:
    """``x`` clamped to [-1, 1] and rounded to the nearest of ``levels`` levels."""
    step = 2.0 / (levels - 1)
    return (torch.round((x.clamp(-1, 1) + 1) / step) * step - 1).clamp(-1, 1)


def detect_levels(x: torch.Tensor, max_levels: int = 256) -> int:
    """The number of levels ``L`` when every value of ``x`` is one of ``-1 + 2 k / (L - 1)``
    (e.g. 17 for digits, 256 for 8-bit images), else 0 (continuous)."""
    values = torch.unique(x.detach().flatten().float())
    if len(values) > max_levels or len(values) < 2 or values[0] < -1 - 1e-6 or values[-1] > 1 + 1e-6:
        return 0
    for levels in range(len(values), max_levels + 1):
        k = (values + 1) * (levels - 1) / 2
        if torch.allclose(k, torch.round(k), atol=1e-4):
            return levels
    return 0
