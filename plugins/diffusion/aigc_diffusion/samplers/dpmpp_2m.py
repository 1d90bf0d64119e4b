"""DPM-Solver++(2M) (Lu et al. 2022): a second-order multistep solver of the probability-flow
ODE in data prediction, first order at the first and the last step. The step in
``h = log(alpha / sigma)`` is half the log-SNR's."""
from __future__ import annotations

import torch

from ..schedules import alpha_sigma
from .base import Sampler


class DPMSolverPP2M(Sampler):
    name = "dpm++2m"

    def start(self, steps):
        super().start(steps)
        self.done, self.x_prev, self.h_prev = 0, None, None

    def step(self, z, x_hat, eps, lam_t, lam_s):
        (_, s_t), (a_s, s_s) = alpha_sigma(lam_t), alpha_sigma(lam_s)
        h = float(lam_s - lam_t) / 2
        d = x_hat
        if self.x_prev is not None and self.done < self.steps - 1:
            r = self.h_prev / h
            d = (1 + 1 / (2 * r)) * x_hat - 1 / (2 * r) * self.x_prev
        z = float(s_s / s_t) * z - float(a_s) * float(torch.expm1(torch.tensor(-h, dtype=torch.float64))) * d
        self.done, self.x_prev, self.h_prev = self.done + 1, x_hat, h
        return z
