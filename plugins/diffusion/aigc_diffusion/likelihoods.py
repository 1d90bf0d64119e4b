"""Likelihoods of a variance-preserving diffusion from its noise predictor ``eps_fn(z, logsnr)``.

- :func:`ode_log_likelihood`: log p(x) of the probability-flow ODE (Song et al. 2021), the exact
  density of the deterministic model the ODE defines (up to the solver's error), with the
  trace of the Jacobian exact or by Hutchinson's estimator. In log-SNR the ODE is
  ``dz/dlambda = (sigma^2 z - sigma eps(z, lambda)) / 2`` (from ``z = alpha x_tilde`` and DDIM's
  ``dx_tilde / d(sigma / alpha) = eps``), integrated with Heun's method from the data end to the
  noise end together with ``d log p / dlambda = -div``.
- :func:`discrete_bound`: the continuous-time variational bound on -log P(x) of images on
  ``levels`` evenly spaced pixel values (VDM, Kingma et al. 2021): prior KL at the noise end +
  ``(lambda_max - lambda_min) / 2 E_{lambda ~ U}||eps - eps_hat||^2`` + the discrete decoder's
  -log p(x | z_0) (a softmax over the levels of ``-(z_0 - alpha_0 v)^2 / (2 sigma_0^2)``).
"""
from __future__ import annotations

import math
from typing import Callable

import torch

from .schedules import Schedule, alpha_sigma

EpsFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _divergence(eps_fn: EpsFn, z: torch.Tensor, lam: torch.Tensor, probe: torch.Tensor | None):
    """``eps(z)`` and the divergence of ``eps`` in ``z`` per row: ``probe^T J probe`` with a
    probe (Hutchinson), else the exact trace (one backward pass per dimension)."""
    with torch.enable_grad():
        zz = z.detach().requires_grad_(True)
        eps = eps_fn(zz, lam)
        if probe is not None:
            vjp, = torch.autograd.grad((eps * probe).sum(), zz)
            div = (vjp * probe).flatten(1).sum(1)
        else:
            flat = eps.flatten(1)
            div = torch.zeros(len(z), dtype=eps.dtype, device=z.device)
            for i in range(flat.shape[1]):
                g, = torch.autograd.grad(flat[:, i].sum(), zz, retain_graph=i < flat.shape[1] - 1)
                div = div + g.flatten(1)[:, i]
    return eps.detach(), div.detach()


@torch.no_grad()
def ode_log_likelihood(eps_fn: EpsFn, x: torch.Tensor, schedule: Schedule, steps: int = 100, probes: int = 1,
                       trace: str = "hutchinson", generator: torch.Generator | None = None
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """``(log p(x), standard error)`` per row, float64, of the ODE's density of
    ``x_tilde = z_0 / alpha_0`` (the data plus noise of std ``sigma_0 / alpha_0``) at ``x``.
    ``trace="hutchinson"``: ``probes`` Rademacher probes per row, each fixed along the path
    (FFJORD), the estimate their mean and the error their spread / sqrt(probes) (NaN for one
    probe); ``trace="exact"``: the error is 0. The prior at the noise end is N(0, I)."""
    n, d = len(x), math.prod(x.shape[1:])
    k = probes if trace == "hutchinson" else 1
    lam = schedule.grid(steps).flip(0)  # data end -> noise end
    a0, _ = alpha_sigma(lam[0])
    z = (float(a0) * x).repeat(k, *([1] * (x.dim() - 1)))
    probe = None
    if trace == "hutchinson":
        probe = (torch.randint(0, 2, z.shape, generator=generator).to(z) * 2 - 1)

    def field(z, lm):
        _, s = alpha_sigma(lm)
        eps, div = _divergence(eps_fn, z, lm, probe)
        return 0.5 * float(s) ** 2 * z - 0.5 * float(s) * eps, 0.5 * float(s) ** 2 * d - 0.5 * float(s) * div.double()

    ell = torch.zeros(len(z), dtype=torch.float64, device=z.device)
    for i in range(steps):
        h = float(lam[i + 1] - lam[i])
        f1, d1 = field(z, lam[i])
        f2, d2 = field(z + h * f1, lam[i + 1])
        z = z + h / 2 * (f1 + f2)
        ell = ell + h / 2 * (d1 + d2)
    prior = -0.5 * z.double().flatten(1).pow(2).sum(1) - 0.5 * d * math.log(2 * math.pi)
    logp = (prior + ell + d * math.log(float(a0))).reshape(k, n).cpu()
    se = logp.std(0) / math.sqrt(k) if k > 1 else torch.full((n,), 0.0 if trace == "exact" else float("nan"),
                                                              dtype=torch.float64)
    return logp.mean(0), se


@torch.no_grad()
def discrete_bound(eps_fn: EpsFn, x: torch.Tensor, levels: int, logsnr_min: float, logsnr_max: float,
                   draws: int = 16) -> torch.Tensor:
    """The variational bound on -log P(x) per row in nats, float64 (its diffusion term a Monte
    Carlo estimate with ``draws`` stratified log-SNRs per row)."""
    n, d = len(x), math.prod(x.shape[1:])
    lo, hi = torch.tensor(float(logsnr_min), dtype=torch.float64), torch.tensor(float(logsnr_max), dtype=torch.float64)
    a1, s1 = alpha_sigma(lo)
    prior = 0.5 * (float(a1) ** 2 * x.double().flatten(1).pow(2) + float(s1) ** 2 - 1 - math.log(float(s1) ** 2)).sum(1)
    diffusion = torch.zeros(n, dtype=torch.float64, device=x.device)
    u = torch.rand(n, dtype=torch.float64)
    for j in range(draws):
        lam = (lo + (hi - lo) * ((u + j / draws) % 1)).to(x.device)
        a, s = alpha_sigma(lam)
        shape = (n, *([1] * (x.dim() - 1)))
        eps = torch.randn_like(x)
        z = a.view(shape).to(x.dtype) * x + s.view(shape).to(x.dtype) * eps
        mse = (eps - eps_fn(z, lam)).double().flatten(1).pow(2).sum(1)
        diffusion += 0.5 * float(hi - lo) * mse / draws
    a0, s0 = alpha_sigma(hi)
    z0 = (float(a0) * x + float(s0) * torch.randn_like(x)).double()
    values = torch.linspace(-1, 1, levels, dtype=torch.float64, device=x.device)
    logits = -0.5 * ((z0[..., None] - float(a0) * values) / float(s0)) ** 2
    index = torch.round((x.double() + 1) * (levels - 1) / 2).long().clamp(0, levels - 1)
    recon = -(logits.log_softmax(-1).gather(-1, index[..., None])[..., 0]).flatten(1).sum(1)
    return prior + diffusion + recon

