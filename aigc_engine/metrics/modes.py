"""Mode coverage on the synthetic mixtures (the VEEGAN / PacGAN protocol)."""
from __future__ import annotations

import math

import torch


def mode_coverage(samples: torch.Tensor, centres: torch.Tensor, std: float) -> dict[str, float]:
    """Modes captured, fraction of high-quality samples and reverse KL (VEEGAN, PacGAN).

    A sample is *high quality* when it lies within ``3 * std`` of its nearest mode centre; a
    mode is *captured* when it is the nearest mode of at least one high-quality sample. With
    ``p`` the histogram of the high-quality samples over the ``K`` modes,
    ``reverse_kl = KL(p || uniform) = log K - H(p)`` (``inf`` when no sample is high quality).

    ``samples`` is ``N x D``, ``centres`` ``K x D``. Returns ``{"modes", "high_quality",
    "reverse_kl"}``.
    """
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
