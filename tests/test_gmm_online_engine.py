"""``aigc-engine run gmm --set fit=online``: stepwise EM streaming the data in batches; the
StepwiseFit checkpoint state resumes at the next batch and ends as the uninterrupted fit."""
import json

import numpy as np
import torch
from click.testing import CliRunner

from aigc_engine import data
from aigc_engine.cli import cli
from aigc_gmm import GaussianMixture, StepwiseFit


def _run(args):
    return CliRunner().invoke(cli, args, catch_exceptions=False)


def test_online_run_close_to_batch(tmp_path):
    common = ["--dataset", "grid25", "--set", "n_components=25", "--no-progress", "--device", "cpu"]
    online = _run(["run", "gmm", *common, "--set", "fit=online", "--set", "batch_size=500", "--set", "epochs=3",
                   "--out", str(tmp_path / "on")])
    assert online.exit_code == 0, online.output
    batch = _run(["run", "gmm", *common, "--out", str(tmp_path / "batch")])
    on, bt = (json.loads((tmp_path / d / "summary.json").read_text()) for d in ("on", "batch"))
    assert on["n_iter"] == 60  # 3 epochs of 20 batches
    assert abs(on["mean_log_likelihood"] - bt["mean_log_likelihood"]) < 0.02
    lines = (tmp_path / "on" / "metrics.jsonl").read_text().splitlines()
    assert any("batch_log_likelihood" in line for line in lines)
    assert _run(["sample", str(tmp_path / "on"), "-n", "4", "-o", str(tmp_path / "s.npy")]).exit_code == 0


def test_online_input_errors(tmp_path):
    for sets in (["fit=online", "batch_size=3", "n_components=8"], ["fit=sometimes"], ["step_exponent=0.4", "fit=online"]):
        args = ["run", "gmm", "--dataset", "ring8", "--no-progress", "--out", str(tmp_path / "r")]
        for item in sets:
            args += ["--set", item]
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 2, (sets, result.output)
        assert not (tmp_path / "r").exists()
    bad = CliRunner().invoke(cli, ["run", "bgmm", "--dataset", "ring8", "--set", "fit=online", "--no-progress",
                                   "--out", str(tmp_path / "b")])
    assert bad.exit_code == 2 and not (tmp_path / "b").exists()


def test_stepwise_state_resumes_exactly():
    ds = data.blobs(n=3000, centers=3, seed=0)

    def fresh():
        return StepwiseFit(GaussianMixture(3, random_state=0, dtype="float64"), ds, batch_size=256, epochs=2)
    whole = fresh()
    while not whole.done:
        whole.step()
    part = fresh()
    for _ in range(7):
        part.step()
    state = part.state_dict()
    resumed = fresh()
    resumed.load_state_dict(state)
    assert resumed.seen == 7
    while not resumed.done:
        resumed.step()
    for name in ("weights_", "means_", "covariances_"):
        torch.testing.assert_close(getattr(resumed.gm, name), getattr(whole.gm, name), rtol=0, atol=0)
    assert resumed.gm.lower_bounds_ == whole.gm.lower_bounds_
    assert np.isfinite(resumed.gm.score(ds))
