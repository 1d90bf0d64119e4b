"""gaussian_log_prob / gaussian_estep: the extension against the reference, against scipy
(independent maths, float64), gradients, opcheck, forced fallback and bad inputs."""
from __future__ import annotations

import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from aigc_engine import ops
from aigc_engine.ops import _loader, reference

from test_ops_helpers import cuda_only, make_params, requires_ext

pytestmark = requires_ext
TYPES = ops.COVARIANCE_TYPES
SHAPES = [(1, 1, 1), (1, 3, 1), (7, 1, 3), (300, 4, 6), (1100, 9, 17), (257, 16, 33)]


def _tol(dtype, scale=1.0):
    return dict(rtol=1e-5, atol=2e-4 * scale) if dtype == torch.float32 else dict(rtol=1e-10, atol=1e-9 * scale)


@pytest.fixture
def ext_backend():
    ops.set_backend("ext")
    yield
    ops.set_backend(None)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("covariance_type", TYPES)
def test_log_prob_and_estep_match_reference(covariance_type, shape, dtype, ext_backend):
    N, D, K = shape
    means, P, _ = make_params(covariance_type, K, D, dtype, seed=N + D + K)
    x = torch.randn(N, D, dtype=dtype) * 1.5
    lw = torch.log_softmax(torch.randn(K, dtype=dtype), 0)
    for log_weights in (None, lw):
        got = ops.gaussian_log_prob(x, means, P, covariance_type, log_weights)
        want = reference.gaussian_log_prob(x, means, P, covariance_type, log_weights)
        assert got.shape == (N, K) and got.dtype == dtype
        torch.testing.assert_close(got, want, **_tol(dtype, want.abs().max().item()))
    lpn, lr = ops.gaussian_estep(x, means, P, covariance_type, lw)
    lpn_ref, lr_ref = reference.gaussian_estep(x, means, P, covariance_type, lw)
    scale = lr_ref.abs().max().item()
    torch.testing.assert_close(lpn, lpn_ref, **_tol(dtype, scale))
    torch.testing.assert_close(lr, lr_ref, **_tol(dtype, scale))
    torch.testing.assert_close(lr.exp().sum(1), torch.ones(N, dtype=dtype), **_tol(dtype))


@pytest.mark.parametrize("covariance_type", TYPES)
def test_log_prob_matches_scipy(covariance_type, ext_backend):
    multivariate_normal = pytest.importorskip("scipy.stats").multivariate_normal
    N, D, K = 200, 5, 4
    means, P, cov = make_params(covariance_type, K, D, seed=3)
    x = torch.randn(N, D, dtype=torch.float64) * 2
    got = ops.gaussian_log_prob(x, means, P, covariance_type).numpy()
    want = np.stack([multivariate_normal(means[k].numpy(), cov[k].numpy()).logpdf(x.numpy())
                     for k in range(K)], 1)
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-9)


def _extended_precision_log_prob(x, means, P, covariance_type):
    """log N(x | mu_k, (P_k P_k^T)^-1) on the same P as the kernels, in numpy's long double
    (x87 80-bit, eps 1.1e-19 on x86: exact for a float64 check), with a first-order bound on
    the rounding of the difference form maha = |x P - mu P|^2 evaluated in float64: each
    y_e = sum_d x_d P_de - b_e carries at most gamma_{D+1} (sum_d |x_d P_de| + sum_d |mu_d P_de|),
    so |d maha| <= 2 sum_e |y_e| dy_e + gamma_D maha, and log p moves by half of that."""
    K, D = means.shape
    Pk = P.expand(K, D, D) if covariance_type == "tied" else P
    xl, ml, Pl = (t.numpy().astype(np.longdouble) for t in (x, means, Pk))
    eps = np.finfo(np.float64).eps / 2
    gamma = lambda n: n * eps / (1 - n * eps)
    logp, bound = [], []
    for k in range(K):
        y = (xl - ml[k]) @ Pl[k]                                        # [N, D]
        maha = (y * y).sum(1)
        dy = gamma(D + 1) * (np.abs(xl) @ np.abs(Pl[k]) + np.abs(ml[k]) @ np.abs(Pl[k]))
        const = np.log(np.diagonal(Pl[k])).sum() - 0.5 * D * np.log(2 * np.pi)
        logp.append(const - 0.5 * maha)
        bound.append(0.5 * (2 * (np.abs(y) * dy).sum(1) + gamma(D) * maha) + 4 * eps * abs(const))
    return np.stack(logp, 1).astype(np.float64), np.stack(bound, 1).astype(np.float64)


