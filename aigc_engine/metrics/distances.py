"""Distances between two sets of feature vectors: the Frechet distance (the formula behind FID,
Heusel et al. 2017) and the kernel distance behind KID (Binkowski et al. 2018).

Both work in any feature space; :class:`~aigc_engine.metrics.ImageJudge` gives one for images
without downloading an Inception network. torchmetrics has the same two formulas behind its
``FrechetInceptionDistance`` / ``KernelInceptionDistance`` (which accept a custom feature
module), but as stateful metric objects whose KID subsets come from torch's global random
generator and whose import costs seconds; these few lines are cross-checked against it and
against SciPy in the tests instead.
"""
from __future__ import annotations

import torch

from ..errors import InputError
from ._neighbours import as_matrix, check_same_width


def mean_and_covariance(x) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and unbiased covariance (``1 / (N - 1)``, as ``numpy.cov``) of the rows of ``x``, in
    float64."""
    x = as_matrix(x, "x")
    if len(x) < 2:
        raise InputError(f"a covariance needs at least 2 rows, got {len(x)}")
    mu = x.mean(0)
    centred = x - mu
    return mu, centred.T @ centred / (len(x) - 1)


def _sqrt_psd(m: torch.Tensor) -> torch.Tensor:
    """Principal square root of a symmetric positive semi-definite matrix by its eigen-
    decomposition; eigenvalues below 0 (rounding) are taken as 0."""
    w, v = torch.linalg.eigh(m)
    return (v * w.clamp(min=0).sqrt()) @ v.T


def trace_sqrt_product(sigma1: torch.Tensor, sigma2: torch.Tensor) -> float:
    """``Tr((S1 S2)^(1/2))`` for symmetric PSD ``S1``, ``S2``.

    ``S1 S2`` is similar to the symmetric PSD ``S1^(1/2) S2 S1^(1/2)``, so the trace is the sum
    of the square roots of that matrix's eigenvalues: two symmetric eigendecompositions in
    float64, which stay real and stable where a general ``sqrtm`` of ``S1 S2`` can return
    complex parts for singular covariances.
    """
    s1 = sigma1.to(torch.float64)
    s2 = sigma2.to(torch.float64)
    root = _sqrt_psd(s1)
    m = root @ s2 @ root
    m = (m + m.T) / 2
    return float(torch.linalg.eigvalsh(m).clamp(min=0).sqrt().sum())


def frechet_distance_from_moments(mu1, sigma1, mu2, sigma2) -> float:
    """Frechet (2-Wasserstein squared) distance between ``N(mu1, sigma1)`` and
    ``N(mu2, sigma2)``::

        FD = |mu1 - mu2|^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2))
    """
    mu1, mu2 = torch.as_tensor(mu1, dtype=torch.float64), torch.as_tensor(mu2, dtype=torch.float64)
    sigma1 = torch.as_tensor(sigma1, dtype=torch.float64)
    sigma2 = torch.as_tensor(sigma2, dtype=torch.float64).to(sigma1.device)
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != (len(mu1),) * 2:
        raise InputError(f"means {tuple(mu1.shape)}, {tuple(mu2.shape)} and covariances "
                         f"{tuple(sigma1.shape)}, {tuple(sigma2.shape)} do not match")
    mean_term = float((mu1 - mu2.to(mu1.device)).square().sum())
    return mean_term + float(sigma1.trace() + sigma2.trace()) - 2 * trace_sqrt_product(sigma1, sigma2)


def frechet_distance(a, b) -> float:
    """Frechet distance between Gaussians fitted to the rows of ``a`` and of ``b``
    (``N x D`` and ``M x D``; mean and unbiased covariance each)::

        FD = |mu_a - mu_b|^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2))

    FID is this in Inception-v3 pool features; in another feature space it is comparable only
    with itself. It is biased upwards at small sample sizes (more so in more dimensions):
    compare values computed with the same numbers of points.
    """
    a, b = as_matrix(a, "a"), as_matrix(b, "b")
    check_same_width(a, b, "a", "b")
    return frechet_distance_from_moments(*mean_and_covariance(a), *mean_and_covariance(b))


def kernel_distance(a, b, subsets: int = 100, subset_size: int = 1000, degree: int = 3,
                    gamma: float | None = None, coef: float = 1.0, seed: int = 0) -> tuple[float, float]:
    """Kernel distance (the KID of Binkowski et al. 2018): the unbiased estimate of the squared
    maximum mean discrepancy between the distributions of the rows of ``a`` and ``b`` under the
    polynomial kernel ``k(x, y) = (gamma x.y + coef)^degree``, ``gamma = 1 / D`` by default
    (so the cubic kernel ``(x.y / D + 1)^3``)::

        MMD^2_u = 1/(m(m-1)) sum_{i != j} k(a_i, a_j) + 1/(m(m-1)) sum_{i != j} k(b_i, b_j)
                  - 2/m^2 sum_{i, j} k(a_i, b_j)

    averaged over ``subsets`` pairs of subsets of ``m = min(subset_size, len(a), len(b))`` rows
    drawn without replacement from each set (the paper's and torchmetrics' defaults: 100 of
    1000). Being unbiased it is about 0, and can be slightly negative, for two samples of one
    distribution. Seeded: the same inputs and ``seed`` give the same value.

    Returns ``(mean, std)`` over the subsets (std with ``1 / subsets``, as torchmetrics).
    """
    a = as_matrix(a, "a")
    b = as_matrix(b, "b").to(a.device)
    check_same_width(a, b, "a", "b")
    m = min(subset_size, len(a), len(b))
    if m < 2:
        raise InputError(f"the kernel distance needs at least 2 rows in each set, got {len(a)} and {len(b)}")
    if subsets < 1:
        raise InputError(f"subsets must be >= 1, got {subsets}")
    gamma = 1.0 / a.shape[1] if gamma is None else gamma
    generator = torch.Generator().manual_seed(seed)
    if m == len(a) == len(b):
        subsets = 1  # every subset would be the whole of both sets
    picks_a = [torch.randperm(len(a), generator=generator)[:m] for _ in range(subsets)]
    picks_b = [torch.randperm(len(b), generator=generator)[:m] for _ in range(subsets)]

    def kernel(u, v):
        return (u @ v.T * gamma + coef) ** degree

    # Two ways to the same sums: kernel matrices per subset (3 m^2 D per subset), or each whole
    # kernel matrix once, in row blocks, summed against the subsets' 0/1 indicator columns
    # ((N^2 + M^2 + N M)(D + subsets) in all); take the cheaper.
    n, d = len(a) + len(b), a.shape[1]
    if n * n * (d + subsets) < 3 * subsets * m * m * d:
        ind_a, ind_b = _indicators(picks_a, len(a), a), _indicators(picks_b, len(b), a)
        sum_aa = _quadratic_sums(a, a, ind_a, ind_a, kernel)
        sum_bb = _quadratic_sums(b, b, ind_b, ind_b, kernel)
        sum_ab = _quadratic_sums(a, b, ind_a, ind_b, kernel)
        diag_aa = _kernel_diagonal(a, gamma, coef, degree) @ ind_a
        diag_bb = _kernel_diagonal(b, gamma, coef, degree) @ ind_b
    else:
        sums = []
        for ia, ib in zip(picks_a, picks_b):
            x, y = a[ia.to(a.device)], b[ib.to(a.device)]
            k_xx, k_yy, k_xy = kernel(x, x), kernel(y, y), kernel(x, y)
            sums.append(torch.stack([k_xx.sum(), k_yy.sum(), k_xy.sum(),
                                     k_xx.diagonal().sum(), k_yy.diagonal().sum()]))
        sum_aa, sum_bb, sum_ab, diag_aa, diag_bb = torch.stack(sums, 1)
    values = ((sum_aa - diag_aa + sum_bb - diag_bb) / (m * (m - 1)) - 2 * sum_ab / (m * m)).cpu()
    return float(values.mean()), float(values.std(unbiased=False)) if subsets > 1 else 0.0


def _kernel_diagonal(x: torch.Tensor, gamma: float, coef: float, degree: int) -> torch.Tensor:
    return (x.square().sum(1) * gamma + coef) ** degree


def _indicators(picks: list[torch.Tensor], n: int, like: torch.Tensor) -> torch.Tensor:
    """``n x subsets`` matrix with a 1 where a row is in a subset."""
    ind = torch.zeros(n, len(picks), dtype=like.dtype)
    for s, rows in enumerate(picks):
        ind[rows, s] = 1
    return ind.to(like.device)


def _quadratic_sums(u, v, ind_u, ind_v, kernel, block_elements: int = 1 << 22) -> torch.Tensor:
    """``(ind_u[:, s] K ind_v[:, s])`` for every subset ``s``, with ``K = kernel(u, v)`` built
    a block of rows at a time."""
    out = torch.zeros(ind_u.shape[1], dtype=u.dtype, device=u.device)
    rows = max(1, block_elements // max(1, len(v)))
    for start in range(0, len(u), rows):
        k_block = kernel(u[start:start + rows], v)
        out += (ind_u[start:start + rows] * (k_block @ ind_v)).sum(0)
    return out
