"""DDPM's ancestral sampling (Ho et al. 2020): a draw from the posterior ``q(z_s | z_t, x =
x_hat)`` at each step, which is DDIM with all of the posterior's noise (``eta = 1``)."""
from __future__ import annotations

from .ddim import DDIM


class DDPM(DDIM):
    name = "ddpm"

    def __init__(self, eta: float = 0.0, generator=None):
        super().__init__(1.0, generator)  # eta is not DDPM's to choose
