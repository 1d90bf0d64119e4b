"""Fake (meta) and autograd kernels of the ``torch.ops.aigc_engine`` custom ops.

Imported by ``_loader`` right after ``aigc_engine._C`` has registered the schemas and the
CPU/CUDA kernels, so that the ops work under ``torch.compile(fullgraph=True)`` and autograd.

- ``gaussian_log_prob``: backward in closed form with PyTorch ops (below), chunked over the
  points so that the full-covariance N x K x D intermediate stays bounded.
- ``gaussian_estep``: forward only (the EM E-step needs no gradient); the public wrapper routes
  calls that need a gradient through ``gaussian_log_prob`` + ``logsumexp`` instead.
- ``gaussian_em_stats``: forward only (statistics for the M-step).
- ``gan_d_loss`` / ``gan_g_loss``: the forward kernel already wrote d loss / d logits; backward
  only scales it by the incoming gradient (Liger-Kernel style). Not twice differentiable.
"""
from __future__ import annotations

import torch

from .. import _C  # noqa: F401  (the schemas must exist before anything is registered on them)

_LIB = "aigc_engine"
# Bound on the elements of one backward chunk's [B, K, D] intermediate (full/tied).
_BACKWARD_CHUNK_ELEMS = 1 << 22


# --- fake kernels -----------------------------------------------------------------------------

@torch.library.register_fake(f"{_LIB}::gaussian_log_prob")
def _gaussian_log_prob_fake(x, means, precisions_chol, covariance_type, log_weights):
    return x.new_empty((x.shape[0], means.shape[0]))


@torch.library.register_fake(f"{_LIB}::gaussian_estep")
def _gaussian_estep_fake(x, means, precisions_chol, covariance_type, log_weights):
    return x.new_empty((x.shape[0],)), x.new_empty((x.shape[0], means.shape[0]))


@torch.library.register_fake(f"{_LIB}::gaussian_em_stats")
def _gaussian_em_stats_fake(x, means, precisions_chol, covariance_type, log_weights, shift, double_moments):
    from .reference import stats_columns

    f64 = dict(dtype=torch.float64)
    return (x.new_empty((means.shape[0], stats_columns(covariance_type, x.shape[1])), **f64),
            x.new_empty((), **f64))


def _grad_like(t, compute_grad):
    return t.new_empty(t.shape) if compute_grad else t.new_empty((0,))


@torch.library.register_fake(f"{_LIB}::gan_d_loss")
def _gan_d_loss_fake(real_logits, fake_logits, kind, compute_grad):
    return (real_logits.new_empty(()), _grad_like(real_logits, compute_grad),
            _grad_like(fake_logits, compute_grad))


@torch.library.register_fake(f"{_LIB}::gan_g_loss")
def _gan_g_loss_fake(fake_logits, kind, compute_grad):
    return fake_logits.new_empty(()), _grad_like(fake_logits, compute_grad)


# --- autograd: GAN losses ---------------------------------------------------------------------

def _gan_d_setup(ctx, inputs, output):
    _, grad_real, grad_fake = output
    ctx.compute_grad = inputs[3]
    ctx.set_materialize_grads(False)  # no zero tensors for the gradient outputs' (unused) grads
    ctx.mark_non_differentiable(grad_real, grad_fake)
    ctx.save_for_backward(grad_real, grad_fake)


def _unit(grad_loss) -> bool:
    """True when grad_loss is exactly 1 (``loss.backward()``), checked only where that is free:
    eager mode on the CPU. The saved gradient is then returned as it is, without a copy;
    autograd's AccumulateGrad clones it if anything else still holds it (retain_graph)."""
    return (type(grad_loss) is torch.Tensor  # not a fake/functional tensor of a tracer
            and grad_loss.device.type == "cpu" and not torch.compiler.is_compiling()
            and torch._C._len_torch_dispatch_stack() == 0  # no tracing/dispatch mode active
            and grad_loss.numel() == 1 and grad_loss.item() == 1.0)


def scale_saved(grad_loss, *saved):
    """d loss / d logits for the incoming ``grad_loss``: the saved gradients as they are when
    ``grad_loss`` is exactly 1 (see ``_unit``), else scaled by it. Shared by the registered
    autograd below and the eager ``autograd.Function`` wrappers in ``aigc_engine.ops``."""
    if _unit(grad_loss):
        return saved
    return tuple(grad_loss * g for g in saved)


def _gan_d_backward(ctx, grad_loss, _g1, _g2):
    if grad_loss is None:
        return None, None, None, None
    if not ctx.compute_grad:
        raise RuntimeError("aigc_engine::gan_d_loss was called with compute_grad=False; "
                           "call aigc_engine.ops.gan_d_loss, which sets it when a gradient is needed")
    return (*scale_saved(grad_loss, *ctx.saved_tensors), None, None)


torch.library.register_autograd(f"{_LIB}::gan_d_loss", _gan_d_backward, setup_context=_gan_d_setup)


