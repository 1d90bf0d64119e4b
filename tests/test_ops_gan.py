"""gan_d_loss / gan_g_loss: the fused extension kernels against the reference and against
torch.nn.functional.binary_cross_entropy_with_logits with autograd; extreme logits, shapes,
determinism, opcheck, gradcheck, one torch.compile(fullgraph=True) test, bad inputs."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from aigc_engine import ops
from aigc_engine.ops import reference

from test_ops_helpers import cuda_only, requires_ext

pytestmark = requires_ext
KINDS = ops.GAN_LOSS_KINDS


@pytest.fixture(autouse=True)
def ext_backend():
    ops.set_backend("ext")
    yield
    ops.set_backend(None)


def _losses_and_grads(fn_d, fn_g, real, fake, kind):
    r = real.clone().requires_grad_()
    f = fake.clone().requires_grad_()
    d = fn_d(r, f, kind)
    gr, gf = torch.autograd.grad(d, (r, f))
    f2 = fake.clone().requires_grad_()
    g = fn_g(f2, kind)
    (gg,) = torch.autograd.grad(g, (f2,))
    return d, gr, gf, g, gg


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("sizes", [(1, 1), (5, 3), (1000, 77), (70001, 40000)])
@pytest.mark.parametrize("kind", KINDS)
def test_matches_reference(kind, sizes, dtype):
    gen = torch.Generator().manual_seed(sum(sizes))
    real = torch.randn(sizes[0], dtype=dtype, generator=gen) * 4
    fake = torch.randn(sizes[1], dtype=dtype, generator=gen) * 4
    got = _losses_and_grads(ops.gan_d_loss, ops.gan_g_loss, real, fake, kind)
    want = _losses_and_grads(reference.gan_d_loss, reference.gan_g_loss, real, fake, kind)
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == torch.float32 else dict(rtol=1e-12, atol=1e-14)
    for a, b in zip(got, want):
        assert a.dtype == b.dtype and a.shape == b.shape
        torch.testing.assert_close(a, b, **tol)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_ns_matches_bce_with_logits(dtype):
    real = torch.randn(4096, 1, dtype=dtype) * 5
    fake = torch.randn(1024, 1, dtype=dtype) * 5
    r, f = real.clone().requires_grad_(), fake.clone().requires_grad_()
    d = F.binary_cross_entropy_with_logits(r, torch.ones_like(r)) + \
        F.binary_cross_entropy_with_logits(f, torch.zeros_like(f))
    want = (d, *torch.autograd.grad(d, (r, f)))
    f2 = fake.clone().requires_grad_()
    g = F.binary_cross_entropy_with_logits(f2, torch.ones_like(f2))
    want += (g, *torch.autograd.grad(g, (f2,)))
    got = _losses_and_grads(ops.gan_d_loss, ops.gan_g_loss, real, fake, "ns")
    tol = dict(rtol=1e-6, atol=1e-8) if dtype == torch.float32 else dict(rtol=1e-12, atol=1e-15)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, **tol)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("kind", KINDS)
def test_extreme_logits_are_finite_and_exact(kind, dtype):
    real = torch.tensor([1e4, -1e4, 30.0, -30.0, 0.0, 1e4, -1e4, 1.0, -1.0], dtype=dtype)
    fake = torch.tensor([-1e4, 1e4, 0.0, 50.0, -50.0], dtype=dtype)
    got = _losses_and_grads(ops.gan_d_loss, ops.gan_g_loss, real, fake, kind)
    for t in got:
        assert torch.isfinite(t).all()
    # exact values in float64 maths
    r, f = real.double(), fake.double()
    if kind == "ns":
        want_d = F.softplus(-r).mean() + F.softplus(f).mean()
        want_gr = -torch.sigmoid(-r) / r.numel()
    else:
        want_d = reference.gan_d_loss(r, f, kind)
        rr = r.clone().requires_grad_()
        want_gr = torch.autograd.grad(reference.gan_d_loss(rr, f, kind), rr)[0]
    torch.testing.assert_close(got[0].double(), want_d, rtol=1e-6, atol=0)
    torch.testing.assert_close(got[1].double(), want_gr, rtol=1e-6, atol=0)
    if kind == "ns":
        # softplus(-1e4) = 0 and sigmoid(1e4) - 1 = 0 exactly, not a rounding residue
        assert got[1][0].item() == 0.0
        assert got[1][1] == torch.tensor(-1.0, dtype=dtype) / real.numel()


def test_shapes_and_non_contiguous():
    real = torch.randn(64, 8)[:, ::2]  # [64, 4], strided
    fake = torch.randn(4, 32).T        # [32, 4], transposed
    assert not real.is_contiguous() and not fake.is_contiguous()
    got = _losses_and_grads(ops.gan_d_loss, ops.gan_g_loss, real, fake, "ns")
    want = _losses_and_grads(reference.gan_d_loss, reference.gan_g_loss, real, fake, "ns")
    for a, b in zip(got, want):
        assert a.shape == b.shape
        torch.testing.assert_close(a, b)


def test_deterministic_whatever_the_thread_count():
    real = torch.randn(1_000_003)
    fake = torch.randn(777_777)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = _losses_and_grads(ops.gan_d_loss, ops.gan_g_loss, real, fake, "ns")
        torch.set_num_threads(max(2, threads))
        many = _losses_and_grads(ops.gan_d_loss, ops.gan_g_loss, real, fake, "ns")
        again = _losses_and_grads(ops.gan_d_loss, ops.gan_g_loss, real, fake, "ns")
    finally:
        torch.set_num_threads(threads)
    for a, b, c in zip(one, many, again):
        assert torch.equal(a, b) and torch.equal(b, c)


def test_backward_scales_the_saved_gradient_and_no_grad_path():
    real = torch.randn(100, requires_grad=True)
    fake = torch.randn(50, requires_grad=True)
    (3.0 * ops.gan_d_loss(real, fake)).backward()
    r2, f2 = real.detach().clone().requires_grad_(), fake.detach().clone().requires_grad_()
    (3.0 * reference.gan_d_loss(r2, f2)).backward()
    torch.testing.assert_close(real.grad, r2.grad)
    torch.testing.assert_close(fake.grad, f2.grad)
    with torch.no_grad():
        loss = ops.gan_d_loss(real, fake)
    assert not loss.requires_grad
    torch.testing.assert_close(loss, reference.gan_d_loss(real, fake).detach())
    # the raw op without the gradient asked for returns empty gradients
    loss, gr, gf = torch.ops.aigc_engine.gan_d_loss(real.detach(), fake.detach(), "ns", False)
    assert gr.numel() == 0 and gf.numel() == 0


@pytest.mark.parametrize("kind", KINDS)
def test_gradcheck_float64(kind):
    real = (torch.randn(31, dtype=torch.float64) * 2 + 0.123).requires_grad_()
    fake = (torch.randn(17, dtype=torch.float64) * 2 + 0.123).requires_grad_()
    assert torch.autograd.gradcheck(lambda r, f: ops.gan_d_loss(r, f, kind), (real, fake))
    assert torch.autograd.gradcheck(lambda f: ops.gan_g_loss(f, kind), (fake,))


def test_opcheck():
    real = torch.randn(40, 1, requires_grad=True)
    fake = torch.randn(30, 1, requires_grad=True)
    torch.library.opcheck(torch.ops.aigc_engine.gan_d_loss, (real, fake, "ns", True))
    torch.library.opcheck(torch.ops.aigc_engine.gan_g_loss, (fake, "hinge", True))
    torch.library.opcheck(torch.ops.aigc_engine.gan_d_loss, (real.detach(), fake.detach(), "lsgan", False))


def test_torch_compile_fullgraph():
    """One compiled function through both kernels, forward and backward."""
    from test_ops_helpers import make_params

    means, P, _ = make_params("full", 3, 2, torch.float32)

    def step(real, fake, x):
        return (ops.gan_d_loss(real, fake, "ns") + ops.gan_g_loss(fake, "hinge")
                + ops.gaussian_log_prob(x, means, P, "full").mean())

    compiled = torch.compile(step, fullgraph=True, backend="aot_eager")
    inputs = [torch.randn(64, requires_grad=True), torch.randn(32, requires_grad=True),
              torch.randn(16, 2, requires_grad=True)]
    got = compiled(*inputs)
    got_grads = torch.autograd.grad(got, inputs)
    want = step(*inputs)
    want_grads = torch.autograd.grad(want, inputs)
    torch.testing.assert_close(got, want)
    for a, b in zip(got_grads, want_grads):
        torch.testing.assert_close(a, b)


def test_forced_fallback_equals_extension():
    real, fake = torch.randn(1000), torch.randn(500)
    ext = _losses_and_grads(ops.gan_d_loss, ops.gan_g_loss, real, fake, "ns")
    ops.set_backend("torch")
    fallback = _losses_and_grads(ops.gan_d_loss, ops.gan_g_loss, real, fake, "ns")
    for a, b in zip(ext, fallback):
        torch.testing.assert_close(a, b)


def test_bad_inputs_raise_value_errors():
    x = torch.randn(4)
    with pytest.raises(ValueError, match="kind must be one of"):
        ops.gan_d_loss(x, x, "softmax")
    with pytest.raises(ValueError, match="kind must be one of"):
        ops.gan_g_loss(x, "bce")
    with pytest.raises(ValueError, match="real_logits must be a floating-point"):
        ops.gan_d_loss(torch.ones(4, dtype=torch.long), x)
    with pytest.raises(ValueError, match="fake_logits must be a torch.Tensor"):
        ops.gan_g_loss([1.0, 2.0])
    with pytest.raises(ValueError, match="kind"):
        torch.ops.aigc_engine.gan_g_loss(x, "nope", False)


def test_mixed_dtypes_promote():
    real = torch.randn(10, dtype=torch.float64)
    fake = torch.randn(10)
    torch.testing.assert_close(ops.gan_d_loss(real, fake), reference.gan_d_loss(real, fake.double()))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.float64])
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("_mark", [pytest.param(0, marks=cuda_only)])
def test_cuda_matches_reference(kind, dtype, _mark):
    if not ops.backend_info()["cuda"]:
        pytest.skip("CUDA kernels not compiled in")
    real = (torch.randn(1_000_003, dtype=torch.float64) * 4)
    fake = (torch.randn(65_537, dtype=torch.float64) * 4)
    real[:3] = torch.tensor([1e4, -1e4, 0.0], dtype=torch.float64)
    rd, fd = real.to("cuda", dtype), fake.to("cuda", dtype)
    got = _losses_and_grads(ops.gan_d_loss, ops.gan_g_loss, rd, fd, kind)
    want = _losses_and_grads(reference.gan_d_loss, reference.gan_g_loss, rd.double().cpu(), fd.double().cpu(), kind)
    tol = dict(rtol=1e-5, atol=1e-7) if dtype in (torch.float32, torch.float64) else dict(rtol=1e-2, atol=1e-5)
    for a, b in zip(got, want):
        assert a.dtype == dtype and torch.isfinite(a).all()
        torch.testing.assert_close(a.double().cpu(), b, **tol)
    again = _losses_and_grads(ops.gan_d_loss, ops.gan_g_loss, rd, fd, kind)
    for a, b in zip(got, again):
        assert torch.equal(a, b)  # deterministic two-stage reduction


def test_saved_gradient_is_not_corrupted_by_repeated_backward():
    """backward(loss) hands the saved gradient to autograd without a copy when grad_loss is 1:
    retain_graph and a loss used twice must still accumulate correctly."""
    real = torch.randn(100, requires_grad=True)
    fake = torch.randn(50, requires_grad=True)
    loss = ops.gan_d_loss(real, fake)
    for _ in range(2):
        loss.backward(retain_graph=True)
    loss.backward()
    r2, f2 = real.detach().clone().requires_grad_(), fake.detach().clone().requires_grad_()
    (3 * reference.gan_d_loss(r2, f2)).backward()
    torch.testing.assert_close(real.grad, r2.grad)
    torch.testing.assert_close(fake.grad, f2.grad)
    x = torch.randn(64, requires_grad=True)
    (ops.gan_g_loss(x) + ops.gan_g_loss(x)).backward()
    x2 = x.detach().clone().requires_grad_()
    (2 * reference.gan_g_loss(x2)).backward()
    torch.testing.assert_close(x.grad, x2.grad)


def test_registered_autograd_path_matches_eager_path():
    """Eager calls go through a light autograd.Function; the op's registered autograd (used by
    torch.compile and direct torch.ops calls) must give the same gradients."""
    real = torch.randn(300, requires_grad=True)
    fake = torch.randn(200, requires_grad=True)
    loss, _, _ = torch.ops.aigc_engine.gan_d_loss(real, fake, "ns", True)
    g_reg = torch.autograd.grad(2.5 * loss, (real, fake))
    g_eager = torch.autograd.grad(2.5 * ops.gan_d_loss(real, fake), (real, fake))
    for a, b in zip(g_reg, g_eager):
        torch.testing.assert_close(a, b)
    gl, _ = torch.ops.aigc_engine.gan_g_loss(fake, "lsgan", True)
    torch.testing.assert_close(torch.autograd.grad(gl, fake)[0],
                               torch.autograd.grad(ops.gan_g_loss(fake, "lsgan"), fake)[0])


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("empty_side", ["real", "fake"])
def test_one_empty_side(kind, empty_side):
    """One side empty, the other not: the loss is NaN (the mean over the empty side) and the
    non-empty side still gets its finite gradient term'(x) / n, as the reference's autograd.
    The CUDA kernel follows the same contract."""
    torch.manual_seed(0)
    full = torch.randn(37, dtype=torch.float64) * 3
    empty = torch.empty(0, dtype=torch.float64)
    real, fake = (empty, full) if empty_side == "real" else (full, empty)
    got = _losses_and_grads(ops.gan_d_loss, ops.gan_g_loss, real, fake, kind)
    want = _losses_and_grads(reference.gan_d_loss, reference.gan_g_loss, real, fake, kind)
    assert torch.isnan(got[0]) and torch.isnan(want[0])
    for g, w in zip(got[1:3], want[1:3]):
        assert g.shape == w.shape
        assert torch.isfinite(g).all()
        torch.testing.assert_close(g, w)
