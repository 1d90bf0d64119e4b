"""Noise schedules of a variance-preserving diffusion, as the log signal-to-noise ratio
``lambda(t) = log(alpha_t^2 / sigma_t^2)`` over ``t`` in [0, 1], decreasing from ``logsnr_max``
(data) to ``logsnr_min`` (noise); ``alpha_t^2 = sigmoid(lambda)``, ``sigma_t^2 = sigmoid(-lambda)``.

- ``cosine``: ``alpha_t = cos(pi t / 2)`` (Nichol & Dhariwal 2021) in log-SNR form,
  ``lambda = -2 log tan(u)`` with ``u`` linear in ``t`` between the angles of the two ends;
- ``linear``: ``lambda`` linear in ``t`` (the fixed schedule of VDM, Kingma et al. 2021);
- ``learned`` (:class:`LearnedSchedule`): a monotone network between the two ends, trained to
  minimise the variance of the bound's Monte Carlo estimate (VDM, section 3.5).

The continuous-time likelihood bound depends on the schedule only through its two ends (VDM,
eq. 21): the schedule shapes the variance of the training loss and the samplers' time grid.
"""
from __future__ import annotations

import math

import torch


class Schedule:
    """``lambda(t)`` and ``dlambda/dt`` of one schedule kind between two log-SNR ends."""

    KINDS = ("cosine", "linear", "learned")

    def __init__(self, kind: str, logsnr_min: float, logsnr_max: float, shift: float = 0.0):
        if kind not in self.KINDS[:2]:
            raise ValueError(f"unknown schedule {kind!r}")
        self.kind, self.logsnr_min, self.logsnr_max = kind, float(logsnr_min), float(logsnr_max)
        self.shift = float(shift)  # cosine: lambda + shift (Hoogeboom et al. 2023's shifted cosine)
        self.u_min = math.atan(math.exp(-(self.logsnr_max - self.shift) / 2))
        self.u_max = math.atan(math.exp(-(self.logsnr_min - self.shift) / 2))

    def __call__(self, t: torch.Tensor) -> torch.Tensor:
        if self.kind == "linear":
            return self.logsnr_max + t * (self.logsnr_min - self.logsnr_max)
        return self.shift - 2 * torch.log(torch.tan(self.u_min + t * (self.u_max - self.u_min)))

    def derivative(self, t: torch.Tensor) -> torch.Tensor:
        """``dlambda/dt`` (negative)."""
        if self.kind == "linear":
            return torch.full_like(t, self.logsnr_min - self.logsnr_max)
        return -4 * (self.u_max - self.u_min) / torch.sin(2 * (self.u_min + t * (self.u_max - self.u_min)))

    def grid(self, steps: int, dtype=torch.float64) -> torch.Tensor:
        """``steps + 1`` log-SNRs from the noise end to the data end, uniform in ``t``."""
        return self(torch.linspace(1.0, 0.0, steps + 1, dtype=dtype))


class LearnedSchedule(torch.nn.Module):
    """VDM's learned schedule with fixed ends: ``lambda(t) = lambda_max + (lambda_min -
    lambda_max) (f(t) - f(0)) / (f(1) - f(0))`` with the increasing
    ``f(t) = a t + sum_j w_j sigmoid(v_j (t - c_j))`` (``a, w, v > 0`` through softplus),
    initialised near the linear schedule. The bound's expectation does not depend on it (VDM
    eq. 21); the diffusion model trains its parameters on the squared per-row loss, the
    variance of the estimate (see ``Diffusion._loss``). Same interface as :class:`Schedule`."""

    kind = "learned"

    def __init__(self, logsnr_min: float, logsnr_max: float, hidden: int = 32):
        super().__init__()
        self.logsnr_min, self.logsnr_max = float(logsnr_min), float(logsnr_max)
        inv_softplus = lambda y: math.log(math.expm1(y))  # noqa: E731
        self.a = torch.nn.Parameter(torch.tensor(inv_softplus(1.0)))
        self.w = torch.nn.Parameter(torch.full((hidden,), inv_softplus(0.02)))
        self.v = torch.nn.Parameter(torch.full((hidden,), inv_softplus(10.0)))
        self.c = torch.nn.Parameter(torch.linspace(0.0, 1.0, hidden))

    def _f(self, t: torch.Tensor, derivative: bool = False) -> torch.Tensor:
        a, w, v = (torch.nn.functional.softplus(p.to(t.dtype)) for p in (self.a, self.w, self.v))
        s = torch.sigmoid(v * (t.unsqueeze(-1) - self.c.to(t.dtype)))
        if derivative:
            return a + (w * v * s * (1 - s)).sum(-1)
        return a * t + (w * s).sum(-1)

    def _span(self, dtype) -> torch.Tensor:
        ends = self._f(torch.tensor([0.0, 1.0], dtype=dtype, device=self.a.device))
        return ends[0], ends[1] - ends[0]

    def __call__(self, t: torch.Tensor) -> torch.Tensor:
        f0, span = self._span(t.dtype)
        return self.logsnr_max + (self.logsnr_min - self.logsnr_max) * (self._f(t) - f0) / span

    def derivative(self, t: torch.Tensor) -> torch.Tensor:
        """``dlambda/dt`` (negative)."""
        return (self.logsnr_min - self.logsnr_max) * self._f(t, derivative=True) / self._span(t.dtype)[1]

    @torch.no_grad()
    def grid(self, steps: int, dtype=torch.float64) -> torch.Tensor:
        """``steps + 1`` log-SNRs from the noise end to the data end, uniform in ``t``."""
        t = torch.linspace(1.0, 0.0, steps + 1, dtype=dtype, device=self.a.device)
        lam = self(t)
        lam[0], lam[-1] = self.logsnr_min, self.logsnr_max  # exact ends despite rounding
        return lam.cpu()


def alpha_sigma(logsnr: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(alpha, sigma)`` of a log-SNR (``alpha^2 + sigma^2 = 1``)."""
    return torch.sigmoid(logsnr).sqrt(), torch.sigmoid(-logsnr).sqrt()
