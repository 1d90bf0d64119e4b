"""DDIM (Song et al. 2021): the posterior ``q(z_s | z_t, x = x_hat)``'s mean direction with a
fraction ``eta`` of its noise; deterministic at ``eta = 0``, ancestral DDPM at ``eta = 1``.

With ``c = -expm1(lambda_t - lambda_s)`` the posterior's variance is ``c sigma_s^2``: DDIM adds
``sig = eta sigma_s sqrt(c)`` of noise and keeps the rest of ``sigma_s`` along ``eps``."""
from __future__ import annotations

import torch

from ..schedules import alpha_sigma
from .base import Sampler


class DDIM(Sampler):
    name = "ddim"

    def step(self, z, x_hat, eps, lam_t, lam_s):
        a_s, s_s = alpha_sigma(lam_s)
        c = float(-torch.expm1(lam_t - lam_s))
        sig = self.eta * float(s_s) * c ** 0.5
        z = float(a_s) * x_hat + max(float(s_s) ** 2 - sig ** 2, 0.0) ** 0.5 * eps
        if sig > 0:
            device = z.device if self.generator is None else "cpu"  # a CPU generator draws on the CPU
            z = z + sig * torch.randn(z.shape, generator=self.generator, device=device).to(z.device)
        return z
