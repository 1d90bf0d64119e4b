"""The engine model ``bgmm``: run, eval, sample, resume, compare; pruned components reported;
the state round trip; bad priors an input error (exit 2)."""
import json
import time

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from aigc_engine.cli import cli
from aigc_gmm import BayesianGaussianMixture


def _run(args):
    return CliRunner().invoke(cli, args, catch_exceptions=False)


def test_run_eval_sample_resume_report_pruned_components(tmp_path):
    out = tmp_path / "run"
    result = _run(["run", "bgmm", "--dataset", "grid25", "--set", "n_components=40", "--set", "max_iter=200",
                   "--out", str(out), "--no-progress", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    metrics = summary.get("metrics", summary)
    assert metrics["n_effective_components"] == 25 and metrics["n_pruned_components"] == 15
    evaluated = _run(["eval", str(out)])
    assert evaluated.exit_code == 0 and '"n_effective_components": 25' in evaluated.output
    assert _run(["sample", str(out), "-n", "7", "-o", str(tmp_path / "s.npy")]).exit_code == 0
    assert np.load(tmp_path / "s.npy").shape == (7, 2)
    assert _run(["run", "--resume", str(out), "--no-progress"]).exit_code == 0


def test_bad_prior_is_exit_2(tmp_path):
    result = CliRunner().invoke(cli, ["run", "bgmm", "--dataset", "grid25", "--set", "degrees_of_freedom_prior=0.5",
                                      "--out", str(tmp_path / "r"), "--no-progress"])
    assert result.exit_code == 2 and "degrees_of_freedom_prior" in result.output
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("covariance_type", ["full", "tied", "diag", "spherical"])
def test_fitted_state_round_trip(covariance_type):
    X = np.random.default_rng(0).normal(size=(300, 3))
    gm = BayesianGaussianMixture(n_components=4, covariance_type=covariance_type, random_state=0,
                                 weight_concentration_prior_type="dirichlet_distribution").fit(X)
    back = BayesianGaussianMixture.from_state(gm.fitted_state())
    np.testing.assert_allclose(back.score_samples(torch.as_tensor(X)).numpy(), gm.score_samples(X), rtol=1e-12)
    np.testing.assert_allclose(back.means_.numpy(), gm.means_)
    point = gm.point_estimate()
    np.testing.assert_allclose(point.weights_.numpy(), gm.weights_, rtol=1e-12)
    with pytest.raises(ValueError, match="covariance_type"):
        BayesianGaussianMixture.from_state(gm.fitted_state(), covariance_type="full" if covariance_type != "full" else "diag")


@pytest.mark.slow
def test_bgmm_keeps_the_model_contract():
    from aigc_engine.testing import check_model
    from aigc_gmm.model import BGMMModel

    start = time.perf_counter()
    check_model(BGMMModel, config={"n_components": 8, "max_iter": 20})
    print(f"check_model(bgmm) on ring8: {time.perf_counter() - start:.1f} s")
