"""aigc_gmm.BayesianGaussianMixture against scikit-learn's: same numbers (float64, same
initialisation), attributes, errors; sample weights; pruning of unused components."""
import warnings

import numpy as np
import pytest
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import BayesianGaussianMixture as SkBGM

from aigc_gmm import BayesianGaussianMixture

COV_TYPES = ["full", "tied", "diag", "spherical"]
PRIORS = ["dirichlet_process", "dirichlet_distribution"]
ATTRS = ["weights_", "means_", "covariances_", "precisions_cholesky_", "precisions_", "mean_precision_",
         "degrees_of_freedom_", "mean_prior_", "covariance_prior_"]


@pytest.fixture(scope="module")
def X():
    rng = np.random.default_rng(0)
    centres = np.array([[0.0, 0.0, 0.0], [4.0, 0.0, 1.0], [0.0, 5.0, -2.0]])
    return np.concatenate([rng.normal(size=(150, 3)) * s + c for c, s in zip(centres, [0.5, 1.0, 1.5])])


def fit(cls, X, sample_weight=None, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est = cls(**kw)
        return est.fit(X) if sample_weight is None else est.fit(X, sample_weight=sample_weight)


def assert_close(ours, ref, rtol=1e-10):
    for name in ATTRS:
        np.testing.assert_allclose(np.asarray(getattr(ours, name)), np.asarray(getattr(ref, name)), rtol=rtol,
                                   atol=1e-12, err_msg=name)
    np.testing.assert_allclose(np.asarray(ours.weight_concentration_), np.asarray(ref.weight_concentration_),
                               rtol=rtol)
    assert ours.n_iter_ == ref.n_iter_ and ours.converged_ == ref.converged_
    np.testing.assert_allclose(np.ravel(ours.lower_bounds_), np.ravel(ref.lower_bounds_), rtol=rtol)


@pytest.mark.parametrize("prior", PRIORS)
@pytest.mark.parametrize("covariance_type", COV_TYPES)
@pytest.mark.parametrize("init_params", ["kmeans", "k-means++", "random", "random_from_data"])
def test_same_as_sklearn(X, prior, covariance_type, init_params):
    kw = dict(n_components=5, covariance_type=covariance_type, weight_concentration_prior_type=prior,
              init_params=init_params, random_state=0, max_iter=40)
    ours, ref = fit(BayesianGaussianMixture, X, **kw), fit(SkBGM, X, **kw)
    assert_close(ours, ref)
    np.testing.assert_allclose(ours.score_samples(X), ref.score_samples(X), rtol=1e-10)
    np.testing.assert_allclose(ours.predict_proba(X), ref.predict_proba(X), atol=1e-10)
    np.testing.assert_array_equal(ours.predict(X), ref.predict(X))


@pytest.mark.parametrize("covariance_type", COV_TYPES)
def test_given_priors_same_as_sklearn(X, covariance_type):
    D = X.shape[1]
    cov_prior = {"full": np.eye(D) * 2, "tied": np.eye(D) * 0.5, "diag": np.full(D, 0.7),
                 "spherical": 0.3}[covariance_type]
    kw = dict(n_components=4, covariance_type=covariance_type, weight_concentration_prior=0.05,
              mean_precision_prior=0.5, mean_prior=np.array([1.0, 2.0, -1.0]), degrees_of_freedom_prior=D + 2.5,
              covariance_prior=cov_prior, random_state=1, max_iter=30, reg_covar=1e-4)
    assert_close(fit(BayesianGaussianMixture, X, **kw), fit(SkBGM, X, **kw))


def test_data_far_from_origin_same_as_sklearn(X):
    # rows 1e5 from zero (fitted in a frame near zero): still scikit-learn's numbers
    kw = dict(n_components=3, random_state=0, max_iter=20)
    ours, ref = fit(BayesianGaussianMixture, X + 1e5, **kw), fit(SkBGM, X + 1e5, **kw)
    for name in ("means_", "covariances_", "weights_"):
        np.testing.assert_allclose(getattr(ours, name), getattr(ref, name), rtol=1e-8, err_msg=name)


@pytest.mark.parametrize("prior", PRIORS)
@pytest.mark.parametrize("covariance_type", COV_TYPES)
def test_integer_weights_equal_repeated_rows(X, prior, covariance_type):
    # well separated clusters: k-means starts from the same partition on both data sets
    w = np.random.default_rng(1).integers(0, 4, size=len(X))
    kw = dict(n_components=3, covariance_type=covariance_type, weight_concentration_prior_type=prior,
              random_state=0, max_iter=30, tol=1e-8)
    weighted = fit(BayesianGaussianMixture, X, w, **kw)
    repeated = fit(BayesianGaussianMixture, np.repeat(X, w, axis=0), **kw)
    assert_close(weighted, repeated, rtol=1e-8)
    np.testing.assert_allclose(weighted.score(X, sample_weight=w), repeated.score(np.repeat(X, w, axis=0)),
                               rtol=1e-10)


def test_bad_weights(X):
    with pytest.raises(ValueError, match="Negative values"):
        BayesianGaussianMixture(n_components=2).fit(X, sample_weight=-np.ones(len(X)))
    with pytest.raises(ValueError, match="expected"):
        BayesianGaussianMixture(n_components=2).fit(X, sample_weight=np.ones(3))


def test_unused_components_pruned(X):
    # a Dirichlet process prior with a small concentration leaves the surplus components empty
    gm = fit(BayesianGaussianMixture, X, n_components=10, weight_concentration_prior=1e-3, random_state=0,
             max_iter=300)
    assert gm.n_effective_components(1e-2) == 3
    assert gm.weights_.sum() == pytest.approx(1.0)


def test_torch_in_torch_out_and_float32(X):
    kw = dict(n_components=3, random_state=0, max_iter=20)
    ref = fit(BayesianGaussianMixture, X, **kw)
    ours = fit(BayesianGaussianMixture, torch.as_tensor(X), **kw)
    assert isinstance(ours.means_, torch.Tensor)
    np.testing.assert_allclose(ours.means_.numpy(), ref.means_, rtol=1e-10)
    f32 = fit(BayesianGaussianMixture, X.astype(np.float32), **kw)
    assert f32.means_.dtype == np.float32
    np.testing.assert_allclose(f32.means_, ref.means_, rtol=1e-4, atol=1e-4)


def test_sample_and_draw(X):
    gm = fit(BayesianGaussianMixture, X, n_components=3, random_state=0)
    Xs, labels = gm.sample(2000)
    assert Xs.shape == (2000, 3) and labels.shape == (2000,)
    np.testing.assert_allclose(Xs.mean(0), (gm.weights_[:, None] * gm.means_).sum(0), atol=0.2)
    xd, ld = gm.draw(10)
    assert xd.shape == (10, 3) and isinstance(xd, torch.Tensor)


def test_parameter_errors_same_as_sklearn(X):
    for kw in (dict(weight_concentration_prior_type="nope"), dict(mean_precision_prior=-1.0),
               dict(degrees_of_freedom_prior=1.0), dict(covariance_prior=-1.0),
               dict(mean_prior=[0.0, 0.0]), dict(covariance_type="full", covariance_prior=np.eye(2))):
        messages = []
        for cls in (SkBGM, BayesianGaussianMixture):
            with pytest.raises(ValueError) as err:
                cls(n_components=2, **kw).fit(X)
            messages.append(str(err.value).replace("BayesianGaussianMixture", "X"))
        assert messages[0] == messages[1]
