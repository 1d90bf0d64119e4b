"""What a fit spends, accounted by dp-accounting: its RDP accountant (Mironov 2017; the one
opacus uses) or its PLD accountant (privacy loss distributions, tighter for Gaussians). Both under
add-or-remove-one-row neighbouring."""
from __future__ import annotations

import math
from typing import Any

from ..errors import InputError

ACCOUNTANTS: tuple[str, ...] = ("pld", "rdp")
# opacus' default RDP orders, so that an RDP epsilon here and opacus' own agree to rounding.
OPACUS_ORDERS: tuple[float, ...] = tuple([1 + x / 10.0 for x in range(1, 100)] + list(range(12, 64)))


def require_accounting() -> None:
    """An InputError, before any run directory exists, when dp-accounting is not installed."""
    try:
        import dp_accounting  # noqa: F401
    except ImportError:
        raise InputError("a private fit needs dp-accounting: pip install 'aigc-engine[privacy]'") from None


def _fresh(kind: str):
    from dp_accounting import pld, rdp

    if kind == "rdp":
        return rdp.RdpAccountant(orders=OPACUS_ORDERS)
    if kind == "pld":
        return pld.PLDAccountant()
    raise InputError(f"privacy accountant must be one of {ACCOUNTANTS}, got {kind!r}")


def _event(noise_multiplier: float, count: int, sample_rate: float | None):
    import dp_accounting as dpa

    event = dpa.GaussianDpEvent(noise_multiplier)
    if sample_rate is not None and sample_rate < 1:
        event = dpa.PoissonSampledDpEvent(sample_rate, event)
    return dpa.SelfComposedDpEvent(event, count)


class Accountant:
    """The composition of the Gaussian mechanisms a fit runs: :meth:`gaussian` (``count`` runs
    of a Gaussian mechanism whose noise std is ``noise_multiplier`` times its L2 sensitivity),
    :meth:`subsampled_gaussian` (DP-SGD: ``steps`` of it on Poisson samples of the rows),
    :meth:`add_delta` (a failure probability spent outside the composition: a thresholded
    release of keys); :meth:`epsilon` the epsilon spent at a delta."""

    def __init__(self, kind: str = "pld"):
        self.kind = kind
        self._accountant = _fresh(kind)
        self.events: list[dict[str, Any]] = []
        self.extra_delta = 0.0

    @property
    def name(self) -> str:
        """How the spend was accounted, for summary.json (``privacy_accountant``)."""
        return f"dp_accounting.{self.kind} (add or remove one row)"

    def gaussian(self, noise_multiplier: float, count: int = 1) -> "Accountant":
        return self._compose(noise_multiplier, count, None)

    def subsampled_gaussian(self, noise_multiplier: float, sample_rate: float, steps: int) -> "Accountant":
        if not 0 < sample_rate <= 1:
            raise InputError(f"sample_rate must be in (0, 1], got {sample_rate}")
        return self._compose(noise_multiplier, steps, sample_rate)

    def add_delta(self, delta: float) -> "Accountant":
        self.extra_delta += delta
        self.events.append({"mechanism": "threshold", "delta": delta})
        return self

    def _compose(self, noise_multiplier: float, count: int, sample_rate: float | None) -> "Accountant":
        if not noise_multiplier > 0 or count < 1:
            raise InputError(f"a Gaussian mechanism needs noise_multiplier > 0 and count >= 1, got "
                             f"{noise_multiplier} and {count}")
        self._accountant.compose(_event(noise_multiplier, count, sample_rate))
        self.events.append({"mechanism": "gaussian", "noise_multiplier": noise_multiplier, "count": count,
                            **({"sample_rate": sample_rate} if sample_rate is not None else {})})
        return self

    def epsilon(self, delta: float) -> float:
        """The epsilon spent at ``delta`` (of which :meth:`add_delta`'s part is spent already);
        0 when nothing was composed, inf when the delta left is not positive."""
        left = delta - self.extra_delta
        if not self.events:
            return 0.0
        if left <= 0:
            return math.inf
        return float(self._accountant.get_epsilon(left))


def calibrate_noise(epsilon: float, delta: float, count: int, sample_rate: float | None = None,
                    kind: str = "pld") -> float | None:
    """The smallest noise multiplier (to about 1e-3 relative) with which ``count`` composed
    Gaussian mechanisms (Poisson-subsampled at ``sample_rate`` when given) spend at most
    ``(epsilon, delta)``; None for ``epsilon = inf`` (no noise)."""
    import dp_accounting as dpa

    if math.isinf(epsilon):
        return None
    if not epsilon > 0 or not 0 < delta < 1 or count < 1:
        raise InputError(f"calibration needs epsilon > 0, delta in (0, 1) and count >= 1, got "
                         f"{epsilon}, {delta} and {count}")
    if sample_rate is None or sample_rate >= 1:
        return _calibrate_full_batch(epsilon, delta, count, kind)
    # A lower end whose epsilon is above the target: 0.3 (DP-SGD below it spends too much to be of
    # use, and smaller ones make huge PLD grids). ``tol`` is absolute on the multiplier.
    bracket = dpa.LowerEndpointAndGuess(0.3, 1.0)
    return float(dpa.calibrate_dp_mechanism(lambda: _fresh(kind), lambda z: _event(z, count, sample_rate),
                                            epsilon, delta, bracket, tol=3e-4))


def _calibrate_full_batch(epsilon: float, delta: float, count: int, kind: str) -> float:
    """``count`` Gaussian mechanisms of multiplier z are one of multiplier z / sqrt(count), whose
    exact epsilon is the analytic Gaussian mechanism's (Balle and Wang 2018): its multiplier for
    (epsilon, delta) times sqrt(count) spends exactly the budget. The accountant that will report
    the spend discretises (PLD) or bounds (RDP) it from above: the multiplier then grows (0.1%
    steps for PLD, usually one; 25% steps for RDP, whose bound is looser) until that accountant's
    epsilon is within the budget, and a bisection to 0.1% brings it back down."""
    import dp_accounting as dpa

    z = dpa.get_sigma_gaussian(epsilon, delta) * math.sqrt(count)

    def spent(m: float) -> float:
        return _fresh(kind).compose(_event(m, count, None)).get_epsilon(delta)

    if spent(z) <= epsilon:
        return z
    lo, hi = z, z * 1.001
    while spent(hi) > epsilon:
        lo, hi = hi, hi * 1.25 if kind == "rdp" else hi * 1.001
    while hi - lo > 1e-3 * z:
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if spent(mid) > epsilon else (lo, mid)
    return hi
