"""The diffusion plugin: closed-form Gaussian cases of its samplers and both likelihoods, guidance,
config errors, and short end-to-end runs through the CLI (tiny configs)."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from conftest import reference_and_resumed_runs
from aigc_engine import EMA, InputError, Run, data, io
from aigc_diffusion import (SAMPLERS, Diffusion, DiffusionConfig, LearnedSchedule, Schedule, discrete_bound,
                            ode_log_likelihood, sample_loop)
from aigc_diffusion.schedules import alpha_sigma

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def _cmd(*args):
    return [sys.executable, "-m", "aigc_engine", *args]


def gaussian_eps(mu: torch.Tensor, cov: torch.Tensor):
    """The optimal noise predictor for data N(mu, cov): E[eps | z] = sigma (alpha^2 cov + sigma^2 I)^-1 (z - alpha mu)."""
    def eps(z, lam):  # lam: one log-SNR, or one per row
        a, s = alpha_sigma(torch.as_tensor(lam, dtype=torch.float64).expand(len(z))[:, None, None])
        c = a ** 2 * cov + s ** 2 * torch.eye(len(mu), dtype=torch.float64)
        return (s * torch.linalg.solve(c, (z.double() - a[:, :, 0] * mu)[:, :, None]))[:, :, 0]
    return eps


MU = torch.tensor([0.5, -0.3], dtype=torch.float64)
CHOL = torch.tensor([[0.6, 0.0], [0.3, 0.4]], dtype=torch.float64)
COV = CHOL @ CHOL.T


def _perturbed_learned_schedule(lo, hi):
    s = LearnedSchedule(lo, hi)
    with torch.no_grad():  # away from its near-linear start
        for p in s.parameters():
            p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(1)))
    return s


@pytest.mark.parametrize("kind", Schedule.KINDS)
def test_schedule_ends_and_derivative(kind):
    s = _perturbed_learned_schedule(-10.0, 14.0) if kind == "learned" else Schedule(kind, -10.0, 14.0)
    t = torch.tensor([0.0, 0.3, 1.0], dtype=torch.float64)
    assert torch.allclose(s(t)[[0, 2]], torch.tensor([14.0, -10.0], dtype=torch.float64), atol=1e-6)
    tt = torch.tensor([0.3, 0.05, 0.9], dtype=torch.float64, requires_grad=True)
    grad, = torch.autograd.grad(s(tt).sum(), tt)
    assert torch.allclose(grad, s.derivative(tt.detach()), rtol=1e-6) and torch.all(grad < 0)
    grid = s.grid(50)
    assert torch.allclose(grid[[0, -1]], torch.tensor([-10.0, 14.0], dtype=torch.float64)) and torch.all(grid.diff() > 0)


def test_learned_schedule_trains_on_the_variance_and_the_network_on_the_bound():
    """schedule=learned: the network's gradient is that of the mean per-row bound (the uniform
    log-SNR's estimate, importance-sampled), the schedule's that of the mean squared loss."""
    from aigc_diffusion.config import resolved

    model = Diffusion(DiffusionConfig(schedule="learned", target="eps", width=16, depth=1, fourier=0, batch_size=64))
    c = model.resolved = resolved(model.config, "points")
    assert c.weighting == "elbo"
    torch.manual_seed(0)
    model.net = model._build((2,), 0, c)
    model.net.schedule.load_state_dict(_perturbed_learned_schedule(c.logsnr_min, c.logsnr_max).state_dict())
    x, run = torch.randn(64, 2), Run(seed=0, device="cpu", distributed=False)

    def rows_loss():  # the same draws as _loss
        torch.manual_seed(0)
        u = (torch.rand(()) + torch.arange(64) / 64) % 1
        lam, w = model.net.schedule(u), -model.net.schedule.derivative(u)
        a, s = alpha_sigma(lam)
        eps = torch.randn(64, 2)
        return 0.5 * w * (eps - model.net(a[:, None] * x + s[:, None] * eps, lam, None)).pow(2).sum(1)

    def grads(loss):
        model.net.zero_grad()
        loss.backward()
        return {n: p.grad.clone() for n, p in model.net.named_parameters()}

    torch.manual_seed(0)
    got = grads(model._loss(model.net, x, None, run))
    mean, square = grads(rows_loss().mean()), grads(rows_loss().pow(2).mean())
    assert any(n.startswith("schedule.") for n in got)
    for name, g in got.items():
        want = square[name] if name.startswith("schedule.") else mean[name]
        assert torch.allclose(g, want, rtol=1e-4, atol=1e-7), name
    assert not torch.allclose(got["schedule.w"], mean["schedule.w"])


@pytest.mark.parametrize("sampler", list(SAMPLERS))  # every registered sampler
def test_samplers_with_the_optimal_denoiser_reproduce_a_gaussian(sampler):
    torch.manual_seed(0)
    noise = torch.randn(20000, 2, dtype=torch.float64)
    x = sample_loop(gaussian_eps(MU, COV), noise, Schedule("cosine", -10, 14), 100, sampler)
    # sampling error of 20000 draws: ~0.005 for the mean, ~0.006 for the covariance entries
    assert torch.allclose(x.mean(0), MU, atol=0.02), x.mean(0)
    assert torch.allclose(torch.cov(x.T), COV, atol=0.03), torch.cov(x.T)


def test_ode_log_likelihood_of_a_gaussian_is_the_closed_form():
    torch.manual_seed(0)
    x = MU + torch.randn(400, 2, dtype=torch.float64) @ CHOL.T
    exact = torch.distributions.MultivariateNormal(MU, COV).log_prob(x)
    sched = Schedule("cosine", -10, 14)
    lp, se = ode_log_likelihood(gaussian_eps(MU, COV), x, sched, 100, trace="exact")
    assert (lp - exact).abs().max() < 0.05 and torch.all(se == 0)
    # Hutchinson: unbiased, so the mean over rows lies within a few standard errors of the exact
    lp, se = ode_log_likelihood(gaussian_eps(MU, COV), x, sched, 100, probes=8, trace="hutchinson",
                                generator=torch.Generator().manual_seed(0))
    mean_se = float(se.pow(2).sum().sqrt() / len(se))
    assert 0 < mean_se < 0.1
    assert abs(float((lp - exact).mean())) < 3 * mean_se + 0.005, (float((lp - exact).mean()), mean_se)
    # a wrong denoiser (another covariance) gives another density
    wrong, _ = ode_log_likelihood(gaussian_eps(MU, 2 * COV), x, sched, 100, trace="exact")
    assert float((wrong - exact).mean()) < -0.1


def test_discrete_bound_of_a_quantised_gaussian_is_above_its_entropy_and_close():
    """Pixels on 33 levels, independent, each a Gaussian integrated over its level's bin: the
    optimal denoiser is the posterior mean over the levels, and the bound with it lies just above
    the exact -log P(x) (the data's entropy, on average)."""
    torch.manual_seed(0)
    levels, mu, std, d = 33, 0.1, 0.3, 4
    values = torch.linspace(-1, 1, levels, dtype=torch.float64)
    edges = torch.cat([torch.tensor([-math.inf]), (values[1:] + values[:-1]) / 2, torch.tensor([math.inf])]).double()
    cdf = torch.distributions.Normal(mu, std).cdf(edges)
    log_w = (cdf[1:] - cdf[:-1]).log()
    x = values[torch.multinomial(log_w.exp(), 4000 * d, replacement=True)].reshape(4000, d)

    def eps(z, lam):
        a, s = alpha_sigma(torch.as_tensor(lam, dtype=torch.float64).expand(len(z))[:, None, None])
        post = (log_w - 0.5 * ((z.double()[..., None] - a * values) / s) ** 2).softmax(-1)
        return (z.double() - a[..., 0] * (post * values).sum(-1)) / s[..., 0]

    rows = discrete_bound(eps, x, levels, -10.0, 10.0, draws=16) + log_w[torch.round((x + 1) * 16).long()].sum(1)
    gap, se = float(rows.mean()), float(rows.std() / math.sqrt(len(rows)))  # bound - exact, per row
    assert -3 * se < gap < 0.02 * d, (gap, se)  # a bound (up to its Monte Carlo error), and tight


def _fit(dataset, run_dir, **config):
    model = Diffusion(DiffusionConfig(**config))
    model.fit(dataset, Run(run_dir, device="cpu", seed=0, progress=False))
    return model


def test_guidance_zero_is_the_unconditional_model_and_state_round_trips(tmp_path):
    model = _fit(data.digits(n=200), tmp_path / "d", steps=3, batch_size=20, channels=8, sample_steps=4, snapshots=1,
                 log_every=1)
    assert model.num_classes == 10 and model.log_prob_kind == "discrete_bound"
    noise = torch.randn(6, 1, 8, 8)
    threes = torch.full((6,), 3)
    uncond = model._sample(noise, None)
    assert torch.equal(model._sample(noise, threes, guidance=0.0), uncond)
    assert not torch.allclose(model._sample(noise, threes, guidance=2.0), uncond)
    io.save_state(tmp_path / "m.safetensors", model.state_dict())
    again = Diffusion()
    again.load_state_dict(io.load_state(tmp_path / "m.safetensors"))
    torch.manual_seed(0)
    a = model.sample(4, condition=torch.tensor(7))
    torch.manual_seed(0)
    assert torch.equal(a, again.sample(4, condition=torch.tensor(7))) and a.shape == (4, 1, 8, 8)
    lp = model.log_prob(model.sample(3))
    assert lp.shape == (3,) and torch.isfinite(lp).all() and (lp < 0).all()


def test_learned_schedule_is_trained_saved_and_sampled_on(tmp_path):
    model = _fit(data.ring8(n=300), tmp_path / "l", steps=5, batch_size=30, width=16, depth=1, ode_steps=4,
                 sample_steps=6, snapshots=0, schedule="learned", sample_grid="schedule")
    assert model.resolved.weighting == "elbo"
    trained, start = model.schedule, LearnedSchedule(-10.0, 14.0)
    assert not torch.allclose(trained.grid(6), start.grid(6))  # the EMA's schedule moved off its start
    io.save_state(tmp_path / "m.safetensors", model.state_dict())
    again = Diffusion()
    again.load_state_dict(io.load_state(tmp_path / "m.safetensors"))
    assert torch.equal(again.schedule.grid(6), trained.grid(6))
    torch.manual_seed(0)
    a = model.sample(5)
    torch.manual_seed(0)
    assert torch.equal(a, again.sample(5)) and torch.isfinite(a).all()


def test_points_model_log_prob_is_exact_and_unconditional(tmp_path):
    model = _fit(data.ring8(n=300), tmp_path / "r", steps=2, batch_size=30, width=16, depth=1, ode_steps=4,
                 sample_steps=4, snapshots=0)
    assert model.num_classes == 0 and model.log_prob_kind == "exact"
    with pytest.raises(InputError, match="unconditional"):
        model.sample(3, condition=torch.tensor([1]))
    lp, se = model.log_prob_and_error(torch.zeros(5, 2))
    assert lp.shape == (5,) and torch.isfinite(lp).all() and torch.all(se == 0)  # trace=auto: exact for D <= probes
    hutchinson = _fit(data.ring8(n=300), tmp_path / "h", steps=2, batch_size=30, width=16, depth=1, ode_steps=4,
                      sample_steps=4, snapshots=0, trace="hutchinson")
    lp_h, se_h = hutchinson.log_prob_and_error(torch.randn(20, 2))
    assert torch.isfinite(lp_h).all() and (se_h >= 0).all() and se_h.max() > 0  # two equal probes: 0


def test_v_target_is_the_points_default_and_its_noise_prediction_is_exact(tmp_path):
    model = _fit(data.ring8(n=300), tmp_path / "v", steps=2, batch_size=30, width=16, depth=1, sample_steps=4,
                 snapshots=0)
    assert model.resolved.target == "v"
    eps_opt = gaussian_eps(MU, COV)

    class OptimalV(torch.nn.Module):  # v = alpha eps - sigma x_hat of the Gaussian's optimal denoiser
        def __init__(self):
            super().__init__()
            self.unused = torch.nn.Parameter(torch.zeros(()))  # the model finds its device from one

        def forward(self, z, lam, y=None):
            a, s = (t[:, None].double() for t in alpha_sigma(lam))
            eps = eps_opt(z, lam)
            return a * eps - s * (z.double() - s * eps) / a

    model.ema = EMA(OptimalV())
    z, lam = torch.randn(50, 2), torch.tensor(1.5)
    assert torch.allclose(model.eps_fn()(z, lam).double(), eps_opt(z, lam), atol=1e-5)


def test_fourier_features_of_the_points_network():
    """Each coordinate and its sines and cosines at pi 2^k, k < fourier; 0 feeds the raw points."""
    from aigc_diffusion.networks import FourierFeatures, PointNet

    z = torch.tensor([[0.25, -1.0]])
    f = FourierFeatures(3)(z)
    assert f.shape == (1, 2 * (1 + 2 * 3)) and torch.allclose(f[0, :2], z[0])
    assert torch.allclose(f[0, 2:8], torch.sin(torch.pi * torch.tensor([1, 2, 4, 1, 2, 4.0]) * z[0].repeat_interleave(3)))
    assert PointNet(2, 0, 16, 1, fourier=3).inp.in_features == 14 and PointNet(2, 0, 16, 1).inp.in_features == 2


@pytest.mark.parametrize("options, message", [
    (dict(steps=0), "steps must be >= 1"), (dict(schedule="quadratic"), "schedule must be one of"),
    (dict(sampler="euler"), "sampler must be one of"), (dict(eta=1.5), "eta must be in"),
    (dict(label_dropout=1.0), "label_dropout must be in"), (dict(logsnr_min=5.0, logsnr_max=2.0), "logsnr_min"),
    (dict(guidance=-1.0), "guidance must be >= 0"), (dict(probes=0), "probes must be >= 1"),
    (dict(fourier=-1), "fourier must be >= 0"),
    (dict(schedule="learned", weighting="simple"), "schedule=learned .* needs weighting=elbo"),
])
def test_bad_options_are_input_errors(options, message):
    with pytest.raises(InputError, match=message):
        Diffusion(DiffusionConfig(**options))


def test_bad_data_and_cli_errors_exit_2(tmp_path):
    with pytest.raises(InputError, match="square images"):
        Diffusion(DiffusionConfig(steps=1)).validate(data.Dataset(torch.zeros(4, 1, 6, 6), name="odd"))
    with pytest.raises(InputError, match="batch_size"):
        Diffusion(DiffusionConfig(batch_size=1000)).validate(data.ring8(n=100))
    for bad in ("sampler=euler", "eta=2", "target=x0"):
        out = tmp_path / bad.split("=")[0]
        proc = subprocess.run(_cmd("run", "diffusion", "--set", bad, "--out", str(out), "--no-progress"), env=ENV,
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 2 and "Error:" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
        assert not out.exists()


@pytest.mark.slow
def test_cli_run_sample_and_eval_on_ring8(tmp_path):
    out = tmp_path / "run"
    proc = subprocess.run(_cmd("run", "diffusion", "--dataset", "ring8", "--set", "steps=200", "--set", "dataset.n=2000",
                               "--set", "width=64", "--set", "depth=2", "--set", "batch_size=128", "--set",
                               "ode_steps=20", "--out", str(out), "--no-progress"), env=ENV, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["modes"] >= 6 and math.isfinite(summary["test_log_likelihood"])
    assert {"samples.png", "progress.png", "denoising.png"} <= {p.name for p in out.iterdir()}
    npy = tmp_path / "s.npy"
    done = subprocess.run(_cmd("sample", str(out), "-n", "100", "-o", str(npy)), env=ENV, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    samples = np.load(npy)
    assert samples.shape == (100, 2) and 0.8 < np.median(np.linalg.norm(samples, axis=1)) < 1.2  # on the ring
    done = subprocess.run(_cmd("eval", str(out), "--no-progress"), env=ENV, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr


@pytest.mark.slow
def test_cli_run_resume_after_sigkill_is_bit_identical(tmp_path):
    common = ["diffusion", "--device", "cpu", "--set", "steps=150", "--set", "checkpoint_every=20",
              "--set", "dataset.n=2000", "--set", "batch_size=64", "--set", "width=32", "--set", "depth=2",
              "--set", "ode_steps=10", "--set", "snapshots=3", "--set", "sample_steps=32", "--no-progress"]
    ref, out = reference_and_resumed_runs(common, tmp_path, ENV)
    a, b = io.load_state(ref / "model.safetensors"), io.load_state(out / "model.safetensors")
    assert all(torch.equal(a["ema"][k], b["ema"][k]) for k in a["ema"])
    assert all(torch.equal(p, q) for p, q in zip(a["snapshots"]["samples"], b["snapshots"]["samples"]))
    assert json.loads((ref / "summary.json").read_text())["modes"] == json.loads((out / "summary.json").read_text())["modes"]


@pytest.mark.slow
def test_diffusion_keeps_the_contract():
    """The engine's conformance suite, every rule on ring8: a short warm-up and no snapshots let 100
    steps of a small network learn the two classes of the condition rule; 8 ODE steps give a
    density that integrates to 1 over the data's grid."""
    from aigc_engine.testing import check_model

    start = time.perf_counter()
    check_model(Diffusion, config={"steps": 100, "warmup": 10, "batch_size": 32, "width": 16, "depth": 1,
                                   "ode_steps": 8, "sample_steps": 8, "snapshots": 0})
    print(f"check_model(diffusion) on ring8: {time.perf_counter() - start:.1f} s")


def test_the_default_batch_fits_a_small_table():
    import pandas as pd

    from aigc_diffusion.config import DiffusionConfig, resolved
    from aigc_engine.data.tablefile import read_table

    rng = np.random.default_rng(0)
    table = read_table(pd.DataFrame({"a": rng.normal(size=120), "b": rng.choice(["x", "y"], 120)}))
    assert resolved(DiffusionConfig(), table).batch_size == 96  # its 80% training rows (10% validation, 10% test), not 256
    assert resolved(DiffusionConfig(batch_size=64), table).batch_size == 64
    assert resolved(DiffusionConfig(), "points").batch_size == 256
