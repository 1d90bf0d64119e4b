"""Step speed of the diffusion plugin against the same denoising step written by hand, in one run.

    pytest bench/bench_diffusion.py --benchmark-only -s [--benchmark-json out.json]

Each case is ``STEPS[kind]`` training steps with the plugin's default network for the data kind
and its default batch: ours is ``Diffusion.fit`` (the core's batches, step loop, EMA; no run
directory, ``snapshots=0``), timed by pytest-benchmark; the peer, timed in the same test in
rounds alternating with ours, the loop a user writes in plain PyTorch with the same
network, Adam, learning-rate schedule, loss (the kind's default target, eps or v, simple
weighting, log-SNR of the cosine schedule at stratified times), gradient clipping and EMA. The
ratio (peer / ours: above 1 means ours is faster) is printed at the end with ``-s`` and kept in
``extra_info``. No timing assertions here.
"""
from __future__ import annotations

import copy
import math
import time

import pytest
import torch

from aigc_engine import Run, data
from aigc_diffusion import Diffusion, DiffusionConfig, PointNet, Schedule, UNet
from aigc_diffusion.model import DEFAULTS
from conftest import bench_rounds

pytest.importorskip("pytest_benchmark")
ROUNDS = bench_rounds(5)
# enough steps that a fit's set-up (network, EMA copy, optimiser: ~30 ms) and the machine's
# noise weigh little against the points network's ~10 ms steps
STEPS = {"points": 300, "images": 100}


def _hand_written(dataset, kind: str):
    d, steps = DEFAULTS[kind], STEPS[kind]
    x_all = dataset.x if kind == "images" else dataset.x / dataset.x.std()
    y_all = dataset.y if kind == "images" else None
    classes = 10 if kind == "images" else 0
    net = UNet(tuple(x_all.shape[1:]), classes, d["channels"]) if kind == "images" else \
        PointNet(x_all.shape[1], 0, d["width"], d["depth"], d["fourier"])
    ema = copy.deepcopy(net).requires_grad_(False)
    opt = torch.optim.Adam(net.parameters(), lr=d["lr"])
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda i: min(1.0, (i + 1) / 100) * 0.5 * (1 + math.cos(math.pi * i / steps)))
    schedule = Schedule("cosine", d["logsnr_min"], d["logsnr_max"], d["logsnr_shift"])
    b = d["batch_size"]

    def train():
        for step in range(steps):
            rows = torch.randint(0, len(x_all), (b,))
            x = x_all[rows]
            y = y_all[rows] if y_all is not None else None
            if y is not None:
                y = torch.where(torch.rand(b) < 0.1, torch.full_like(y, classes), y)
            lam = schedule((torch.rand(()) + torch.arange(b) / b) % 1)
            a, s = torch.sigmoid(lam).sqrt(), torch.sigmoid(-lam).sqrt()
            shape = (b, *([1] * (x.dim() - 1)))
            eps = torch.randn_like(x)
            a, s = a.view(shape), s.view(shape)
            truth = eps if d["target"] == "eps" else a * eps - s * x  # v (Salimans & Ho 2022)
            loss = (net(a * x + s * eps, lam, y) - truth).pow(2).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
            opt.step()
            sched.step()
            with torch.no_grad():
                decay = min(0.999, (1 + step) / (10 + step))
                torch._foreach_lerp_(list(ema.parameters()), list(net.parameters()), 1 - decay)
    return train


def _ours(dataset, kind: str):
    def train():
        Diffusion(DiffusionConfig(steps=STEPS[kind], snapshots=0, test=0.0)).fit(
            dataset, Run(None, device="cpu", progress=False))
    return train


@pytest.mark.parametrize("kind", ["points", "images"])
def test_diffusion_step(benchmark, kind):
    """Ours is the benchmark; one round of the hand-written loop runs (timed here) before each of
    its rounds, warm-up included, so the two alternate and the machine's drift meets both alike."""
    dataset = data.ring8() if kind == "points" else data.digits()
    ours, peer = _ours(dataset, kind), _hand_written(dataset, kind)
    peer_seconds: list[float] = []

    def one_peer_round():
        start = time.perf_counter()
        peer()
        peer_seconds.append(time.perf_counter() - start)

    benchmark.group = f"diffusion step {kind}"
    benchmark.pedantic(ours, setup=one_peer_round, rounds=ROUNDS, iterations=1, warmup_rounds=1)
    steps = STEPS[kind]
    ours_ms, peer_ms = benchmark.stats.stats.min / steps * 1e3, min(peer_seconds[1:]) / steps * 1e3
    ratio = peer_ms / ours_ms
    benchmark.extra_info.update(threads=torch.get_num_threads(), steps=steps, ours_ms_per_step=ours_ms,
                                hand_written_ms_per_step=peer_ms, speed_ratio_vs_hand_written=ratio)
    print(f"\ndiffusion step {kind}: ours {ours_ms:.2f} ms, hand-written {peer_ms:.2f} ms per step "
          f"(fastest of {ROUNDS} alternating rounds): {ratio:.2f}x")
