"""Property tests (Hypothesis): the kernels against the float64 reference on random shapes, dtypes
and magnitudes; config and ``--set`` parsing; the dataset loaders on generated files."""
from __future__ import annotations

import dataclasses
import math
import tempfile
from pathlib import Path
from typing import Literal

import numpy as np
import pytest
import torch

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from aigc_engine import ops  # noqa: E402
from aigc_engine.config import build_config, coerce, parse_sets  # noqa: E402
from aigc_engine.data import from_file  # noqa: E402
from aigc_engine.errors import InputError  # noqa: E402
from aigc_engine.ops import reference  # noqa: E402

from test_ops_helpers import make_params, requires_ext  # noqa: E402

EXAMPLES = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(autouse=True, scope="module")
def _ext_backend():
    if ops.backend_info()["extension_loaded"]:
        ops.set_backend("ext")
    yield
    ops.set_backend(None)


@requires_ext
@EXAMPLES
@given(n=st.integers(1, 300), d=st.integers(1, 12), k=st.integers(1, 8),
       covariance_type=st.sampled_from(ops.COVARIANCE_TYPES), dtype=st.sampled_from([torch.float32, torch.float64]),
       scale=st.sampled_from([1e-3, 1.0, 1e3]), offset=st.sampled_from([0.0, 50.0]),
       weighted=st.booleans(), seed=st.integers(0, 2**16))
def test_log_density_matches_the_float64_reference(n, d, k, covariance_type, dtype, scale, offset, weighted, seed):
    g = torch.Generator().manual_seed(seed)
    means, P, _ = make_params(covariance_type, k, d, torch.float64, seed=seed)
    means = means * scale + offset
    P = P / scale
    x = (torch.randn(n, d, dtype=torch.float64, generator=g) * 2 * scale + offset)
    lw = torch.log_softmax(torch.randn(k, dtype=torch.float64, generator=g), 0) if weighted else None
    got = ops.gaussian_log_prob(x.to(dtype), means.to(dtype), P.to(dtype), covariance_type,
                                lw.to(dtype) if lw is not None else None)
    # the reference on the same (rounded) inputs, in float64
    want = reference.gaussian_log_prob(x.to(dtype).double(), means.to(dtype).double(), P.to(dtype).double(),
                                       covariance_type, lw.to(dtype).double() if lw is not None else None)
    assert got.shape == (n, k) and got.dtype == dtype
    # the Mahalanobis terms are differences of products as large as ((|x| + |mu|) |P|)^2 (the
    # expansion of diag/spherical, x P - mu P for full/tied): the result carries a few eps of them
    eps = torch.finfo(dtype).eps
    p_scale = {"full": lambda: P.abs().sum(1), "tied": lambda: P.abs().sum(0).expand(k, d),
               "diag": lambda: P.abs(), "spherical": lambda: P.abs()[:, None].expand(k, d)}[covariance_type]()
    spread = x.abs().max(0).values[None] + means.abs()  # [K, D]
    cancelled = ((spread * p_scale) ** 2).sum(1).max().item()
    tol = 64 * eps * (d + 2) * (1 + want.abs().max().item() + cancelled)
    assert (got.double() - want).abs().max().item() <= tol


@requires_ext
@EXAMPLES
@given(n_real=st.integers(0, 2000), n_fake=st.integers(1, 2000), kind=st.sampled_from(ops.GAN_LOSS_KINDS),
       magnitude=st.sampled_from([1.0, 30.0, 1e4]), dtype=st.sampled_from([torch.float32, torch.float64]),
       seed=st.integers(0, 2**16))
