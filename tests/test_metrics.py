"""Shared metrics: mode coverage, the image judge and what it measures, manifold metrics,
Frechet and kernel distances, held-out likelihood and the closest-distance ratio."""
import dataclasses
import json
import math

import numpy as np
import pytest
import torch

from aigc_engine import Model, data, metrics
from aigc_engine.errors import InputError
from aigc_engine.metrics import _neighbours
from aigc_engine.metrics.judge import stratified_split


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """These are many small tensor ops: on a busy machine extra threads only wait for each other."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def digits():
    return data.digits()


@pytest.fixture(scope="module")
def judge_cache(tmp_path_factory):
    """XDG_CACHE_HOME pointed at a fresh folder for the whole module (the judge is trained once)."""
    root = tmp_path_factory.mktemp("xdg-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XDG_CACHE_HOME", str(root))
        yield root


@pytest.fixture(scope="module")
def judge(digits, judge_cache):
    return metrics.ImageJudge.for_dataset(digits)


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


# -- the judge ---------------------------------------------------------------------------------
def test_judge_accuracy_on_held_out_digits(judge, digits):
    assert judge.accuracy >= 0.97
    train, held = stratified_split(digits.y, 0.2, 0)
    assert judge.meta["holdout_size"] == len(held) == 359 and judge.meta["train_size"] == len(train)
    assert set(train.tolist()).isdisjoint(held.tolist()) and len(train) + len(held) == len(digits)
    assert torch.bincount(digits.y[held]).min() >= 34  # every class held out in proportion
    assert judge.predict(digits.x[held]).eq(digits.y[held]).double().mean() == pytest.approx(judge.accuracy)
    assert judge.features(digits.x[:5]).shape == (5, 128)
    assert torch.equal(judge.predict(digits.x[:7].reshape(7, 64)), judge.predict(digits.x[:7]))


def test_judge_cache_under_xdg_cache_home(judge, digits, judge_cache):
    files = sorted(p.name for p in (judge_cache / "aigc-engine" / "judges").iterdir())
    assert files == [f"{judge.fingerprint}.json", f"{judge.fingerprint}.safetensors"]
    again = metrics.ImageJudge.for_dataset(digits)
    assert again.from_cache and not judge.from_cache
    assert again.accuracy == judge.accuracy
    for key, value in judge.net.state_dict().items():
        assert torch.equal(again.net.state_dict()[key], value)
    description = json.loads((judge_cache / "aigc-engine" / "judges" / files[0]).read_text())
    assert description["fingerprint"] == judge.fingerprint and description["accuracy"] == judge.accuracy
    # other data or other settings: another fingerprint
    assert metrics.ImageJudge.for_dataset(digits, seed=1, epochs=1, cache=False).fingerprint != judge.fingerprint


def test_judge_cache_dir_falls_back_to_home(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    assert metrics.judge_cache_dir() == tmp_path / ".cache" / "aigc-engine" / "judges"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/path")  # the XDG spec says: ignore it
    assert metrics.judge_cache_dir() == tmp_path / ".cache" / "aigc-engine" / "judges"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert metrics.judge_cache_dir() == tmp_path / "xdg" / "aigc-engine" / "judges"


def test_judge_is_deterministic(tmp_path):
    small = data.digits(n=300)
    a = metrics.ImageJudge.for_dataset(small, epochs=2, cache_dir=tmp_path / "a")
    rng_before, threads = torch.get_rng_state(), torch.get_num_threads()
    torch.set_num_threads(threads + 1)  # trained on one thread whatever the setting
    try:
        b = metrics.ImageJudge.for_dataset(small, epochs=2, cache_dir=tmp_path / "b")
        assert torch.get_num_threads() == threads + 1
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(torch.get_rng_state(), rng_before)  # the caller's RNG is left alone
    c = metrics.ImageJudge.for_dataset(small, epochs=2, seed=1, cache=False)
    for key, value in a.net.state_dict().items():
        assert torch.equal(b.net.state_dict()[key], value), key
    assert not torch.equal(a.net.conv1.weight, c.net.conv1.weight)
    assert (tmp_path / "a" / f"{a.fingerprint}.safetensors").read_bytes() == \
        (tmp_path / "b" / f"{b.fingerprint}.safetensors").read_bytes()


def test_damaged_cache_file_is_retrained(tmp_path):
    small = data.digits(n=200)
    judge = metrics.ImageJudge.for_dataset(small, epochs=1, cache_dir=tmp_path)
    path = tmp_path / f"{judge.fingerprint}.safetensors"
    path.write_bytes(b"not a safetensors file")
    with pytest.warns(RuntimeWarning, match="ignoring the cached image judge"):
        again = metrics.ImageJudge.for_dataset(small, epochs=1, cache_dir=tmp_path)
    assert not again.from_cache and torch.equal(again.net.head.weight, judge.net.head.weight)
    assert metrics.ImageJudge.for_dataset(small, epochs=1, cache_dir=tmp_path).from_cache


@pytest.mark.parametrize("shape", [(3, 40, 20), (1, 3, 5), (2, 70, 70)])
def test_judge_takes_other_image_sizes(shape):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(40, *shape, generator=g) * 2 - 1
    y = torch.arange(40) % 3
    judge = metrics.ImageJudge.for_dataset((x, y), epochs=1, cache=False)
    assert judge.image_shape == shape and judge.num_classes == 3
    assert judge.features(x).shape == (40, 128) and judge.predict(x).shape == (40,)
    assert 0 <= judge.accuracy <= 1 and judge.meta["holdout_size"] == 9  # round(0.2 * 13 or 14) per class


def test_judge_input_errors(judge, digits):
    with pytest.raises(InputError, match="class labels"):
        metrics.ImageJudge.for_dataset(data.Dataset(digits.x, None, 0, "unlabelled"), cache=False)
    with pytest.raises(InputError, match="N x C x H x W"):
        metrics.ImageJudge.for_dataset(data.ring8(n=100), cache=False)
    with pytest.raises(InputError, match=r"N x 1 x 8 x 8 images \(or N x 64\)"):
        judge.predict(torch.zeros(3, 1, 7, 7))
    with pytest.raises(InputError, match="labels"):
        judge.conditional_accuracy(digits.x[:4], torch.zeros(3, dtype=torch.int64))


def test_conditional_accuracy(judge, digits):
    _, held = stratified_split(digits.y, 0.2, 0)
    assert judge.conditional_accuracy(digits.x[held], digits.y[held]) == pytest.approx(judge.accuracy)
    wrong = (digits.y[held] + 1) % 10
    assert judge.conditional_accuracy(digits.x[held], wrong) < 0.05


def test_frechet_distance_real_vs_noise_in_judge_features(judge, digits):
    train, held = stratified_split(digits.y, 0.2, 0)
    noise = torch.rand(len(held), 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1
    f_train = judge.features(digits.x[train])
    fd_real = metrics.frechet_distance(f_train, judge.features(digits.x[held]))
    fd_noise = metrics.frechet_distance(f_train, judge.features(noise))
    assert 0 < fd_real < 0.05 * fd_noise


# -- calibration on digits, pixel space --------------------------------------------------------
def _repeat_per_class(digits, per_class, n=2000):
    picks = torch.cat([(digits.y == c).nonzero()[:per_class, 0] for c in range(10)])
    return digits.x[picks[torch.arange(n) % len(picks)]]


def test_coverage_calibration_on_digits(digits):
    g = torch.Generator().manual_seed(0)
    resampled = digits.x[torch.randint(0, len(digits), (2000,), generator=g)]
    real = metrics.precision_recall_density_coverage(digits.x, resampled)
    assert real["coverage"] >= 0.9 and real["precision"] >= 0.9 and real["recall"] >= 0.9
    halves = torch.randperm(len(digits), generator=g)
    other_half = metrics.precision_recall_density_coverage(digits.x[halves[:900]], digits.x[halves[900:]])
    assert other_half["coverage"] >= 0.9
    one = metrics.precision_recall_density_coverage(digits.x, _repeat_per_class(digits, 1))
    five = metrics.precision_recall_density_coverage(digits.x, _repeat_per_class(digits, 5))
    assert one["coverage"] <= 0.1 and one["recall"] == 0
    assert one["coverage"] == pytest.approx(0.02, abs=0.01)  # ../shared/ANCHORS.md's calibration
    assert five["coverage"] == pytest.approx(0.10, abs=0.03)
    assert one["precision"] == five["precision"] == 1.0  # copies of real images are all faithful


def test_image_metrics_in_one_call(judge, digits):
    samples = _repeat_per_class(digits, 1, n=200)
    labels = torch.arange(200) % 10
    out = metrics.image_metrics(digits, samples, labels, judge=judge, kid_subsets=10)
    manifold = ["precision", "recall", "density", "coverage"]
    assert set(out) == ({f"pixel_{k}" for k in manifold} | {f"judge_{k}" for k in manifold}
                        | {"judge_accuracy", "conditional_accuracy", "judge_fd", "judge_kid", "judge_kid_std"})
    assert out["conditional_accuracy"] == 1.0 and out["judge_accuracy"] == judge.accuracy
    assert out["pixel_coverage"] < 0.05 and out["judge_kid"] > 0 and out["judge_fd"] > 1
    assert all(isinstance(v, float) for v in out.values())
    pixel_only = metrics.image_metrics(digits.x, samples)
    assert set(pixel_only) == {f"pixel_{k}" for k in manifold}
    assert pixel_only == {k: out[k] for k in pixel_only}
    with pytest.raises(InputError, match="do not match"):
        metrics.image_metrics(digits.x, torch.zeros(10, 1, 4, 4), judge=False)


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


# -- held-out log-likelihood -------------------------------------------------------------------
class _NoLogProb(Model):
    """The smallest model of the contract (no log_prob): a standard normal of two dimensions."""
    name = "standard_normal"

    @dataclasses.dataclass
    class Config:
        pass

    def fit(self, dataset, run):
        pass

    def sample(self, n, condition=None):
        return torch.randn(n, 2)

    def state_dict(self):
        return {}

    def load_state_dict(self, state):
        pass


class _StandardNormal(_NoLogProb):
    def log_prob(self, x):
        x = x.reshape(len(x), -1)
        return -0.5 * (x.square() + math.log(2 * math.pi)).sum(1)


def test_heldout_log_likelihood_exact_and_bound():
    x = torch.randn(1000, 2, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    want = float(_StandardNormal().log_prob(x).mean())
    out = metrics.heldout_log_likelihood(_StandardNormal(), x, batch_size=64)
    assert out["log_likelihood"] == pytest.approx(want)
    assert out["log_likelihood_per_dim"] == pytest.approx(want / 6)
    assert out["bits_per_dim"] == pytest.approx(-want / 6 / math.log(2))
    assert out["is_bound"] is False
    dataset = data.Dataset(x.float().reshape(1000, 6), None, 0, "points")
    from_dataset = metrics.heldout_log_likelihood(_StandardNormal(), dataset, batch_size=300)
    assert from_dataset["log_likelihood"] == pytest.approx(want, rel=1e-6)

    class Elbo(_StandardNormal):
        log_prob_kind = "bound"

    assert metrics.heldout_log_likelihood(Elbo(), x)["is_bound"] is True


def test_heldout_log_likelihood_of_the_gmm_plugin_on_ring8():
    from aigc_engine import Run
    from aigc_gmm.model import GMMModel

    model = GMMModel(GMMModel.Config(n_components=8))
    model.fit(data.ring8(n=2000), Run(None, device="cpu", seed=0, progress=False))
    out = metrics.heldout_log_likelihood(model, data.ring8(n=1000, seed=1))
    # the true density's expected log-likelihood: -ln 8 - ln(2 pi e) - 2 ln 0.01 = 4.29 nats per point
    true = -math.log(8) - math.log(2 * math.pi * math.e) - 2 * math.log(0.01)
    assert out["log_likelihood"] == pytest.approx(true, abs=0.1)
    assert out["log_likelihood_per_dim"] == pytest.approx(out["log_likelihood"] / 2)
    assert out["is_bound"] is False


def test_heldout_log_likelihood_errors():
    with pytest.raises(InputError, match="no log_prob"):
        metrics.heldout_log_likelihood(_NoLogProb(), torch.zeros(3, 2))

    class Bad(_NoLogProb):
        def log_prob(self, x):
            return x

    with pytest.raises(InputError, match="one value per row"):
        metrics.heldout_log_likelihood(Bad(), torch.zeros(3, 2))


# -- closest-distance ratio (memorisation) -----------------------------------------------------
def test_closest_distance_ratio_hand_computed():
    train = torch.tensor([[0.0], [10.0]])
    holdout = torch.tensor([[1.0], [8.0], [13.0]])     # closest distances 1, 2, 3 -> median 2
    samples = torch.tensor([[0.5], [10.0], [9.0]])      # closest distances 0.5, 0, 1 -> median 0.5
    assert metrics.closest_distance_ratio(samples, train, holdout) == {
        "sample_dcr_median": 0.5, "holdout_dcr_median": 2.0, "dcr_ratio": 0.25}


def test_closest_distance_ratio_copies_and_fresh_samples(digits):
    g = torch.Generator().manual_seed(0)
    perm = torch.randperm(len(digits), generator=g)
    train, holdout, fresh = digits.x[perm[:1000]], digits.x[perm[1000:1400]], digits.x[perm[1400:]]
    copies = metrics.closest_distance_ratio(train[:300], train, holdout)
    assert copies["sample_dcr_median"] == pytest.approx(0, abs=1e-6) and copies["dcr_ratio"] < 1e-6
    new = metrics.closest_distance_ratio(fresh, train, holdout)
    assert 0.85 < new["dcr_ratio"] < 1.15
