"""The gmm engine model, out-of-core fitting, torchrun (2 processes = 1 process) and gmm-select."""
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from sklearn.exceptions import ConvergenceWarning

from aigc_engine import InputError, Run, data
from aigc_gmm import GaussianMixture
from aigc_gmm.model import GMMModel
from aigc_gmm.select import gmm_select, parse_components
from test_ops_helpers import cuda_only

ATTRS = ["weights_", "means_", "covariances_", "precisions_cholesky_"]


def blobs_array(n_per=400, seed=0):
    rng = np.random.default_rng(seed)
    X = np.concatenate([rng.normal(size=(n_per, 3)) * (0.3 + 0.3 * i) + 2.5 * i for i in range(4)])
    rng.shuffle(X)
    return X


@pytest.fixture
def npy(tmp_path):
    path = tmp_path / "x.npy"
    np.save(path, blobs_array())
    return path


# ---------------------------------------------------------------------------------------------
# out of core
@pytest.mark.parametrize("covariance_type", ["full", "tied", "diag", "spherical"])
@pytest.mark.parametrize("init_params", ["random", "random_from_data"])
def test_memmap_equals_in_memory(npy, covariance_type, init_params):
    X = np.load(npy)
    mm = np.load(npy, mmap_mode="r")
    kw = dict(n_components=4, covariance_type=covariance_type, init_params=init_params, random_state=0,
              tol=1e-8, max_iter=25)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ref = GaussianMixture(**kw).fit(X)
        streamed = GaussianMixture(chunk_size=97, **kw).fit(mm)
    for name in ATTRS:
        np.testing.assert_allclose(getattr(streamed, name), getattr(ref, name), rtol=1e-7, atol=1e-10)
    assert streamed.n_iter_ == ref.n_iter_
    np.testing.assert_allclose(streamed.lower_bounds_, ref.lower_bounds_, rtol=1e-10)
    np.testing.assert_array_equal(streamed.predict(mm), ref.predict(X))
    np.testing.assert_allclose(streamed.score(mm), ref.score(X), rtol=1e-10)


