"""DP-SGD for the neural models (``aigc_engine.privacy.DPSGD``, on opacus): the noise from the
budget and the spent epsilon against opacus' own accountant and dp-accounting's, per-sample
gradients equal to each row's own and clipped, noise of the stated scale, an empty Poisson sample,
private fits of gan, cvae and diffusion on a small table, their refusals, and the non-private path
untouched by ``run.privacy = None``."""
import math

import numpy as np
import pandas as pd
import pytest
import torch

pytest.importorskip("opacus")
pytest.importorskip("dp_accounting")

from aigc_engine import InputError, Run  # noqa: E402
from aigc_engine.data.tablefile import read_table  # noqa: E402
from aigc_engine.privacy import DPSGD, Accountant, PrivacyBudget, noise_multipliers  # noqa: E402
from aigc_engine.privacy.dp_sgd import gaussian_sigma  # noqa: E402
from aigc_cvae import CVAE, CVAEConfig  # noqa: E402
from aigc_diffusion import Diffusion, DiffusionConfig  # noqa: E402
from aigc_gan import GAN, GANConfig  # noqa: E402


def mlp() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.LayerNorm(8), torch.nn.Tanh(), torch.nn.Linear(8, 1))


def private(dp: DPSGD, lr: float = 0.1):
    net = mlp()
    return dp.make_private(net, torch.optim.SGD(net.parameters(), lr=lr))


def train(dp: DPSGD, x: torch.Tensor, steps: int):
    module, opt = private(dp)
    for _ in range(steps):
        rows = dp.batch()
        if not len(rows):
            dp.noise_step(module, opt)
            continue
        loss = module(x[rows]).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return module, opt


# -- the accounting ------------------------------------------------------------------------------
@pytest.mark.parametrize("epsilon,steps,cross_check", [
    (1.0, 30, True), pytest.param(10.0, 400, False, marks=pytest.mark.slow)])
def test_spent_epsilon_is_opacus_and_dp_accountings_and_within_the_budget(epsilon, steps, cross_check):
    from opacus.accountants import RDPAccountant
    from opacus.accountants.utils import get_noise_multiplier

    rows, batch, delta = 200, 20, 1e-4
    dp = DPSGD(PrivacyBudget(epsilon, delta), rows, batch, steps)
    q = batch / rows
    if cross_check:  # (seconds at epsilon=10: its bisection passes through multipliers near 1)
        assert dp.noise_multiplier == get_noise_multiplier(target_epsilon=epsilon, target_delta=delta,
                                                           sample_rate=q, steps=steps, epsilon_tolerance=0.01)
    train(dp, torch.randn(rows, 3), steps)
    spent = dp.spent()
    assert spent["steps"] == steps and spent["sample_rate"] == q and spent["delta"] == delta
    ref = RDPAccountant()
    ref.history = [(dp.noise_multiplier, q, steps)]
    assert spent["epsilon"] == pytest.approx(ref.get_epsilon(delta), rel=1e-12)
    if cross_check:  # an independent implementation: dp-accounting's RDP accountant on opacus' orders
        # (not at epsilon=10: near a multiplier of 1 its series for the low orders take seconds not
        # to converge, and it drops them)
        assert spent["epsilon"] == pytest.approx(Accountant("rdp").subsampled_gaussian(dp.noise_multiplier, q, steps)
                                                 .epsilon(delta), rel=1e-3)
    assert epsilon - 0.011 <= spent["epsilon"] <= epsilon  # the budget, spent to opacus' tolerance


def test_label_counts_are_composed_into_the_same_budget():
    from opacus.accountants import RDPAccountant

    rows, batch, steps, delta = 300, 30, 20, 1e-4
    dp = DPSGD(PrivacyBudget(1.0, delta), rows, batch, steps, counts=True)
    y = torch.arange(rows) % 3
    rates = dp.class_frequencies(y, 3)
    assert rates.sum().item() == pytest.approx(1.0) and (rates >= 0).all()
    train(dp, torch.randn(rows, 3), steps)
    ref = RDPAccountant()
    ref.history = [(dp.count_multiplier, 1.0, 1), (dp.noise_multiplier, batch / rows, steps)]
    assert dp.spent()["epsilon"] == pytest.approx(ref.get_epsilon(delta), rel=1e-12)
    assert dp.spent()["epsilon"] <= 1.0 and dp.spent()["steps"] == steps
    # the counts were calibrated alone to a tenth of epsilon; DP-SGD's noise is only a little above
    # its multiplier without them
    alone, _ = noise_multipliers(1.0, delta, batch / rows, steps)
    assert alone <= dp.noise_multiplier <= alone * 1.2


