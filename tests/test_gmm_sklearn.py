"""aigc_gmm.GaussianMixture against scikit-learn's GaussianMixture: same numbers, API, errors."""
import warnings

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.mixture import GaussianMixture as SkGM

from aigc_gmm import GaussianMixture

COV_TYPES = ["full", "tied", "diag", "spherical"]
ATTRS = ["weights_", "means_", "covariances_", "precisions_cholesky_", "precisions_"]


@pytest.fixture(scope="module")
def X():
    rng = np.random.default_rng(0)
    centres = np.array([[0.0, 0.0, 0.0], [4.0, 0.0, 1.0], [0.0, 5.0, -2.0]])
    scales = np.array([0.5, 1.0, 1.5])
    return np.concatenate([rng.normal(size=(200, 3)) * s + c for c, s in zip(centres, scales)])


def fit_both(X, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return SkGM(**kw).fit(X), GaussianMixture(**kw).fit(X)


def assert_same(sk, ours, rtol=1e-6):
    for name in ATTRS:
        np.testing.assert_allclose(getattr(ours, name), getattr(sk, name), rtol=rtol, atol=1e-9, err_msg=name)
    assert ours.n_iter_ == sk.n_iter_
    assert ours.converged_ == sk.converged_
    np.testing.assert_allclose(ours.lower_bound_, sk.lower_bound_, rtol=rtol)
    np.testing.assert_allclose(ours.lower_bounds_, sk.lower_bounds_, rtol=rtol)
    assert ours.n_features_in_ == sk.n_features_in_


@pytest.mark.parametrize("covariance_type", COV_TYPES)
@pytest.mark.parametrize("init_params", ["kmeans", "k-means++", "random", "random_from_data"])
def test_same_as_sklearn_same_seed(X, covariance_type, init_params):
    kw = dict(n_components=3, covariance_type=covariance_type, init_params=init_params, random_state=3,
              tol=1e-6, max_iter=40)
    sk, ours = fit_both(X, **kw)
    assert_same(sk, ours)
    np.testing.assert_array_equal(ours.predict(X), sk.predict(X))
    np.testing.assert_allclose(ours.score_samples(X), sk.score_samples(X), rtol=1e-9)


@pytest.mark.parametrize("init_params", ["kmeans", "random"])
def test_same_as_sklearn_n_init(X, init_params):
    # few iterations: the restarts end at clearly different bounds, so both keep the same one
    kw = dict(n_components=4, init_params=init_params, random_state=0, n_init=3, max_iter=3)
    sk, ours = fit_both(X, **kw)
    assert_same(sk, ours)


@pytest.mark.parametrize("covariance_type", COV_TYPES)
def test_same_as_sklearn_given_init(X, covariance_type):
    rng = np.random.default_rng(1)
    K, D = 3, X.shape[1]
    prec = {"full": np.stack([np.eye(D) * (k + 1) for k in range(K)]), "tied": np.eye(D) * 0.5,
            "diag": rng.uniform(0.5, 2, size=(K, D)), "spherical": np.array([0.5, 1.0, 2.0])}[covariance_type]
    kw = dict(n_components=K, covariance_type=covariance_type, weights_init=[0.2, 0.3, 0.5],
              means_init=X[[0, 250, 500]], precisions_init=prec, max_iter=100, tol=1e-8)
    sk, ours = fit_both(X, **kw)
    assert_same(sk, ours)
    assert ours.converged_


def test_max_iter_zero_keeps_initialisation(X):
    kw = dict(n_components=3, init_params="random_from_data", random_state=0, max_iter=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no ConvergenceWarning for max_iter=0
        sk, ours = SkGM(**kw).fit(X), GaussianMixture(**kw).fit(X)
    for name in ATTRS:
        ref = getattr(sk, name)
        np.testing.assert_allclose(getattr(ours, name), ref, rtol=1e-9, atol=1e-12 * np.abs(ref).max())
    assert ours.n_iter_ == 0 and not ours.converged_


def test_lower_bound_monotone_and_fit_predict(X):
    gm = GaussianMixture(3, init_params="random", random_state=0, tol=0, max_iter=30)
    with pytest.warns(ConvergenceWarning, match="did not converge"):
        labels = gm.fit_predict(X)
    assert np.all(np.diff(gm.lower_bounds_) >= -1e-10)
    np.testing.assert_array_equal(labels, gm.predict(X))
    assert labels.dtype == np.int64 and labels.shape == (len(X),)
    proba = gm.predict_proba(X)
    np.testing.assert_allclose(proba.sum(1), 1.0)
    np.testing.assert_array_equal(proba.argmax(1), labels)


def test_score_bic_aic(X):
    sk, ours = fit_both(X, n_components=3, random_state=0)
    for method in ("score", "bic", "aic"):
        np.testing.assert_allclose(getattr(ours, method)(X), getattr(sk, method)(X), rtol=1e-9)
    assert isinstance(ours.score(X), float)


@pytest.mark.parametrize("covariance_type", COV_TYPES)
def test_sample_statistics(covariance_type):
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(size=(3000, 2)) * [1.0, 0.3] + [-3, 0], rng.normal(size=(1000, 2)) + [3, 3]])
    gm = GaussianMixture(2, covariance_type=covariance_type, random_state=0).fit(X)
    Xs, ys = gm.sample(20000)
    assert Xs.shape == (20000, 2) and ys.shape == (20000,)
    assert np.all(np.diff(ys) >= 0)  # grouped by component, like scikit-learn
    np.testing.assert_allclose(np.bincount(ys) / len(ys), gm.weights_, atol=0.02)
    for k in range(2):
        np.testing.assert_allclose(Xs[ys == k].mean(0), gm.means_[k], atol=0.06)
        cov = np.cov(Xs[ys == k].T)
        expected = {"full": lambda: gm.covariances_[k], "tied": lambda: gm.covariances_,
                    "diag": lambda: np.diag(gm.covariances_[k]),
                    "spherical": lambda: np.eye(2) * gm.covariances_[k]}[covariance_type]()
        np.testing.assert_allclose(cov, expected, atol=0.08)
    # same random_state, same draws
    np.testing.assert_array_equal(gm.sample(10)[0], gm.sample(10)[0])
    with pytest.raises(ValueError, match="Invalid value for 'n_samples'"):
        gm.sample(0)