def test_memmap_kmeans_and_dataset(npy):
    """Streamed k-means initialisation (torch, on a sample) reaches the in-memory optimum; an
    engine Dataset that is not in memory is streamed the same way as a memmap."""
    X = np.load(npy)
    ds = data.from_file(npy)
    assert not ds.in_memory
    ref = GaussianMixture(4, random_state=0, tol=1e-8).fit(X)
    a = GaussianMixture(4, random_state=0, tol=1e-8, chunk_size=128).fit(np.load(npy, mmap_mode="r"))
    b = GaussianMixture(4, random_state=0, tol=1e-8, chunk_size=128, dtype="float64").fit(ds)
    assert not ds.in_memory  # never materialised
    order = np.argsort(ref.means_[:, 0])
    for gm in (a, b):
        o = np.argsort(gm.means_[:, 0])
        np.testing.assert_allclose(gm.means_[o], ref.means_[order], rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(gm.lower_bound_, ref.lower_bound_, rtol=1e-6)


def test_memmap_nan_is_reported(tmp_path):
    X = blobs_array()
    X[777, 1] = np.nan
    np.save(tmp_path / "bad.npy", X)
    with pytest.raises(ValueError, match="Input X contains NaN"):
        GaussianMixture(2, chunk_size=100).fit(np.load(tmp_path / "bad.npy", mmap_mode="r"))


def test_float32_streaming_is_accurate_on_far_tight_clusters():
    """ring8-like data (std 0.01 at radius 100): shifted statistics keep float32 close to float64."""
    ds = data.ring8(n=4000, radius=100.0)
    X = ds.x.double().numpy()
    g64 = GaussianMixture(8, random_state=0, dtype="float64").fit(X)
    g32 = GaussianMixture(8, random_state=0, dtype="float32", chunk_size=512).fit(X)
    np.testing.assert_allclose(g32.covariances_, g64.covariances_, rtol=2e-3, atol=1e-8)


# ---------------------------------------------------------------------------------------------
# engine model
def test_engine_model_fit_state_dict_round_trip(tmp_path):
    ds = data.ring8(n=2000)
    run = Run(tmp_path / "run", device="cpu", seed=0, progress=False)
    model = GMMModel(GMMModel.Config(n_components=8, chunk_size=300))
    model.fit(ds, run)
    logged = [row["lower_bound"] for row in run.history]
    assert len(logged) == model.gm.n_iter_
    assert np.all(np.diff(logged) > -1e-6)  # monotone up to float32 rounding
    assert (tmp_path / "run" / "metrics.jsonl").exists()
    metrics = model.evaluate(ds, run)
    assert metrics["mean_log_likelihood"] > 3.5 and metrics["converged"]
    k = metrics["n_parameters"]
    assert k == 8 * (2 + 3) + 7
    assert metrics["bic"] - metrics["aic"] == pytest.approx(k * (np.log(2000) - 2))
    assert metrics["aic"] == pytest.approx(-2 * 2000 * metrics["mean_log_likelihood"] + 2 * k)
    # every ring mode is found
    means = model.gm.means_.numpy()
    angles = np.sort(np.mod(np.arctan2(means[:, 1], means[:, 0]), 2 * np.pi))
    np.testing.assert_allclose(angles, 2 * np.pi * np.arange(8) / 8, atol=0.01)

    state = model.state_dict()
    from aigc_engine import io

    io.save_state(tmp_path / "m.safetensors", state)
    again = GMMModel(GMMModel.Config(n_components=8))
    again.load_state_dict(io.load_state(tmp_path / "m.safetensors"))
    x = ds.x[:100]
    torch.testing.assert_close(again.log_prob(x), model.log_prob(x))
    assert again.evaluate(ds, run) == pytest.approx(metrics)
    torch.manual_seed(0)
    s = again.sample(500)
    assert s.shape == (500, 2) and s.dtype == torch.float32
    assert torch.allclose(s.norm(dim=1), torch.ones(500), atol=0.06)
    with pytest.raises(InputError, match="unconditional"):
        again.sample(3, condition=torch.zeros(3, dtype=torch.int64))
    with pytest.raises(InputError, match="components"):
        GMMModel(GMMModel.Config(n_components=3)).load_state_dict(state)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    again.annotate_plot(ax)
    assert len(ax.patches) == 8
    plt.close(fig)


def test_engine_model_bad_config(tmp_path):
    run = Run(None, device="cpu", progress=False)
    with pytest.raises(InputError, match="covariance_type"):
        GMMModel(GMMModel.Config(covariance_type="banana")).fit(data.ring8(n=100), run)
    with pytest.raises(InputError, match="more than the 50 rows"):
        GMMModel(GMMModel.Config(n_components=60)).fit(data.ring8(n=50), run)
    with pytest.raises(InputError, match="dtype"):
        GMMModel(GMMModel.Config(dtype="int8")).fit(data.ring8(n=100), run)


def test_engine_model_on_images_samples_images():
    ds = data.digits(n=300)
    model = GMMModel(GMMModel.Config(n_components=3, covariance_type="diag", max_iter=10))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(ds, Run(None, device="cpu", progress=False))
    assert model.sample(4).shape == (4, 1, 8, 8)


# ---------------------------------------------------------------------------------------------
# distributed: 2 torchrun processes give the result of 1 process
def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_torchrun_two_processes_equal_one(npy, tmp_path):
    from aigc_engine import io

    sets = ["--set", "n_components=4", "--set", "chunk_size=150", "--set", "dtype=float64", "--set", "tol=1e-9",
            "--set", "max_iter=15", "--dataset", str(npy), "--device", "cpu", "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    two = tmp_path / "two"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port",
           str(_free_port()), "-m", "aigc_engine", "run", "gmm", *sets, "--out", str(two)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads((two / "config.json").read_text())["world_size"] == 2
    # one process, same settings, in this process
    from aigc_engine.engine import Engine, RunSpec

    one = Engine().train(RunSpec("gmm", dict(s.split("=", 1) for s in sets[1:10:2]), str(npy), device="cpu",
                                 out=tmp_path / "one", progress=False))
    a, b = io.load_state(one / "model.safetensors"), io.load_state(two / "model.safetensors")
    for key in ("weights", "means", "covariances", "precisions_cholesky"):
        torch.testing.assert_close(b[key], a[key], rtol=1e-10, atol=1e-12)
    assert a["n_iter"] == b["n_iter"]
    np.testing.assert_allclose(b["lower_bounds"], a["lower_bounds"], rtol=1e-12)
    sa, sb = (json.loads((d / "summary.json").read_text()) for d in (one, two))
    assert sb["bic"] == pytest.approx(sa["bic"], rel=1e-10)


# ---------------------------------------------------------------------------------------------
# gmm-select
def test_parse_components():
    assert parse_components("2:5") == [2, 3, 4, 5]
    assert parse_components("2:10:4") == [2, 6, 10]
    assert parse_components("8,2,8") == [2, 8]
    import click

    for bad in ("0:3", "5:2", "a:b", "", "1:2:3:4"):
        with pytest.raises(click.BadParameter):
            parse_components(bad)


def test_gmm_select_command(tmp_path):
    out = tmp_path / "sel"
    result = CliRunner().invoke(gmm_select, ["--dataset", "ring8", "--components", "6:10", "--out", str(out), "--device", "cpu", "--seed", "1"])
    assert result.exit_code == 0, result.output
    selection = json.loads((out / "selection.json").read_text())
    assert [r["n_components"] for r in selection["results"]] == [6, 7, 8, 9, 10]
    assert selection["best"]["n_components"] == 8
    assert "best n_components by BIC: 8" in result.output
    assert (out / "selection.png").stat().st_size > 1000
    bic = {r["n_components"]: r["bic"] for r in selection["results"]}
    # the criterion equals the estimator's own bic on the same data
    X = data.ring8().x.numpy()
    gm = GaussianMixture(8, random_state=1, dtype="float32").fit(X)
    assert bic[8] == pytest.approx(gm.bic(X), rel=1e-4)

    aic = CliRunner().invoke(gmm_select, ["--components", "7,8", "--criterion", "aic", "--covariance-type",
                                          "diag", "--out", str(tmp_path / "aic"), "--device", "cpu"])
    assert aic.exit_code == 0, aic.output
    assert "best n_components by AIC" in aic.output


def test_gmm_select_keeps_the_winner_as_a_normal_run(tmp_path):
    from aigc_engine.cli import cli

    out = tmp_path / "sel"
    result = CliRunner().invoke(cli, ["gmm-select", "--dataset", "blobs", "--components", "3:6", "--out", str(out),
                                      "--device", "cpu", "--no-progress"])
    assert result.exit_code == 0, result.output
    best = out / "best"
    assert result.stdout.strip().splitlines()[-1] == str(best)  # the winner's run directory, printed last
    selection = json.loads((out / "selection.json").read_text())
    assert selection["best"]["n_components"] == 5 and selection["best"]["run"] == "best"
    config = json.loads((best / "config.json").read_text())
    assert config["model"] == "gmm" and config["config"] == selection["best"]["config"]
    assert config["config"]["n_components"] == 5 and config["dataset"]["name"] == "blobs"
    assert {"model.safetensors", "checkpoint.safetensors", "summary.json", "samples.png"} <= {p.name for p in best.iterdir()}
    # the kept run is the sweep's fit of K=5, not merely the same K
    summary = json.loads((best / "summary.json").read_text())
    swept = next(r for r in selection["results"] if r["n_components"] == 5)
    assert summary["bic"] == pytest.approx(swept["bic"], rel=1e-9)
    assert summary["n_iter"] == swept["n_iter"]

    assert CliRunner().invoke(cli, ["sample", str(best), "-n", "5", "-o", str(tmp_path / "s.npy")]).exit_code == 0
    assert np.load(tmp_path / "s.npy").shape == (5, 2)
    evaluated = CliRunner().invoke(cli, ["eval", str(best)])
    assert evaluated.exit_code == 0, evaluated.output
    assert json.loads(evaluated.stdout)["bic"] == pytest.approx(summary["bic"], rel=1e-9)
    resumed = CliRunner().invoke(cli, ["run", "--resume", str(best), "--no-progress"])
    assert resumed.exit_code == 0, resumed.output

    again = CliRunner().invoke(cli, ["gmm-select", "--components", "2,3", "--out", str(out)])
    assert again.exit_code == 2 and "already holds a selection" in again.output


def test_gmm_select_bad_input(tmp_path):
    bad = CliRunner().invoke(gmm_select, ["--components", "x", "--out", str(tmp_path / "a")])
    assert bad.exit_code == 2 and "--components" in bad.output
    np.save(tmp_path / "small.npy", blobs_array(n_per=10))
    too_many = CliRunner().invoke(gmm_select, ["--components", "30:50", "--dataset", str(tmp_path / "small.npy"),
                                               "--out", str(tmp_path / "b"), "--device", "cpu"])
    assert isinstance(too_many.exception, InputError)
    assert "n_components=50 is more than the 40 rows" in str(too_many.exception)
    missing = CliRunner().invoke(gmm_select, ["--dataset", str(tmp_path / "nope.npy"), "--out", str(tmp_path / "c")])
    assert isinstance(missing.exception, InputError)


def test_any_chunk_source(npy):
    """Any object with ``shape`` and ``iter_chunks`` is streamed (here: a generator of blocks)."""
    X = np.load(npy)

    class Chunks:
        shape = X.shape

        def iter_chunks(self, chunk_size, dtype=torch.float32, device="cpu"):
            for start in range(0, len(X), chunk_size):
                yield torch.from_numpy(X[start:start + chunk_size]).to(device=device, dtype=dtype)

    kw = dict(n_components=4, init_params="random_from_data", random_state=0, tol=1e-8)
    ref = GaussianMixture(**kw).fit(X)
    gm = GaussianMixture(chunk_size=100, dtype="float64", **kw).fit(Chunks())
    np.testing.assert_allclose(gm.means_, ref.means_, rtol=1e-8)
    assert gm.n_iter_ == ref.n_iter_


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_float32_moment_precision_choice_is_accurate():
    """float32 full: float32 products when clusters are wide relative to their distance from
    the shift (fast path), float64 products for tight far clusters; both stay near float64."""
    from aigc_gmm._gaussian import Params, needs_double_moments

    def params(gm):
        return Params.from_state(gm.fitted_state(), "cpu")

    X = np.random.default_rng(0).normal(size=(4000, 4))
    g64 = GaussianMixture(3, random_state=0, tol=0, max_iter=5, init_params="random_from_data").fit(X)
    assert not needs_double_moments(params(g64), "full", torch.float32)
    g32 = GaussianMixture(3, random_state=0, tol=0, max_iter=5, init_params="random_from_data",
                          dtype="float32").fit(X)
    np.testing.assert_allclose(g32.covariances_, g64.covariances_, rtol=1e-4, atol=1e-5)
    ring = data.ring8(n=800, radius=100.0).x.double().numpy()
    far = GaussianMixture(8, random_state=0).fit(ring)
    assert needs_double_moments(params(far), "full", torch.float32)
    far32 = GaussianMixture(8, random_state=0, dtype="float32").fit(ring)
    np.testing.assert_allclose(far32.covariances_, far.covariances_, rtol=1e-3, atol=1e-6)


def test_gmm_select_default_out_dir_gets_a_suffix(tmp_path, monkeypatch):
    """gmm-select claims its default directory as runs do: runs/gmm-select-<time>, -2, -3, ..."""
    import re

    from aigc_engine import rundir
    from aigc_gmm.select import SELECTION_FILE

    assert re.fullmatch(r"gmm-select-\d{8}-\d{6}", rundir.default_name("gmm-select"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(rundir, "default_name", lambda *parts: "gmm-select-20260102-030405")
    first, second, third = (rundir.claim(None, "gmm-select", marker=SELECTION_FILE)[0] for _ in range(3))
    assert first == Path("runs") / "gmm-select-20260102-030405"
    assert second == Path("runs") / "gmm-select-20260102-030405-2"
    assert third == Path("runs") / "gmm-select-20260102-030405-3"
    assert all((d / SELECTION_FILE).is_file() for d in (first, second, third))


def _fitted(gm):
    return [gm.weights_, gm.means_, gm.covariances_, gm.precisions_cholesky_]


def _assert_same_fit(a, b):
    for x, y in zip(_fitted(a), _fitted(b)):
        assert torch.equal(x, y)
    assert (a.n_iter_, a.converged_, a.lower_bound_, a.lower_bounds_) == \
        (b.n_iter_, b.converged_, b.lower_bound_, b.lower_bounds_)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("covariance_type,init_params", [("full", "kmeans"), ("tied", "random"),
                                                         ("diag", "k-means++")])
def test_em_fit_resumes_bit_identically_from_its_state(tmp_path, dtype, covariance_type, init_params):
    """EMFit stopped after any step, saved, loaded into a new estimator and stepped to the end
    equals the uninterrupted fit bit for bit (several restarts, so the random_state matters)."""
    from aigc_engine import io

    np.save(tmp_path / "x.npy", blobs_array(n_per=300))
    ds = data.from_file(tmp_path / "x.npy")  # memory-mapped: streamed in chunks
    kw = dict(n_components=4, covariance_type=covariance_type, init_params=init_params, n_init=3, max_iter=12,
              tol=1e-4, random_state=7, dtype=dtype, chunk_size=256)
    ref_fit = GaussianMixture(**kw).em_fit(ds)
    steps = []
    while not ref_fit.done:
        steps.append(ref_fit.step())
    ref = ref_fit.finish()
    assert [s.restart for s in steps] == sorted(s.restart for s in steps) and steps[-1].restart == 2
    ends = [i + 1 for i in range(len(steps) - 1) if steps[i + 1].restart != steps[i].restart]
    for stop_after in sorted({1, 2, *ends, len(steps) - 1}):
        em = GaussianMixture(**kw).em_fit(ds)
        for _ in range(stop_after):
            em.step()
        io.save_state(tmp_path / "em.safetensors", {"em": em.state_dict()})
        again = GaussianMixture(**kw).em_fit(ds)
        again.load_state_dict(io.load_state(tmp_path / "em.safetensors")["em"])
        rest = []
        while not again.done:
            rest.append(again.step())
        assert rest == steps[stop_after:], stop_after
        _assert_same_fit(again.finish(), ref)
    # the estimator's own fit is the same computation
    _assert_same_fit(GaussianMixture(**kw).em_fit(ds).finish(), ref)


def test_em_fit_state_under_new_settings():
    """A finished fit loaded with a larger max_iter continues its best restart (n_init=1: equal to
    the longer fit); with the same settings it has nothing left; a state of another mixture is
    refused."""
    X = data.Dataset(torch.as_tensor(blobs_array(), dtype=torch.float32))
    kw = dict(n_components=4, init_params="random", tol=0, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        short = GaussianMixture(max_iter=3, **kw).em_fit(X)
        short.finish()
        same = GaussianMixture(max_iter=3, **kw).em_fit(X)
        same.load_state_dict(short.state_dict())
        assert same.done
        longer = GaussianMixture(max_iter=7, **kw).em_fit(X)
        longer.load_state_dict(short.state_dict())
        assert not longer.done and [longer.step().n_iter for _ in range(4)] == [4, 5, 6, 7] and longer.done
        _assert_same_fit(longer.finish(), GaussianMixture(max_iter=7, **kw).em_fit(X).finish())
    with pytest.raises(ValueError, match="EM state is of a 'full' mixture of 4 components"):
        GaussianMixture(n_components=3).em_fit(X).load_state_dict(short.state_dict())


def test_engine_model_resumes_from_checkpoint(tmp_path):
    """Resuming a finished fit with a larger max_iter continues EM from its final parameters and
    ends as the longer fit would; the metrics log has each iteration once. (Before EM ran in the
    step loop, resuming warm-started a new fit from the final parameters even with the same
    max_iter, and logged its iterations from step 1 again; now a finished fit with the same
    settings has nothing left to do.)"""
    from aigc_engine import io

    ds = data.ring8(n=2000)
    # random init, tol=0: two iterations do not converge, and a fresh start would begin lower
    config = dict(n_components=8, max_iter=2, chunk_size=500, init_params="random", tol=0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # max_iter=2 does not converge
        first = Run(tmp_path / "run", device="cpu", seed=0, progress=False)
        GMMModel(GMMModel.Config(**config)).fit(ds, first)
        assert (tmp_path / "run" / "checkpoint.safetensors").exists()
        last = first.history[-1]["lower_bound"]
        same = Run(tmp_path / "run", device="cpu", seed=0, progress=False, resume=True)
        GMMModel(GMMModel.Config(**config)).fit(ds, same)
        assert [row["step"] for row in same.history] == [1, 2]  # nothing left to do
        again = Run(tmp_path / "run", device="cpu", seed=0, progress=False, resume=True)
        resumed = GMMModel(GMMModel.Config(**{**config, "max_iter": 5}))
        resumed.fit(ds, again)
        once = GMMModel(GMMModel.Config(**{**config, "max_iter": 5}))
        once.fit(ds, Run(tmp_path / "once", device="cpu", seed=0, progress=False))
    assert first.history[0]["lower_bound"] < last - 1e-5
    assert again.history[2]["lower_bound"] >= last - 1e-6  # EM continues from the checkpoint
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5] and [r["n_iter"] for r in rows] == [1, 2, 3, 4, 5]
    _assert_same_fit(resumed.gm, once.gm)
    # a checkpoint of another mixture is an input error, not a silent restart
    with pytest.raises(InputError, match="EM state is of a 'full' mixture of 8 components"):
        GMMModel(GMMModel.Config(n_components=3, max_iter=2)).fit(
            ds, Run(tmp_path / "run", device="cpu", seed=0, progress=False, resume=True))


# ---------------------------------------------------------------------------------------------
# the CLI: SIGINT / SIGTERM, SIGKILL + --resume
def _cli(*args):
    return [sys.executable, "-m", "aigc_engine", *args]


_CLI_ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


@pytest.mark.slow
@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_during_em_checkpoints_and_exits(tmp_path, sig, code):
    from aigc_engine import io

    out = tmp_path / "run"
    proc = subprocess.Popen(_cli("run", "gmm", "--device", "cpu", "--set", "dataset.n=400000", "--set", "max_iter=1000",
                                 "--set", "tol=0", "--no-progress", "--out", str(out)),
                            env=_CLI_ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 180
    while not (out / "metrics.jsonl").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=180)
    assert proc.returncode == code, stderr
    assert "Traceback" not in stderr and "Aborted" not in stderr
    lines = [line for line in stderr.splitlines() if "checkpoint written" in line]
    assert len(lines) == 1 and f"--resume {out}" in lines[0]
    step = int(io.read_metadata(out / "checkpoint.safetensors")["aigc_engine.step"])
    assert 1 <= step < 1000 and not (out / "model.safetensors").exists()
    state = io.load_state(out / "checkpoint.safetensors")["state"]["em"]
    assert state["n_iter"] == step and state["restart"] == 0 and len(state["lower_bounds"]) == step
    steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, step + 1))


def _model(run_dir):
    from aigc_engine import io

    return io.load_state(run_dir / "model.safetensors")


@pytest.mark.slow
def test_sigkill_during_em_then_resume_is_bit_identical(tmp_path):
    """Killed at random moments (several trials), resumed with --resume: the uninterrupted fit's
    parameters bit for bit, each iteration once in metrics.jsonl, every file readable."""
    from aigc_engine import io

    common = ["--device", "cpu", "--set", "dataset.n=60000", "--set", "max_iter=250", "--set", "tol=0",
              "--set", "n_init=2", "--set", "init_params=random_from_data", "--set", "checkpoint_seconds=0",
              "--no-progress"]
    ref = tmp_path / "ref"
    subprocess.run(_cli("run", "gmm", *common, "--out", str(ref)), env=_CLI_ENV, check=True, capture_output=True,
                   timeout=300)
    expected = _model(ref)
    n_steps = 2 * 250
    rng = random.Random(0)
    for trial in range(3):
        out = tmp_path / f"t{trial}"
        proc = subprocess.Popen(_cli("run", "gmm", *common, "--out", str(out)), env=_CLI_ENV,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        # kill at a random iteration (the checkpoints come about once a second, so the kill lands
        # anywhere between, or during, their writes)
        target, deadline = rng.randint(100, n_steps - 60), time.time() + 180
        metrics = out / "metrics.jsonl"
        checkpoint = out / "checkpoint.safetensors"  # every iteration (checkpoint_seconds=0)
        while time.time() < deadline and proc.poll() is None and (
                not metrics.exists() or metrics.read_bytes().count(b"\n") < target or not checkpoint.exists()):
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert not (out / "model.safetensors").exists(), "the fit ended before the kill: make it longer"
        # everything left behind is complete and readable
        killed_at = int(io.read_metadata(out / "checkpoint.safetensors")["aigc_engine.step"])
        assert io.load_state(out / "checkpoint.safetensors")["state"]["em"] is not None
        json.loads((out / "config.json").read_text())
        [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()[:-1]]  # the last may be cut
        done = subprocess.run(_cli("run", "--resume", str(out), "--no-progress"), env=_CLI_ENV, capture_output=True,
                              text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        got = _model(out)
        for key in ("weights", "means", "covariances", "precisions_cholesky"):
            assert torch.equal(got[key], expected[key]), (trial, killed_at, key)
        assert got["lower_bounds"] == expected["lower_bounds"] and got["n_iter"] == expected["n_iter"]
        rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
        assert [r["step"] for r in rows] == list(range(1, n_steps + 1)), (trial, killed_at)
        assert json.loads((out / "summary.json").read_text())["bic"] == json.loads((ref / "summary.json").read_text())["bic"]
        # a kill during a checkpoint write leaves a temporary file: --resume removes it
        assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]
        io.load_state(out / "checkpoint.safetensors")


@pytest.mark.parametrize("covariance_type", ["full", "tied", "diag", "spherical"])
@pytest.mark.parametrize("_mark", [pytest.param(0, marks=cuda_only)])
def test_fit_on_cuda_equals_cpu(covariance_type, _mark):
    """torch in on CUDA: EM runs there (CUDA E-step + mixture_stats) and gives the CPU fit."""
    X = torch.as_tensor(blobs_array(), dtype=torch.float64)
    kw = dict(covariance_type=covariance_type, random_state=0, tol=1e-10, init_params="random_from_data")
    cpu = GaussianMixture(3, **kw).fit(X)
    gpu = GaussianMixture(3, **kw).fit(X.cuda())
    assert gpu.means_.device.type == "cuda"
    torch.testing.assert_close(gpu.means_.cpu(), cpu.means_, rtol=1e-8, atol=1e-10)
    torch.testing.assert_close(gpu.covariances_.cpu(), cpu.covariances_, rtol=1e-8, atol=1e-10)
    assert gpu.n_iter_ == cpu.n_iter_


# ---------------------------------------------------------------------------------------------
# the estimator's public API for the adapter: fitted_state / from_state / criteria
FIXTURES = Path(__file__).parent / "fixtures"


def test_model_safetensors_from_before_the_layering_change_loads_and_scores():
    """A gmm ``model.safetensors`` written before the EM driver moved (float32 data 1e4 from
    zero, so it carries an ``origin``) loads, scores, evaluates and samples as it did then."""
    from aigc_engine import io

    expected = json.loads((FIXTURES / "gmm_old_model.json").read_text())
    model = GMMModel(GMMModel.Config(n_components=3, covariance_type="full", dtype="float32"))
    model.load_state_dict(io.load_state(FIXTURES / "gmm_old_model.safetensors"))
    points = torch.tensor(expected["points"], dtype=torch.float32)
    torch.testing.assert_close(model.log_prob(points).double(), torch.tensor(expected["log_prob"], dtype=torch.float64),
                               rtol=1e-6, atol=1e-6)
    torch.manual_seed(0)
    torch.testing.assert_close(model.sample(5).double(), torch.tensor(expected["samples_seed0"], dtype=torch.float64),
                               rtol=1e-6, atol=1e-3)  # float32 samples 1e4 from zero: spacing 1e-3
    # the data the fixture was fitted on, regenerated: the same evaluation
    rng = np.random.default_rng(0)
    x = (np.array([[0.0, 0.0], [4.0, 0.0], [0.0, 4.0]])[rng.integers(0, 3, 600)] + rng.normal(size=(600, 2)) * 0.5
         + 1e4)
    ds = data.Dataset(torch.as_tensor(x, dtype=torch.float32), name="fixture")
    assert model.evaluate(ds, Run(None, device="cpu", progress=False)) == pytest.approx(expected["evaluate"], rel=1e-9)
    # and what it saves again is the same state
    again = model.state_dict()
    old = io.load_state(FIXTURES / "gmm_old_model.safetensors")
    assert sorted(again) == sorted(old)
    for key, value in old.items():
        if isinstance(value, torch.Tensor):
            assert torch.equal(again[key], value), key
        else:
            assert again[key] == value, key
    with pytest.raises(InputError, match="components"):
        GMMModel(GMMModel.Config(n_components=4)).load_state_dict(old)
    with pytest.raises(InputError, match="covariance_type 'full', config says 'diag'"):
        GMMModel(GMMModel.Config(n_components=3, covariance_type="diag")).load_state_dict(old)


@pytest.mark.parametrize("covariance_type", ["full", "tied", "diag", "spherical"])
def test_fitted_state_from_state_round_trip(covariance_type):
    X = blobs_array()
    gm = GaussianMixture(4, covariance_type=covariance_type, random_state=0).fit(X)
    state = gm.fitted_state()
    assert state["covariance_type"] == covariance_type and state["n_iter"] == gm.n_iter_
    assert all(state[k].dtype == torch.float64 for k in ("weights", "means", "covariances", "precisions_cholesky"))
    back = GaussianMixture.from_state(state)
    assert back.n_components == 4 and back.covariance_type == covariance_type
    Xt = torch.as_tensor(X)
    torch.testing.assert_close(back.score_samples(Xt), torch.as_tensor(gm.score_samples(X)), rtol=1e-12, atol=1e-12)
    assert torch.equal(back.predict(Xt), torch.as_tensor(gm.predict(X)))
    assert back.criteria(X) == gm.criteria(X)
    with pytest.raises(ValueError, match="state has 4 components"):
        GaussianMixture.from_state(state, n_components=3)
    with pytest.raises(ValueError, match="covariance_type"):
        GaussianMixture.from_state(state, covariance_type="tied" if covariance_type != "tied" else "full")


def test_criteria_is_bic_aic_and_score_from_one_pass():
    from sklearn.mixture import GaussianMixture as SkGM

    X = blobs_array()
    gm = GaussianMixture(4, random_state=0).fit(X)
    sk = SkGM(4, random_state=0).fit(X)
    c = gm.criteria(X)
    assert c["n_samples"] == len(X) and c["n_parameters"] == sk._n_parameters()
    assert c["bic"] == pytest.approx(sk.bic(X), rel=1e-9) and c["aic"] == pytest.approx(sk.aic(X), rel=1e-9)
    assert c["mean_log_likelihood"] == pytest.approx(gm.score(X), rel=1e-15)
    assert (gm.bic(X), gm.aic(X)) == (c["bic"], c["aic"])
    # an all-reduce that doubles (two identical shards): the log-likelihood and count double
    doubled = gm.criteria(X, all_reduce=lambda t: t.mul_(2))
    assert doubled["n_samples"] == 2 * len(X)
    assert doubled["mean_log_likelihood"] == pytest.approx(c["mean_log_likelihood"], rel=1e-15)
    ll, k = c["mean_log_likelihood"] * len(X), c["n_parameters"]
    assert doubled["bic"] == pytest.approx(-4 * ll + k * np.log(2 * len(X)), rel=1e-12)


def test_adapter_and_select_use_only_public_estimator_api():
    """``model.py`` and ``select.py`` name no underscore attribute of another object and import
    no underscore name (their own ``self._...`` helpers aside)."""
    import ast

    import aigc_gmm.model
    import aigc_gmm.select

    for module in (aigc_gmm.model, aigc_gmm.select):
        tree = ast.parse(Path(module.__file__).read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
                base = node.value
                assert isinstance(base, ast.Name) and base.id in ("self", "cls"), \
                    f"{module.__name__}:{node.lineno} uses {ast.unparse(node)}"
            if isinstance(node, ast.ImportFrom) and node.module != "__future__":
                names = [(node.module or "")] + [a.name for a in node.names]
                assert not any(part.startswith("_") for n in names for part in n.split(".")), \
                    f"{module.__name__}:{node.lineno} imports {ast.unparse(node)}"


@pytest.mark.slow
def test_gmm_keeps_the_model_contract():
    from aigc_engine.testing import check_model

    start = time.perf_counter()
    check_model(GMMModel, config={"n_components": 8, "max_iter": 20})
    print(f"check_model(gmm) on ring8: {time.perf_counter() - start:.1f} s")
    # the registered ring8's modes have std 0.01: the density's grid refines until it resolves them
    check_model(GMMModel, dataset="ring8", config={"n_components": 8, "max_iter": 20})
