"""Step speed of the diffusion plugin against the same denoising step written by hand, in one run.

    pytest bench/bench_diffusion.py --benchmark-only -s [--benchmark-json out.json]

Each case is ``STEPS[kind]`` training steps with the plugin's default network for the data kind
and its default batch: ours is ``Diffusion.fit`` (the core's batches, step loop, EMA; no run
directory, ``snapshots=0``), the peer the loop a user writes in plain PyTorch with the same
network, Adam, learning-rate schedule, loss (the kind's default target, eps or v, simple
weighting, log-SNR of the cosine schedule at stratified times), gradient clipping and EMA. The
ratio (peer / ours: above 1 means ours is faster) is printed at the end with ``-s`` and kept in
``extra_info``. No timing assertions here.
"""
from __future__ import annotations

import copy
import math

import pytest
import torch

from aigc_engine import Run, data
from aigc_diffusion import Diffusion, DiffusionConfig, PointNet, Schedule, UNet
from aigc_diffusion.model import DEFAULTS
from conftest import bench_rounds

pytest.importorskip("pytest_benchmark")
ROUNDS = bench_rounds(3)
# enough steps that a fit's set-up (network, EMA copy, optimiser: ~30 ms) and the machine's
# noise weigh little against the points network's ~10 ms steps
STEPS = {"points": 300, "images": 100}
MEANS: dict[str, dict[str, float]] = {}


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
@pytest.mark.parametrize("impl", ["ours", "hand-written"])
def test_diffusion_step(benchmark, kind, impl):
    dataset = data.ring8() if kind == "points" else data.digits()
    fn = _ours(dataset, kind) if impl == "ours" else _hand_written(dataset, kind)
    benchmark.group = f"diffusion step {kind}"
    benchmark.extra_info.update(impl=impl, threads=torch.get_num_threads(), steps=STEPS[kind])
    benchmark.pedantic(fn, rounds=ROUNDS, iterations=1, warmup_rounds=1)
    MEANS.setdefault(kind, {})[impl] = benchmark.stats.stats.min / STEPS[kind]
    if len(MEANS[kind]) == 2:
        ratio = MEANS[kind]["hand-written"] / MEANS[kind]["ours"]
        benchmark.extra_info["speed_ratio_vs_hand_written"] = ratio
        print(f"\ndiffusion step {kind}: ours {MEANS[kind]['ours'] * 1e3:.2f} ms, hand-written "
              f"{MEANS[kind]['hand-written'] * 1e3:.2f} ms per step: {ratio:.2f}x")
