"""Benchmarks of the compiled kernels against the reference fallback and the peers, in one run.

    pytest bench/bench_kernels.py --benchmark-only --benchmark-json /tmp/bench_kernels.json
    python bench/report.py /tmp/bench_kernels.json        # markdown table of ratios

Each case is one pytest-benchmark group; every implementation of the case is one test in it,
named by ``extra_info["impl"]`` (``ext`` is the extension). Peers: torch.distributions,
scikit-learn's ``_estimate_log_gaussian_prob`` (and, for the EM pass, its E-step plus
``_estimate_gaussian_parameters``), a chunked GEMM in plain PyTorch (as in
shared/anchors/logdensity_peers.py), eager PyTorch BCE-with-logits + autograd and its
torch.compile; floors: the case's FLOPs as one in-cache GEMM, allocating and writing the [N, K] output
once, and a read+write copy of the logits.
Float32 on CPU (the EM pass also float64; CUDA when present, for the ``cuda`` cases). Set AIGC_BENCH_ROUNDS to
change the number of timed rounds (default 5; slow peers at most 2, the small GAN cases 20 times
as many). No timing assertions here: the report says it.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from aigc_engine import ops
from aigc_engine.ops import reference
from conftest import bench_rounds

pytest.importorskip("pytest_benchmark")

ROUNDS = bench_rounds(5)
SLOW_ROUNDS = min(2, ROUNDS)  # peers that take seconds a round


def _run(benchmark, group, impl, fn, rounds=ROUNDS, **info):
    benchmark.group = group
    benchmark.extra_info.update(impl=impl, threads=torch.get_num_threads(), **info)
    benchmark.pedantic(fn, rounds=rounds, iterations=1, warmup_rounds=1)


# --- Gaussian log-density ---------------------------------------------------------------------

def _full_problem(N, D, K, device="cpu", dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(N, D, generator=g, dtype=dtype)
    mu = x[torch.randperm(N, generator=g)[:K]].clone()
    A = torch.randn(K, D, D, generator=g, dtype=dtype)
    cov = A @ A.transpose(1, 2) / D + torch.eye(D, dtype=dtype)
    L = torch.linalg.cholesky(cov)
    P = torch.linalg.solve_triangular(L, torch.eye(D, dtype=dtype).expand(K, D, D),
                                      upper=False).transpose(1, 2).contiguous()
    return [t.to(device) for t in (x, mu, P, cov)]


def _chunked_full(x, mu, P, B=8192):
    """The best plain-PyTorch full log-density (the anchor script's chunked GEMM)."""
    N, D = x.shape
    K = mu.shape[0]
    Pf = P.permute(1, 0, 2).reshape(D, K * D)
    muP = torch.einsum("kd,kde->ke", mu, P)
    const = torch.log(torch.diagonal(P, dim1=-2, dim2=-1)).sum(-1) - 0.5 * D * math.log(2 * math.pi)
    out = torch.empty(N, K, dtype=x.dtype, device=x.device)
    for s in range(0, N, B):
        y = (x[s:s + B] @ Pf).view(-1, K, D) - muP
        out[s:s + B] = const - 0.5 * (y * y).sum(-1)
    return out


def _gemm_floor(flops, dtype=torch.float32):
    """The unavoidable FLOPs at GEMM speed: a [M, 512] x [512, 512] product with the same FLOP
    count as the case (2 N K D^2 for full; 2 N K (2D + 1) for the diag expansion), in cache."""
    M = max(8, round(flops / (2 * 512 * 512)))
    a, b = torch.randn(M, 512, dtype=dtype), torch.randn(512, 512, dtype=dtype)
    out = torch.empty(M, 512, dtype=dtype)
    return lambda: torch.mm(a, b, out=out)


def _sklearn_log_prob(x, mu, P, covariance_type):
    from sklearn.mixture._gaussian_mixture import _estimate_log_gaussian_prob
    return _estimate_log_gaussian_prob(x, mu, P, covariance_type)


FULL_CASES = [(200_000, 16, 32), (1_000_000, 2, 16)]
FULL_IMPLS = ["ext", "ext_estep", "reference", "chunked_gemm", "torch_distributions", "sklearn",
              "gemm_floor", "output_floor"]


@pytest.mark.parametrize("impl", FULL_IMPLS)
@pytest.mark.parametrize("case", FULL_CASES, ids=lambda c: f"N{c[0]}-D{c[1]}-K{c[2]}")
def test_logdensity_full(benchmark, case, impl):
    N, D, K = case
    x, mu, P, cov = _full_problem(N, D, K)
    lw = torch.full((K,), -math.log(K))
    group = f"logdensity full N={N} D={D} K={K} f32"
    fns = {
        "ext": lambda: torch.ops.aigc_engine.gaussian_log_prob(x, mu, P, "full", None),
        "ext_estep": lambda: torch.ops.aigc_engine.gaussian_estep(x, mu, P, "full", lw),
        "reference": lambda: reference.gaussian_log_prob(x, mu, P, "full"),
        "chunked_gemm": lambda: _chunked_full(x, mu, P),
        "torch_distributions": lambda: torch.distributions.MultivariateNormal(
            mu, covariance_matrix=cov).log_prob(x[:, None, :]),
    }
    if impl == "gemm_floor":
        fns[impl] = _gemm_floor(2 * N * K * D * D)
    fns["output_floor"] = lambda: torch.empty(N, K).fill_(0.0)  # allocate + write [N, K] once
    if impl == "sklearn":
        xn, mun, Pn = x.numpy(), mu.numpy(), P.numpy()
        fn = lambda: _sklearn_log_prob(xn, mun, Pn, "full")  # noqa: E731
    else:
        if impl.startswith("ext") and not ops.backend_info()["extension_loaded"]:
            pytest.skip("extension not built")
        fn = fns[impl]
    _run(benchmark, group, impl, fn, rounds=SLOW_ROUNDS if impl in ("torch_distributions", "sklearn", "reference") else ROUNDS)


DIAG_IMPLS = ["ext", "ext_estep", "reference", "sklearn", "gemm_floor", "output_floor"]


@pytest.mark.parametrize("impl", DIAG_IMPLS)
def test_logdensity_diag(benchmark, impl):
    N, D, K = 1_000_000, 64, 64
    g = torch.Generator().manual_seed(1)
    x = torch.randn(N, D, generator=g)
    mu = torch.randn(K, D, generator=g)
    P = torch.rand(K, D, generator=g) + 0.5
    lw = torch.full((K,), -math.log(K))
    group = f"logdensity diag N={N} D={D} K={K} f32"
    if impl.startswith("ext") and not ops.backend_info()["extension_loaded"]:
        pytest.skip("extension not built")
    fns = {
        "ext": lambda: torch.ops.aigc_engine.gaussian_log_prob(x, mu, P, "diag", None),
        "ext_estep": lambda: torch.ops.aigc_engine.gaussian_estep(x, mu, P, "diag", lw),
        "reference": lambda: reference.gaussian_log_prob(x, mu, P, "diag"),
        "gemm_floor": _gemm_floor(2 * N * K * (2 * D + 1)) if impl == "gemm_floor" else None,
        "output_floor": lambda: torch.empty(N, K).fill_(0.0),
    }
    if impl == "sklearn":
        xn, mun, Pn = x.numpy(), mu.numpy(), P.numpy()
        fn = lambda: _sklearn_log_prob(xn, mun, Pn, "diag")  # noqa: E731
    else:
        fn = fns[impl]
    _run(benchmark, group, impl, fn, rounds=SLOW_ROUNDS if impl in ("sklearn", "reference") else ROUNDS)


# --- EM pass: E-step + M-step statistics -------------------------------------------------------

def _sklearn_em_pass(x, mu, P, w, covariance_type):
    """scikit-learn's work per EM iteration: its E-step and _estimate_gaussian_parameters."""
    from scipy.special import logsumexp
    from sklearn.mixture._gaussian_mixture import _estimate_gaussian_parameters

    weighted = _sklearn_log_prob(x, mu, P, covariance_type) + np.log(w)
    log_resp = weighted - logsumexp(weighted, axis=1)[:, None]
    return _estimate_gaussian_parameters(x, np.exp(log_resp), 1e-6, covariance_type)


EM_IMPLS = ["ext", "ext_estep_then_stats", "reference", "sklearn", "gemm_floor"]


@pytest.mark.parametrize("impl", EM_IMPLS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
def test_em_pass_full(benchmark, dtype, impl):
    """One EM pass (responsibilities and the M-step's sufficient statistics): the fused
    ``gaussian_em_stats`` against the extension's E-step followed by ``mixture_stats`` (the
    unfused path, as on CUDA), the pure-PyTorch reference and scikit-learn. The floor is the
    pass's FLOPs (triangular E-step + statistics, 2 N K (D(D+1)/2 + C)) at GEMM speed."""
    N, D, K = 200_000, 16, 32
    x, mu, P, _ = _full_problem(N, D, K, dtype=dtype)
    lw = torch.full((K,), -math.log(K), dtype=dtype)
    shift = x.mean(0)
    group = f"EM pass full N={N} D={D} K={K} {str(dtype)[-7:].replace('float', 'f')}"
    if impl.startswith("ext") and not ops.backend_info()["extension_loaded"]:
        pytest.skip("extension not built")

    def unfused():
        _, log_resp = torch.ops.aigc_engine.gaussian_estep(x, mu, P, "full", lw)
        return ops.mixture_stats(x, log_resp.exp_(), shift, "full")
    fns = {
        "ext": lambda: torch.ops.aigc_engine.gaussian_em_stats(x, mu, P, "full", lw, shift, False),
        "ext_estep_then_stats": unfused,
        "reference": lambda: reference.gaussian_em_stats(x, mu, P, "full", lw, shift),
    }
    if impl == "sklearn":
        xn, mun, Pn, wn = x.numpy(), mu.numpy(), P.numpy(), np.full(K, 1.0 / K, dtype=x.numpy().dtype)
        fn = lambda: _sklearn_em_pass(xn, mun, Pn, wn, "full")  # noqa: E731
    elif impl == "gemm_floor":
        fn = _gemm_floor(2 * N * K * (D * (D + 1) // 2 + ops.stats_columns("full", D)), dtype)
    else:
        fn = fns[impl]
    _run(benchmark, group, impl, fn, rounds=SLOW_ROUNDS if impl in ("sklearn", "reference") else ROUNDS)


# --- GAN losses -------------------------------------------------------------------------------

def _d_loss_eager(r, f):
    return F.softplus(-r).mean() + F.softplus(f).mean()


def _d_loss_bce(r, f):
    return (F.binary_cross_entropy_with_logits(r, torch.ones_like(r))
            + F.binary_cross_entropy_with_logits(f, torch.zeros_like(f)))


_compiled = {}


def _d_loss_compiled(r, f):
    if "d" not in _compiled:
        _compiled["d"] = torch.compile(_d_loss_eager)
    return _compiled["d"](r, f)


GAN_IMPLS = ["ext", "reference_eager", "bce_eager", "torch_compile", "memory_floor"]


@pytest.mark.parametrize("impl", GAN_IMPLS)
@pytest.mark.parametrize("N", [4_000_000, 65_536, 1_000])
def test_gan_d_loss_fwd_bwd(benchmark, N, impl):
    g = torch.Generator().manual_seed(2)
    r = torch.randn(N, generator=g).requires_grad_()
    f = torch.randn(N, generator=g).requires_grad_()
    group = f"gan_d_loss ns fwd+bwd N={N} f32"
    if impl == "ext" and not ops.backend_info()["extension_loaded"]:
        pytest.skip("extension not built")
    losses = {"ext": lambda a, b: ops.gan_d_loss(a, b, "ns"), "reference_eager": _d_loss_eager,
              "bce_eager": _d_loss_bce, "torch_compile": _d_loss_compiled}
    if impl == "memory_floor":
        rd, fd = r.detach(), f.detach()
        gr, gf = torch.empty_like(rd), torch.empty_like(fd)

        def fn():  # read both sides once, write both gradients once
            gr.copy_(rd)
            gf.copy_(fd)
    else:
        loss_fn = losses[impl]

        def fn():
            return torch.autograd.grad(loss_fn(r, f), (r, f))
    rounds = ROUNDS if N > 100_000 else 20 * ROUNDS
    _run(benchmark, group, impl, fn, rounds=rounds)


# --- CUDA (only where a GPU and the CUDA kernels are present) ---------------------------------

cuda = pytest.mark.skipif(not (torch.cuda.is_available() and ops.backend_info()["cuda"]),
                          reason="needs a CUDA device and the CUDA kernels")


def _cuda_timed(fn):
    def run():
        fn()
        torch.cuda.synchronize()
    return run


@cuda
@pytest.mark.cuda
@pytest.mark.parametrize("impl", ["ext", "ext_estep", "reference", "chunked_gemm", "torch_distributions"])
def test_cuda_logdensity_full(benchmark, impl):
    N, D, K = 1_000_000, 16, 32
    x, mu, P, cov = _full_problem(N, D, K, device="cuda")
    lw = torch.full((K,), -math.log(K), device="cuda")
    fns = {
        "ext": lambda: torch.ops.aigc_engine.gaussian_log_prob(x, mu, P, "full", None),
        "ext_estep": lambda: torch.ops.aigc_engine.gaussian_estep(x, mu, P, "full", lw),
        "reference": lambda: reference.gaussian_log_prob(x, mu, P, "full"),
        "chunked_gemm": lambda: _chunked_full(x, mu, P, B=131072),
        "torch_distributions": lambda: torch.distributions.MultivariateNormal(
            mu, covariance_matrix=cov).log_prob(x[:200_000, None, :]),
    }
    _run(benchmark, f"cuda logdensity full N={N} D={D} K={K} f32", impl, _cuda_timed(fns[impl]),
         rounds=2 * ROUNDS, note="torch_distributions on N=200k only" if impl == "torch_distributions" else "")


@cuda
@pytest.mark.cuda
@pytest.mark.parametrize("impl", ["ext", "reference_eager", "torch_compile"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_cuda_gan_d_loss(benchmark, impl, dtype):
    N = 16_000_000
    r = torch.randn(N, device="cuda", dtype=dtype).requires_grad_()
    f = torch.randn(N, device="cuda", dtype=dtype).requires_grad_()
    losses = {"ext": lambda a, b: ops.gan_d_loss(a, b, "ns"), "reference_eager": _d_loss_eager,
              "torch_compile": _d_loss_compiled}
    loss_fn = losses[impl]
    _run(benchmark, f"cuda gan_d_loss ns fwd+bwd N={N} {str(dtype)[6:]}", impl,
         _cuda_timed(lambda: torch.autograd.grad(loss_fn(r, f), (r, f))), rounds=4 * ROUNDS)