@pytest.mark.parametrize("epsilon,delta", [(0.1, 1e-5), (1.0, 1e-5), (10.0, 1e-3)])
def test_the_counts_sigma_is_the_analytic_gaussian_mechanisms(epsilon, delta):
    import dp_accounting

    assert gaussian_sigma(epsilon, delta) == pytest.approx(dp_accounting.get_sigma_gaussian(epsilon, delta), rel=1e-6)


# -- per-sample clipping and noise ---------------------------------------------------------------
def test_per_sample_gradients_are_each_rows_own_and_clipped():
    """opacus' per-sample gradients equal each row's own gradient (autograd, one row at a time),
    the sum the optimizer noises is of those clipped to max_grad_norm, and the noise added has std
    noise_multiplier * max_grad_norm."""
    x = torch.randn(16, 3, generator=torch.Generator().manual_seed(0)) * 30
    dp = DPSGD(PrivacyBudget(1.0, 1e-4), 200, 16, 10, max_grad_norm=0.5)
    module, opt = private(dp, lr=0.0)
    plain = mlp()
    module(x).pow(2).mean().backward()
    params = list(module.parameters())
    per_row = []
    for i in range(len(x)):
        plain.zero_grad()
        plain(x[i:i + 1]).pow(2).mean().backward()
        per_row.append(torch.cat([p.grad.flatten() for p in plain.parameters()]))
    per_row = torch.stack(per_row)
    sampled = torch.cat([p.grad_sample.flatten(1) for p in params], 1)
    torch.testing.assert_close(sampled, per_row, rtol=1e-4, atol=1e-5)
    opt.clip_and_accumulate()
    norms = per_row.norm(dim=1)
    assert (norms > 1).sum() >= 4 and (norms < 0.5).any()  # rows clipped and rows kept as they are
    clipped = per_row * (0.5 / (norms + 1e-6)).clamp(max=1)[:, None]
    assert (clipped.norm(dim=1) <= 0.5 + 1e-6).all()
    summed = torch.cat([p.summed_grad.flatten() for p in params])
    torch.testing.assert_close(summed, clipped.sum(0), rtol=1e-4, atol=1e-5)
    opt.add_noise()
    noise = torch.cat([(p.grad - p.summed_grad).flatten() for p in params])
    assert noise.std().item() == pytest.approx(dp.noise_multiplier * 0.5, rel=0.35)  # 49 draws


def test_an_empty_sample_is_a_step_of_noise_alone():
    dp = DPSGD(PrivacyBudget(1.0, 1e-4), 200, 16, 10)
    module, opt = private(dp, lr=1.0)
    before = [p.detach().clone() for p in module.parameters()]
    dp.noise_step(module, opt)
    moved = torch.cat([(p.detach() - b).flatten() for p, b in zip(module.parameters(), before)])
    assert moved.abs().min() > 0  # every weight got noise
    assert dp.spent()["steps"] == 1


def test_noise_is_not_replayable_from_the_seed():
    torch.manual_seed(0)
    a = DPSGD(PrivacyBudget(1.0, 1e-4), 200, 16, 10).batch()
    torch.manual_seed(0)
    b = DPSGD(PrivacyBudget(1.0, 1e-4), 200, 16, 10).batch()
    assert not torch.equal(a, b)


def test_what_dp_sgd_refuses():
    with pytest.raises(InputError, match="batch_size"):
        DPSGD(PrivacyBudget(1.0, 1e-4), 10, 20, 5)
    with pytest.raises(InputError, match="not below 1/rows"):
        DPSGD(PrivacyBudget(1.0, 0.5), 10, 5, 5)
    dp = DPSGD(PrivacyBudget(1.0, 1e-4), 100, 10, 5)
    with pytest.raises(InputError, match="cannot train"):
        dp.make_private(torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2)),
                        torch.optim.SGD(torch.nn.Linear(2, 2).parameters(), lr=0.1))


