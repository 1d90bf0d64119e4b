"""Shared metrics: mode coverage, the image judge and what it measures, manifold metrics,
Frechet and kernel distances, held-out likelihood and the closest-distance ratio."""
import math

import numpy as np
import pytest
import torch

from aigc_engine import data, metrics
from aigc_engine.errors import InputError
from aigc_engine.metrics import _neighbours


# -- mode coverage -----------------------------------------------------------------------------
def test_mode_coverage_hand_computed():
    centres = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    samples = torch.tensor([[0.1, 0.0], [0.05, 0.05],  # mode 0, within 3 std = 0.3
                            [1.0, 0.2],                # mode 1
                            [0.0, 1.29],               # mode 2, just inside
                            [0.0, 1.31], [0.5, 0.5]])  # too far from every mode
    out = metrics.mode_coverage(samples, centres, std=0.1)
    assert out["modes"] == 3
    assert out["high_quality"] == pytest.approx(4 / 6)
    # histogram (1/2, 1/4, 1/4, 0): KL to uniform = log 4 - H = 2 log 2 - 1.5 log 2
    assert out["reverse_kl"] == pytest.approx(0.5 * math.log(2))
    assert metrics.mode_coverage(samples + 10, centres, std=0.1) == {
        "modes": 0, "high_quality": 0.0, "reverse_kl": math.inf}


# -- precision / recall / density / coverage ---------------------------------------------------
def _brute_force_prdc(real: np.ndarray, fake: np.ndarray, k: int) -> dict[str, float]:
    """Naeem et al. 2020 read literally, one point at a time."""
    def radii(points):
        return np.array([np.sort(np.linalg.norm(points - p, axis=1))[k] for p in points])

    r_real, r_fake = radii(real), radii(fake)
    d = np.linalg.norm(fake[:, None, :] - real[None, :, :], axis=2)  # d[j, i] = |Y_j - X_i|
    precision = np.mean([any(d[j, i] < r_real[i] for i in range(len(real))) for j in range(len(fake))])
    recall = np.mean([any(d[j, i] < r_fake[j] for j in range(len(fake))) for i in range(len(real))])
    density = np.sum(d < r_real[None, :]) / (k * len(fake))
    coverage = np.mean([d[:, i].min() < r_real[i] for i in range(len(real))])
    return {"precision": precision, "recall": recall, "density": density, "coverage": coverage}


@pytest.mark.parametrize("n_real,n_fake,dim,k,shift", [(60, 80, 3, 5, 0.5), (50, 31, 1, 3, 0.0),
                                                       (40, 40, 10, 1, 2.0), (7, 9, 2, 6, 0.3)])
def test_prdc_matches_brute_force(monkeypatch, n_real, n_fake, dim, k, shift):
    monkeypatch.setattr(_neighbours, "_BLOCK_ELEMENTS", 64)  # many small blocks
    rng = np.random.default_rng(n_real + dim)
    real = rng.standard_normal((n_real, dim))
    fake = rng.standard_normal((n_fake, dim)) * 1.3 + shift
    got = metrics.precision_recall_density_coverage(torch.from_numpy(real), torch.from_numpy(fake), k)
    want = _brute_force_prdc(real, fake, k)
    assert got == pytest.approx(want, abs=1e-12)


def test_prdc_matches_the_authors_package():
    prdc = pytest.importorskip("prdc")
    rng = np.random.default_rng(3)
    real = rng.standard_normal((300, 16)).astype(np.float32)
    fake = (rng.standard_normal((250, 16)) * 1.2 + 0.2).astype(np.float32)
    want = prdc.compute_prdc(real, fake, nearest_k=5)
    got = metrics.precision_recall_density_coverage(real, fake, k=5)
    assert got == pytest.approx({k: float(v) for k, v in want.items()}, abs=1e-9)


def test_prdc_input_errors():
    with pytest.raises(InputError, match="more than k points"):
        metrics.precision_recall_density_coverage(torch.zeros(5, 2), torch.zeros(10, 2), k=5)
    with pytest.raises(InputError, match="same number of features"):
        metrics.precision_recall_density_coverage(torch.zeros(10, 2), torch.zeros(10, 3))
    with pytest.raises(InputError, match="NaN"):
        metrics.precision_recall_density_coverage(torch.full((10, 2), math.nan), torch.zeros(10, 2))


# -- Frechet distance --------------------------------------------------------------------------
def _random_spd(rng, d, scale=1.0):
    a = rng.standard_normal((d, d))
    return scale * (a @ a.T / d + 0.1 * np.eye(d))


@pytest.mark.parametrize("d", [1, 5, 64])
def test_frechet_distance_from_moments_matches_scipy_sqrtm(d):
    linalg = pytest.importorskip("scipy.linalg")
    rng = np.random.default_rng(d)
    mu1, mu2 = rng.standard_normal(d), rng.standard_normal(d)
    s1, s2 = _random_spd(rng, d), _random_spd(rng, d, 3.0)
    covmean = linalg.sqrtm(s1 @ s2).real
    want = np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2 - 2 * covmean)
    got = metrics.frechet_distance_from_moments(mu1, s1, mu2, s2)
    assert got == pytest.approx(want, rel=1e-6, abs=1e-9)
    assert metrics.frechet_distance_from_moments(mu1, s1, mu1, s1) == pytest.approx(0, abs=1e-9)


