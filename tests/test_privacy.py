"""Differential privacy: the accountant against dp-accounting's and opacus' own numbers, the
calibration, the DP primitives' noise against their stated sensitivity, DP-EM (its noise scale,
its noiseless run equal to EM, its fit at epsilon=1 no better than the non-private one), the gmm
model's private fit and its summary, and the privacy report's membership-inference AUCs."""
import json
import math
import warnings

import numpy as np
import pytest
import torch

dpa = pytest.importorskip("dp_accounting")

from aigc_engine import InputError, Run  # noqa: E402
from aigc_engine.metrics.privacy import auc, distance_mia_auc, domias_auc, exact_copies, privacy_report  # noqa: E402
from aigc_engine.privacy import (Accountant, PrivacyBudget, calibrate_noise, default_delta,  # noqa: E402
                                 gaussian_sum, histogram_quantiles, magnitude_range, release_threshold, thresholded_histogram)
from aigc_gmm import _dp_em  # noqa: E402
from aigc_gmm.config import BGMMConfig, GMMConfig  # noqa: E402
from aigc_gmm.model import BGMMModel, GMMModel  # noqa: E402


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def blobs(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = np.array([[2.0, 0, 0], [-2, 0, 0], [0, 2, 0], [0, -1.5, 1.5]])
    return centres[rng.integers(0, 4, n)] + rng.normal(size=(n, 3)) * 0.5


# -- budget and accountant ---------------------------------------------------------------------
def test_default_delta_is_below_one_over_rows():
    for rows in (2, 3, 10, 569, 6366, 10 ** 6):
        assert default_delta(rows) < 1 / rows
    assert PrivacyBudget(1.0).for_rows(1000).delta == pytest.approx(1000 ** -1.1)
    with pytest.raises(InputError, match="not below 1/rows"):
        PrivacyBudget(1.0, 0.01).for_rows(1000)
    with pytest.raises(InputError, match="epsilon must be > 0"):
        PrivacyBudget(0.0)


@pytest.mark.parametrize("z,count,delta", [(1.0, 1, 1e-5), (5.0, 20, 1e-5), (10.0, 11, 1.5e-4)])
def test_pld_epsilon_equals_the_analytic_gaussian(z, count, delta):
    """count Gaussian mechanisms of multiplier z are one of multiplier z / sqrt(count); the
    analytic Gaussian mechanism (Balle and Wang 2018, dp-accounting's closed form) is exact."""
    exact = dpa.get_epsilon_gaussian(z / math.sqrt(count), delta)
    assert Accountant("pld").gaussian(z, count).epsilon(delta) == pytest.approx(exact, rel=2e-3)
    rdp = Accountant("rdp").gaussian(z, count).epsilon(delta)  # RDP's conversion is an upper bound
    assert exact <= rdp <= exact * 1.25


def test_rdp_epsilon_equals_dp_accountings_own_composition():
    """Events composed one by one in dp-accounting's RDP accountant (the orders ours uses) give
    ours for the Poisson-subsampled Gaussian and the full-batch one together."""
    from dp_accounting import rdp

    ref = rdp.RdpAccountant(orders=[1 + x / 10.0 for x in range(1, 100)] + list(range(12, 64)))
    ref.compose(dpa.PoissonSampledDpEvent(0.02, dpa.GaussianDpEvent(1.1)), 300)
    for _ in range(3):
        ref.compose(dpa.GaussianDpEvent(20.0))
    ours = Accountant("rdp").subsampled_gaussian(1.1, 0.02, 300).gaussian(20.0, 3)
    assert ours.epsilon(1e-5) == pytest.approx(ref.get_epsilon(1e-5), rel=1e-9)


@pytest.mark.parametrize("z,q,steps,rel", [(1.1, 0.01, 1000, 1e-6), (1.5, 0.05, 200, 1e-5),
                                            (2.0, 0.004, 5000, 1e-6), (0.8, 0.05, 200, 2e-3)])
def test_rdp_epsilon_equals_opacus(z, q, steps, rel):
    """Equal to rounding; at small multipliers and large rates dp-accounting drops the fractional
    orders whose series does not converge (1.1 to 1.3 at z=0.8, q=0.05), where opacus sums them:
    ours is then the larger, by 0.13%."""
    accountants = pytest.importorskip("opacus.accountants")
    ref = accountants.RDPAccountant()
    ref.history = [(z, q, steps)]
    expected = ref.get_epsilon(1e-5)
    ours = Accountant("rdp").subsampled_gaussian(z, q, steps).epsilon(1e-5)
    assert ours == pytest.approx(expected, rel=rel) and ours >= expected * (1 - 1e-6)


@pytest.mark.parametrize("kind,count,q", [("pld", 10, None), ("pld", 1, None), ("rdp", 10, None),
                                          ("rdp", 500, 0.01)])  # PLD of 500 subsampled steps: 20 s
def test_calibrated_noise_spends_the_budget_and_no_more(kind, count, q):
    z = calibrate_noise(1.0, 1e-5, count, q, kind)
    acc = Accountant(kind)
    acc = acc.gaussian(z, count) if q is None else acc.subsampled_gaussian(z, q, count)
    assert 0.99 <= acc.epsilon(1e-5) <= 1.0
    assert calibrate_noise(math.inf, 1e-5, count) is None


def test_threshold_delta_is_spent_before_the_composition():
    acc = Accountant("pld").gaussian(3.0, 2)
    assert acc.add_delta(4e-6).epsilon(1e-5) == pytest.approx(Accountant("pld").gaussian(3.0, 2).epsilon(6e-6))
    assert acc.epsilon(4e-6) == math.inf
    assert Accountant().epsilon(1e-5) == 0.0


# -- primitives --------------------------------------------------------------------------------
def test_gaussian_sum_clips_rows_and_adds_noise_of_its_sensitivity():
    x = torch.randn(50, 4, generator=gen(0)) * 10
    exact = (x.double() * torch.clamp(2.0 / x.double().norm(dim=1, keepdim=True), max=1)).sum(0)
    noise = torch.stack([gaussian_sum(x, 2.0, 3.0, gen(s)) - exact for s in range(2000)])
    assert float(noise.std()) == pytest.approx(6.0, rel=0.03)
    assert float(noise.mean()) == pytest.approx(0.0, abs=0.1)


def test_histogram_quantiles_on_a_public_range():
    values = torch.randn(20000, generator=gen(1))
    q = histogram_quantiles(values, [0.1, 0.5, 0.9], -4, 4, noise_multiplier=2.0, bins=80, generator=gen(2))
    torch.testing.assert_close(q, torch.tensor([-1.2816, 0.0, 1.2816], dtype=torch.float64), atol=0.05, rtol=0)
    # values beyond the public range count in its last bin (linear within it: its middle)
    assert histogram_quantiles(torch.full((10,), 9.0), [0.5], -1, 1, 1e-9, 4, gen(0)).item() == pytest.approx(0.75)


def test_thresholded_histogram_never_releases_a_handful_of_rows():
    threshold = release_threshold(2.0, 1e-6)
    assert threshold == pytest.approx(1 + 2.0 * 4.753424, rel=1e-6)
    assert release_threshold(0.1, 1e-3) == 5.0  # the min_count floor
    values = ["common"] * 200 + ["rare"] * 3 + ["single"] + [None] * 50
    released = [thresholded_histogram(values, 2.0, threshold, gen(s)) for s in range(300)]
    assert all(set(r) == {"common", None} for r in released)
    assert np.std([r["common"] for r in released]) == pytest.approx(2.0, rel=0.15)


# -- DP-EM -------------------------------------------------------------------------------------
@pytest.mark.parametrize("covariance_type", ["full", "diag"])
def test_dp_em_noise_matches_its_sensitivity(covariance_type):
    """Over many draws the noise added to counts, sums and second moments has std z sqrt(3) (1,
    B, B^2), the second moments' noise symmetric; and no row moves the three statistics, each over
    sqrt(3) times its sensitivity, by more than 1 in L2 norm (the multiplier's unit)."""
    bound, z = 2.5, 1.7
    x = _dp_em.clip(torch.randn(40, 3, generator=gen(0), dtype=torch.float64) * 3, bound)
    resp = torch.softmax(torch.randn(40, 4, generator=gen(1), dtype=torch.float64) * 3, dim=1)
    exact = _dp_em.statistics(x, resp, covariance_type)
    draws = [_dp_em.add_noise(exact, bound, z, gen(s), covariance_type) for s in range(3000)]
    expected = (z * math.sqrt(3), z * math.sqrt(3) * bound, z * math.sqrt(3) * bound ** 2)
    assert _dp_em.noise_stds(bound, z) == pytest.approx(expected)
    for i, std in enumerate(expected):
        noise = torch.stack([d[i] - exact[i] for d in draws])
        assert float(noise.std()) == pytest.approx(std, rel=0.03)
        if i == 2 and covariance_type == "full":
            torch.testing.assert_close(noise, noise.transpose(-1, -2))
    rows = torch.cat([x, torch.eye(3, dtype=torch.float64) * bound])  # rows on the sphere: the worst
    hard = torch.eye(4, dtype=torch.float64)[torch.arange(len(rows)) % 4]
    for r, p in ((rows, hard), (x, resp)):
        for n in range(len(r)):
            one = _dp_em.statistics(r[n:n + 1], p[n:n + 1], covariance_type)
            second = torch.triu(one[2]) if covariance_type == "full" else one[2]
            scaled = torch.cat([one[0].flatten(), one[1].flatten() / bound, second.flatten() / bound ** 2])
            assert float(scaled.norm()) / math.sqrt(3) <= 1 + 1e-12
    assert float(scaled.norm()) / math.sqrt(3) < 1  # interior rows with soft responsibilities


def test_dp_em_without_noise_is_em_from_the_same_start():
    from sklearn.mixture import GaussianMixture

    bound = 3.0
    x = _dp_em.clip(torch.as_tensor(blobs(600, 0)), bound)
    w, m, c = _dp_em.initial(4, 3, bound, gen(3), "full")
    ours = _dp_em.dp_em(x, 4, 15, bound, None, "full", floor=1e-12, init_generator=gen(3))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = GaussianMixture(4, max_iter=15, tol=0, reg_covar=0, weights_init=w.numpy(), means_init=m.numpy(),
                              precisions_init=np.linalg.inv(c.numpy())).fit(x.numpy())
    np.testing.assert_allclose(ours["weights"], ref.weights_, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(ours["means"], ref.means_, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(ours["covariances"], ref.covariances_, rtol=1e-7, atol=1e-10)


def heldout_score(fit: dict, heldout: np.ndarray) -> float:
    from sklearn.mixture import GaussianMixture

    gm = GaussianMixture(len(fit["weights"]))
    gm.weights_, gm.means_, gm.covariances_ = (fit[k].numpy() for k in ("weights", "means", "covariances"))
    gm.precisions_cholesky_ = np.linalg.cholesky(np.linalg.inv(gm.covariances_))
    return gm.score(heldout)


def test_dp_em_at_epsilon_one_is_finite_and_no_better_than_em():
    from sklearn.mixture import GaussianMixture

    train, heldout = blobs(3000, 1), blobs(2000, 2)
    reference = GaussianMixture(4, random_state=0).fit(train).score(heldout)
    z = calibrate_noise(1.0, default_delta(3000), 10)
    for seed in range(3):
        fit = _dp_em.dp_em(torch.as_tensor(train), 4, 10, 3.0, z, init_generator=gen(seed),
                           noise_generator=gen(100 + seed))
        score = heldout_score(fit, heldout)
        assert math.isfinite(score) and score <= reference


def canary_log_likelihoods(noise_multiplier, with_canary: bool, fits: int, seed: int) -> np.ndarray:
    """log p(canary) under ``fits`` DP-EM fits of 150 rows around the origin, with or without the
    canary (a row on the ball's edge, far from them: the row DP-EM's clipping makes the worst)."""
    x = torch.as_tensor(np.random.default_rng(0).normal(size=(150, 2)) * 0.5)
    canary = torch.tensor([[2.0, 0.0]], dtype=torch.float64)
    data = torch.cat([x, canary]) if with_canary else x
    out = []
    for i in range(fits):
        fit = _dp_em.dp_em(data, 2, 5, 2.0, noise_multiplier, init_generator=gen(0), noise_generator=gen(seed + i))
        out.append(float(torch.logsumexp(_dp_em.log_joint(canary, *fit.values(), "full"), dim=1)))
    return np.array(out)


def audit_violations(inside: np.ndarray, outside: np.ndarray, epsilon: float, slack: float) -> list:
    """Events (the canary's log-likelihood above or below a threshold, the thresholds at the
    0.1-0.9 quantiles of both runs) whose frequency with the canary exceeds e^epsilon times its
    frequency without it plus ``slack``, or the reverse: what (epsilon, ~0)-DP forbids."""
    both = np.concatenate([inside, outside])
    found = []
    for t in np.quantile(both, np.linspace(0.1, 0.9, 9)):
        for p, q in (((inside > t).mean(), (outside > t).mean()), ((inside <= t).mean(), (outside <= t).mean())):
            if p > math.exp(epsilon) * q + slack or q > math.exp(epsilon) * p + slack:
                found.append((t, p, q))
    return found


@pytest.mark.slow
def test_canary_audit():
    """An empirical audit: 200 DP-EM fits with a canary row and 200 without it (about 5 s). At
    epsilon=1 (delta 1e-5) no event on the canary's log-likelihood is more than e times as likely
    one way as the other, up to a slack of 0.12 (about 3.5 standard deviations of a difference
    of two frequencies of 200 fits at 0.5). Its power: the same audit of the noiseless fit finds
    the canary (every event); a mechanism for which some threshold event has probability 0.6 with
    the canary and 0.1 without it (an epsilon of about 1.8) fails it with probability above 0.99.
    It audits the mechanism, not the accounting: an audit of 200 fits cannot certify epsilon=1."""
    z = calibrate_noise(1.0, 1e-5, 5)
    inside, outside = canary_log_likelihoods(z, True, 200, 1000), canary_log_likelihoods(z, False, 200, 5000)
    assert audit_violations(inside, outside, 1.0, 0.12) == []
    exact_in, exact_out = canary_log_likelihoods(None, True, 1, 0), canary_log_likelihoods(None, False, 1, 0)
    assert audit_violations(np.repeat(exact_in, 200), np.repeat(exact_out, 200), 1.0, 0.12)


# -- the gmm model -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def wine(tmp_path_factory):
    from sklearn.datasets import load_wine

    from aigc_engine.data.tablefile import read_table

    bunch = load_wine(as_frame=True)
    frame = bunch.frame.drop(columns="target")
    frame["cultivar"] = np.asarray(bunch.target_names)[bunch.target]
    path = tmp_path_factory.mktemp("tables") / "wine.csv"
    frame.to_csv(path, index=False)
    return path, read_table(path, label_column="cultivar")


def fit_gmm(dataset, **values) -> GMMModel:
    model = GMMModel(GMMConfig(**values))
    model.fit(dataset, Run(None, device="cpu", seed=0, progress=False))
    return model


def test_private_gmm_reports_what_it_spent(wine):
    _, dataset = wine
    model = fit_gmm(dataset, privacy_epsilon=1.0, n_components=2)
    metrics = model.evaluate(dataset, Run(None, device="cpu", seed=0, progress=False))
    assert 0.99 <= metrics["privacy_epsilon"] <= 1.0
    assert metrics["privacy_delta"] == pytest.approx(len(dataset) ** -1.1)
    assert metrics["privacy_accountant"].startswith("dp_accounting.pld")
    assert math.isfinite(metrics["mean_log_likelihood"]) and metrics["classes"] == 3
    torch.manual_seed(0)
    x = model.sample(50)
    assert x.shape == (50, dataset.x.shape[1]) and torch.isfinite(x).all()
    clone = GMMModel(GMMConfig(n_components=2))
    clone.load_state_dict(model.state_dict())
    torch.testing.assert_close(clone.log_prob(dataset.x[:20]), model.log_prob(dataset.x[:20]))


def test_private_noise_is_not_replayable_from_the_seed(wine):
    _, dataset = wine
    a, b = (fit_gmm(dataset, privacy_epsilon=1.0, n_components=2) for _ in range(2))
    assert not torch.equal(a.classes[0].means_, b.classes[0].means_)


def test_no_epsilon_is_the_non_private_fit_and_inf_is_refused(wine):
    _, dataset = wine
    plain, unset = fit_gmm(dataset), fit_gmm(dataset, privacy_epsilon=None)
    for a, b in zip(plain.classes, unset.classes):
        torch.testing.assert_close(a.means_, b.means_, rtol=0, atol=0)
    assert unset.privacy == {}
    with pytest.raises(InputError, match="privacy_epsilon must be a finite number"):
        GMMModel(GMMConfig(privacy_epsilon=math.inf))


def test_what_has_no_private_fit_says_so(wine):
    _, dataset = wine
    with pytest.raises(InputError, match="bgmm has no private fit"):
        BGMMModel(BGMMConfig(privacy_epsilon=1.0)).validate(dataset)
    with pytest.raises(InputError, match="covariance_type"):
        GMMModel(GMMConfig(privacy_epsilon=1.0, covariance_type="tied")).validate(dataset)
    with pytest.raises(InputError, match="not below 1/rows"):
        GMMModel(GMMConfig(privacy_epsilon=1.0, privacy_delta=0.1)).validate(dataset)


@pytest.mark.slow
def test_cli_run_writes_the_spend(wine, tmp_path):
    from click.testing import CliRunner

    from aigc_engine.cli import cli

    path, _ = wine
    out = tmp_path / "run"
    result = CliRunner().invoke(cli, ["run", "gmm", "--dataset", str(path), "--set", "dataset.label_column=cultivar",
                                       "--set", "privacy_epsilon=1", "--set", "n_components=2", "--out", str(out),
                                       "--no-progress"])
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["privacy_epsilon"] <= 1.0 and summary["privacy_delta"] < 1 / 178
    assert "privacy_accountant" in summary
    assert json.loads((out / "config.json").read_text())["config"]["privacy_epsilon"] == 1.0
    refused = CliRunner().invoke(cli, ["run", "bgmm", "--dataset", str(path), "--set", "privacy_epsilon=1",
                                        "--out", str(tmp_path / "bgmm"), "--no-progress"])
    assert refused.exit_code == 2 and "no private fit" in refused.output


# -- the privacy report ------------------------------------------------------------------------
def test_auc_is_mann_whitney_with_ties():
    from sklearn.metrics import roc_auc_score

    members, others = torch.tensor([1.0, 2, 2, 3, 5]), torch.tensor([2.0, 0, 1, 4])
    assert auc(members, others) == pytest.approx(roc_auc_score([1] * 5 + [0] * 4, torch.cat([members, others])))


def test_membership_attacks_see_a_memorising_model_and_not_a_fresh_one():
    """1000 members and 1000 non-members: the AUC of an attack that cannot tell them apart has
    std about 0.013, so 0.5 +- 0.05 fails one honest model in about 10^4."""
    train, heldout = torch.as_tensor(blobs(1000, 3)), torch.as_tensor(blobs(1000, 4))
    memorised, fresh = train.clone(), torch.as_tensor(blobs(1000, 5))
    assert exact_copies(memorised, train) == 1.0 and exact_copies(fresh, train) == 0.0
    assert exact_copies(torch.cat([train[:100], fresh[100:]]), train) == pytest.approx(0.1)
    assert distance_mia_auc(memorised, train, heldout) > 0.99
    assert domias_auc(memorised, train, heldout) > 0.9
    report = privacy_report(fresh, train, heldout)
    assert abs(report["mia_distance_auc"] - 0.5) < 0.05 and abs(report["mia_domias_auc"] - 0.5) < 0.05


def test_project_counts_is_the_nearest_histogram_of_the_total():
    from aigc_engine.privacy.mechanisms import project_counts

    assert project_counts(torch.tensor([5.0, 3.0, -1.0]), 6).tolist() == pytest.approx([4.0, 2.0, 0.0])
    noisy = torch.randn(50, generator=gen(4), dtype=torch.float64) * 30 + 10
    out = project_counts(noisy, 500)
    assert float(out.min()) >= 0 and float(out.sum()) == pytest.approx(500)
    # the nearest such vector: no feasible move along the simplex lowers the distance
    assert float(((out - noisy) ** 2).sum()) <= float(((torch.full((50,), 10.0) - noisy) ** 2).sum())


def test_magnitude_range_keeps_the_tails_under_heavy_noise():
    # 400 rows in [6.9, 28] (breast_cancer's mean radius), noise std 30 per bin: the bins [4, 8)
    # and [8, 16) seldom pass the threshold (4.4 noise stds); the range widens over the neighbours
    values = torch.from_numpy(np.random.default_rng(0).uniform(6.9, 28, 400))
    lows, highs = zip(*(magnitude_range(values, 30.0, gen(s)) for s in range(20)))
    assert max(lows) <= 6.9 and min(highs) >= 28
    assert sorted(lows)[1] >= 0.5 and max(highs) <= 128  # one of 20 has a 4.4-std noise bin far away


def test_private_gmm_plans_its_components_from_public_figures():
    """One component in one iteration (less noise) where no two components would get 10 noise
    stds of rows on their second moments; up to n_components on a table large enough."""
    from aigc_gmm import private_fit

    budget = PrivacyBudget(1.0, 1e-6)
    k, iterations, z = private_fit.plan(GMMConfig(n_components=8), budget, 1000, 2, bound=3.0)
    assert (k, iterations) == (1, 1)
    assert z == pytest.approx(calibrate_noise(1.0, 1e-6, 2))  # one iteration + the class rates
    assert z < calibrate_noise(1.0, 1e-6, 11) / 2
    k, iterations, z10 = private_fit.plan(GMMConfig(n_components=8), budget, 10_000_000, 2, bound=3.0)
    assert (k, iterations) == (8, 10) and z10 == pytest.approx(calibrate_noise(1.0, 1e-6, 11))
    per_component = private_fit.ROWS_PER_NOISE * z10 * math.sqrt(3) * 9
    k, _, _ = private_fit.plan(GMMConfig(n_components=8), budget, int(2 * 3.5 * per_component), 2, bound=3.0)
    assert k == 3
