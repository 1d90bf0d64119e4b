"""gaussian_em_stats / mixture_stats: the fused EM pass against an explicit float64 oracle and
against the reference; the direct (triangular) and GEMM paths of the full E-step."""
from __future__ import annotations

import pytest
import torch

from aigc_engine import ops
from aigc_engine.ops import reference

from test_ops_helpers import cuda_only, make_params, requires_ext

TYPES = ops.COVARIANCE_TYPES
# awkward shapes: single rows/components/features, N not a multiple of any tile, several tiles
SHAPES = [(1, 1, 1), (5, 2, 3), (37, 3, 5), (1000, 16, 32), (2049, 7, 9), (600, 33, 4)]


def oracle(x, resp, shift, covariance_type):
    """sum_n r_nk [1 | z | moments(z)] in float64, written out with einsum."""
    x, resp, shift = x.double(), resp.double(), shift.double()
    z = x - shift if shift.dim() == 1 else x[None] - shift[:, None]          # [N, D] or [K, N, D]
    D = x.shape[1]
    if z.dim() == 2:
        z = z.expand(resp.shape[1], *z.shape)
    parts = [resp.sum(0)[:, None], torch.einsum("nk,knd->kd", resp, z)]
    if covariance_type == "full":
        iu = torch.triu_indices(D, D)
        parts.append(torch.einsum("nk,kni,knj->kij", resp, z, z)[:, iu[0], iu[1]])
    elif covariance_type == "diag":
        parts.append(torch.einsum("nk,knd->kd", resp, z * z))
    elif covariance_type == "spherical":
        parts.append(torch.einsum("nk,kn->k", resp, (z * z).sum(-1))[:, None])
    return torch.cat(parts, 1)


def _case(covariance_type, shape, dtype, seed=0):
    N, D, K = shape
    means, P, _ = make_params(covariance_type, K, D, dtype, seed=seed + N + D + K)
    gen = torch.Generator().manual_seed(seed)
    x = (torch.randn(N, D, dtype=torch.float64, generator=gen) * 2 + 0.5).to(dtype)
    lw = torch.log_softmax(torch.randn(K, dtype=torch.float64, generator=gen), 0).to(dtype)
    return x, means, P, lw


def _scale(x, shift, covariance_type):
    """Size of the largest sum of |terms| in any column, for an absolute tolerance."""
    z = (x.double() - shift.double()).abs()
    return len(x) * max(1.0, float(z.max()) ** 2)


@pytest.mark.parametrize("covariance_type", TYPES)
@pytest.mark.parametrize("shift_kind", ["global", "per_component"])
def test_mixture_stats_matches_oracle(covariance_type, shift_kind):
    x, means, P, lw = _case(covariance_type, (300, 5, 4), torch.float64)
    resp = torch.softmax(torch.randn(300, 4, dtype=torch.float64), 1)
    shift = x.mean(0) if shift_kind == "global" else means
    got = ops.mixture_stats(x, resp, shift, covariance_type)
    assert got.shape == (4, ops.stats_columns(covariance_type, 5)) and got.dtype == torch.float64
    torch.testing.assert_close(got, oracle(x, resp, shift, covariance_type), rtol=1e-12, atol=1e-10)


@requires_ext
@pytest.mark.parametrize("double_moments", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("covariance_type", TYPES)
def test_em_stats_matches_oracle(covariance_type, shape, dtype, double_moments):
    """The fused kernel against the oracle on the responsibilities of the reference E-step
    (float64 maths on the same inputs), and the log-likelihood against the reference."""
    x, means, P, lw = _case(covariance_type, shape, dtype)
    shift = x.mean(0)
    got, ll = ops.gaussian_em_stats(x, means, P, covariance_type, lw, shift, double_moments)
    x64 = x.double()
    lpn, log_resp = reference.gaussian_estep(x64, means.double(), P.double(), covariance_type, lw.double())
    want = oracle(x64, log_resp.exp(), shift, covariance_type)
    assert got.shape == want.shape and got.dtype == torch.float64 and ll.dtype == torch.float64
    scale = _scale(x, shift, covariance_type)
    if dtype == torch.float64:
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12 * scale)
        torch.testing.assert_close(ll, lpn.sum(), rtol=1e-12, atol=1e-9)
    else:  # float32 E-step: responsibilities to ~1e-6 of their size times the log-density scale
        torch.testing.assert_close(got, want, rtol=2e-3, atol=2e-4 * scale)
        torch.testing.assert_close(ll, lpn.sum(), rtol=1e-5, atol=1e-3)


