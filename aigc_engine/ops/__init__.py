"""Kernels of the engine: batched Gaussian log-density (and the fused EM E-step and EM
statistics) and fused GAN losses. Each entry point validates its inputs, then dispatches to the
compiled extension (``torch.ops.aigc_engine.*``) when it is loaded and supports the device/dtype, else to the
pure-PyTorch reference (``AIGC_ENGINE_BACKEND=auto|ext|torch``, see ``_loader``).

Supported by the extension: float32/float64 on CPU; float16/bfloat16/float32/float64 on CUDA
when the CUDA kernels were compiled in. Anything else runs the reference.

Large D on CUDA: the CUDA Gaussian kernel keeps one component's precision factor (D x D for
``full``/``tied``) and a tile of points in shared memory, so ``full``/``tied`` calls whose D
exceeds what fits, (32 D + D^2 + D) * (4 for float32/half/bfloat16, 8 for float64) bytes <= the
device's opt-in shared memory per block (D <= 154 in float64, D <= 225 otherwise on a
227 KiB H100/H200; D <= 128 when the device does not report it), run the reference instead,
also under ``AIGC_ENGINE_BACKEND=ext``. ``diag``/``spherical`` have no such limit in practice.
"""
from __future__ import annotations

import torch

from . import _loader, reference
from .reference import COVARIANCE_TYPES, GAN_LOSS_KINDS, mixture_stats, stats_columns

__all__ = ["gaussian_log_prob", "gaussian_estep", "gaussian_em_stats", "mixture_stats",
           "stats_columns", "gan_d_loss", "gan_g_loss", "backend_info",
           "set_backend", "COVARIANCE_TYPES", "GAN_LOSS_KINDS", "reference"]

set_backend = _loader.set_backend

_CPU_DTYPES = (torch.float32, torch.float64)
_CUDA_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def backend_info() -> dict:
    """Which backend is live and why: ``{"backend": "ext"|"torch", "reason": str, "cuda": bool,
    "requested": "auto"|"ext"|"torch", "extension_loaded": bool}``."""
    return _loader.info()


def _ext_supports(t: torch.Tensor) -> bool:
    if not _loader.use_extension():
        return False
    if t.device.type == "cpu":
        return t.dtype in _CPU_DTYPES
    if t.device.type == "cuda":
        return t.dtype in _CUDA_DTYPES and _loader.cuda_compiled()
    return False


# max D of full/tied on CUDA when the device does not report its opt-in shared memory per block
_CUDA_FULL_D_FALLBACK = 128
_cuda_max_full_d_cache: dict = {}


def _assume_constant_result(fn):
    """``torch.compiler.assume_constant_result`` without importing ``torch._dynamo`` (about 1.7 s,
    which every ``aigc-engine`` command would pay): that decorator only sets this attribute,
    which dynamo reads when it traces a call (tests/test_startup.py checks that they agree)."""
    fn._dynamo_marked_constant = True
    return fn


@_assume_constant_result  # a device property: a constant under torch.compile
def _cuda_max_full_d(device_index: int | None, acc_bytes: int) -> int:
    """Largest D whose full/tied CUDA launch fits in shared memory: the kernel's smallest block
    (32 points) needs (32 D + D^2 + D) * acc_bytes bytes (see pick_launch in
    csrc/cuda/gaussian_log_prob.cu). Cached per (device, acc_bytes)."""
    if device_index is None:
        device_index = torch.cuda.current_device()
    key = (device_index, acc_bytes)
    d = _cuda_max_full_d_cache.get(key)
    if d is None:
        props = torch.cuda.get_device_properties(device_index)
        limit = getattr(props, "shared_memory_per_block_optin", 0) or 0
        if limit <= 0:
            d = _CUDA_FULL_D_FALLBACK
        else:
            d = 0
            while ((d + 1) * 32 + (d + 1) ** 2 + (d + 1)) * acc_bytes <= limit:
                d += 1
        _cuda_max_full_d_cache[key] = d
    return d


def _ext_supports_gaussian(x: torch.Tensor, covariance_type: str) -> bool:
    if not _ext_supports(x):
        return False
    if x.device.type == "cuda" and covariance_type in ("full", "tied"):
        acc_bytes = 8 if x.dtype == torch.float64 else 4
        return x.shape[1] <= _cuda_max_full_d(x.device.index, acc_bytes)
    return True


def _shape(t) -> str:
    return str(tuple(t.shape))