def _gan_g_setup(ctx, inputs, output):
    _, grad_fake = output
    ctx.compute_grad = inputs[2]
    ctx.set_materialize_grads(False)
    ctx.mark_non_differentiable(grad_fake)
    ctx.save_for_backward(grad_fake)


def _gan_g_backward(ctx, grad_loss, _g1):
    if grad_loss is None:
        return None, None, None
    if not ctx.compute_grad:
        raise RuntimeError("aigc_engine::gan_g_loss was called with compute_grad=False; "
                           "call aigc_engine.ops.gan_g_loss, which sets it when a gradient is needed")
    return (*scale_saved(grad_loss, *ctx.saved_tensors), None, None)


torch.library.register_autograd(f"{_LIB}::gan_g_loss", _gan_g_backward, setup_context=_gan_g_setup)


# --- autograd: Gaussian log-density -----------------------------------------------------------

def gaussian_log_prob_backward(grad, x, means, P, covariance_type):
    """Closed-form vector-Jacobian product of ``gaussian_log_prob`` for G = grad ``[N, K]``.

    With y_nk = (x_n - mu_k) P_k and out_nk = -|y_nk|^2 / 2 + log det P_k + log w_k:
    d/dx_n = -sum_k G_nk y_nk P_k^T, d/dmu_k = sum_n G_nk y_nk P_k^T,
    d/dP_k = -sum_n G_nk (x_n - mu_k)^T y_nk + (sum_n G_nk) d log det P_k / dP_k,
    d/dlog w_k = sum_n G_nk. Diag and spherical use the same sums written as GEMMs
    (no [N, K, D] intermediate). Returns (grad_x, grad_means, grad_P, grad_log_weights).
    """
    N, D = x.shape
    K = means.shape[0]
    G = grad.to(x.dtype)
    g_sum = G.sum(0)  # [K]
    if covariance_type in ("full", "tied"):
        Pk = P if covariance_type == "full" else P.expand(K, D, D)
        muP = torch.einsum("kd,kde->ke", means, Pk)
        B = max(1, _BACKWARD_CHUNK_ELEMS // max(1, K * D))
        gx_parts = []
        gmu = means.new_zeros((K, D))
        gP = Pk.new_zeros((K, D, D))
        for s in range(0, N, B):
            xs, Gs = x[s:s + B], G[s:s + B]
            y = torch.einsum("nd,kde->nke", xs, Pk) - muP          # [B, K, D]
            Gy = Gs.unsqueeze(-1) * y                                  # [B, K, D]
            gx_parts.append(-torch.einsum("nke,kde->nd", Gy, Pk))
            gy_sum = Gy.sum(0)                                         # [K, D]
            gmu = gmu + torch.einsum("ke,kde->kd", gy_sum, Pk)
            gP = gP - torch.einsum("nd,nke->kde", xs, Gy) + torch.einsum("kd,ke->kde", means, gy_sum)
        gx = torch.cat(gx_parts, 0) if gx_parts else x.new_zeros((0, D))
        diag = torch.diagonal(Pk, dim1=-2, dim2=-1)
        gP = gP + torch.diag_embed(g_sum.unsqueeze(-1) / diag)
        if covariance_type == "tied":
            gP = gP.sum(0)
    elif covariance_type == "diag":
        p2 = P * P                                                      # [K, D]
        GtX = G.T @ x                                                   # [K, D]
        gx = -(x * (G @ p2) - G @ (means * p2))
        gmu = p2 * (GtX - means * g_sum.unsqueeze(1))
        sq = G.T @ (x * x) - 2.0 * means * GtX + means * means * g_sum.unsqueeze(1)
        gP = -P * sq + g_sum.unsqueeze(1) / P
    elif covariance_type == "spherical":
        p2 = P * P                                                      # [K]
        GtX = G.T @ x                                                   # [K, D]
        gx = -(x * (G @ p2).unsqueeze(1) - G @ (means * p2.unsqueeze(1)))
        gmu = p2.unsqueeze(1) * (GtX - means * g_sum.unsqueeze(1))
        sq = G.T @ (x * x).sum(1) - 2.0 * (means * GtX).sum(1) + (means * means).sum(1) * g_sum
        gP = -P * sq + D * g_sum / P
    else:
        raise ValueError(f"unknown covariance_type {covariance_type!r}")
    return gx, gmu, gP, g_sum


def _glp_setup(ctx, inputs, output):
    x, means, P, covariance_type, log_weights = inputs
    ctx.set_materialize_grads(False)
    ctx.covariance_type = covariance_type
    ctx.has_log_weights = log_weights is not None
    ctx.save_for_backward(x, means, P)


def _glp_backward(ctx, grad):
    if grad is None:
        return None, None, None, None, None
    x, means, P = ctx.saved_tensors
    need = ctx.needs_input_grad
    gx, gmu, gP, glw = gaussian_log_prob_backward(grad, x, means, P, ctx.covariance_type)
    return (gx if need[0] else None, gmu if need[1] else None, gP if need[2] else None, None,
            glw if ctx.has_log_weights and need[4] else None)


torch.library.register_autograd(f"{_LIB}::gaussian_log_prob", _glp_backward, setup_context=_glp_setup)
