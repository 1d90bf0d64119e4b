"""The cvae plugin: discrete likelihoods, the IWAE bound against a closed form (probabilistic PCA),
bound orderings, conditioning, early stopping and resume."""
import json
import math
import os
import time

import pytest
import torch

from aigc_engine import Run, data, io
from aigc_engine.testing import check_model
from conftest import reference_and_resumed_runs
from aigc_cvae import CVAE, CVAEConfig
from aigc_cvae import likelihoods as L
from aigc_cvae.networks import CVAENet

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


@pytest.mark.parametrize("kind", ["discretized_logistic", "discretized_gaussian"])
@pytest.mark.parametrize("levels", [2, 17, 256])
def test_discrete_decoder_probabilities_sum_to_one(kind, levels):
    torch.manual_seed(0)
    for dtype, atol in ((torch.float64, 1e-9), (torch.float32, 2e-5)):  # exact maths; float32 rounding
        mu = torch.randn(200, 1, dtype=dtype) * 1.5
        log_scale = torch.rand(200, 1, dtype=dtype) * 12 - 8  # from far below the bin width to far above
        grid = torch.linspace(-1, 1, levels, dtype=dtype)
        lp = torch.stack([L.log_likelihood(kind, torch.full((200, 1), float(v), dtype=dtype), mu, log_scale, levels)
                          for v in grid], 1)
        torch.testing.assert_close(torch.logsumexp(lp.double(), 1).exp(), torch.ones(200, dtype=torch.float64),
                                   atol=atol, rtol=0)
    mu, grid = mu.float().requires_grad_(True), grid.float()
    L.log_likelihood(kind, grid[None].expand(200, levels), mu.expand(200, levels), log_scale.float().expand(200, levels),
                     levels).sum().backward()
    assert torch.isfinite(mu.grad).all()


def _ppca(dim=3, latent=2, sigma=0.5):
    """A linear Gaussian VAE: p(z) = N(0, I), p(x | z) = N(W z + b, sigma^2 I), q(z | x) the
    diagonal of the exact posterior. Exact log p(x) = log N(x | b, W W^T + sigma^2 I)."""
    torch.manual_seed(0)
    W, b = torch.randn(dim, latent), torch.randn(dim)
    net = CVAENet((dim,), latent, 0, width=0, depth=0, embed_dim=1, prior="standard", arch="mlp",
                  decoder="gaussian", levels=0)
    M = W.T @ W + sigma**2 * torch.eye(latent)
    A = torch.linalg.solve(M, W.T)  # posterior mean = A (x - b)
    post_var = sigma**2 * torch.linalg.inv(M).diagonal()
    with torch.no_grad():
        net.encoder[0].weight.zero_()
        net.encoder[0].weight[:latent] = A
        net.encoder[0].bias.zero_()
        net.encoder[0].bias[:latent] = -A @ b
        net.encoder[0].bias[latent:] = 0.5 * post_var.log() + 0.5  # a too wide q
        net.decoder[0].weight.zero_()
        net.decoder[0].weight[:dim] = W
        net.decoder[0].bias.zero_()
        net.decoder[0].bias[:dim] = b
        net.decoder[0].bias[dim:] = math.log(sigma)
    exact = torch.distributions.MultivariateNormal(b, W @ W.T + sigma**2 * torch.eye(dim))
    model = CVAE(CVAEConfig())
    model.net, model.resolved, model.shape, model.decoder = net.eval(), CVAEConfig(), (dim,), "gaussian"
    return model, exact


def test_iwae_converges_to_the_exact_likelihood_of_probabilistic_pca():
    model, exact = _ppca()
    x = exact.sample((64,))
    truth = exact.log_prob(x).double()
    torch.manual_seed(1)
    l1 = model.log_prob(x, k=1)
    lk = model.log_prob(x, k=20000)
    assert float((truth - lk).abs().max()) < 0.02
    gap1, gapk = float((truth - l1).mean()), float((truth - lk).mean())
    assert gap1 > 0.2 and abs(gapk) < 0.005  # the ELBO is well below, the IWAE bound on it


def test_iwae_bound_is_above_the_elbo_and_grows_with_k():
    model, exact = _ppca(dim=6, latent=3, sigma=0.3)
    x = exact.sample((200,))
    torch.manual_seed(2)
    means = [float(model.log_prob(x, k=k).mean()) for k in (1, 5, 50, 500)]
    assert all(a < b for a, b in zip(means, means[1:])), means
    lme = model.log_weights(x, None, 100)
    assert float(torch.logsumexp(lme, 1).sub(math.log(100)).mean()) >= float(lme.mean())  # Jensen


def test_training_forward_with_k_draws_gives_the_iwae_bound():
    """``net(x, y, samples=k)``, what ``train_k > 1`` trains, is the IWAE bound: it matches the
    exact log p(x) of probabilistic PCA for large k, and its mean log weight is the ELBO."""
    model, exact = _ppca()
    x = exact.sample((64,))
    torch.manual_seed(4)
    with torch.no_grad():
        rec, log_ratio = model.net(x, None, samples=20000)
    bound = torch.logsumexp((rec + log_ratio).double(), 1) - math.log(20000)
    assert float((exact.log_prob(x).double() - bound).abs().max()) < 0.02
    elbo = float(model.log_weights(x, None, 20000).mean())  # the evaluation's log weights, other draws
    assert float((rec + log_ratio).mean()) == pytest.approx(elbo, abs=0.01)


def _fit(dataset, steps=60, **kw):
    model = CVAE(CVAEConfig(steps=steps, eval_every=20, iwae_k=20, **kw))
    model.fit(dataset, Run(None, device="cpu", seed=0, progress=False))
    return model


