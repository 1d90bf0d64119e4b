"""Pure-PyTorch reference of the kernels: the fallback backend and the test oracle.

Conventions follow scikit-learn's ``GaussianMixture``: ``precisions_chol`` is P with
precision = P P^T, shaped ``[K, D, D]`` (full), ``[D, D]`` (tied), ``[K, D]`` (diag) or
``[K]`` (spherical).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")
GAN_LOSS_KINDS = ("ns", "hinge", "lsgan", "wgan")


def log_det_precisions_chol(precisions_chol: torch.Tensor, covariance_type: str, n_features: int) -> torch.Tensor:
    """log det P for each component: ``[K]`` (a 0-d tensor for tied)."""
    if covariance_type == "full":
        return torch.log(torch.diagonal(precisions_chol, dim1=-2, dim2=-1)).sum(-1)
    if covariance_type == "tied":
        return torch.log(torch.diagonal(precisions_chol)).sum()
    if covariance_type == "diag":
        return torch.log(precisions_chol).sum(-1)
    return n_features * torch.log(precisions_chol)


def gaussian_log_prob(x: torch.Tensor, means: torch.Tensor, precisions_chol: torch.Tensor,
                      covariance_type: str, log_weights: torch.Tensor | None = None) -> torch.Tensor:
    """log N(x_n | mu_k, Sigma_k) (+ log_weights[k]) as ``[N, K]``; x ``[N, D]``, means ``[K, D]``."""
    n_features = x.shape[1]
    P = precisions_chol
    if covariance_type == "full":
        # y_nk = x_n P_k - mu_k P_k; one batched GEMM over components
        y = torch.einsum("nd,kde->nke", x, P) - torch.einsum("kd,kde->ke", means, P)
        maha = (y * y).sum(-1)
    elif covariance_type == "tied":
        y = (x @ P)[:, None, :] - (means @ P)[None, :, :]
        maha = (y * y).sum(-1)
    elif covariance_type == "diag":
        prec = P * P
        maha = ((means * means * prec).sum(1) - 2.0 * x @ (means * prec).T + (x * x) @ prec.T)
    elif covariance_type == "spherical":
        prec = P * P
        maha = ((means * means).sum(1) * prec - 2.0 * (x @ means.T) * prec
                + torch.outer((x * x).sum(1), prec))
    else:
        raise ValueError(f"covariance_type must be one of {COVARIANCE_TYPES}, got {covariance_type!r}")
    log_det = log_det_precisions_chol(P, covariance_type, n_features)
    out = -0.5 * (n_features * math.log(2 * math.pi) + maha) + log_det
    if log_weights is not None:
        out = out + log_weights
    return out


def gaussian_estep(x: torch.Tensor, means: torch.Tensor, precisions_chol: torch.Tensor,
                   covariance_type: str, log_weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """EM E-step: ``(log_prob_norm [N], log_resp [N, K])`` where
    ``log_prob_norm = logsumexp_k(log N + log w)`` and ``log_resp = weighted - log_prob_norm``."""
    weighted = gaussian_log_prob(x, means, precisions_chol, covariance_type, log_weights)
    log_prob_norm = torch.logsumexp(weighted, dim=1)
    return log_prob_norm, weighted - log_prob_norm[:, None]


def stats_columns(covariance_type: str, n_features: int) -> int:
    """Columns C of the EM statistics: 1 + D + moments (full D(D+1)/2, tied 0, diag D,
    spherical 1)."""
    D = n_features
    return 1 + D + {"full": D * (D + 1) // 2, "tied": 0, "diag": D, "spherical": 1}[covariance_type]


# elements of one block of mixture_stats' temporaries (the [rows, C] features, or [K, rows, D]
# when the shift is per component): cache-sized on the CPU, few launches on a GPU
_STATS_BLOCK_CPU, _STATS_BLOCK_GPU = 1 << 20, 1 << 24


def mixture_stats(x: torch.Tensor, resp: torch.Tensor, shift: torch.Tensor, covariance_type: str,
                  double_moments: bool = False) -> torch.Tensor:
    """EM sufficient statistics under responsibilities ``resp [N, K]``, as ``[K, C]`` float64:
    with ``z = x - shift``, row k is ``sum_n resp_nk [1 | z_n | moments(z_n)]``, where the
    moments are ``z_i z_j`` for ``i <= j`` in ``torch.triu_indices`` order (full), ``z_d^2``
    (diag), ``|z|^2`` (spherical) or nothing (tied).

    ``shift`` is ``[D]`` or, per component, ``[K, D]`` (row k of the result is then around
    ``shift[k]``); it is first rounded to x's dtype, so pass it in that dtype. Products are
    formed in x's dtype (at least float32), or in float64 with ``double_moments`` (float32 data
    whose moments ``S/nk - (m - s)(m - s)^T`` would lose too much to cancellation).
    """
    n, D = x.shape
    K = resp.shape[1]
    # half-precision data is summed in float32 (float16 sums overflow at 65504)
    dtype = torch.float64 if double_moments else torch.promote_types(x.dtype, torch.float32)
    x, resp, shift = x.to(dtype), resp.to(dtype), shift.to(x.dtype).to(dtype)
    out = torch.zeros(K, stats_columns(covariance_type, D), dtype=torch.float64, device=x.device)
    block = _STATS_BLOCK_CPU if x.device.type == "cpu" else _STATS_BLOCK_GPU
    if shift.dim() == 2:  # per component: [K, rows, D] blocks
        iu = torch.triu_indices(D, D, device=x.device)
        rows = max(64, block // max(1, K * D))
        for lo in range(0, n, rows):
            z = x[lo:lo + rows][None, :, :] - shift[:, None, :]      # [K, b, D]
            r = resp[lo:lo + rows].T                                 # [K, b]
            rz = r[:, :, None] * z
            parts = [r.sum(1, keepdim=True), rz.sum(1)]
            if covariance_type == "full":
                parts.append(torch.bmm(rz.transpose(1, 2), z)[:, iu[0], iu[1]])
            elif covariance_type == "diag":
                parts.append((rz * z).sum(1))
            elif covariance_type == "spherical":
                parts.append((rz * z).sum((1, 2))[:, None])
            out += torch.cat(parts, 1).to(torch.float64)
        return out
    iu = torch.triu_indices(D, D, device=x.device) if covariance_type == "full" else None
    rows = max(64, block // out.shape[1])
    for lo in range(0, n, rows):
        z = x[lo:lo + rows] - shift
        parts = [torch.ones(len(z), 1, dtype=dtype, device=x.device), z]
        if covariance_type == "full":
            parts.append(z[:, iu[0]] * z[:, iu[1]])
        elif covariance_type == "diag":
            parts.append(z * z)
        elif covariance_type == "spherical":
            parts.append((z * z).sum(1, keepdim=True))
        out += (resp[lo:lo + rows].T @ torch.cat(parts, 1)).to(torch.float64)
    return out


def gaussian_em_stats(x: torch.Tensor, means: torch.Tensor, precisions_chol: torch.Tensor,
                      covariance_type: str, log_weights: torch.Tensor, shift: torch.Tensor,
                      double_moments: bool = False, estep=None) -> tuple[torch.Tensor, torch.Tensor]:
    """One EM pass over ``x``: ``(mixture_stats(x, exp(log_resp), shift), sum_n log p(x_n))``,
    both float64, with the responsibilities of ``estep`` (default: this module's
    ``gaussian_estep``)."""
    estep = estep or gaussian_estep
    log_prob_norm, log_resp = estep(x, means, precisions_chol, covariance_type, log_weights)
    return (mixture_stats(x, log_resp.exp_(), shift, covariance_type, double_moments),
            log_prob_norm.sum(dtype=torch.float64))


def gan_d_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor, kind: str = "ns") -> torch.Tensor:
    """Discriminator loss, a scalar mean over each side."""
    if kind == "ns":
        return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()
    if kind == "hinge":
        return F.relu(1.0 - real_logits).mean() + F.relu(1.0 + fake_logits).mean()
    if kind == "lsgan":
        return 0.5 * ((real_logits - 1.0) ** 2).mean() + 0.5 * (fake_logits ** 2).mean()
    if kind == "wgan":
        return fake_logits.mean() - real_logits.mean()
    raise ValueError(f"kind must be one of {GAN_LOSS_KINDS}, got {kind!r}")


def gan_g_loss(fake_logits: torch.Tensor, kind: str = "ns") -> torch.Tensor:
    """Generator loss (non-saturating for ``ns``), a scalar mean."""
    if kind == "ns":
        return F.softplus(-fake_logits).mean()
    if kind in ("hinge", "wgan"):
        return -fake_logits.mean()
    if kind == "lsgan":
        return 0.5 * ((fake_logits - 1.0) ** 2).mean()
    raise ValueError(f"kind must be one of {GAN_LOSS_KINDS}, got {kind!r}")
