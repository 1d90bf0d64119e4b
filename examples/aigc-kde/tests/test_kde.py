"""The plugin's own tests: the engine's conformance checks, then what is particular to a KDE."""
import torch

from aigc_engine import Run
from aigc_engine.data import blobs
from aigc_engine.testing import check_model

from aigc_kde import KDE


def test_kde_keeps_the_model_contract():
    check_model(KDE)  # every rule: config, validate, fit, sample, state round trip, log_prob...


def test_log_prob_is_the_mean_of_the_kernels():
    data = blobs(n=50, dim=1, seed=0)
    model = KDE()
    model.fit(data, Run(None, device="cpu", progress=False))
    x = torch.tensor([[0.3]])
    centres, std = model.points.flatten(), float(model.cov.sqrt())
    density = torch.distributions.Normal(centres, std).log_prob(x.double()).exp().mean()
    assert torch.allclose(model.log_prob(x), density.log().reshape(1))