@pytest.mark.parametrize("covariance_type", TYPES)
def test_ill_conditioned_and_large_magnitudes(covariance_type, ext_backend):
    multivariate_normal = pytest.importorskip("scipy.stats").multivariate_normal
    N, D, K = 500, 6, 5
    means, P, cov = make_params(covariance_type, K, D, cond=1e8, seed=5)
    means = means + 1e3  # far from the origin: stresses cancellation in the expansion trick
    x = means[torch.arange(N) % K] + torch.randn(N, D, dtype=torch.float64) * 0.3
    got = ops.gaussian_log_prob(x, means, P, covariance_type)
    want = np.stack([multivariate_normal(means[k].numpy(), cov[k].numpy(), allow_singular=True)
                     .logpdf(x.numpy()) for k in range(K)], 1)
    assert torch.isfinite(got).all()
    # diag/spherical use the expansion |x|^2 p^2 - 2 x mu p^2 + |mu|^2 p^2 (as scikit-learn),
    # whose absolute error grows with |x|^2 p^2; full/tied use differences and stay tight.
    big = (x.abs().max() ** 2 * P.abs().max() ** 2).item()
    if covariance_type in ("full", "tied"):
        # scipy works from the covariance (condition 1e8) through an eigendecomposition, so its
        # own answer is only good to ~eps * cond * |log p| (up to 6e-4 at |log p| ~ 2e5, and
        # different for OpenBLAS's SkylakeX and Haswell/Zen kernels): it is a check of the
        # maths, not of the rounding. The kernels' rounding is checked against an extended
        # precision evaluation on the same P, within the float64 error bound of the difference
        # form (bound ~2e-7 here, error ~1e-8; the expansion trick, ~eps |x P|^2, is 1e-3 off).
        cond = float(torch.linalg.cond(cov[0]))
        eps = np.finfo(np.float64).eps
        np.testing.assert_allclose(got.numpy(), want, rtol=0, atol=eps * cond * np.abs(want).max())
        exact, bound = _extended_precision_log_prob(x, means, P, covariance_type)
        err = np.abs(got.numpy() - exact)
        assert (err <= bound).all(), f"max error {err.max():.3g}, max bound {bound.max():.3g}"
    else:
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-9, atol=1e-13 * big)
    # float32 against the float64 answer, relative to the magnitude of the terms involved
    got32 = ops.gaussian_log_prob(x.float(), means.float(), P.float(), covariance_type)
    assert torch.isfinite(got32).all()
    ref32 = reference.gaussian_log_prob(x.float(), means.float(), P.float(), covariance_type)
    err_ext = (got32.double() - torch.from_numpy(want)).abs().max().item()
    err_ref = (ref32.double() - torch.from_numpy(want)).abs().max().item()
    assert err_ext <= 2 * err_ref + 1e-3 * max(1.0, np.abs(want).max())