@requires_ext
@pytest.mark.parametrize("covariance_type", TYPES)
def test_em_stats_extension_equals_fallback(covariance_type):
    """The torch fallback (CUDA, other dtypes, AIGC_ENGINE_BACKEND=torch) gives the extension's
    numbers."""
    x, means, P, lw = _case(covariance_type, (1500, 6, 7), torch.float64)
    shift = x[:10].mean(0)
    got = ops.gaussian_em_stats(x, means, P, covariance_type, lw, shift)
    ops.set_backend("torch")
    try:
        want = ops.gaussian_em_stats(x, means, P, covariance_type, lw, shift)
    finally:
        ops.set_backend(None)
    torch.testing.assert_close(got, want, rtol=1e-11, atol=1e-9)


@requires_ext
@pytest.mark.parametrize("double_moments", [False, True])
def test_em_stats_thread_count_changes_only_rounding(double_moments):
    """Thread-count independence up to rounding, and bitwise determinism at a fixed thread count.

    The tiles do not depend on the thread count, but each tile's statistics come from one BLAS
    GEMM over its T <= 1024 points in the features' dtype, and MKL promises the same summation
    order only in its strict reproducibility mode: on an Intel Xeon the float32 statistics at 1
    and 2 threads differ by 2e-5 relative (equal under MKL_CBWR=AVX2,STRICT, still different
    under MKL_ENABLE_INSTRUCTIONS=AVX2; equal on the AMD EPYC they were first run on).
    "Rounding" is therefore the GEMM's: two summation orders of T terms differ
    by at most 2 gamma_T sum_n r_nk |f_n| per entry (float32: 1.2e-4 of the sum of |terms|,
    measured 3e-7, and one dropped point of the 5000 is 50x over; float64 moments: 2.3e-13)."""
    x, means, P, lw = _case("full", (5000, 8, 6), torch.float32)
    shift = x.mean(0)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = ops.gaussian_em_stats(x, means, P, "full", lw, shift, double_moments)
        torch.set_num_threads(2)
        two = ops.gaussian_em_stats(x, means, P, "full", lw, shift, double_moments)
        again = ops.gaussian_em_stats(x, means, P, "full", lw, shift, double_moments)
    finally:
        torch.set_num_threads(before)
    assert torch.equal(two[0], again[0]) and torch.equal(two[1], again[1])  # deterministic
    _, log_resp = reference.gaussian_estep(x.double(), means.double(), P.double(), "full", lw.double())
    z = (x.double() - shift.double()).abs()
    abs_terms = oracle(z, log_resp.exp(), torch.zeros_like(shift, dtype=torch.float64), "full")
    eps = torch.finfo(torch.float64 if double_moments else torch.float32).eps / 2
    T = 1024  # the kernels' largest tile
    gamma = T * eps / (1 - T * eps)
    assert ((one[0] - two[0]).abs() <= 2 * gamma * abs_terms).all()
    # log p(x_n) are summed in float64 per tile and per thread slot
    torch.testing.assert_close(one[1], two[1], rtol=1e-12, atol=0)


