"""Benchmarks of the GAN and CVAE plugins against the hand-written loops users know, in one run.

    pytest bench/bench_neural.py --benchmark-only --benchmark-json /tmp/bench_neural.json

- ``gan step``: 200 steps on ring8 with the plugin's default networks for points (D on random
  Fourier features of x) and batch 256. Peers: the
  PyTorch DCGAN tutorial's loop (D ends in ``nn.Sigmoid``, ``nn.BCELoss()``, two Adams (2e-4,
  (0.5, 0.999)); D on real (target 1) and detached fake (target 0), D step, then G against target
  1, G step). Ours twice: with the tutorial's settings (``r1_gamma=0, pack=1, ema_decay=0``;
  the same work) and with the defaults (R1, PacGAN-2, EMA).
- ``cvae step``: 200 steps on digits with the plugin's networks: the plugin's loop against the
  same ELBO written by hand.
- ``iwae``: the IWAE bound of 100 digits with k = 1000: the plugin's batched ``log_prob``
  against a naive loop over points (pythae's ``get_nll`` shape: one point at a time).
- ``gan time-to-quality ring8``: seconds until ring8 reaches 8/8 modes at >= 95% high-quality,
  scored (``bench/quality.py``'s ``mode_scores``) on 512 samples of a fixed z every 500 steps.
  Ours: the default run (its EMA generator's snapshots, ``snapshots=32``); the timing is the
  whole run, the seconds to quality are in ``extra_info``. Peer: the tutorial loop above with
  PacGAN's networks and settings (G 4x400 ReLU + BatchNorm, D 3x200 maxout with 5 pieces,
  Adam 1e-4 betas (0.8, 0.999), batch 100, z ~ N(0, I_2), raw data), stopped at the target or
  after 32000 steps; its timing is the time to quality (or to the cap: ``reached`` says which).
No timing assertions here: the report says it.
"""
from __future__ import annotations

import math
import time

import pytest
import torch
from torch import nn

from aigc_engine import Run, data
from conftest import bench_rounds

pytest.importorskip("pytest_benchmark")
ROUNDS = bench_rounds(3)
STEPS = 200


def _run(benchmark, group, impl, fn, **info):
    benchmark.group = group
    benchmark.extra_info.update(impl=impl, threads=torch.get_num_threads(), **info)
    benchmark.pedantic(fn, rounds=ROUNDS, iterations=1, warmup_rounds=1)


@pytest.fixture(scope="module")
def ring():
    return data.ring8()


def _gan(ring, **config):
    from aigc_gan import GAN, GANConfig

    def go():
        GAN(GANConfig(steps=STEPS, snapshots=0, **config)).fit(ring, Run(None, device="cpu", progress=False))
    return go


def test_gan_step_ours_same_work(benchmark, ring):
    _run(benchmark, "gan step ring8 x200", "ours (tutorial settings)", _gan(ring, r1_gamma=0.0, pack=1, ema_decay=0.0))


def test_gan_step_ours_defaults(benchmark, ring):
    _run(benchmark, "gan step ring8 x200", "ours (defaults)", _gan(ring))


def test_gan_step_dcgan_tutorial(benchmark, ring):
    from aigc_gan import Discriminator, Generator

    from aigc_gan.model import DEFAULTS

    p = DEFAULTS["points"]

    def go():  # the plugin's default networks for points (D with its random Fourier features)
        netG = Generator(p["z_dim"], (2,), 0, p["width"], p["depth"], p["channels"], p["norm"])
        netD = nn.Sequential(Discriminator((2,), 0, p["width"], p["depth"], p["channels"], 1, p["fourier"],
                                           p["fourier_scale"]), nn.Sigmoid())
        criterion = nn.BCELoss()
        optD = torch.optim.Adam(netD.parameters(), lr=2e-4, betas=(0.5, 0.999))
        optG = torch.optim.Adam(netG.parameters(), lr=2e-4, betas=(0.5, 0.999))
        x_all = ring.x / ring.x.std()
        perm = torch.randperm(len(x_all))
        for i in range(STEPS):
            real = x_all[perm[(i * 256) % 9984:(i * 256) % 9984 + 256]]
            netD.zero_grad()
            label = torch.full((256,), 1.0)
            errD_real = criterion(netD(real), label)
            errD_real.backward()
            fake = netG(torch.randn(256, 2))
            label.fill_(0.0)
            errD_fake = criterion(netD(fake.detach()), label)
            errD_fake.backward()
            optD.step()
            netG.zero_grad()
            label.fill_(1.0)
            errG = criterion(netD(fake), label)
            errG.backward()
            optG.step()
    _run(benchmark, "gan step ring8 x200", "DCGAN tutorial loop", go)


@pytest.fixture(scope="module")
def digits():
    return data.digits()


def test_cvae_step_ours(benchmark, digits):
    from aigc_cvae import CVAE, CVAEConfig

    def go():
        CVAE(CVAEConfig(steps=STEPS, kl_warmup=STEPS, eval_every=10**6)).fit(digits, Run(None, device="cpu",
                                                                                        progress=False))
    _run(benchmark, "cvae step digits x200", "ours", go)


