"""Benchmarks of the core's minibatch training against the hand-written equivalents, in one run.

    pytest bench/bench_training.py --benchmark-only --benchmark-json /tmp/bench_training.json
    python bench/report.py /tmp/bench_training.json --baseline ours

- ``batches``: 200 batches of 256 rows from a 1M x 16 float32 dataset: ``run.batches`` (gathered
  by index) against ``DataLoader(TensorDataset(x), batch_size=256, shuffle=True)``.
- ``loop``: 300 steps of a small MLP (16 -> 64 -> 64 -> 16, Adam, batch 256) through
  ``run.loop`` + ``run.batches`` with ``loop.log`` every step, against the same steps written by
  hand (a permutation gathered by index, no logging). The ratio is the loop's own overhead.
No timing assertions here: the report says it.
"""
from __future__ import annotations

import pytest
import torch

from aigc_engine import Run, data
from conftest import bench_rounds

pytest.importorskip("pytest_benchmark")

ROUNDS = bench_rounds(5)
N_BATCHES, STEPS, BATCH = 200, 300, 256


def _run(benchmark, group, impl, fn, rounds=ROUNDS, **info):
    benchmark.group = group
    benchmark.extra_info.update(impl=impl, threads=torch.get_num_threads(), **info)
    benchmark.pedantic(fn, rounds=rounds, iterations=1, warmup_rounds=1)


@pytest.fixture(scope="module")
def big():
    return data.Dataset(torch.randn(1_000_000, 16), name="bench")


def test_batches_ours(benchmark, big):
    run = Run(None, device="cpu", progress=False, distributed=False)
    batches = run.batches(big, BATCH)

    def go():
        for _ in range(N_BATCHES):
            next(batches)
    _run(benchmark, "batches 256 of 1M x 16", "ours", go, batches=N_BATCHES)


def test_batches_dataloader(benchmark, big):
    from torch.utils.data import DataLoader, TensorDataset

    loader = DataLoader(TensorDataset(big.x), batch_size=BATCH, shuffle=True)

    def go():
        it = iter(loader)
        for _ in range(N_BATCHES):
            next(it)
    _run(benchmark, "batches 256 of 1M x 16", "DataLoader", go, batches=N_BATCHES)


def _mlp():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(16, 64), torch.nn.ReLU(), torch.nn.Linear(64, 64), torch.nn.ReLU(),
                               torch.nn.Linear(64, 16))


@pytest.fixture(scope="module")
def small():
    return data.Dataset(torch.randn(20_000, 16), name="small")


def test_loop_ours(benchmark, small, tmp_path):
    def go():
        run = Run(tmp_path / f"r{len(list(tmp_path.iterdir()))}", device="cpu", progress=False, distributed=False)
        net = _mlp()
        opt = torch.optim.Adam(net.parameters(), lr=1e-3)
        batches = run.batches(small, BATCH)
        loop = run.loop(STEPS, {"net": net, "opt": opt, "data": batches}, checkpoint_every=10**9)
        for _ in loop:
            x, _ = next(batches)
            loss = (net(x) - x).pow(2).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loop.log(loss=loss)
    _run(benchmark, "loop 300 steps MLP", "ours", go, steps=STEPS)


def test_loop_hand_written(benchmark, small):
    def go():
        net = _mlp()
        opt = torch.optim.Adam(net.parameters(), lr=1e-3)
        x_all = small.x
        perm = torch.randperm(len(x_all))
        per_epoch = len(x_all) // BATCH
        for step in range(STEPS):
            if step % per_epoch == 0:
                perm = torch.randperm(len(x_all))
            i = step % per_epoch
            x = x_all.index_select(0, perm[i * BATCH:(i + 1) * BATCH])
            loss = (net(x) - x).pow(2).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    _run(benchmark, "loop 300 steps MLP", "hand-written", go, steps=STEPS)