@requires_ext
def test_em_stats_double_moments_survive_far_tight_clusters():
    """float32 data at |x| ~ 1e3 with spread 1e-2: the centred second moments need float64
    products (relative error ~ eps |m - s|^2 / var = 5e9 eps: ~1e-6 in float64, everything in
    float32)."""
    gen = torch.Generator().manual_seed(0)
    centres = torch.tensor([[1000.0, 0.0], [0.0, 1000.0]], dtype=torch.float64)
    x64 = centres[torch.arange(4000) % 2] + 0.01 * torch.randn(4000, 2, dtype=torch.float64, generator=gen)
    x = x64.float()
    P = torch.full((2, 2), 100.0).diag_embed()
    lw = torch.log(torch.tensor([0.5, 0.5]))
    shift = x.mean(0)
    stats, _ = ops.gaussian_em_stats(x, centres.float(), P, "full", lw, shift, True)
    n, sx, m = stats[:, 0], stats[:, 1:3], stats[:, 3:]
    var = m[:, [0, 2]] / n[:, None] - (sx / n[:, None]) ** 2       # centred variances
    want = torch.stack([x.double()[k::2].var(0, correction=0) for k in range(2)])
    torch.testing.assert_close(var, want, rtol=1e-4, atol=0)
    stats32, _ = ops.gaussian_em_stats(x, centres.float(), P, "full", lw, shift, False)
    var32 = stats32[:, [3, 5]] / stats32[:, :1] - (stats32[:, 1:3] / stats32[:, :1]) ** 2
    assert (var32 - want).abs().max() > 0.1 * want.max()  # why the float64 option exists


@requires_ext
@pytest.mark.parametrize("D", [3, 9, 16])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_full_with_general_precision_factor(D, dtype):
    """A precision factor that is not upper triangular (any P with precision = P P^T is
    accepted) takes the general path: direct for D <= 4, GEMM beyond; both match the reference."""
    gen = torch.Generator().manual_seed(D)
    K, N = 5, 777
    P = torch.randn(K, D, D, dtype=torch.float64, generator=gen) * 0.3
    P = (P + torch.diag_embed(P.diagonal(0, 1, 2).abs() + 0.5)).to(dtype)  # log det P needs diag > 0
    means = torch.randn(K, D, dtype=torch.float64, generator=gen).to(dtype)
    x = torch.randn(N, D, dtype=torch.float64, generator=gen).to(dtype)
    got = ops.gaussian_log_prob(x, means, P, "full")
    want = reference.gaussian_log_prob(x.double(), means.double(), P.double(), "full").to(dtype)
    tol = dict(rtol=1e-5, atol=1e-3) if dtype == torch.float32 else dict(rtol=1e-11, atol=1e-9)
    torch.testing.assert_close(got, want, **tol)


@requires_ext
@pytest.mark.parametrize("covariance_type", ["diag", "full"])
def test_float64_exp_in_estep_is_accurate(covariance_type):
    """The E-step's float64 exp (vec_math.h) through both epilogues (diag: along rows of K = 9
    components; full: along points) over its whole range, down to the underflow threshold:
    log_prob_norm and the responsibilities match the reference."""
    K = 9
    x = torch.linspace(-40, 40, 4001, dtype=torch.float64)[:, None]
    means = torch.linspace(-30, 30, K, dtype=torch.float64)[:, None]
    scale = torch.logspace(-0.5, 0.7, K, dtype=torch.float64)     # log-densities down to ~ -1e4
    lw = torch.log_softmax(torch.linspace(0, 3, K, dtype=torch.float64), 0)
    P = scale[:, None, None] if covariance_type == "full" else scale[:, None]
    lpn, lr = ops.gaussian_estep(x, means, P, covariance_type, lw)
    lpn_ref, lr_ref = reference.gaussian_estep(x, means, P, covariance_type, lw)
    torch.testing.assert_close(lpn, lpn_ref, rtol=1e-14, atol=1e-12)
    stats, _ = ops.gaussian_em_stats(x, means, P, covariance_type, lw, torch.zeros(1, dtype=torch.float64))
    resp = lr_ref.exp()
    assert ((resp > 0) & (resp < 1e-250)).any()  # the range near underflow is exercised
    torch.testing.assert_close(stats[:, 0], resp.sum(0), rtol=1e-13, atol=1e-300)
    torch.testing.assert_close(stats[:, 1], (resp * x).sum(0), rtol=1e-12, atol=1e-12)


