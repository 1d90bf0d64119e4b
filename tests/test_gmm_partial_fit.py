"""GaussianMixture.partial_fit: stepwise EM over batches (Cappé & Moulines 2009)."""
import warnings

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning

from aigc_gmm import GaussianMixture

COV_TYPES = ["full", "tied", "diag", "spherical"]
ATTRS = ["weights_", "means_", "covariances_", "precisions_cholesky_"]


def mixture(n, seed):
    """Rows of a known 3-component mixture in 2-D (the same components for every seed)."""
    centres = np.array([[0.0, 0.0], [5.0, 1.0], [-2.0, 6.0]])
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, n)
    return centres[labels] + rng.normal(size=(n, 2)) * (0.5 + 0.4 * labels[:, None])


@pytest.fixture(scope="module")
def stream():
    return mixture(60_000, 0), mixture(10_000, 1)


@pytest.mark.parametrize("covariance_type", COV_TYPES)
def test_first_batch_is_one_em_iteration_from_fits_initialisation(stream, covariance_type):
    X = stream[0][:4096]
    online = GaussianMixture(3, covariance_type=covariance_type, random_state=0).partial_fit(X)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        batch = GaussianMixture(3, covariance_type=covariance_type, random_state=0, max_iter=1).fit(X)
    for name in ATTRS:
        np.testing.assert_allclose(getattr(online, name), getattr(batch, name), rtol=1e-10, atol=1e-12)
    assert online.n_iter_ == 1 and not online.converged_


@pytest.mark.parametrize("covariance_type", COV_TYPES)
def test_one_pass_in_batches_is_as_good_as_batch_em(stream, covariance_type):
    X, held_out = stream
    online = GaussianMixture(3, covariance_type=covariance_type, random_state=0)
    for start in range(0, len(X), 2048):
        online.partial_fit(X[start:start + 2048])
    assert online.n_iter_ == -(-len(X) // 2048)
    batch = GaussianMixture(3, covariance_type=covariance_type, random_state=0).fit(X)
    assert abs(online.score(held_out) - batch.score(held_out)) < 0.02
    order = np.argsort(online.means_[:, 0])
    np.testing.assert_allclose(online.means_[order], batch.means_[np.argsort(batch.means_[:, 0])], atol=0.05)


def test_step_size_blends_the_batches(stream):
    # step_exponent=1: step (t + 2)^-1; the second batch repeats the first, so the blend of two
    # equal batches' statistics is one more EM iteration on that batch
    X = stream[0][:3000]
    online = GaussianMixture(3, random_state=0, step_exponent=1.0).partial_fit(X).partial_fit(X)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        batch = GaussianMixture(3, random_state=0, max_iter=2).fit(X)
    # the blend (2/3 old statistics) is not the batch iteration, but moves the same way
    gap_before = np.abs(GaussianMixture(3, random_state=0).partial_fit(X).means_ - batch.means_).max()
    assert np.abs(online.means_ - batch.means_).max() < gap_before


def test_weighted_batches(stream):
    X = stream[0][:2000]
    w = np.random.default_rng(3).integers(0, 3, len(X))
    kw = dict(n_components=3, means_init=X[:3], weights_init=np.full(3, 1 / 3), precisions_init=np.stack([np.eye(2)] * 3))
    a = GaussianMixture(**kw).partial_fit(X, sample_weight=w).partial_fit(X[:500], sample_weight=w[:500])
    b = GaussianMixture(**kw).partial_fit(np.repeat(X, w, axis=0)).partial_fit(np.repeat(X[:500], w[:500], axis=0))
    for name in ATTRS:
        np.testing.assert_allclose(getattr(a, name), getattr(b, name), rtol=1e-9, atol=1e-12)


def test_errors_and_fit_resets(stream):
    X = stream[0][:1000]
    for bad in (0.5, 1.5):
        with pytest.raises(ValueError, match="step_exponent"):
            GaussianMixture(2, step_exponent=bad).partial_fit(X)
    gm = GaussianMixture(2, random_state=0).partial_fit(X)
    with pytest.raises(ValueError, match="features"):
        gm.partial_fit(np.ones((10, 3)))
    gm.partial_fit(X)
    assert gm.n_iter_ == 2
    gm.fit(X)
    assert gm.partial_fit(X).n_iter_ == 1  # after fit, a new stream starts from its batch