@pytest.mark.parametrize("covariance_type", TYPES)
def test_non_contiguous_inputs(covariance_type, ext_backend):
    N, D, K = 101, 7, 5
    means, P, _ = make_params(covariance_type, K, D, seed=9)
    x = torch.randn(D, 2 * N, dtype=torch.float64)[:, ::2].T  # strided and transposed
    means_nc = means.T.contiguous().T  # column-major view of the same values
    if P.dim() >= 2:
        P_nc = P.transpose(-1, -2).contiguous().transpose(-1, -2)
    else:
        P_nc = torch.stack([P, P], 1)[:, 0]  # stride 2
    assert not P_nc.is_contiguous() and not means_nc.is_contiguous()
    lw = torch.randn(2 * K, dtype=torch.float64)[::2]
    assert not x.is_contiguous() and not lw.is_contiguous()
    got = ops.gaussian_log_prob(x, means_nc, P_nc, covariance_type, lw)
    want = reference.gaussian_log_prob(x.contiguous(), means, P, covariance_type, lw.contiguous())
    torch.testing.assert_close(got, want, **_tol(torch.float64, want.abs().max().item()))
    lpn, lr = ops.gaussian_estep(x, means_nc, P_nc, covariance_type, lw)
    lpn_ref, lr_ref = reference.gaussian_estep(x.contiguous(), means, P, covariance_type, lw.contiguous())
    torch.testing.assert_close(lr, lr_ref, **_tol(torch.float64, lr_ref.abs().max().item()))


def test_estep_all_minus_inf_weights_like_logsumexp(ext_backend):
    means, P, _ = make_params("diag", 3, 2)
    x = torch.randn(4, 2, dtype=torch.float64)
    lw = torch.full((3,), -math.inf, dtype=torch.float64)
    lpn, lr = ops.gaussian_estep(x, means, P, "diag", lw)
    lpn_ref, lr_ref = reference.gaussian_estep(x, means, P, "diag", lw)
    torch.testing.assert_close(lpn, lpn_ref, equal_nan=True)
    torch.testing.assert_close(lr, lr_ref, equal_nan=True)


@pytest.mark.parametrize("covariance_type", TYPES)
def test_gradcheck_float64(covariance_type, ext_backend):
    N, D, K = 9, 3, 4
    means, P, _ = make_params(covariance_type, K, D, seed=11)
    x = torch.randn(N, D, dtype=torch.float64, requires_grad=True)
    means.requires_grad_()
    P.requires_grad_()
    lw = torch.randn(K, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda a, b, c, d: ops.gaussian_log_prob(a, b, c, covariance_type, d), (x, means, P, lw))
    # the E-step with a gradient goes through the differentiable path
    assert torch.autograd.gradcheck(
        lambda a, b, c, d: ops.gaussian_estep(a, b, c, covariance_type, d)[1], (x, means, P, lw))


@pytest.mark.parametrize("covariance_type", TYPES)
def test_gradients_match_reference_float32(covariance_type, ext_backend):
    N, D, K = 400, 8, 6
    means, P, _ = make_params(covariance_type, K, D, torch.float32, seed=13)
    x = torch.randn(N, D)
    lw = torch.log_softmax(torch.randn(K), 0)
    G = torch.randn(N, K)
    grads = []
    for fn in (ops.gaussian_log_prob, reference.gaussian_log_prob):
        inputs = [t.clone().requires_grad_() for t in (x, means, P, lw)]
        (fn(inputs[0], inputs[1], inputs[2], covariance_type, inputs[3]) * G).sum().backward()
        grads.append([t.grad for t in inputs])
    for got, want in zip(*grads):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-3 * max(1.0, want.abs().max().item()))


@pytest.mark.parametrize("covariance_type", ["full", "spherical"])
def test_opcheck(covariance_type):
    N, D, K = 6, 3, 2
    means, P, _ = make_params(covariance_type, K, D, seed=1)
    x = torch.randn(N, D, dtype=torch.float64)
    lw = torch.randn(K, dtype=torch.float64)
    torch.library.opcheck(torch.ops.aigc_engine.gaussian_log_prob,
                          (x, means.requires_grad_(), P.requires_grad_(), covariance_type, lw.requires_grad_()))
    torch.library.opcheck(torch.ops.aigc_engine.gaussian_estep,
                          (x, means.detach(), P.detach(), covariance_type, lw.detach()))


def test_forced_fallback_equals_extension():
    means, P, _ = make_params("full", 5, 4, torch.float32)
    x = torch.randn(300, 4)
    lw = torch.log_softmax(torch.randn(5), 0)
    ops.set_backend("torch")
    try:
        assert ops.backend_info()["backend"] == "torch"
        fallback = ops.gaussian_estep(x, means, P, "full", lw)
    finally:
        ops.set_backend(None)
    ops.set_backend("ext")
    try:
        ext = ops.gaussian_estep(x, means, P, "full", lw)
    finally:
        ops.set_backend(None)
    for a, b in zip(ext, fallback):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-4)


