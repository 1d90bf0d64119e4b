"""DP-EM: EM whose every M-step reads the rows only through noisy sufficient statistics (Park,
Foulds, Chaudhuri and Welling 2017, "DP-EM: Differentially Private Expectation Maximization").

Rows are clipped to an L2 norm ``B`` around the origin. One row ``x`` with responsibilities
``r`` (summing to 1) adds ``r_k``, ``r_k x`` and ``r_k x x^T`` to component ``k``'s count, sum
and second moment, so under adding or removing one row the L2 sensitivities of the three
statistics over all components are at most 1, ``B`` and ``B^2`` (``sum_k r_k^2 <= 1``; the
second moments counted once per entry of their upper triangle, whose norm is at most
``||x x^T||_F = ||x||^2``). Each statistic divided by ``sqrt(3)`` times its sensitivity gives one
vector of sensitivity 1: one iteration is one Gaussian mechanism of noise multiplier ``z``, which
adds noise of std ``z * sqrt(3) * (1, B, B^2)`` to the three (:func:`noise_stds`), and ``T``
iterations are ``T`` of them composed (the caller's accountant). The initial parameters depend
on nothing but the seed, the shape and ``B``; the iteration count is fixed (a stop on the
likelihood's progress would read the rows). Covariances are projected to eigenvalues in
``[floor, B^2]`` (a covariance of rows in the ball has none above ``B^2``), means into the ball.
"""
from __future__ import annotations

import math

import torch

COVARIANCE_TYPES = ("full", "diag")
SHARES = 3  # the statistics sharing one iteration's unit sensitivity: counts, sums, second moments


def noise_stds(bound: float, noise_multiplier: float) -> tuple[float, float, float]:
    """The noise std on each count, each coordinate of a sum and each entry of a second moment."""
    scale = noise_multiplier * math.sqrt(SHARES)
    return scale, scale * bound, scale * bound ** 2


def clip(x: torch.Tensor, bound: float) -> torch.Tensor:
    return x * torch.clamp(bound / x.norm(dim=1, keepdim=True).clamp_min(1e-300), max=1.0)


def initial(n_components: int, d: int, bound: float, generator: torch.Generator, covariance_type: str):
    """Weights, means and covariances from the seed alone: means drawn around the origin at a
    quarter of the ball's per-coordinate scale, covariances the ball's per-coordinate scale."""
    scale = bound / math.sqrt(d)
    means = torch.randn(n_components, d, generator=generator, dtype=torch.float64) * scale / 2
    var = torch.full((n_components, d), scale ** 2, dtype=torch.float64)
    cov = torch.diag_embed(var) if covariance_type == "full" else var
    return torch.full((n_components,), 1 / n_components, dtype=torch.float64), means, cov


def log_joint(x, weights, means, cov, covariance_type: str) -> torch.Tensor:
    """``log w_k + log N(x_n | m_k, S_k)`` ``[n, K]`` (its logsumexp over k: ``log p(x_n)``)."""
    diff = x[:, None, :] - means[None]
    if covariance_type == "full":
        chol = torch.linalg.cholesky(cov)
        solved = torch.linalg.solve_triangular(chol[None], diff[..., None], upper=False)[..., 0]
        maha, logdet = (solved ** 2).sum(-1), 2 * torch.log(torch.diagonal(chol, dim1=-2, dim2=-1)).sum(-1)
    else:
        maha, logdet = (diff ** 2 / cov[None]).sum(-1), torch.log(cov).sum(-1)
    return torch.log(weights)[None] - 0.5 * (maha + logdet[None] + x.shape[1] * math.log(2 * math.pi))


def responsibilities(x, weights, means, cov, covariance_type: str) -> torch.Tensor:
    """The E-step: ``p(k | x_n)`` ``[n, K]``."""
    return torch.softmax(log_joint(x, weights, means, cov, covariance_type), dim=1)


def statistics(x, resp, covariance_type: str):
    """Counts ``[K]``, sums ``[K, D]`` and second moments (full ``[K, D, D]``, diag ``[K, D]``)."""
    second = (torch.einsum("nk,ni,nj->kij", resp, x, x) if covariance_type == "full"
              else resp.T @ (x * x))
    return resp.sum(0), resp.T @ x, second


def add_noise(stats, bound: float, noise_multiplier: float, generator, covariance_type: str):
    """``stats`` plus the Gaussian noise of one DP-EM iteration (:func:`noise_stds`); the noise on
    a full second moment is symmetric (drawn on its upper triangle, mirrored)."""
    counts, sums, second = stats
    s_count, s_sum, s_second = noise_stds(bound, noise_multiplier)

    def noise(like, std):
        return torch.randn(like.shape, generator=generator, dtype=like.dtype) * std

    extra = noise(second, s_second)
    if covariance_type == "full":
        upper = torch.triu(extra)
        extra = upper + torch.triu(upper, 1).transpose(-1, -2)
    return counts + noise(counts, s_count), sums + noise(sums, s_sum), second + extra


def m_step(stats, bound: float, floor: float, covariance_type: str):
    """Weights, means and covariances of (noisy) statistics: counts floored at 1, means into the
    ball, covariances projected to eigenvalues in ``[floor, B^2]`` (post-processing)."""
    counts, sums, second = stats
    counts = counts.clamp_min(1.0)
    means = clip(sums / counts[:, None], bound)
    if covariance_type == "full":
        cov = second / counts[:, None, None] - means[:, :, None] * means[:, None, :]
        vals, vecs = torch.linalg.eigh((cov + cov.transpose(-1, -2)) / 2)
        cov = vecs @ torch.diag_embed(vals.clamp(floor, bound ** 2)) @ vecs.transpose(-1, -2)
        cov = (cov + cov.transpose(-1, -2)) / 2
    else:
        cov = (second / counts[:, None] - means ** 2).clamp(floor, bound ** 2)
    return counts / counts.sum(), means, cov


def dp_em(x: torch.Tensor, n_components: int, iterations: int, bound: float, noise_multiplier: float | None,
          covariance_type: str = "full", floor: float = 1e-2, init_generator: torch.Generator | None = None,
          noise_generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """``iterations`` of DP-EM on rows ``x [n, D]`` (clipped to norm ``bound``) from
    :func:`initial`: ``{"weights", "means", "covariances"}`` (float64). ``noise_multiplier=None``
    adds no noise: plain EM on the clipped rows from the same start, with covariances projected
    as in the private fit."""
    if covariance_type not in COVARIANCE_TYPES:
        raise ValueError(f"DP-EM fits covariance_type in {COVARIANCE_TYPES}, got {covariance_type!r}")
    x = clip(x.double().flatten(1), bound)
    init_generator = init_generator or torch.Generator().manual_seed(0)
    params = initial(n_components, x.shape[1], bound, init_generator, covariance_type)
    for _ in range(iterations):
        stats = statistics(x, responsibilities(x, *params, covariance_type), covariance_type)
        if noise_multiplier is not None:
            stats = add_noise(stats, bound, noise_multiplier, noise_generator, covariance_type)
        params = m_step(stats, bound, floor, covariance_type)
    return dict(zip(("weights", "means", "covariances"), params))
