"""Differential privacy: a run's budget, the accountant that composes what a fit spends, and the
DP primitives the column kinds and the private fits call.

``PrivacyBudget`` (epsilon, delta; delta defaults below 1/rows) and :func:`default_delta`
(``budget``; with ``PrivacyRequest``, what a run asks for, and ``PrivacyPlan`` (``plan``),
how it is split between the encoding and the fit); :class:`Accountant` (dp-accounting's RDP or PLD accountant of composed Gaussian
mechanisms, Poisson-subsampled ones for DP-SGD) and :func:`calibrate_noise` (``accountant``);
the mechanisms ``gaussian_sum``, ``histogram_quantiles``, ``magnitude_range`` and ``thresholded_histogram``
(``mechanisms``). dp-accounting is imported only when an accountant is used, so that importing
this package stays light.
"""
from __future__ import annotations

from .accountant import ACCOUNTANTS, Accountant, calibrate_noise, require_accounting
from .budget import PrivacyBudget, default_delta
from .budget import PRIVACY_PREFIX, PrivacyRequest, privacy_request, split_privacy_keys
from .mechanisms import (clip_rows, gaussian_sum, histogram_quantiles, magnitude_range, release_threshold,
                         thresholded_histogram)
from .plan import PrivacyPlan

_DP_SGD = ("DPSGD", "SGD_ACCOUNTANTS", "budget_of", "noise_multipliers", "reported", "require_opacus")

__all__ = ["ACCOUNTANTS", "Accountant", "PRIVACY_PREFIX", "PrivacyBudget", "PrivacyPlan", "PrivacyRequest",
           "calibrate_noise", "clip_rows", "default_delta", "gaussian_sum", "histogram_quantiles", "magnitude_range",
           "privacy_request", "release_threshold", "require_accounting", "split_privacy_keys",
           "thresholded_histogram", *_DP_SGD]


def __getattr__(name: str):
    """The DP-SGD names (:mod:`.dp_sgd`, which imports torch), imported on first use: the CLI's
    ``--help`` reads this package's budget keys without torch."""
    if name not in _DP_SGD:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from . import dp_sgd

    return getattr(dp_sgd, name)