def test_env_variable_forces_reference():
    code = ("import aigc_engine.ops as o, torch; i = o.backend_info(); "
            "assert i['backend'] == 'torch' and i['requested'] == 'torch', i; print('ok')")
    env = dict(os.environ, AIGC_ENGINE_BACKEND="torch")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 0 and "ok" in out.stdout, out.stderr


def test_explicit_ext_that_cannot_load_is_an_error(monkeypatch):
    monkeypatch.setattr(_loader, "_loaded", False)
    monkeypatch.setattr(_loader, "_load_error", "ImportError: simulated")
    means, P, _ = make_params("diag", 2, 2)
    x = torch.randn(3, 2, dtype=torch.float64)
    ops.set_backend("ext")
    try:
        with pytest.raises(RuntimeError, match="simulated"):
            ops.gaussian_log_prob(x, means, P, "diag")
        assert "simulated" in ops.backend_info()["reason"]
    finally:
        ops.set_backend(None)
    # auto falls back silently and says why
    info = ops.backend_info()
    assert info["backend"] == "torch" and "simulated" in info["reason"]
    torch.testing.assert_close(ops.gaussian_log_prob(x, means, P, "diag"),
                               reference.gaussian_log_prob(x, means, P, "diag"))


def test_bad_inputs_raise_value_errors():
    means, P, _ = make_params("full", 3, 2)
    x = torch.randn(5, 2, dtype=torch.float64)
    with pytest.raises(ValueError, match="covariance_type"):
        ops.gaussian_log_prob(x, means, P, "banana")
    with pytest.raises(ValueError, match=r"x must be \[N, D\]"):
        ops.gaussian_log_prob(x[0], means, P, "full")
    with pytest.raises(ValueError, match=r"means must be \[K, D\]"):
        ops.gaussian_log_prob(x, means[:, :1], P, "full")
    with pytest.raises(ValueError, match=r"precisions_chol must be \[K, D, D\]"):
        ops.gaussian_log_prob(x, means, P[0], "full")
    with pytest.raises(ValueError, match=r"precisions_chol must be \[K\]"):
        ops.gaussian_log_prob(x, means, P, "spherical")
    with pytest.raises(ValueError, match=r"log_weights must be \[K\]"):
        ops.gaussian_estep(x, means, P, "full", torch.zeros(4, dtype=torch.float64))
    with pytest.raises(ValueError, match="log_weights"):
        ops.gaussian_estep(x, means, P, "full", None)
    with pytest.raises(ValueError, match="dtype"):
        ops.gaussian_log_prob(x.float(), means, P, "full")
    with pytest.raises(ValueError, match="floating-point"):
        ops.gaussian_log_prob(x.long(), means.long(), P.long(), "full")


def test_raw_op_validates_too():
    means, P, _ = make_params("diag", 3, 2)
    x = torch.randn(5, 2, dtype=torch.float64)
    with pytest.raises(ValueError, match="precisions_chol"):
        torch.ops.aigc_engine.gaussian_log_prob(x, means, P[:, :1], "diag", None)
    with pytest.raises(ValueError, match="covariance_type"):
        torch.ops.aigc_engine.gaussian_estep(x, means, P, "nope", torch.zeros(3, dtype=torch.float64))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("covariance_type", TYPES)
