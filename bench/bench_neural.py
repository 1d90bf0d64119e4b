"""Benchmarks of the GAN and CVAE plugins against the hand-written loops users know, in one run.

    pytest bench/bench_neural.py --benchmark-only --benchmark-json /tmp/bench_neural.json

- ``gan step``: 200 steps on ring8 with the plugin's networks for points and batch 256. Peers: the
  PyTorch DCGAN tutorial's loop (D ends in ``nn.Sigmoid``, ``nn.BCELoss()``, two Adams (2e-4,
  (0.5, 0.999)); D on real (target 1) and detached fake (target 0), D step, then G against target
  1, G step). Ours twice: with the tutorial's settings (``r1_gamma=0, pack=1, ema_decay=0``;
  the same work) and with the defaults (R1, PacGAN-2, EMA).
- ``cvae step``: 200 steps on digits with the plugin's networks: the plugin's loop against the
  same ELBO written by hand.
- ``iwae``: the IWAE bound of 100 digits with k = 1000: the plugin's batched ``log_prob``
  against a naive loop over points (pythae's ``get_nll`` shape: one point at a time).
No timing assertions here: the report says it.
"""
from __future__ import annotations

import math

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

    def go():
        netG = Generator(2, (2,), 0, 128, 3, 32, "layer")
        netD = nn.Sequential(Discriminator((2,), 0, 128, 3, 32, 1), nn.Sigmoid())
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
