"""Evaluation helpers shared by models: mode coverage on the synthetic mixtures (VEEGAN/PacGAN
protocol) and average log-likelihood."""
from __future__ import annotations

import math

import torch


def mode_coverage(samples: torch.Tensor, centres: torch.Tensor, std: float) -> dict[str, float]:
    """Modes captured, fraction of high-quality samples (within 3 std of the nearest mode) and
    the reverse KL between the high-quality samples' mode histogram and uniform."""
    samples = samples.detach().to(torch.float64).cpu()
    centres = centres.to(torch.float64)
    dist = torch.cdist(samples, centres)
    nearest_d, nearest = dist.min(1)
    good = nearest_d <= 3 * std
    counts = torch.bincount(nearest[good], minlength=len(centres)).to(torch.float64)
    k = len(centres)
    if counts.sum() > 0:
        p = counts / counts.sum()
        nz = p[p > 0]
        reverse_kl = math.log(k) + float((nz * nz.log()).sum())
    else:
        reverse_kl = float("inf")
    return {"modes": int((counts > 0).sum()), "high_quality": float(good.double().mean()),
            "reverse_kl": reverse_kl}
