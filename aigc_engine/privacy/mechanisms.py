"""DP primitives as plain functions, each a Gaussian mechanism whose L2 sensitivity (under
adding or removing one row) its docstring states: the caller composes ``noise_multiplier`` (noise
std over that sensitivity) into its :class:`~aigc_engine.privacy.Accountant`. Each draws its noise
from ``generator`` (a ``torch.Generator``; None: torch's global stream)."""
from __future__ import annotations

from collections import Counter
from statistics import NormalDist
from typing import Any, Iterable

import torch

from ..errors import InputError


def _noise(shape, std: float, generator, dtype=torch.float64) -> torch.Tensor:
    return torch.randn(shape, generator=generator, dtype=dtype) * std


def clip_rows(x: torch.Tensor, bound: float) -> torch.Tensor:
    """Rows of ``x [n, d]`` scaled down to an L2 norm of at most ``bound`` (shorter rows kept)."""
    norms = x.norm(dim=1, keepdim=True)
    return x * torch.clamp(bound / norms.clamp_min(1e-300), max=1.0)


def gaussian_sum(x: torch.Tensor, bound: float, noise_multiplier: float, generator=None) -> torch.Tensor:
    """The sum of the rows of ``x [n, d]``, each clipped to L2 norm ``bound``, plus Gaussian noise
    of std ``noise_multiplier * bound`` per coordinate. Sensitivity: ``bound`` (one row added or
    removed moves the sum by its clipped self). A count is the sum of a column of ones (bound 1)."""
    if not bound > 0 or not noise_multiplier >= 0:
        raise InputError(f"gaussian_sum needs bound > 0 and noise_multiplier >= 0, got {bound}, {noise_multiplier}")
    total = clip_rows(x.double().reshape(len(x), -1), bound).sum(0)
    return total + _noise(total.shape, noise_multiplier * bound, generator)


def project_counts(counts: torch.Tensor, total: float) -> torch.Tensor:
    """The counts nearest ``counts`` (Euclidean) that are non-negative and sum to ``total``: each
    count less one common ``tau``, floored at 0. Post-processing of a noisy histogram: bins that
    hold only noise fall to 0 together, without a per-bin threshold that cuts the real ones."""
    total = max(float(total), 1e-12)
    ordered = torch.sort(counts.double(), descending=True).values
    excess = ordered.cumsum(0) - total
    kept = ordered - excess / torch.arange(1, len(counts) + 1, dtype=torch.float64) > 0
    last = int(torch.nonzero(kept).max())
    return (counts.double() - excess[last] / (last + 1)).clamp_min(0)


def histogram_quantiles(values: torch.Tensor, quantiles: Iterable[float], lower: float, upper: float,
                        noise_multiplier: float, bins: int = 64, generator=None, total: float | None = None) -> torch.Tensor:
    """Quantiles of ``values`` read off a noisy histogram on the public range ``[lower, upper]``
    (values clipped into it, ``bins`` equal bins, noise std ``noise_multiplier`` per bin, then
    :func:`project_counts` onto ``total`` rows (None: the noisy counts' own sum), linear within a
    bin). Sensitivity: 1 (a row moves one bin's count by 1); any number of quantiles of one
    histogram is post-processing. The range must be public: one read from the data (its min and
    max) would release the extreme rows."""
    if not upper > lower or bins < 1:
        raise InputError(f"histogram_quantiles needs upper > lower and bins >= 1, got [{lower}, {upper}], {bins}")
    q = torch.as_tensor(list(quantiles), dtype=torch.float64)
    if len(q) and not bool(((q >= 0) & (q <= 1)).all()):
        raise InputError(f"quantiles must be in [0, 1], got {q.tolist()}")
    v = values.double().reshape(-1).clamp(lower, upper)
    counts = torch.histc(v, bins=bins, min=lower, max=upper) + _noise(bins, noise_multiplier, generator)
    if total is None and float(counts.sum()) <= 0:  # all noise below zero: nothing to read, the range's middle
        return torch.full_like(q, (lower + upper) / 2)
    counts = project_counts(counts, float(counts.sum()) if total is None else total)
    cdf = torch.cat([torch.zeros(1, dtype=torch.float64), counts.cumsum(0) / counts.sum()])
    edges = torch.linspace(lower, upper, bins + 1, dtype=torch.float64)
    at = torch.searchsorted(cdf, q, right=False).clamp(1, bins)
    lo, hi = cdf[at - 1], cdf[at]
    frac = torch.where(hi > lo, (q - lo) / (hi - lo).clamp_min(1e-300), torch.zeros_like(q))
    return edges[at - 1] + frac.clamp(0, 1) * (edges[at] - edges[at - 1])