def test_frechet_distance_closed_form_gaussians():
    # diagonal covariances commute: FD = |mu1 - mu2|^2 + sum_i (sqrt(v1_i) - sqrt(v2_i))^2
    mu1, mu2 = torch.tensor([0.0, 1.0, -1.0, 2.0]), torch.tensor([0.5, 1.0, 0.0, 2.0])
    v1, v2 = torch.tensor([1.0, 4.0, 0.25, 1.0]), torch.tensor([1.0, 1.0, 1.0, 9.0])
    exact = float((mu1 - mu2).square().sum() + (v1.sqrt() - v2.sqrt()).square().sum())
    assert metrics.frechet_distance_from_moments(mu1, torch.diag(v1), mu2, torch.diag(v2)) == pytest.approx(exact)
    # and a rotated (non-diagonal) pair: FD is invariant under a common rotation
    q, _ = torch.linalg.qr(torch.randn(4, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64))
    s1, s2 = q @ torch.diag(v1).double() @ q.T, q @ torch.diag(v2).double() @ q.T
    assert metrics.frechet_distance_from_moments(q @ mu1.double(), s1, q @ mu2.double(), s2) == pytest.approx(exact)
    # from large samples
    g = torch.Generator().manual_seed(1)
    n = 200_000
    a = (torch.randn(n, 4, generator=g, dtype=torch.float64) * v1.sqrt() + mu1) @ q.T
    b = (torch.randn(n, 4, generator=g, dtype=torch.float64) * v2.sqrt() + mu2) @ q.T
    assert metrics.frechet_distance(a, b) == pytest.approx(exact, rel=0.01)


def test_frechet_distance_matches_torchmetrics():
    fid_module = pytest.importorskip("torchmetrics.image.fid")

    class Identity(torch.nn.Module):
        num_features = 12

        def forward(self, x):
            return x

    g = torch.Generator().manual_seed(2)
    a = torch.randn(500, 12, generator=g, dtype=torch.float64)
    b = torch.randn(400, 12, generator=g, dtype=torch.float64) @ torch.randn(12, 12, generator=g, dtype=torch.float64) * 0.3 + 0.2
    fid = fid_module.FrechetInceptionDistance(feature=Identity())
    fid.update(a, real=True)
    fid.update(b, real=False)
    assert metrics.frechet_distance(a, b) == pytest.approx(float(fid.compute()), rel=1e-6)


def test_frechet_distance_of_singular_covariances_is_real_and_nonnegative():
    a = torch.randn(300, 8, generator=torch.Generator().manual_seed(0))
    a[:, 4:] = 0  # rank-4 covariance
    assert metrics.frechet_distance(a, a) == pytest.approx(0, abs=1e-9)
    assert metrics.frechet_distance(a, a + 1) == pytest.approx(8, rel=1e-9)


# -- kernel distance (KID) ---------------------------------------------------------------------
def test_kernel_distance_identical_and_shifted_distributions():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(1500, 32, generator=g), torch.randn(1500, 32, generator=g)
    same, same_std = metrics.kernel_distance(a, b, subsets=50)
    assert abs(same) < 3 * same_std + 1e-3  # unbiased: about 0, either sign
    shifted, shifted_std = metrics.kernel_distance(a, b + 0.5, subsets=50)
    assert shifted > 0.1 and shifted > 20 * shifted_std
    assert metrics.kernel_distance(a, b + 0.5, subsets=50) == (shifted, shifted_std)  # seeded
    assert metrics.kernel_distance(a, b + 0.5, subsets=50, seed=1) != (shifted, shifted_std)


def _subset_mmds(a, b, subsets, m, seed):
    """The subsets kernel_distance draws (a's then b's, from one seeded generator), each MMD^2_u
    computed from its definition."""
    g = torch.Generator().manual_seed(seed)
    picks_a = [torch.randperm(len(a), generator=g)[:m] for _ in range(subsets)]
    picks_b = [torch.randperm(len(b), generator=g)[:m] for _ in range(subsets)]
    out = []
    for ia, ib in zip(picks_a, picks_b):
        x, y = a[ia], b[ib]
        k = lambda u, v: (u @ v.T / a.shape[1] + 1) ** 3  # noqa: E731
        off = ~torch.eye(m, dtype=torch.bool)
        out.append(k(x, x)[off].mean() + k(y, y)[off].mean() - 2 * k(x, y).mean())
    return torch.stack(out)


@pytest.mark.parametrize("n_a,n_b,subsets,m", [(120, 90, 40, 50),    # whole kernel matrices
                                               (3000, 2500, 3, 40)])  # kernels per subset
def test_kernel_distance_matches_its_definition(n_a, n_b, subsets, m):
    g = torch.Generator().manual_seed(n_a)
    a = torch.randn(n_a, 6, generator=g, dtype=torch.float64)
    b = torch.randn(n_b, 6, generator=g, dtype=torch.float64) * 1.1 + 0.1
    want = _subset_mmds(a, b, subsets, m, seed=5)
    mean, std = metrics.kernel_distance(a, b, subsets=subsets, subset_size=m, seed=5)
    assert mean == pytest.approx(float(want.mean()), rel=1e-9)
    assert std == pytest.approx(float(want.std(unbiased=False)), rel=1e-6)


def test_kernel_distance_matches_torchmetrics():
    kid_module = pytest.importorskip("torchmetrics.image.kid")
    g = torch.Generator().manual_seed(4)
    a = torch.randn(300, 16, generator=g, dtype=torch.float64)
    b = torch.randn(300, 16, generator=g, dtype=torch.float64) + 0.3
    # one subset of everything: no randomness on either side
    assert metrics.kernel_distance(a, b, subset_size=300) == (
        pytest.approx(float(kid_module.poly_mmd(a, b)), rel=1e-9), 0.0)