@pytest.mark.parametrize("_mark", [pytest.param(0, marks=cuda_only)])
def test_cuda_matches_reference(covariance_type, dtype, _mark):
    if not ops.backend_info()["cuda"]:
        pytest.skip("CUDA kernels not compiled in")
    N, D, K = 3000, 12, 7
    means, P, _ = make_params(covariance_type, K, D, seed=21)
    x = torch.randn(N, D, dtype=torch.float64)
    lw = torch.log_softmax(torch.randn(K, dtype=torch.float64), 0)
    want = reference.gaussian_log_prob(x, means, P, covariance_type, lw)
    lpn_ref, lr_ref = reference.gaussian_estep(x, means, P, covariance_type, lw)
    dev = [t.to("cuda", dtype) for t in (x, means, P, lw)]
    got = ops.gaussian_log_prob(*dev[:3], covariance_type, dev[3])
    lpn, lr = ops.gaussian_estep(*dev[:3], covariance_type, dev[3])
    # the reference in float64 on the inputs rounded to `dtype`
    want = reference.gaussian_log_prob(*[t.double().cpu() for t in dev[:3]], covariance_type, dev[3].double().cpu())
    lpn_ref, lr_ref = reference.gaussian_estep(*[t.double().cpu() for t in dev[:3]], covariance_type, dev[3].double().cpu())
    tol = dict(rtol=1e-4, atol=1e-3) if dtype == torch.float32 else dict(rtol=1e-2, atol=0.25)
    scale = want.abs().max().item()
    torch.testing.assert_close(got.double().cpu(), want, rtol=tol["rtol"], atol=tol["atol"] * scale)
    torch.testing.assert_close(lpn.double().cpu(), lpn_ref, rtol=tol["rtol"], atol=tol["atol"] * scale)
    torch.testing.assert_close(lr.double().cpu(), lr_ref, rtol=tol["rtol"], atol=tol["atol"] * scale)
    if dtype == torch.float32:
        xs = dev[0].clone().requires_grad_()
        ops.gaussian_log_prob(xs, *dev[1:3], covariance_type, dev[3]).sum().backward()
        xr = x.clone().requires_grad_()
        reference.gaussian_log_prob(xr, means, P, covariance_type, lw).sum().backward()
        torch.testing.assert_close(xs.grad.double().cpu(), xr.grad, rtol=1e-3, atol=1e-2)


def test_cuda_full_d_bound(monkeypatch):
    """The D above which full/tied CUDA calls go to the reference: the kernel's smallest launch,
    (32 D + D^2 + D) * acc_bytes, must fit the opt-in shared memory per block."""
    from types import SimpleNamespace

    ops._cuda_max_full_d_cache.clear()
    monkeypatch.setattr(torch.cuda, "get_device_properties",
                        lambda i: SimpleNamespace(shared_memory_per_block_optin=227 * 1024))
    try:
        for acc_bytes in (4, 8):
            d = ops._cuda_max_full_d(0, acc_bytes)
            assert (32 * d + d * d + d) * acc_bytes <= 227 * 1024
            assert (32 * (d + 1) + (d + 1) ** 2 + d + 1) * acc_bytes > 227 * 1024
        assert ops._cuda_max_full_d(0, 8) == 154 and ops._cuda_max_full_d(0, 4) == 225
        ops._cuda_max_full_d_cache.clear()
        monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: SimpleNamespace())
        assert ops._cuda_max_full_d(0, 4) == ops._CUDA_FULL_D_FALLBACK == 128
    finally:
        ops._cuda_max_full_d_cache.clear()


@pytest.mark.parametrize("covariance_type", ["full", "tied"])
@pytest.mark.parametrize("_mark", [pytest.param(0, marks=cuda_only)])
def test_cuda_large_d_runs(covariance_type, _mark):
    """full/tied with a D whose D x D factor does not fit in shared memory: the public ops run
    the reference instead of raising in the kernel's launch."""
    N, D, K = 64, 320, 2
    means, P, _ = make_params(covariance_type, K, D, seed=5)
    x = torch.randn(N, D, dtype=torch.float64)
    lw = torch.log_softmax(torch.randn(K, dtype=torch.float64), 0)
    want = reference.gaussian_log_prob(x, means, P, covariance_type, lw)
    got = ops.gaussian_log_prob(*[t.cuda() for t in (x, means, P)], covariance_type, lw.cuda())
    torch.testing.assert_close(got.cpu(), want)
    lpn, _ = ops.gaussian_estep(*[t.cuda() for t in (x, means, P)], covariance_type, lw.cuda())
    torch.testing.assert_close(lpn.cpu(), reference.gaussian_estep(x, means, P, covariance_type, lw)[0])