def release_threshold(noise_multiplier: float, delta: float, min_count: float = 5.0) -> float:
    """The noisy count a category needs to be released by :func:`thresholded_histogram`:
    ``1 + noise_multiplier * z_(1 - delta)`` (a category only one row holds passes it with
    probability ``delta``: the delta the caller adds to its accountant), and at least
    ``min_count``, so that a category that a handful of rows hold is not released."""
    if not 0 < delta < 1 or not noise_multiplier > 0:
        raise InputError(f"release_threshold needs delta in (0, 1) and noise_multiplier > 0, got {delta}, "
                         f"{noise_multiplier}")
    return max(float(min_count), 1.0 + noise_multiplier * NormalDist().inv_cdf(1.0 - delta))


def thresholded_histogram(values: Iterable[Any], noise_multiplier: float, threshold: float,
                          generator=None) -> dict[Any, float]:
    """The categories of ``values`` (one per row) whose count plus Gaussian noise of std
    ``noise_multiplier`` exceeds ``threshold``, with those noisy counts, in sorted order (not the
    data's). Sensitivity: 1 for the counts of the categories both neighbours hold; a category only
    the added row holds is released with probability at most the delta of
    :func:`release_threshold`, which the caller adds (``Accountant.add_delta``). Missing values
    (None) count as a category of their own."""
    counts = Counter(values)
    keys = sorted(counts, key=lambda k: (k is None, str(k)))
    noisy = torch.tensor([counts[k] for k in keys], dtype=torch.float64)
    noisy = noisy + _noise(len(keys), noise_multiplier, generator)
    return {k: float(c) for k, c in zip(keys, noisy.tolist()) if c > threshold}


RANGE_EXTEND = 0.5  # magnitude_range: a neighbour bin joins the range past half a noise std
RANGE_WIDEN = 1  # magnitude_range: bins added each way past those
MAGNITUDES = (-20, 63)  # the public bins of magnitude_range: 0 and +-[2**k, 2**(k+1)) for k in this range


def magnitude_range(values: torch.Tensor, noise_multiplier: float, generator=None) -> tuple[float, float]:
    """A range of ``values`` read off a noisy histogram on public bins (Google's approximate
    bounds): a bin of the values under ``2**-20`` in magnitude, and ``[2**k, 2**(k+1))`` and its
    negative for ``k`` in :data:`MAGNITUDES` (magnitudes past them in the last bins), noise std
    ``noise_multiplier`` per bin. The range runs from the lower edge of the lowest bin whose noisy
    count passes ``noise_multiplier * Phi^-1(1 - 0.001 / bins)`` (a bin no row holds passes it with
    probability 0.1% over all the bins) to the upper edge of the highest, the centre of the three
    neighbouring bins of the largest noisy count always among them; widened over the neighbours
    whose noisy counts pass ``RANGE_EXTEND * noise_multiplier``, then by ``RANGE_WIDEN`` bins each
    way (a range too wide costs the quantiles' histogram some resolution; one too narrow clips a
    column's tails). Sensitivity: 1 (a row is in one bin)."""
    lo_k, hi_k = MAGNITUDES
    ks = hi_k - lo_k + 1
    v = values.double().reshape(-1)
    k = torch.floor(torch.log2(v.abs().clamp_min(2.0 ** lo_k))).clamp(lo_k, hi_k).long() - lo_k
    index = torch.where(v.abs() < 2.0 ** lo_k, torch.full_like(k, ks), torch.where(v > 0, ks + 1 + k, ks - 1 - k))
    bins = 2 * ks + 1
    counts = torch.bincount(index, minlength=bins).double() + _noise(bins, noise_multiplier, generator)
    passing = torch.nonzero(counts > noise_multiplier * NormalDist().inv_cdf(1 - 0.001 / bins)).reshape(-1)
    # the centre of the fullest three neighbouring bins: under heavy noise the data's bins may not
    # pass, and the fullest single bin may be one of noise alone
    fullest = int(torch.nn.functional.conv1d(counts.view(1, 1, -1), torch.ones(1, 1, 3, dtype=counts.dtype),
                                             padding=1).argmax())
    first, last = (min(int(passing[0]), fullest), max(int(passing[-1]), fullest)) if len(passing) else (fullest,) * 2
    # the tails sit in the bins next to the ones that passed
    while first > 0 and counts[first - 1] > RANGE_EXTEND * noise_multiplier:
        first -= 1
    while last < bins - 1 and counts[last + 1] > RANGE_EXTEND * noise_multiplier:
        last += 1
    first, last = max(first - RANGE_WIDEN, 0), min(last + RANGE_WIDEN, bins - 1)
    return _bin_edges(first, ks, lo_k)[0], _bin_edges(last, ks, lo_k)[1]


def _bin_edges(i: int, ks: int, lo_k: int) -> tuple[float, float]:
    if i == ks:
        return -(2.0 ** lo_k), 2.0 ** lo_k
    if i > ks:
        k = i - ks - 1 + lo_k
        return 2.0 ** k, 2.0 ** (k + 1)
    k = ks - 1 - i + lo_k
    return -(2.0 ** (k + 1)), -(2.0 ** k)
