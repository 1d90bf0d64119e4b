"""Numerical robustness: the GMM on duplicated points, collapsing components and data far from
the origin or tiny in scale, in float32 and float64: right (as scikit-learn) or a clear error,
never a silent NaN."""
import json
import warnings

import numpy as np
import pytest
from sklearn.mixture import GaussianMixture as SkGM

from aigc_gmm import GaussianMixture


def _fit(X, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return GaussianMixture(random_state=0, **kw).fit(X)


@pytest.mark.parametrize("covariance_type", ["full", "tied", "diag", "spherical"])
def test_duplicated_points(covariance_type):
    X = np.repeat(np.random.default_rng(0).normal(size=(20, 2)), 10, axis=0)
    gm = _fit(X, n_components=3, covariance_type=covariance_type)
    assert np.isfinite(gm.score(X)) and np.all(np.isfinite(gm.means_))


@pytest.mark.parametrize("covariance_type", ["spherical", "diag", "full"])
def test_collapsing_component_keeps_its_tiny_variance_with_no_regularisation(covariance_type):
    """scikit-learn's issue #18216 class: a component collapsing onto a few points 100 std from the
    rest, reg_covar=0. Its variance (1e-12) is far below what moments around a shared shift
    resolve (|m - s|^2 eps ~ 1e-12): it must come out right, not <= 0 (an error) nor rounded up
    (scikit-learn's origin-centred formula reports 12x the truth for spherical and diag)."""
    rng = np.random.default_rng(0)
    tight = 100 + 1e-6 * np.array([[-1.0, 0.5], [0.0, -1.0], [1.0, 0.5]])
    X = np.concatenate([rng.normal(size=(40, 2)), tight])
    gm = _fit(X, n_components=2, covariance_type=covariance_type, reg_covar=0,
              means_init=[[0.0, 0.0], tight.mean(0)])
    expected = {"spherical": tight.var(0).mean(), "diag": tight.var(0),
                "full": np.cov(tight.T, bias=True)}[covariance_type]
    np.testing.assert_allclose(gm.covariances_[1], expected, rtol=1e-6)
    assert np.all(np.isfinite(gm.means_)) and np.isfinite(gm.score(X))


def test_component_on_identical_points_with_no_regularisation_is_a_clear_error():
    """Three identical points: the variance is exactly 0, the likelihood unbounded. scikit-learn
    raises its 'ill-defined empirical covariance' error on the same data; so do we, naming
    reg_covar, in float64 and float32."""
    X = np.array([[0.0, 0.0], [0.0, 0.0], [0.0, 0.0], [1.0, 1.0], [1.1, 0.9], [0.9, 1.2], [1.05, 1.0]])
    with pytest.raises(ValueError, match="ill-defined"):
        SkGM(2, covariance_type="spherical", reg_covar=0, means_init=[[0.0, 0.0], [1.0, 1.0]]).fit(X)
    for dtype in ("float64", "float32"):
        with pytest.raises(ValueError, match="reg_covar"):
            _fit(X, n_components=2, covariance_type="spherical", reg_covar=0, dtype=dtype,
                 means_init=[[0.0, 0.0], [1.0, 1.0]])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("covariance_type", ["full", "diag", "spherical", "tied"])
@pytest.mark.parametrize("offset,scale", [pytest.param(1e6, 1.0, id="far"), pytest.param(0.0, 1e-6, id="tiny")])
def test_far_or_tiny_data_fits_like_scikit_learn_or_errors_clearly(offset, scale, covariance_type, dtype):
    rng = np.random.default_rng(1)
    centres = np.array([[0.0, 0.0], [5.0, 5.0]])
    X = (centres[rng.integers(0, 2, 600)] + rng.normal(size=(600, 2))) * scale + offset
    try:
        gm = _fit(X, n_components=2, covariance_type=covariance_type, dtype=dtype, reg_covar=1e-6 * scale ** 2)
    except ValueError as err:  # allowed: a clear error, the scikit-learn kind
        assert "reg_covar" in str(err) or "ill-defined" in str(err)
        return
    # the reference: scikit-learn on the data moved back to the origin (a mixture's fit is
    # translation-equivariant; at 1e6 scikit-learn's own diag/spherical expansion loses digits)
    centred = X - offset
    ref = SkGM(2, covariance_type=covariance_type, random_state=0, reg_covar=1e-6 * scale ** 2).fit(centred)
    assert np.all(np.isfinite(gm.means_)) and np.isfinite(gm.lower_bound_)
    # float32 means 1e6 from zero are held to float32's spacing there (0.0625)
    spacing = float(np.spacing(np.float32(offset))) if dtype == "float32" else 0.0
    np.testing.assert_allclose(np.sort(gm.means_[:, 0] - offset), np.sort(ref.means_[:, 0]), rtol=1e-4,
                               atol=2e-3 * scale + spacing)
    assert gm.score(X) == pytest.approx(ref.score(centred), abs=0.05 if dtype == "float32" else 1e-5)


def test_engine_run_on_float32_file_far_from_the_origin(tmp_path):
    """``aigc-engine run gmm`` on a float32 ``.npy`` 1e6 from the origin (the streamed path, the
    saved model, ``eval``): the same mean log-likelihood as on the data moved to the origin."""
    from click.testing import CliRunner

    from aigc_engine.cli import cli

    rng = np.random.default_rng(0)
    centred = np.array([[0.0, 0.0], [5.0, 5.0]])[rng.integers(0, 2, 2000)] + rng.normal(size=(2000, 2))
    scores = []
    for name, offset in (("near", 0.0), ("far", 1e6)):
        # the far file holds the float32 values nearest to centred + 1e6; the near file the same
        # values moved back exactly (float64), so both hold the same points
        far32 = (centred + 1e6).astype(np.float32)
        data = far32 if offset else (far32.astype(np.float64) - 1e6)
        np.save(tmp_path / f"{name}.npy", data)
        runner = CliRunner()
        out = tmp_path / f"run-{name}"
        res = runner.invoke(cli, ["run", "gmm", "--dataset", str(tmp_path / f"{name}.npy"), "--set", "n_components=2",
                                  "--set", "dtype=float64" if not offset else "dtype=float32", "--out", str(out),
                                  "--no-progress"])
        assert res.exit_code == 0, res.output
        res = runner.invoke(cli, ["eval", str(out), "--dataset", str(tmp_path / f"{name}.npy"), "--no-progress"])
        assert res.exit_code == 0, res.output
        scores.append(json.loads(res.output[res.output.index("{"):])["mean_log_likelihood"])
    assert scores[1] == pytest.approx(scores[0], abs=1e-3)