def test_conditional_model_on_digits():
    digits = data.digits()
    model = _fit(digits, batch_size=50)
    assert model.num_classes == 10 and model.decoder == "discretized_logistic" and model.levels == 17
    torch.manual_seed(0)
    a = model.sample(4, condition=torch.full((4,), 2))
    torch.manual_seed(0)
    b = model.sample(4, condition=torch.full((4,), 5))
    assert a.shape == (4, 1, 8, 8) and not torch.equal(a, b)
    assert set(torch.unique(a).tolist()) <= set((torch.arange(17) / 8 - 1).tolist())  # on the levels
    # -log p(x) <= -log p(x | c) + log C for a uniform p(c)
    model.class_freq = torch.full((10,), 0.1, dtype=torch.float64)
    x, y = digits.x[1350:1400], digits.y[1350:1400]
    torch.manual_seed(3)
    per_class, _ = model._per_class(x, 50)  # IWAE log p(x | c) for every c, one set of draws
    marginal, own = model._marginal(per_class), per_class.gather(1, y[:, None])[:, 0]
    assert bool((-marginal <= -own + math.log(10) + 1e-9).all()) and bool((-marginal < -own + math.log(10)).any())
    torch.manual_seed(3)
    torch.testing.assert_close(model.log_prob(x, k=50), marginal)
    figures = model.figures(digits)
    assert {"reconstructions.png", "interpolation.png"} <= set(figures)


def test_unconditional_modes_and_early_stopping_keeps_the_best_weights():
    ring = data.ring8(n=2000)
    # the ELBO (train_k=1) of a 2 x 128 net at a high learning rate stalls within 400 steps; the
    # points default (the IWAE bound) still improves there: its restore is checked below
    model = _fit(ring, steps=400, patience=2, lr=5e-3, kl_warmup=50, train_k=1, depth=2, batch_size=256)
    assert 50 <= model.best_step < 400  # stopped early: two evaluations without improvement
    assert model.num_classes == 0 and model.decoder == "gaussian"
    with pytest.raises(ValueError, match="unconditional"):
        model.sample(2, condition=torch.tensor([1]))
    val = ring.split(0.1, 0.1, seed=0)["validation"]
    again = model._validation_elbo(val.x, None, Run(None, device="cpu", seed=0, progress=False))
    assert again == pytest.approx(model.best_val_elbo, abs=1e-9)  # the restored weights are the best's
    iwae = _fit(ring, steps=200, kl_warmup=50)  # the default bound for points: IWAE, train_k=32
    assert iwae.resolved.train_k == 32
    again = iwae._validation_elbo(val.x, None, Run(None, device="cpu", seed=0, progress=False))
    assert again == pytest.approx(iwae.best_val_elbo, abs=1e-9)
    off = _fit(data.digits(n=300), steps=5, conditional="false")
    assert off.num_classes == 0


def test_state_round_trip(tmp_path):
    model = _fit(data.digits(n=300), steps=5)
    io.save_state(tmp_path / "m.safetensors", model.state_dict())
    again = CVAE()
    again.load_state_dict(io.load_state(tmp_path / "m.safetensors"))
    torch.manual_seed(0)
    a = model.sample(6, condition=torch.arange(6))
    torch.manual_seed(0)
    assert torch.equal(a, again.sample(6, condition=torch.arange(6)))
    with pytest.raises(ValueError, match="not a cvae model state"):
        CVAE().load_state_dict({"config": {}})


def test_config_errors():
    with pytest.raises(ValueError, match="temperature"):
        CVAE(CVAEConfig(temperature=0))
    with pytest.raises(ValueError, match="free_bits"):
        CVAE(CVAEConfig(train_k=8, free_bits=0.1))
    with pytest.raises(ValueError, match="train_k"):
        CVAE(CVAEConfig(train_k=0))
    with pytest.raises(ValueError, match="continuous"):
        _fit(data.ring8(n=100), steps=1, decoder="discretized_logistic")


@pytest.mark.slow
def test_cli_resume_after_sigkill_is_bit_identical(tmp_path):
    common = ["cvae", "--device", "cpu", "--set", "steps=150", "--set", "checkpoint_every=25", "--set", "iwae_k=10",
              "--set", "patience=1000", "--no-progress"]
    ref, out = reference_and_resumed_runs(common, tmp_path, ENV)
    a, b = io.load_state(ref / "model.safetensors"), io.load_state(out / "model.safetensors")
    assert all(torch.equal(a["net"][k], b["net"][k]) for k in a["net"])
    sa, sb = (json.loads((d / "summary.json").read_text()) for d in (ref, out))
    assert sa["best_step"] == sb["best_step"]


@pytest.mark.slow
def test_cvae_keeps_the_model_contract():
    start = time.perf_counter()
    check_model(CVAE, config={"steps": 30, "iwae_k": 50, "kl_warmup": 10, "eval_every": 10})
    print(f"check_model(cvae) on ring8: {time.perf_counter() - start:.1f} s")


def test_cvae_keeps_the_model_contract_on_images():
    """Digits are on 17 levels: log_prob is a discrete bound (<= 0), and the model conditional."""
    model = CVAE()
    model._setup(data.digits(n=200))
    assert model.log_prob_kind == "discrete_bound" and CVAE().log_prob_kind == "bound"
    check_model(CVAE, dataset=data.digits(n=200), config={"steps": 30, "iwae_k": 20, "kl_warmup": 2, "eval_every": 2,
                                                          "width": 32}, skip=("evaluate",))
