"""Noise schedules of a variance-preserving diffusion, as the log signal-to-noise ratio
``lambda(t) = log(alpha_t^2 / sigma_t^2)`` over ``t`` in [0, 1], decreasing from ``logsnr_max``
(data) to ``logsnr_min`` (noise); ``alpha_t^2 = sigmoid(lambda)``, ``sigma_t^2 = sigmoid(-lambda)``.

- ``cosine``: ``alpha_t = cos(pi t / 2)`` (Nichol & Dhariwal 2021) in log-SNR form,
  ``lambda = -2 log tan(u)`` with ``u`` linear in ``t`` between the angles of the two ends;
- ``linear``: ``lambda`` linear in ``t`` (the fixed schedule of VDM, Kingma et al. 2021).

The continuous-time likelihood bound depends on the schedule only through its two ends (VDM,
eq. 21): the schedule shapes the variance of the training loss and the samplers' time grid.
"""
from __future__ import annotations

import math

import torch


class Schedule:
    """``lambda(t)`` and ``dlambda/dt`` of one schedule kind between two log-SNR ends."""

    KINDS = ("cosine", "linear")

    def __init__(self, kind: str, logsnr_min: float, logsnr_max: float):
        if kind not in self.KINDS:
            raise ValueError(f"unknown schedule {kind!r}")
        self.kind, self.logsnr_min, self.logsnr_max = kind, float(logsnr_min), float(logsnr_max)
        self.u_min = math.atan(math.exp(-self.logsnr_max / 2))
        self.u_max = math.atan(math.exp(-self.logsnr_min / 2))

    def __call__(self, t: torch.Tensor) -> torch.Tensor:
        if self.kind == "linear":
            return self.logsnr_max + t * (self.logsnr_min - self.logsnr_max)
        return -2 * torch.log(torch.tan(self.u_min + t * (self.u_max - self.u_min)))

    def derivative(self, t: torch.Tensor) -> torch.Tensor:
        """``dlambda/dt`` (negative)."""
        if self.kind == "linear":
            return torch.full_like(t, self.logsnr_min - self.logsnr_max)
        return -4 * (self.u_max - self.u_min) / torch.sin(2 * (self.u_min + t * (self.u_max - self.u_min)))

    def grid(self, steps: int, dtype=torch.float64) -> torch.Tensor:
        """``steps + 1`` log-SNRs from the noise end to the data end, uniform in ``t``."""
        return self(torch.linspace(1.0, 0.0, steps + 1, dtype=dtype))


def alpha_sigma(logsnr: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(alpha, sigma)`` of a log-SNR (``alpha^2 + sigma^2 = 1``)."""
    return torch.sigmoid(logsnr).sqrt(), torch.sigmoid(-logsnr).sqrt()