@requires_ext
@pytest.mark.parametrize("covariance_type", ["full", "diag"])
def test_opcheck(covariance_type):
    """Schema, fake kernel and (no) aliasing of the two outputs."""
    x, means, P, lw = _case(covariance_type, (20, 3, 4), torch.float64)
    torch.library.opcheck(torch.ops.aigc_engine.gaussian_em_stats,
                          (x, means, P, covariance_type, lw, x.mean(0), False))
    stats, ll = torch.ops.aigc_engine.gaussian_em_stats(x, means, P, covariance_type, lw, x.mean(0), False)
    assert stats.untyped_storage().data_ptr() != ll.untyped_storage().data_ptr()


@pytest.mark.parametrize("backend", ["ext", "torch"])
def test_em_stats_edge_cases(backend):
    """No components: log-likelihood -inf on every path (as gaussian_estep); no rows: zeros; the
    outputs never require grad, whatever the inputs."""
    if backend == "ext" and not ops.backend_info()["extension_loaded"]:
        pytest.skip("extension not built")
    ops.set_backend(backend)
    try:
        x = torch.randn(50, 3, dtype=torch.float64)
        empty = ops.gaussian_em_stats(x, x[:0], torch.ones(0, 3, dtype=torch.float64), "diag",
                                      torch.zeros(0, dtype=torch.float64), x.mean(0))
        assert empty[0].shape == (0, ops.stats_columns("diag", 3)) and empty[1].item() == float("-inf")
        _, means, P, lw = _case("full", (50, 3, 2), torch.float64)
        none = ops.gaussian_em_stats(x[:0], means, P, "full", lw, x.mean(0))
        assert none[0].abs().sum() == 0 and none[1].item() == 0
        stats, ll = ops.gaussian_em_stats(x, means.requires_grad_(), P, "full", lw, x.mean(0))
        assert not stats.requires_grad and not ll.requires_grad
    finally:
        ops.set_backend(None)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_mixture_stats_half_precision_sums_in_float32(dtype):
    """200k half-precision rows: counts and second moments far beyond float16's 65504 (summed in
    float32 within each block: ~1e-4 relative)."""
    x = torch.randn(200_000, 2, generator=torch.Generator().manual_seed(0)).to(dtype)
    resp = torch.ones(200_000, 1, dtype=dtype)
    got = ops.mixture_stats(x, resp, torch.zeros(2, dtype=dtype), "diag")
    want = ops.mixture_stats(x.double(), resp.double(), torch.zeros(2, dtype=torch.float64), "diag")
    torch.testing.assert_close(got, want, rtol=1e-3, atol=0)


def test_em_stats_rejects_bad_shift():
    x, means, P, lw = _case("diag", (10, 3, 2), torch.float64)
    with pytest.raises(ValueError, match="shift must be a \\[D\\]"):
        ops.gaussian_em_stats(x, means, P, "diag", lw, torch.zeros(4, dtype=torch.float64))
    with pytest.raises(ValueError, match="log_weights must be a \\[K\\] tensor"):
        ops.gaussian_em_stats(x, means, P, "diag", None, torch.zeros(3, dtype=torch.float64))


@pytest.mark.parametrize("covariance_type", TYPES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("_mark", [pytest.param(0, marks=cuda_only)])
def test_em_stats_cuda_matches_cpu(covariance_type, dtype, _mark):
    """On CUDA the pass is the CUDA E-step kernel followed by mixture_stats on the GPU."""
    x, means, P, lw = _case(covariance_type, (3000, 6, 5), dtype)
    shift = x.mean(0)
    want, ll_want = ops.gaussian_em_stats(x, means, P, covariance_type, lw, shift)
    xc, mc, Pc, lwc, sc = (t.cuda() for t in (x, means, P, lw, shift))
    got, ll = ops.gaussian_em_stats(xc, mc, Pc, covariance_type, lwc, sc)
    scale = _scale(x, shift, covariance_type)
    if dtype == torch.float64:
        tol = dict(rtol=1e-9, atol=1e-11 * scale)
    else:
        tol = dict(rtol=2e-3, atol=2e-4 * scale)
    torch.testing.assert_close(got.cpu(), want, **tol)
    torch.testing.assert_close(ll.cpu(), ll_want, rtol=1e-5 if dtype == torch.float32 else 1e-12, atol=1e-3)
