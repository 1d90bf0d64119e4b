"""Kernels of the engine: batched Gaussian log-density (and the fused EM E-step) and fused GAN
losses. Each entry point dispatches to the compiled extension when it is loaded, else to the
pure-PyTorch reference (``AIGC_ENGINE_BACKEND=auto|ext|torch``)."""
from __future__ import annotations

from . import reference
from .reference import COVARIANCE_TYPES, GAN_LOSS_KINDS

__all__ = ["gaussian_log_prob", "gaussian_estep", "gan_d_loss", "gan_g_loss", "backend_info",
           "COVARIANCE_TYPES", "GAN_LOSS_KINDS", "reference"]


def backend_info() -> dict:
    """Which backend is live and why: ``{"backend": "ext"|"torch", "reason": str, "cuda": bool}``."""
    return {"backend": "torch", "reason": "compiled extension not wired yet", "cuda": False}


gaussian_log_prob = reference.gaussian_log_prob
gaussian_estep = reference.gaussian_estep
gan_d_loss = reference.gan_d_loss
gan_g_loss = reference.gan_g_loss
