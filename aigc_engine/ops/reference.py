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
