"""Sample weights of aigc_gmm.GaussianMixture: integer weights fit as repeated rows, zero weights
as dropped rows, bad weights a ValueError; score / bic / aic / criteria use the weighted count."""
import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings, HealthCheck
from hypothesis import strategies as st
from sklearn.exceptions import ConvergenceWarning

from aigc_gmm import GaussianMixture

COV_TYPES = ["full", "tied", "diag", "spherical"]
ATTRS = ["weights_", "means_", "covariances_", "precisions_cholesky_"]


@pytest.fixture(scope="module")
def X():
    rng = np.random.default_rng(0)
    centres = np.array([[0.0, 0.0, 0.0], [4.0, 0.0, 1.0], [0.0, 5.0, -2.0]])
    return np.concatenate([rng.normal(size=(60, 3)) * s + c for c, s in zip(centres, [0.5, 1.0, 1.5])])


def given_init(X, covariance_type, K=3):
    D = X.shape[1]
    prec = {"full": np.stack([np.eye(D) * (k + 1) for k in range(K)]), "tied": np.eye(D) * 0.5,
            "diag": np.linspace(0.5, 2, K * D).reshape(K, D), "spherical": np.linspace(0.5, 2, K)}[covariance_type]
    return dict(n_components=K, covariance_type=covariance_type, weights_init=np.full(K, 1.0 / K),
                means_init=X[np.linspace(0, len(X) - 1, K).astype(int)], precisions_init=prec)


def fit(X, sample_weight=None, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return GaussianMixture(**kw).fit(X, sample_weight=sample_weight)


def assert_same_fit(a, b, rtol=1e-9):
    for name in ATTRS:
        np.testing.assert_allclose(getattr(a, name), getattr(b, name), rtol=rtol, atol=1e-10, err_msg=name)
    assert a.n_iter_ == b.n_iter_
    np.testing.assert_allclose(a.lower_bounds_, b.lower_bounds_, rtol=rtol)


@pytest.mark.parametrize("covariance_type", COV_TYPES)
def test_integer_weights_equal_repeated_rows(X, covariance_type):
    w = np.random.default_rng(1).integers(0, 4, size=len(X))
    kw = dict(given_init(X, covariance_type), tol=1e-10, max_iter=30)
    weighted = fit(X, w, **kw)
    repeated = fit(np.repeat(X, w, axis=0), **kw)
    assert_same_fit(weighted, repeated)
    np.testing.assert_allclose(weighted.score(X, sample_weight=w), repeated.score(np.repeat(X, w, axis=0)),
                               rtol=1e-12)
    for crit in ("bic", "aic"):
        np.testing.assert_allclose(getattr(weighted, crit)(X, sample_weight=w),
                                   getattr(repeated, crit)(np.repeat(X, w, axis=0)), rtol=1e-12)


@pytest.mark.parametrize("covariance_type", COV_TYPES)
def test_zero_weights_equal_dropped_rows(X, covariance_type):
    keep = np.random.default_rng(2).random(len(X)) < 0.7
    kw = dict(given_init(X, covariance_type), tol=1e-10, max_iter=30)
    assert_same_fit(fit(X, keep.astype(float), **kw), fit(X[keep], **kw))


@pytest.mark.parametrize("init_params", ["kmeans", "k-means++", "random", "random_from_data"])
def test_unit_weights_equal_unweighted(X, init_params):
    # the same random_state and unit weights: the initialisation and fit of no weights
    kw = dict(n_components=3, init_params=init_params, random_state=0, max_iter=20)
    assert_same_fit(fit(X, np.ones(len(X)), **kw), fit(X, **kw), rtol=1e-8)


def test_weighted_kmeans_initialisation_follows_weights(X):
    # the rows of one cluster weighted 0: k-means (weighted) puts no centre on them at first,
    # so the fit with 2 components finds the other two clusters
    w = np.ones(len(X))
    w[120:] = 0
    gm = fit(X, w, n_components=2, random_state=0)
    found = np.sort(gm.means_[:, 0])
    np.testing.assert_allclose(found, [0.0, 4.0], atol=0.4)


def test_fit_predict_and_torch_weights(X):
    w = np.random.default_rng(3).random(len(X))
    kw = dict(n_components=3, random_state=0)
    labels = GaussianMixture(**kw).fit_predict(X, sample_weight=w)
    gm = fit(X, w, **kw)
    np.testing.assert_array_equal(labels, gm.predict(X))
    gt = GaussianMixture(**kw).fit(torch.as_tensor(X), sample_weight=torch.as_tensor(w))
    np.testing.assert_allclose(gt.means_.numpy(), gm.means_, rtol=1e-9)


def test_real_valued_weights_scale_free(X):
    # multiplying every weight by a constant changes nothing but the weighted count
    w = np.random.default_rng(4).random(len(X))
    kw = dict(given_init(X, "full"), tol=1e-10, max_iter=20)
    a, b = fit(X, w, **kw), fit(X, 7.5 * w, **kw)
    assert_same_fit(a, b)
    ca, cb = a.criteria(X, sample_weight=w), b.criteria(X, sample_weight=7.5 * w)
    np.testing.assert_allclose(cb["n_samples"], 7.5 * ca["n_samples"], rtol=1e-12)
    np.testing.assert_allclose(cb["mean_log_likelihood"], ca["mean_log_likelihood"], rtol=1e-12)


def test_weighted_fit_recovers_weighted_mean_and_covariance(X):
    w = np.random.default_rng(5).random(len(X))
    gm = fit(X, w, n_components=1, reg_covar=0.0)
    mean = (w[:, None] * X).sum(0) / w.sum()
    cov = ((X - mean).T * w) @ (X - mean) / w.sum()
    np.testing.assert_allclose(gm.means_[0], mean, rtol=1e-12)
    np.testing.assert_allclose(gm.covariances_[0], cov, rtol=1e-10)


@pytest.mark.parametrize("bad, message", [
    (lambda n: -np.ones(n), "Negative values in data passed to `sample_weight`"),
    (lambda n: np.full(n, np.nan), "Input sample_weight contains NaN"),
    (lambda n: np.full(n, np.inf), "Input sample_weight contains infinity"),
    (lambda n: np.ones(n - 1), r"sample_weight.shape == \(179,\), expected \(180,\)"),
    (lambda n: np.ones((n, 2)), "sample_weight.shape"),
    (lambda n: np.zeros(n), "positive sum"),
])
@pytest.mark.parametrize("method", ["fit", "score", "bic"])
def test_bad_weights_are_value_errors(X, bad, message, method):
    gm = GaussianMixture(n_components=2, random_state=0)
    if method != "fit":
        gm.fit(X)
    with pytest.raises(ValueError, match=message):
        getattr(gm, method)(X, sample_weight=bad(len(X)))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(counts=st.lists(st.integers(0, 3), min_size=40, max_size=40).filter(lambda c: sum(c) >= 10),
       covariance_type=st.sampled_from(COV_TYPES), seed=st.integers(0, 2**16))
def test_property_weights_equal_repetition(counts, covariance_type, seed):
    rng = np.random.default_rng(seed)
    X = np.concatenate([rng.normal(size=(20, 2)), rng.normal(size=(20, 2)) + 3])
    w = np.asarray(counts)
    kw = dict(given_init(X, covariance_type, K=2), max_iter=10, tol=0.0, reg_covar=1e-3)
    a, b = fit(X, w, **kw), fit(np.repeat(X, w, axis=0), **kw)
    for name in ATTRS:
        np.testing.assert_allclose(getattr(a, name), getattr(b, name), rtol=1e-7, atol=1e-9, err_msg=name)
