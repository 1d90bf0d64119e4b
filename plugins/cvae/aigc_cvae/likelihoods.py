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

from aigc_engine.tables import BlockRole, observed_mask, table_outputs

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


# -- tables: a likelihood per block of the encoding ------------------------------------------------
TABLE_LOG_SCALE_MIN = -4.0  # std >= 0.018 of a standardised column: integer-valued and repeated
# values cannot drive the Gaussian's density to infinity (the NaN of an unbounded log-scale)


def _observed(x: torch.Tensor, blocks: list) -> torch.Tensor:
    """The core's ``observed_mask`` over the columns without a mode block: a column encoded with
    modes (``continuous=modes``) keeps its placeholder value in the likelihood, as this model
    has always done (masking it too would change its numbers: a decision of its own)."""
    with_modes = {b.column for b in blocks if b.role is BlockRole.ONE_HOT}
    return observed_mask(x, [b for b in blocks if b.column not in with_modes])


def table(x: torch.Tensor, mu: torch.Tensor, log_scale: torch.Tensor, blocks: list) -> torch.Tensor:
    """log p(x) per row of an encoded table, per typed block (``aigc_engine.tables.Block``): a
    Gaussian density on each observed value (log-scale at least ``TABLE_LOG_SCALE_MIN``; a value
    whose column's missing indicator is 1 is the encoding's placeholder, not data), a categorical
    on each one-hot block (``mu``'s slots its logits), a Bernoulli on each missing indicator
    (``mu`` its logit). A mixed density: discrete probabilities times a continuous density."""
    total = torch.zeros(len(x), dtype=mu.dtype, device=mu.device)
    values = [b.start for b in blocks if b.role is BlockRole.VALUE]
    if values:
        idx = torch.tensor(values, device=x.device)
        lp = -0.5 * ((x[:, idx] - mu[:, idx]) * torch.exp(-log_scale[:, idx].clamp(min=TABLE_LOG_SCALE_MIN))) ** 2 \
            - log_scale[:, idx].clamp(min=TABLE_LOG_SCALE_MIN) - 0.5 * math.log(2 * math.pi)
        total = total + (lp * _observed(x, blocks)[:, idx]).sum(1)
    for block in blocks:
        if block.role is BlockRole.ONE_HOT:
            total = total + (x[:, block.slice] * F.log_softmax(mu[:, block.slice], 1)).sum(1)
        elif block.role is BlockRole.MISSING:
            total = total - F.binary_cross_entropy_with_logits(mu[:, block.start], x[:, block.start], reduction="none")
    return total


def table_sample(mu: torch.Tensor, log_scale: torch.Tensor, blocks: list, mean: bool = False) -> torch.Tensor:
    """A draw from :func:`table`'s distribution in the encoded space (the core's table head):
    values ``mu + s * eps``, exact one-hots drawn from each categorical, 0/1 indicators drawn from
    each Bernoulli; ``mean``: the values' means, each categorical's likeliest slot, indicators
    where their probability > 1/2."""
    scale = torch.exp(log_scale.clamp(min=TABLE_LOG_SCALE_MIN))
    return table_outputs(mu, blocks, "mean" if mean else "sample", missing="bernoulli", scale=scale)