def _check_gaussian(x, means, precisions_chol, covariance_type, log_weights, log_weights_required):
    if covariance_type not in COVARIANCE_TYPES:
        raise ValueError(f"covariance_type must be one of {COVARIANCE_TYPES}, got {covariance_type!r}")
    named = {"x": x, "means": means, "precisions_chol": precisions_chol}
    if log_weights is not None:
        named["log_weights"] = log_weights
    elif log_weights_required:
        raise ValueError("log_weights must be a [K] tensor, got None")
    for name, t in named.items():
        if not isinstance(t, torch.Tensor):
            raise ValueError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if not t.is_floating_point():
            raise ValueError(f"{name} must be a floating-point tensor, got {t.dtype}")
        if t.dtype != x.dtype or t.device != x.device:
            raise ValueError(f"{name} must have the dtype and device of x ({x.dtype}, {x.device}), "
                             f"got {t.dtype}, {t.device}")
    if x.dim() != 2:
        raise ValueError(f"x must be [N, D] (2-D), got shape {_shape(x)}")
    D = x.shape[1]
    if means.dim() != 2 or means.shape[1] != D:
        raise ValueError(f"means must be [K, D] with D = x.shape[1] = {D}, got shape {_shape(means)}")
    K = means.shape[0]
    expected = {"full": (K, D, D), "tied": (D, D), "diag": (K, D), "spherical": (K,)}[covariance_type]
    if tuple(precisions_chol.shape) != expected:
        names = {"full": "[K, D, D]", "tied": "[D, D]", "diag": "[K, D]", "spherical": "[K]"}
        raise ValueError(f"precisions_chol must be {names[covariance_type]} = {expected} for "
                         f"covariance_type={covariance_type!r}, got shape {_shape(precisions_chol)}")
    if log_weights is not None and tuple(log_weights.shape) != (K,):
        raise ValueError(f"log_weights must be [K] = ({K},), got shape {_shape(log_weights)}")


def gaussian_log_prob(x: torch.Tensor, means: torch.Tensor, precisions_chol: torch.Tensor,
                      covariance_type: str, log_weights: torch.Tensor | None = None) -> torch.Tensor:
    """log N(x_n | mu_k, Sigma_k) (+ ``log_weights[k]``) as ``[N, K]``.

    ``x [N, D]``, ``means [K, D]``; ``precisions_chol`` P with precision = P P^T (scikit-learn's
    convention): full ``[K, D, D]``, tied ``[D, D]``, diag ``[K, D]``, spherical ``[K]``.
    Differentiable in x, means, precisions_chol and log_weights. On CUDA, ``full``/``tied``
    with a D too large for the kernel's shared memory run the reference (see the module doc).
    """
    _check_gaussian(x, means, precisions_chol, covariance_type, log_weights, False)
    if _ext_supports_gaussian(x, covariance_type):
        return torch.ops.aigc_engine.gaussian_log_prob(x, means, precisions_chol, covariance_type,
                                                       log_weights)
    return reference.gaussian_log_prob(x, means, precisions_chol, covariance_type, log_weights)