def test_gan_losses_match_the_reference_with_gradients(n_real, n_fake, kind, magnitude, dtype, seed):
    g = torch.Generator().manual_seed(seed)
    real = (torch.randn(n_real, generator=g, dtype=torch.float64) * magnitude).to(dtype).requires_grad_(True)
    fake = (torch.randn(n_fake, generator=g, dtype=torch.float64) * magnitude).to(dtype).requires_grad_(True)
    if n_real:
        loss = ops.gan_d_loss(real, fake, kind)
        want = reference.gan_d_loss(real.detach().double().requires_grad_(True), fake.detach().double(), kind)
        assert math.isfinite(loss.item())
        assert loss.item() == pytest.approx(want.item(), rel=1e-5, abs=1e-6 * magnitude)
        loss.backward()
        ref_r = real.detach().double().requires_grad_(True)
        ref_f = fake.detach().double().requires_grad_(True)
        reference.gan_d_loss(ref_r, ref_f, kind).backward()
        torch.testing.assert_close(real.grad.double(), ref_r.grad, rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(fake.grad.double(), ref_f.grad, rtol=1e-4, atol=1e-6)
    g_loss = ops.gan_g_loss(fake, kind)
    assert g_loss.item() == pytest.approx(reference.gan_g_loss(fake.detach().double(), kind).item(),
                                          rel=1e-5, abs=1e-6 * magnitude)


@dataclasses.dataclass
class _Config:
    steps: int = 10
    lr: float = 1e-3
    flag: bool = False
    kind: Literal["a", "bb", "c"] = "a"
    betas: tuple[float, float] = (0.5, 0.999)
    width: int | None = None
    name: str = "x"


_values = st.fixed_dictionaries({}, optional={
    "steps": st.integers(-10**6, 10**6), "lr": st.floats(allow_nan=False, allow_infinity=False, width=32),
    "flag": st.booleans(), "kind": st.sampled_from(["a", "bb", "c"]),
    "betas": st.tuples(st.floats(0, 1, width=32), st.floats(0, 1, width=32)),
    "width": st.one_of(st.none(), st.integers(0, 4096)), "name": st.text(st.characters(categories=["L", "N"]),
                                                                        min_size=1, max_size=8)})


def _as_cli(value) -> str:
    if isinstance(value, tuple):
        return ",".join(repr(v) for v in value)
    if value is None:
        return "none"
    return str(value) if not isinstance(value, float) else repr(value)


@EXAMPLES
@given(values=_values)
def test_set_strings_parse_back_to_the_typed_values(values):
    sets = parse_sets([f"{k}={_as_cli(v)}" for k, v in values.items()])
    config = build_config(_Config, sets, "test")
    for key, value in values.items():
        assert getattr(config, key) == value


@EXAMPLES
@given(key=st.sampled_from(["steps", "lr", "flag", "kind"]), text=st.text(min_size=1, max_size=6))
def test_bad_set_values_are_input_errors_naming_the_key(key, text):
    tp = {"steps": int, "lr": float, "flag": bool, "kind": Literal["a", "bb", "c"]}[key]
    try:
        value = coerce(tp, text, key)
    except InputError as err:
        assert key in str(err)
    else:  # what parses must be of the field's type
        assert isinstance(value, (int, float, bool, str))


@EXAMPLES
@given(rows=st.integers(1, 40), cols=st.integers(1, 6), header=st.booleans(), seed=st.integers(0, 2**16))
def test_csv_and_npy_loaders_read_generated_files(rows, cols, header, seed):
    arr = np.random.default_rng(seed).normal(size=(rows, cols)).astype(np.float32) * 100
    with tempfile.TemporaryDirectory() as tmp:
        csv, npy = Path(tmp) / "d.csv", Path(tmp) / "d.npy"
        head = ",".join(f"f{i}" for i in range(cols)) + "\n" if header else ""
        csv.write_text(head + "\n".join(",".join(repr(float(v)) for v in row) for row in arr) + "\n")
        np.save(npy, arr)
        a, b = from_file(csv), from_file(npy)
        assert a.shape == b.shape == (rows, cols)
        # a CSV is a table: its encoding decodes the rows back (to float32 rounding of the encoded matrix)
        np.testing.assert_allclose(a.encoding.decode(a.x).to_numpy(float), arr, rtol=1e-5, atol=1e-3)
        np.testing.assert_array_equal(b.x.numpy(), arr)