def test_warm_start(X):
    kw = dict(n_components=3, random_state=0, init_params="random", tol=0)
    sk = SkGM(max_iter=2, warm_start=True, **kw)
    ours = GaussianMixture(max_iter=2, warm_start=True, **kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for _ in range(3):
            sk.fit(X)
            ours.fit(X)
            assert_same(sk, ours)
        # continuing 3 x 2 iterations equals 6 iterations at once
        once = GaussianMixture(max_iter=6, **kw).fit(X)
    np.testing.assert_allclose(ours.means_, once.means_, rtol=1e-9)


def test_torch_in_torch_out(X):
    Xt = torch.from_numpy(X)
    gm = GaussianMixture(3, random_state=0).fit(Xt)
    ref = GaussianMixture(3, random_state=0).fit(X)
    for name in ATTRS:
        value = getattr(gm, name)
        assert isinstance(value, torch.Tensor) and value.device == Xt.device and value.dtype == torch.float64
        np.testing.assert_allclose(value.numpy(), getattr(ref, name), rtol=1e-9)
    assert isinstance(gm.predict(Xt), torch.Tensor)
    assert isinstance(gm.score_samples(Xt), torch.Tensor)
    assert isinstance(gm.predict(X), np.ndarray)  # NumPy in, NumPy out
    Xs, ys = gm.sample(5)
    assert isinstance(Xs, torch.Tensor) and isinstance(ys, torch.Tensor)
    labels = GaussianMixture(3, random_state=0).fit_predict(Xt)
    assert isinstance(labels, torch.Tensor)


def test_dtypes(X):
    g32 = GaussianMixture(3, random_state=0).fit(X.astype(np.float32))
    assert g32.means_.dtype == np.float32  # float32 in, float32 (like scikit-learn)
    g64 = GaussianMixture(3, random_state=0).fit(X)
    np.testing.assert_allclose(g32.means_, g64.means_, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(g32.lower_bound_, g64.lower_bound_, rtol=1e-5)
    forced = GaussianMixture(3, random_state=0, dtype="float32").fit(X)
    assert forced.means_.dtype == np.float32
    t32 = GaussianMixture(3, random_state=0).fit(torch.from_numpy(X).float())
    assert t32.means_.dtype == torch.float32
    ints = GaussianMixture(2, random_state=0).fit(np.arange(20).reshape(10, 2))
    assert ints.means_.dtype == np.float64
    with pytest.raises(ValueError, match="dtype must be"):
        GaussianMixture(dtype="int8").fit(X)


def test_params_api():
    gm = GaussianMixture(4, covariance_type="diag", device="cpu")
    params = gm.get_params()
    sk_params = SkGM().get_params()
    assert set(sk_params) <= set(params)
    assert {k: v for k, v in GaussianMixture().get_params().items() if k in sk_params} == sk_params
    assert params["n_components"] == 4 and params["device"] == "cpu"
    assert clone(gm).get_params() == params
    assert gm.set_params(n_components=2) is gm and gm.n_components == 2


@pytest.mark.parametrize("params, message", [
    (dict(n_components=0), "The 'n_components' parameter of GaussianMixture must be an int in the range "
                           "[1, inf). Got 0 instead."),
    (dict(covariance_type="banana"), "The 'covariance_type' parameter of GaussianMixture must be a str among"),
    (dict(tol=-1.0), "The 'tol' parameter of GaussianMixture must be a float in the range [0.0, inf)"),
    (dict(reg_covar=-1.0), "The 'reg_covar' parameter"),
    (dict(max_iter=-1), "The 'max_iter' parameter"),
    (dict(n_init=0), "The 'n_init' parameter"),
    (dict(init_params="magic"), "The 'init_params' parameter of GaussianMixture must be a str among"),
    (dict(verbose_interval=0), "The 'verbose_interval' parameter"),
])
def test_parameter_validation_same_message(X, params, message):
    with pytest.raises(ValueError) as ours:
        GaussianMixture(**params).fit(X)
    with pytest.raises(ValueError) as sk:
        SkGM(**params).fit(X)
    assert str(ours.value) == str(sk.value)
    assert message in str(ours.value)
    assert type(ours.value) is type(sk.value)


def _messages(fn_ours, fn_sk, exc=ValueError):
    with pytest.raises(exc) as a:
        fn_ours()
    with pytest.raises(exc) as b:
        fn_sk()
    assert str(a.value) == str(b.value)
    return str(a.value)


@pytest.mark.parametrize("bad", ["nan", "inf", "one_sample", "1d", "too_few"])
def test_input_errors_same_message(bad):
    X = np.random.default_rng(0).normal(size=(6, 2))
    if bad == "nan":
        X[2, 1] = np.nan
    elif bad == "inf":
        X[2, 1] = np.inf
    elif bad == "one_sample":
        X = X[:1]
    elif bad == "1d":
        X = X[:, 0]
    K = 10 if bad == "too_few" else 2
    msg = _messages(lambda: GaussianMixture(K).fit(X), lambda: SkGM(K).fit(X))
    if bad == "too_few":
        assert msg == "Expected n_samples >= n_components but got n_components = 10, n_samples = 6"


def test_torch_input_errors():
    X = torch.randn(6, 2, dtype=torch.float64)
    X[1, 1] = float("nan")
    with pytest.raises(ValueError, match="Input X contains NaN"):
        GaussianMixture(2).fit(X)
    X[1, 1] = float("inf")
    with pytest.raises(ValueError, match="Input X contains infinity"):
        GaussianMixture(2).fit(X)
    with pytest.raises(ValueError, match="minimum of 2 is required by GaussianMixture"):
        GaussianMixture(1).fit(torch.randn(1, 2))


def test_not_fitted_and_wrong_features(X):
    for method in ("predict", "predict_proba", "score_samples", "score"):
        _messages(lambda: getattr(GaussianMixture(2), method)(X), lambda: getattr(SkGM(2), method)(X),
                  NotFittedError)
    _messages(lambda: GaussianMixture(2).sample(), lambda: SkGM(2).sample(), NotFittedError)
    ours, sk = GaussianMixture(2, random_state=0).fit(X), SkGM(2, random_state=0).fit(X)
    msg = _messages(lambda: ours.predict(X[:, :2]), lambda: sk.predict(X[:, :2]))
    assert msg == "X has 2 features, but GaussianMixture is expecting 3 features as input."
    with pytest.raises(ValueError, match="expecting 3 features"):
        ours.score_samples(torch.from_numpy(X[:, :2]))


@pytest.mark.parametrize("kw", [
    dict(weights_init=[0.5, 0.6]),
    dict(weights_init=[0.5, 0.2]),
    dict(weights_init=[0.2, 0.3, 0.5]),
    dict(means_init=np.zeros((3, 3))),
    dict(precisions_init=np.ones((2, 3))),
    dict(precisions_init=np.stack([np.eye(3), -np.eye(3)])),
    dict(covariance_type="diag", precisions_init=-np.ones((2, 3))),
])
def test_init_array_errors_same_message(X, kw):
    _messages(lambda: GaussianMixture(2, **kw).fit(X), lambda: SkGM(2, **kw).fit(X))


def test_ill_defined_covariance_message():
    X = np.array([[0.0, 0.0]] * 5 + [[1.0, 1.0]] * 5)
    kw = dict(n_components=2, reg_covar=0, init_params="random_from_data", random_state=0)
    msg = _messages(lambda: GaussianMixture(**kw).fit(X), lambda: SkGM(**kw).fit(X))
    assert "increase reg_covar" in msg
    msg32 = _messages(lambda: GaussianMixture(**kw).fit(X.astype(np.float32)),
                      lambda: SkGM(**kw).fit(X.astype(np.float32)))
    assert "passing float64" in msg32
    # the suggested fix works
    GaussianMixture(2, random_state=0).fit(X)


def test_convergence_warning_same_as_sklearn(X):
    kw = dict(n_components=3, max_iter=1, random_state=0)
    with pytest.warns(ConvergenceWarning) as ours:
        GaussianMixture(**kw).fit(X)
    with pytest.warns(ConvergenceWarning) as sk:
        SkGM(**kw).fit(X)
    assert str(ours[0].message) == str(sk[0].message)


def test_verbose_output(X, capsys):
    GaussianMixture(3, verbose=2, verbose_interval=1, random_state=0).fit(X)
    out = capsys.readouterr().out
    assert "Initialization 0" in out and "Iteration 1" in out and "Initialization converged" in out
