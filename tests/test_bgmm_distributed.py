"""Distributed fits equal one-process fits for the Bayesian mixture and for weighted fits: two
ranks (threads summing their statistics with an all-reduce) against one, and the engine's
``bgmm`` under torchrun (2 processes) against one process."""
import json
import os
import socket
import subprocess
import sys
import threading
import warnings

import numpy as np
import pytest
import torch

from aigc_engine import data, io
from aigc_gmm import BayesianGaussianMixture, GaussianMixture


class ThreadAllReduce:
    """An in-place sum over ``n`` threads (each its own rank), the same order on every rank."""

    def __init__(self, n):
        self.barrier, self.slots = threading.Barrier(n), [None] * n

    def for_rank(self, rank):
        def all_reduce(t):
            self.slots[rank] = t.clone()
            self.barrier.wait()
            total = self.slots[0].clone()
            for other in self.slots[1:]:
                total += other
            self.barrier.wait()
            t.copy_(total)
            return t
        return all_reduce


def fit_ranks(make, dataset, weights, world_size):
    reduce, fitted, errors = ThreadAllReduce(world_size), [None] * world_size, []

    def run(rank):
        try:
            gm = make()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                gm.em_fit(dataset, rank=rank, world_size=world_size, all_reduce=reduce.for_rank(rank),
                          sample_weight=weights).finish()
            fitted[rank] = gm
        except BaseException as err:  # pragma: no cover - reported below
            errors.append(err)
            reduce.barrier.abort()
    threads = [threading.Thread(target=run, args=(r,)) for r in range(world_size)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    return fitted


@pytest.fixture(scope="module")
def dataset():
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(size=(300, 3)) + c for c in ([0, 0, 0], [5, 0, 1], [0, 6, -2])])
    return data.Dataset(torch.as_tensor(rng.permutation(X), dtype=torch.float32), name="three")


@pytest.mark.parametrize("estimator", ["gmm", "bgmm"])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("covariance_type", ["full", "tied", "diag", "spherical"])
def test_two_ranks_equal_one(dataset, estimator, weighted, covariance_type):
    cls = GaussianMixture if estimator == "gmm" else BayesianGaussianMixture
    weights = np.random.default_rng(1).integers(0, 4, len(dataset)).astype(float) if weighted else None

    def make():
        return cls(n_components=3, covariance_type=covariance_type, random_state=0, dtype="float64",
                   chunk_size=100, max_iter=25, tol=1e-9)
    (one,) = fit_ranks(make, dataset, weights, 1)
    for gm in fit_ranks(make, dataset, weights, 2):
        for name in ("weights_", "means_", "covariances_"):
            torch.testing.assert_close(getattr(gm, name), getattr(one, name), rtol=1e-10, atol=1e-12)
        assert gm.n_iter_ == one.n_iter_
        np.testing.assert_allclose(gm.lower_bounds_, one.lower_bounds_, rtol=1e-11)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_torchrun_bgmm_two_processes_equal_one(tmp_path):
    from aigc_engine.engine import Engine

    path = tmp_path / "x.npy"
    rng = np.random.default_rng(0)
    np.save(path, np.concatenate([rng.normal(size=(400, 2)) + c for c in ([0, 0], [6, 0], [0, 6])]))
    sets = ["--set", "n_components=6", "--set", "chunk_size=150", "--set", "dtype=float64", "--set", "max_iter=20",
            "--dataset", str(path), "--device", "cpu", "--no-progress"]
    two = tmp_path / "two"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port",
           str(_free_port()), "-m", "aigc_engine", "run", "bgmm", *sets, "--out", str(two)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"},
                          timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    one = Engine().train("bgmm", str(path), sets=dict(s.split("=", 1) for s in sets[1:8:2]),
                         out=str(tmp_path / "one"), device="cpu", progress=False)
    a, b = io.load_state(one / "model.safetensors"), io.load_state(two / "model.safetensors")
    for key in ("weight_concentration", "means", "covariances", "degrees_of_freedom", "mean_prior"):
        torch.testing.assert_close(b[key], a[key], rtol=1e-10, atol=1e-12)
    sa, sb = (json.loads((d / "summary.json").read_text()) for d in (one, two))
    assert sb["n_effective_components"] == sa["n_effective_components"]
