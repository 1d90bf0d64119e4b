"""The ``gmm`` model's private fit: its budget (``run.privacy``, the fit's share of the run's
``privacy.epsilon``; or, deprecated, its config's ``privacy_epsilon``) spent on DP-EM (``_dp_em``)
and, on a labelled table, on the class rates; what it spent is reported for summary.json.

The noise is drawn from a generator seeded by the operating system, never by the run's seed:
that seed is written to config.json, and noise anyone can replay protects nothing. A private fit
is therefore not reproducible, by design."""
from __future__ import annotations

import math
import secrets
from typing import Any

import torch

from aigc_engine import InputError
from aigc_engine.privacy import Accountant, PrivacyBudget, calibrate_noise, gaussian_sum, require_accounting

from ._dp_em import COVARIANCE_TYPES, dp_em

ROWS_PER_NOISE = 10  # plan(): a component's rows per noise std of its second moments


def is_private(config) -> bool:
    """Whether ``config`` asks for a private fit by the deprecated ``privacy_epsilon`` (epsilon =
    inf is the non-private fit)."""
    eps = getattr(config, "privacy_epsilon", None)
    return eps is not None and math.isfinite(eps)


def config_budget(config, rows: int) -> PrivacyBudget:
    """The budget of the deprecated ``privacy_epsilon`` / ``privacy_delta`` config fields."""
    return PrivacyBudget(config.privacy_epsilon, config.privacy_delta).for_rows(rows)


def check(config, dataset, model: str, budget: PrivacyBudget | None = None) -> None:
    """Refuse (InputError) what the private fit does not cover yet; ``budget``: the engine's
    (None: the config's)."""
    require_accounting()
    if budget is None:
        config_budget(config, len(dataset))
    elif is_private(config):
        raise InputError("set privacy.epsilon (the run's budget) or the deprecated privacy_epsilon, not both")
    refusals = [
        (model != "gmm", f"{model} has no private fit yet (gmm has: DP-EM)"),
        (config.covariance_type not in COVARIANCE_TYPES, f"a private gmm fits covariance_type in {COVARIANCE_TYPES}"),
        (config.fit != "batch", "a private gmm fits in batch (fit=batch)"),
        (config.missing != "indicator", "a private gmm models missing values by their indicators (missing=indicator)"),
        (dataset.weights is not None, "a private gmm takes no row weights (they change each row's sensitivity)"),
    ]
    for refused, why in refusals:
        if refused:
            raise InputError(why)


def fit(config, dataset, num_classes: int, seed: int, model: str = "gmm",
        budget: PrivacyBudget | None = None) -> tuple[list, Any, dict]:
    """DP-EM of one mixture, or one per class (the classes hold disjoint rows: their fits compose
    in parallel, at the cost of one fit) and the class rates from noisy counts (one more Gaussian
    mechanism). Returns the mixtures' parameters, the class rates (None without classes) and
    what was spent: ``privacy_epsilon``, ``privacy_delta``, ``privacy_accountant`` and the
    mechanism's settings."""
    check(config, dataset, model, budget)
    budget = budget if budget is not None else config_budget(config, len(dataset))
    x = dataset.x.reshape(len(dataset), -1).double()
    bound = config.privacy_clip or math.sqrt(x.shape[1])
    components, iterations, z = plan(config, budget, len(x), num_classes, bound)
    mechanisms = iterations + (1 if num_classes else 0)
    accountant = Accountant(config.privacy_accountant).gaussian(z, mechanisms)
    noise = torch.Generator().manual_seed(secrets.randbits(63))
    floor = max(config.reg_covar or 0.0, 1e-2 * bound ** 2 / x.shape[1])
    groups = [dataset.y == c for c in range(num_classes)] if num_classes else [torch.ones(len(x), dtype=torch.bool)]
    fits = [dp_em(x[rows], components, iterations, bound, z, config.covariance_type, floor,
                  torch.Generator().manual_seed(seed + c), noise) for c, rows in enumerate(groups)]
    mixtures = [_mixture(f, config.covariance_type, iterations) for f in fits]
    rates = None
    if num_classes:
        counts = gaussian_sum(torch.nn.functional.one_hot(dataset.y, num_classes).double(), 1.0, z, noise)
        counts = counts.clamp_min(0)
        rates = counts / counts.sum() if float(counts.sum()) > 0 else torch.full((num_classes,), 1 / num_classes)
    spent = {"privacy_epsilon": accountant.epsilon(budget.delta), "privacy_delta": budget.delta,
             "privacy_accountant": accountant.name, "privacy_noise_multiplier": z,
             "privacy_iterations": iterations, "privacy_components": components, "privacy_clip": bound}
    return mixtures, rates, spent


def plan(config, budget: PrivacyBudget, rows: int, num_classes: int, bound: float) -> tuple[int, int, float]:
    """``(components, iterations, noise multiplier)`` of a private fit, from public figures only
    (the row count, the number of classes, the width's clip ``bound``, the budget): the most
    components, up to ``n_components``, that leave each at least ``ROWS_PER_NOISE`` noise stds of
    rows on its second moments (``z sqrt(3) B^2`` at ``privacy_iterations`` iterations), the rows
    split evenly over the classes; one component when none is, fitted in one iteration (its
    statistics are the data's, responsibilities all 1), which cuts the noise by about the square
    root of the iterations. The class rates' noisy counts are one more Gaussian mechanism of the
    same multiplier: composed with the iterations as the one event the multiplier is calibrated for
    (two events composed apart discretise differently in the PLD accountant, a hair above the target)."""
    extra = 1 if num_classes else 0
    iterations = config.privacy_iterations
    z = calibrate_noise(budget.epsilon, budget.delta, iterations + extra, kind=config.privacy_accountant)
    per_component = ROWS_PER_NOISE * z * math.sqrt(3) * bound ** 2
    components = min(config.n_components, int(rows / max(1, num_classes) // per_component))
    if components > 1:
        return components, iterations, z
    return 1, 1, calibrate_noise(budget.epsilon, budget.delta, 1 + extra, kind=config.privacy_accountant)


def _mixture(fit: dict[str, torch.Tensor], covariance_type: str, iterations: int):
    from ._gaussian import precision_cholesky  # with the estimator: scikit-learn only once a model is built
    from ._gaussian_mixture import GaussianMixture

    state = {**fit, "precisions_cholesky": precision_cholesky(fit["covariances"], covariance_type),
             "covariance_type": covariance_type, "n_iter": iterations, "converged": False}
    return GaussianMixture.from_state(state, device="cpu")
