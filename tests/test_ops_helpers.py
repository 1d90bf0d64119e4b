"""Shared helpers of the kernel tests (no tests here): random Gaussian-mixture
parameters in scikit-learn's convention (precisions_chol P with precision = P P^T, upper triangular for full/tied)."""
from __future__ import annotations

import pytest
import torch

from aigc_engine import ops


def precisions_chol_from_cov(cov: torch.Tensor) -> torch.Tensor:
    """scikit-learn's _compute_precision_cholesky: P = inv(L)^T for cov = L L^T."""
    L = torch.linalg.cholesky(cov)
    eye = torch.eye(cov.shape[-1], dtype=cov.dtype).expand_as(cov)
    return torch.linalg.solve_triangular(L, eye, upper=False).transpose(-1, -2).contiguous()


def random_covariances(K, D, dtype, cond=None, gen=None):
    """K SPD matrices [K, D, D]; with ``cond`` the eigenvalues span 1/sqrt(cond)..sqrt(cond)."""
    Q, _ = torch.linalg.qr(torch.randn(K, D, D, dtype=torch.float64, generator=gen))
    if cond is None:
        ev = torch.rand(K, D, dtype=torch.float64, generator=gen) * 2 + 0.3
    else:
        ev = torch.logspace(-0.5 * torch.log10(torch.tensor(cond)).item(),
                            0.5 * torch.log10(torch.tensor(cond)).item(), D, dtype=torch.float64).expand(K, D)
    cov = Q @ torch.diag_embed(ev) @ Q.transpose(-1, -2)
    return (0.5 * (cov + cov.transpose(-1, -2))).to(dtype)


def make_params(covariance_type, K, D, dtype=torch.float64, cond=None, seed=0):
    """(means [K, D], precisions_chol, covariances as [K, D, D]) in float64 -> dtype."""
    gen = torch.Generator().manual_seed(seed)
    means = torch.randn(K, D, dtype=torch.float64, generator=gen) * 2
    if covariance_type == "full":
        cov = random_covariances(K, D, torch.float64, cond, gen)
        P = precisions_chol_from_cov(cov)
    elif covariance_type == "tied":
        cov1 = random_covariances(1, D, torch.float64, cond, gen)[0]
        P = precisions_chol_from_cov(cov1)
        cov = cov1.expand(K, D, D)
    elif covariance_type == "diag":
        var = torch.rand(K, D, dtype=torch.float64, generator=gen) * 2 + 0.2
        if cond is not None:
            var = torch.logspace(-3, 3, D, dtype=torch.float64).expand(K, D).clone()
        P = var.rsqrt()
        cov = torch.diag_embed(var)
    else:
        var = torch.rand(K, dtype=torch.float64, generator=gen) * 2 + 0.2
        if cond is not None:
            var = torch.logspace(-3, 3, K, dtype=torch.float64)
        P = var.rsqrt()
        cov = var[:, None, None] * torch.eye(D, dtype=torch.float64)
    return means.to(dtype), P.to(dtype).contiguous(), cov


def extension_loaded() -> bool:
    return ops.backend_info()["extension_loaded"]


requires_ext = pytest.mark.skipif(not extension_loaded(), reason="aigc_engine._C not built")
cuda_only = [pytest.mark.cuda,
             pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]
