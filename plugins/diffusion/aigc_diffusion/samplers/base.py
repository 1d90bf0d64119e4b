"""The interface of a sampler (as diffusers' schedulers: one algorithm per file, a small
interface): :func:`aigc_diffusion.samplers.sample_loop` walks the time grid, predicts the noise
and the denoised ``x_hat`` at each point, and asks the sampler for the next, less noisy state."""
from __future__ import annotations

import abc
from typing import ClassVar

import torch


class Sampler(abc.ABC):
    """One sampling algorithm of a variance-preserving diffusion, in log-SNR terms.

    ``start(steps)`` before a trajectory of ``steps`` steps (a multistep method forgets the last
    one's history); ``step(z, x_hat, eps, lam_t, lam_s)`` per step: the state at the log-SNR
    ``lam_s`` (0-d float64, less noisy) from the state ``z`` at ``lam_t`` and the predictions
    there (``x_hat`` the denoised data, ``eps`` the noise, consistent: ``z = alpha_t x_hat +
    sigma_t eps``). ``eta``: the fraction of the posterior's noise a stochastic sampler adds;
    ``generator``: where that noise comes from (None: the global generator of ``z``'s device)."""

    name: ClassVar[str]

    def __init__(self, eta: float = 0.0, generator: torch.Generator | None = None):
        self.eta, self.generator = eta, generator

    def start(self, steps: int) -> None:
        """Before the first step of a trajectory of ``steps`` steps."""
        self.steps = steps

    @abc.abstractmethod
    def step(self, z: torch.Tensor, x_hat: torch.Tensor, eps: torch.Tensor, lam_t: torch.Tensor,
             lam_s: torch.Tensor) -> torch.Tensor:
        """The state at ``lam_s``."""