def gaussian_estep(x: torch.Tensor, means: torch.Tensor, precisions_chol: torch.Tensor,
                   covariance_type: str, log_weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """EM E-step: ``(log_prob_norm [N], log_resp [N, K])`` with
    ``log_prob_norm = logsumexp_k(log N + log w)`` and ``log_resp = weighted - log_prob_norm``.

    The extension computes log-densities, the logsumexp and the responsibilities in one pass
    over each tile of points. That fused kernel is forward-only: when a gradient is needed the
    call goes through the differentiable ``gaussian_log_prob`` + ``logsumexp`` instead.
    """
    _check_gaussian(x, means, precisions_chol, covariance_type, log_weights, True)
    needs_grad = torch.is_grad_enabled() and any(
        t.requires_grad for t in (x, means, precisions_chol, log_weights))
    if _ext_supports_gaussian(x, covariance_type):
        if not needs_grad:
            return torch.ops.aigc_engine.gaussian_estep(x, means, precisions_chol, covariance_type,
                                                        log_weights)
        weighted = torch.ops.aigc_engine.gaussian_log_prob(x, means, precisions_chol,
                                                           covariance_type, log_weights)
        log_prob_norm = torch.logsumexp(weighted, dim=1)
        return log_prob_norm, weighted - log_prob_norm[:, None]
    return reference.gaussian_estep(x, means, precisions_chol, covariance_type, log_weights)


def gaussian_em_stats(x: torch.Tensor, means: torch.Tensor, precisions_chol: torch.Tensor,
                      covariance_type: str, log_weights: torch.Tensor, shift: torch.Tensor,
                      double_moments: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """One EM pass: the E-step and the M-step's sufficient statistics in one go.

    Returns ``(stats [K, C], log_likelihood [])``, both float64: with ``r = exp(log_resp)`` of
    ``gaussian_estep`` and ``z = x - shift`` (``shift [D]``, rounded to x's dtype),
    ``stats[k] = sum_n r_nk [1 | z_n | moments(z_n)]`` (layout of ``mixture_stats``;
    ``C = stats_columns(covariance_type, D)``) and ``log_likelihood = sum_n log_prob_norm_n``.
    ``double_moments`` forms the products in float64 for float32 data. No gradient: the outputs
    never require grad.

    The extension (CPU) computes each tile's responsibilities and multiplies them into the
    tile's features while both are in cache: no ``[N, K]`` responsibilities and no ``[N, C]``
    features are written. Elsewhere (CUDA, other dtypes, ``AIGC_ENGINE_BACKEND=torch``) it is
    ``gaussian_estep`` followed by ``mixture_stats``.
    """
    _check_gaussian(x, means, precisions_chol, covariance_type, log_weights, True)
    if not isinstance(shift, torch.Tensor):
        raise ValueError(f"shift must be a [D] tensor, got {type(shift).__name__}")
    if tuple(shift.shape) != (x.shape[1],) or shift.device != x.device:
        raise ValueError(f"shift must be a [D] = ({x.shape[1]},) tensor on {x.device}, got shape "
                         f"{_shape(shift)} on {shift.device}")
    with torch.no_grad():  # statistics, not a differentiable function: same on every path
        if x.device.type == "cpu" and _ext_supports(x):
            return torch.ops.aigc_engine.gaussian_em_stats(x, means, precisions_chol, covariance_type,
                                                           log_weights, shift.to(x.dtype), bool(double_moments))
        return reference.gaussian_em_stats(x, means, precisions_chol, covariance_type, log_weights, shift,
                                           double_moments, estep=gaussian_estep)


class _GanDLoss(torch.autograd.Function):
    """Eager-mode autograd around the fused op: the same kernel and the same backward as the
    ``register_autograd`` registration (which torch.compile uses), minus ~20 us of the generic
    custom-op autograd wrapper per call, which matters for small batches."""

    @staticmethod
    def forward(ctx, real_logits, fake_logits, kind):
        loss, grad_real, grad_fake = torch.ops.aigc_engine.gan_d_loss(real_logits, fake_logits, kind, True)
        ctx.save_for_backward(grad_real, grad_fake)
        return loss

    @staticmethod
    def backward(ctx, grad_loss):
        from ._registrations import scale_saved  # loaded with the extension

        return (*scale_saved(grad_loss, *ctx.saved_tensors), None)


class _GanGLoss(torch.autograd.Function):
    """Eager-mode autograd around the fused generator loss (see ``_GanDLoss``)."""

    @staticmethod
    def forward(ctx, fake_logits, kind):
        loss, grad_fake = torch.ops.aigc_engine.gan_g_loss(fake_logits, kind, True)
        ctx.save_for_backward(grad_fake)
        return loss

    @staticmethod
    def backward(ctx, grad_loss):
        from ._registrations import scale_saved  # loaded with the extension

        return (*scale_saved(grad_loss, *ctx.saved_tensors), None)


def _check_kind(kind):
    if kind not in GAN_LOSS_KINDS:
        raise ValueError(f"kind must be one of {GAN_LOSS_KINDS}, got {kind!r}")


def _check_logits(t, name):
    if not isinstance(t, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor of logits (any shape), got {type(t).__name__}")
    if not t.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor of logits, got {t.dtype}")


def gan_d_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor, kind: str = "ns") -> torch.Tensor:
    """Discriminator loss, a scalar: the mean of the real-side term plus the mean of the
    fake-side term (``ns``: softplus(-real) + softplus(fake); ``hinge``, ``lsgan``, ``wgan`` as
    in ``reference.gan_d_loss``). Fused: loss and gradient in one pass over the logits."""
    _check_kind(kind)
    _check_logits(real_logits, "real_logits")
    _check_logits(fake_logits, "fake_logits")
    if real_logits.device != fake_logits.device:
        raise ValueError(f"real_logits and fake_logits must be on one device, got "
                         f"{real_logits.device} and {fake_logits.device}")
    if real_logits.dtype != fake_logits.dtype:
        dtype = torch.promote_types(real_logits.dtype, fake_logits.dtype)
        real_logits, fake_logits = real_logits.to(dtype), fake_logits.to(dtype)
    if _ext_supports(real_logits):
        need = torch.is_grad_enabled() and (real_logits.requires_grad or fake_logits.requires_grad)
        if need and not torch.compiler.is_compiling():
            return _GanDLoss.apply(real_logits, fake_logits, kind)
        return torch.ops.aigc_engine.gan_d_loss(real_logits, fake_logits, kind, need)[0]
    return reference.gan_d_loss(real_logits, fake_logits, kind)


def gan_g_loss(fake_logits: torch.Tensor, kind: str = "ns") -> torch.Tensor:
    """Generator loss, a scalar mean (``ns``: softplus(-fake), the non-saturating loss;
    ``hinge``/``wgan``: -fake; ``lsgan``: (fake - 1)^2 / 2). Fused like ``gan_d_loss``."""
    _check_kind(kind)
    _check_logits(fake_logits, "fake_logits")
    if _ext_supports(fake_logits):
        need = torch.is_grad_enabled() and fake_logits.requires_grad
        if need and not torch.compiler.is_compiling():
            return _GanGLoss.apply(fake_logits, kind)
        return torch.ops.aigc_engine.gan_g_loss(fake_logits, kind, need)[0]
    return reference.gan_g_loss(fake_logits, kind)