# -- the models ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def table(tmp_path_factory):
    rng = np.random.default_rng(0)
    n = 120
    kind = rng.choice(["a", "b"], n)
    frame = pd.DataFrame({"x": rng.normal(size=n) + (kind == "a") * 2, "y": rng.normal(size=n),
                          "colour": rng.choice(["red", "green", "blue"], n), "kind": kind})
    path = tmp_path_factory.mktemp("dp") / "tiny.csv"
    frame.to_csv(path, index=False)
    return read_table(path, label_column="kind")


MODELS = {
    "gan": lambda **kw: GAN(GANConfig(steps=30, batch_size=24, width=32, **kw)),
    "cvae": lambda **kw: CVAE(CVAEConfig(steps=30, batch_size=24, width=32, kl_warmup=10, **kw)),
    "diffusion": lambda **kw: Diffusion(DiffusionConfig(steps=30, batch_size=24, width=32, depth=2, snapshots=0,
                                                        **kw)),
}


def private_run(epsilon: float = 1.0, delta: float | None = 1e-5) -> Run:
    run = Run(None, device="cpu", seed=0, progress=False)
    run.privacy = PrivacyBudget(epsilon, delta)
    return run


@pytest.mark.parametrize("kind", sorted(MODELS))
def test_private_fit_of_each_model_completes_within_its_budget(kind, table):
    model = MODELS[kind]()
    assert type(model).supports_privacy
    model.fit(table, private_run())
    spent = model.privacy
    assert 0.9 <= spent["epsilon"] <= 1.0 and spent["delta"] == 1e-5 and spent["steps"] == 30
    assert spent["accountant"].startswith("opacus.rdp") and spent["count_noise_multiplier"] > 0
    x = model.sample(50)
    assert torch.isfinite(x).all()
    rates = model.class_freq
    assert rates.sum().item() == pytest.approx(1.0)
    again = type(model)()
    again.load_state_dict(model.state_dict())
    assert again.privacy == spent


@pytest.mark.parametrize("kind,values,match", [
    ("gan", {"r1_gamma": 0.5}, "R1"), ("gan", {"loss": "wgan"}, "wgan"), ("gan", {"pack": 2}, "pack"),
    ("cvae", {"train_k": 4}, "ELBO"), ("cvae", {"free_bits": 0.1}, "free_bits"),
    ("diffusion", {"schedule": "learned", "weighting": "elbo"}, "schedule"),
])
def test_what_a_private_fit_refuses(kind, values, match, table):
    with pytest.raises(InputError, match=match):  # before a run directory (the engine's hook)
        MODELS[kind](**values).validate_privacy(table, PrivacyBudget(1.0, 1e-5))
    with pytest.raises(InputError, match=match):
        MODELS[kind](**values).fit(table, private_run())


@pytest.mark.parametrize("kind", sorted(MODELS))
def test_no_budget_is_the_non_private_fit(kind, table):
    """``run.privacy`` None (or absent) trains as before: the same samples from the same seed."""
    samples = []
    for privacy in ("absent", None):
        run = Run(None, device="cpu", seed=0, progress=False)
        if privacy != "absent":
            run.privacy = privacy
        torch.manual_seed(0)
        model = MODELS[kind]()
        model.fit(table, run)
        torch.manual_seed(1)
        samples.append(model.sample(20))
        assert model.privacy == {}
    torch.testing.assert_close(samples[0], samples[1], rtol=0, atol=0)


@pytest.mark.slow
def test_the_prv_accountant_reports_opacus_own_and_keeps_the_budget():
    from opacus.accountants import PRVAccountant

    rows, batch, steps, delta = 300, 30, 50, 1e-5
    dp = DPSGD(PrivacyBudget(1.0, delta), rows, batch, steps, accountant="prv", counts=True)
    dp.class_frequencies(torch.arange(rows) % 3, 3)
    train(dp, torch.randn(rows, 3), steps)
    ref = PRVAccountant()
    ref.history = [(dp.count_multiplier, 1.0, 1), (dp.noise_multiplier, batch / rows, steps)]
    spent = dp.spent()
    assert spent["accountant"].startswith("opacus.prv") and spent["steps"] == steps
    assert spent["epsilon"] == pytest.approx(ref.get_epsilon(delta), rel=1e-9)
    assert 0.98 <= spent["epsilon"] <= 1.0
