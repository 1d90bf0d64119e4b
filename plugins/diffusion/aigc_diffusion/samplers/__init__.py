"""Samplers of a variance-preserving diffusion from a noise predictor ``eps_fn(z, logsnr)``
(``logsnr`` a 0-d float64 tensor), all over the schedule's time grid of ``steps`` steps, each
ending with the denoised prediction ``x_hat`` at the data end. One file per algorithm, each a
:class:`~aigc_diffusion.samplers.base.Sampler`; :data:`SAMPLERS` is the one list of them (the
``sampler`` option's choices):

- ``ddpm``: ancestral sampling from ``q(z_s | z_t, x = x_hat)`` (Ho et al. 2020);
- ``ddim``: DDIM (Song et al. 2021), deterministic at ``eta = 0``; ``eta = 1`` is ``ddpm``;
- ``dpm++2m``: DPM-Solver++(2M) (Lu et al. 2022), a second-order multistep solver of the
  probability-flow ODE in data prediction (first order at the first and the last step).

In log-SNR terms, with ``c = -expm1(lambda_t - lambda_s)`` for a step from ``t`` to the less
noisy ``s``: the posterior is ``N(alpha_s ((1 - c) z_t / alpha_t + c x_hat), c sigma_s^2)``.
"""
from __future__ import annotations

from typing import Callable

import torch

from ..schedules import Schedule, alpha_sigma
from .base import Sampler
from .ddim import DDIM
from .ddpm import DDPM
from .dpmpp_2m import DPMSolverPP2M

SAMPLERS: dict[str, type[Sampler]] = {cls.name: cls for cls in (DDPM, DDIM, DPMSolverPP2M)}


def sample_loop(eps_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], z: torch.Tensor, schedule: Schedule,
                steps: int, sampler: str = "dpm++2m", eta: float = 0.0, generator: torch.Generator | None = None,
                record: list | None = None, clip: float | None = None,
                known: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """Denoise the noise ``z`` (``N x ...``, the prior's draw) into samples. ``record``: a list
    that gets ``z`` before each step and the final sample (for pictures of the trajectory).
    ``clip``: each prediction ``x_hat`` is clamped to ``[-clip, clip]`` (and eps made consistent
    with it), as DDPM clips to the pixel range: at the noise end ``x_hat = (z - sigma eps) /
    alpha`` multiplies the predictor's error by ``1 / alpha`` (150 at log-SNR -10), which
    otherwise throws a few samples far off the data. ``known``: ``(mask, x0)``, coordinates of
    the data known in advance (inpainting, RePaint-style, Lugmayr et al. 2022): before each step
    those of ``z`` are replaced by ``x0`` noised forward to the step's log-SNR, and the sample
    ends with ``x0`` there."""
    if sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r}")
    algorithm = SAMPLERS[sampler](eta, generator)
    algorithm.start(steps)
    lam = schedule.grid(steps)
    for i in range(steps):
        lt, ls = lam[i], lam[i + 1]
        at, st = alpha_sigma(lt)
        if record is not None:
            record.append(z.detach().cpu())
        if known is not None:
            z = _noised(z, known, at, st, generator)
        eps = eps_fn(z, lt)
        x_hat = (z - float(st) * eps) / float(at)
        if clip is not None:
            x_hat = x_hat.clamp(-clip, clip)
            eps = (z - float(at) * x_hat) / float(st)
        z = algorithm.step(z, x_hat, eps, lt, ls)
    lam_end = lam[-1]
    a0, s0 = alpha_sigma(lam_end)
    x = (z - float(s0) * eps_fn(z, lam_end)) / float(a0)
    x = x.clamp(-clip, clip) if clip is not None else x
    if known is not None:
        x = torch.where(known[0], known[1].to(x.dtype), x)
    if record is not None:
        record.append(x.detach().cpu())
    return x


def _noised(z: torch.Tensor, known: tuple[torch.Tensor, torch.Tensor], alpha, sigma, generator) -> torch.Tensor:
    """``z`` with the known coordinates drawn from ``q(z_t | x0) = N(alpha x0, sigma^2)``."""
    mask, x0 = known
    device = z.device if generator is None else "cpu"
    noise = torch.randn(z.shape, generator=generator, device=device).to(z.device, z.dtype)
    return torch.where(mask, float(alpha) * x0.to(z.dtype) + float(sigma) * noise, z)