def test_cvae_step_hand_written(benchmark, digits):
    from aigc_cvae import likelihoods
    from aigc_cvae.networks import CVAENet

    def go():
        net = CVAENet((1, 8, 8), 16, 10, 256, 2, 16, "learned", "mlp", "discretized_logistic", 17)
        opt = torch.optim.Adam(net.parameters(), lr=1e-3)
        x_all, y_all = digits.x[:1000], digits.y[:1000]
        for i in range(STEPS):
            idx = torch.randint(0, 1000, (100,))
            x, y = x_all[idx], y_all[idx]
            mu_q, ls_q = net.encode(x, y)
            z = mu_q + torch.exp(ls_q) * torch.randn_like(mu_q)
            mu_x, ls_x = net.decode(z, y)
            rec = likelihoods.discretized_logistic(x, mu_x, ls_x, 17)
            mu_p, ls_p = net.prior(y, len(x), "cpu")
            kl = (ls_p - ls_q + (torch.exp(2 * ls_q) + (mu_q - mu_p) ** 2) / (2 * torch.exp(2 * ls_p)) - 0.5).sum(1)
            loss = -(rec - min(1.0, (i + 1) / STEPS) * kl).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
    _run(benchmark, "cvae step digits x200", "hand-written", go)


@pytest.fixture(scope="module")
def cvae(digits):
    from aigc_cvae import CVAE, CVAEConfig

    model = CVAE(CVAEConfig(steps=50, kl_warmup=50))
    model.fit(digits, Run(None, device="cpu", progress=False))
    return model


def test_iwae_batched(benchmark, cvae, digits):
    x, y = digits.x[1350:1450], digits.y[1350:1450]
    _run(benchmark, "iwae 100 digits x k=1000", "ours (batched)", lambda: cvae.log_prob(x, condition=y, k=1000),
         points_x_k=100 * 1000)


def test_iwae_per_point_loop(benchmark, cvae, digits):
    x, y = digits.x[1350:1450], digits.y[1350:1450]

    def go():
        with torch.no_grad():
            for i in range(len(x)):
                w = cvae.log_weights(x[i:i + 1], y[i:i + 1], 1000)
                torch.logsumexp(w, 1) - math.log(1000)
    _run(benchmark, "iwae 100 digits x k=1000", "per-point loop", go, points_x_k=100 * 1000)


# -- time to quality ---------------------------------------------------------------------------
TTQ_EVERY, TTQ_CAP = 500, 32000


def _reached(samples: torch.Tensor, ring) -> dict:
    from quality import mode_scores

    scores = mode_scores(samples.double().numpy(), ring.modes.double().numpy(), float(ring.mode_std))
    return {**scores, "ok": scores["modes"] == 8 and scores["high_quality"] >= 0.95}


def test_gan_time_to_quality_ours(benchmark, ring):
    from aigc_gan import GAN, GANConfig
    from aigc_gan.model import DEFAULTS

    def go():
        start = time.time()
        model = GAN(GANConfig(snapshots=DEFAULTS["points"]["steps"] // TTQ_EVERY))  # a snapshot every 500 steps
        model.fit(ring, Run(None, device="cpu", progress=False))
        snap = model.snapshots
        hit = next((i for i, s in enumerate(snap["samples"]) if _reached(s, ring)["ok"]), None)
        benchmark.extra_info.update(
            reached=hit is not None, steps_to_quality=snap["steps"][hit] if hit is not None else None,
            seconds_to_quality=snap["time"][hit] - start if hit is not None else None,
            final=_reached(snap["samples"][-1], ring))
    benchmark.group = "gan time-to-quality ring8"
    benchmark.extra_info.update(impl="ours (defaults)", threads=torch.get_num_threads())
    benchmark.pedantic(go, rounds=1, iterations=1)


class Maxout(nn.Module):
    def __init__(self, n_in: int, n_out: int, pieces: int = 5):
        super().__init__()
        self.n_out, self.pieces = n_out, pieces
        self.linear = nn.Linear(n_in, n_out * pieces)

    def forward(self, x):
        return self.linear(x).view(len(x), self.n_out, self.pieces).amax(-1)


def test_gan_time_to_quality_pacgan_networks_tutorial_loop(benchmark, ring):
    def go():
        torch.manual_seed(0)
        layers, width = [], 2
        for _ in range(4):
            layers += [nn.Linear(width, 400), nn.BatchNorm1d(400), nn.ReLU()]
            width = 400
        netG = nn.Sequential(*layers, nn.Linear(400, 2))
        netD = nn.Sequential(Maxout(2, 200), Maxout(200, 200), Maxout(200, 200), nn.Linear(200, 1), nn.Sigmoid(), nn.Flatten(0))
        criterion = nn.BCELoss()
        optD = torch.optim.Adam(netD.parameters(), lr=1e-4, betas=(0.8, 0.999))
        optG = torch.optim.Adam(netG.parameters(), lr=1e-4, betas=(0.8, 0.999))
        x_all, fixed_z = ring.x, torch.randn(512, 2)
        n = len(x_all) // 100 * 100
        perm = torch.randperm(len(x_all))
        start, last = time.time(), None
        for i in range(1, TTQ_CAP + 1):
            if (i * 100) % n == 0:
                perm = torch.randperm(len(x_all))
            real = x_all[perm[(i * 100) % n:(i * 100) % n + 100]]
            netD.zero_grad()
            label = torch.full((100,), 1.0)
            criterion(netD(real), label).backward()
            fake = netG(torch.randn(100, 2))
            label.fill_(0.0)
            criterion(netD(fake.detach()), label).backward()
            optD.step()
            netG.zero_grad()
            label.fill_(1.0)
            criterion(netD(fake), label).backward()
            optG.step()
            if i % TTQ_EVERY == 0:
                netG.eval()
                with torch.no_grad():
                    last = _reached(netG(fixed_z), ring)
                netG.train()
                if last["ok"]:
                    break
        benchmark.extra_info.update(reached=bool(last["ok"]), steps_to_quality=i if last["ok"] else None,
                                    seconds_to_quality=time.time() - start if last["ok"] else None, final=last,
                                    steps_run=i)
    benchmark.group = "gan time-to-quality ring8"
    benchmark.extra_info.update(impl="PacGAN networks, tutorial loop", threads=torch.get_num_threads())
    benchmark.pedantic(go, rounds=1, iterations=1)
