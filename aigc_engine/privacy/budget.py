"""A run's privacy budget: the (epsilon, delta) it may spend on everything that reads the
training rows."""
from __future__ import annotations

import dataclasses
import math

from ..errors import InputError


def default_delta(rows: int) -> float:
    """``rows ** -1.1``: below ``1 / rows`` for every table of 2 rows or more.

    delta must be well below 1/rows, or a mechanism that publishes one random row outright would
    meet the guarantee. ``1 / (rows * ln rows)`` is the other common choice, but it is above
    ``1 / rows`` for rows < 3 (ln 2 < 1) and only a log factor below it for large tables, while
    ``rows ** -1.1`` stays a polynomial factor below at every size. The row count is treated as
    public, as the default deltas of the DP libraries do."""
    if rows < 2:
        raise InputError(f"a privacy budget needs at least 2 rows to set delta, got {rows}")
    return float(rows) ** -1.1


@dataclasses.dataclass(frozen=True)
class PrivacyBudget:
    """``epsilon`` > 0 (``math.inf``: no privacy, the fit is the non-private one) and ``delta`` in
    [0, 1) (None: :func:`default_delta` of the rows, resolved by :meth:`for_rows`)."""
    epsilon: float
    delta: float | None = None

    def __post_init__(self):
        if not self.epsilon > 0:
            raise InputError(f"privacy epsilon must be > 0, got {self.epsilon}")
        if self.delta is not None and not 0 <= self.delta < 1:
            raise InputError(f"privacy delta must be in [0, 1), got {self.delta}")

    @property
    def private(self) -> bool:
        return math.isfinite(self.epsilon)

    def for_rows(self, rows: int) -> "PrivacyBudget":
        """This budget with its delta resolved for a table of ``rows`` rows (a delta at or above
        ``1 / rows`` is an InputError: it would allow publishing a row)."""
        delta = default_delta(rows) if self.delta is None else self.delta
        if self.private and delta >= 1 / rows:
            raise InputError(f"privacy delta={delta:g} is not below 1/rows = {1 / rows:g}")
        return PrivacyBudget(self.epsilon, delta)


PRIVACY_PREFIX = "privacy."
#: ``--set privacy.KEY=VALUE`` (a ``[privacy]`` table in a TOML config; ``privacy={...}`` in Python)
PRIVACY_OPTIONS: dict[str, type] = {"epsilon": float, "delta": float, "accountant": str, "encoding_share": float}
# Half the budget to the encoding: on breast_cancer, carData/Salaries and ISLR/Wage at epsilon 1
# (seeds 0-2) the cvae's mean utility was 0.751 / 0.770 / 0.796 with half, 0.693 / 0.710 / 0.787
# with 0.3 (docs/privacy.md): a table's column shapes are the encoding's quantiles.
DEFAULT_ENCODING_SHARE = 0.5


@dataclasses.dataclass(frozen=True)
class PrivacyRequest:
    """What a run asks for: its whole budget (``epsilon``, ``delta``: None for :func:`default_delta`
    of the rows), the accountant that composes the spend (``pld`` or ``rdp``, dp-accounting's) and
    the most of the budget the table encoding may spend (``encoding_share`` of epsilon and of delta;
    what it does not spend goes to the fit)."""
    epsilon: float
    delta: float | None = None
    accountant: str = "pld"
    encoding_share: float = DEFAULT_ENCODING_SHARE

    def __post_init__(self):
        PrivacyBudget(self.epsilon, self.delta)  # the same checks and messages
        if self.accountant not in ("pld", "rdp"):
            raise InputError(f"privacy.accountant must be one of pld, rdp, got {self.accountant!r}")
        if not 0 < self.encoding_share < 1:
            raise InputError(f"privacy.encoding_share must be in (0, 1), got {self.encoding_share}")

    @property
    def private(self) -> bool:
        return math.isfinite(self.epsilon)

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


def privacy_request(values: dict | None) -> PrivacyRequest | None:
    """The :class:`PrivacyRequest` of ``privacy.KEY`` values (strings from ``--set``, TOML or Python
    values; keys with or without the ``privacy.`` prefix), or None when none is given. An unknown
    key, a value of the wrong type, or options without ``epsilon`` are one-line InputErrors."""
    if not values:
        return None
    out = {}
    for key, value in values.items():
        key = key[len(PRIVACY_PREFIX):] if key.startswith(PRIVACY_PREFIX) else key
        if key not in PRIVACY_OPTIONS:
            raise InputError(f"unknown privacy option {key!r}; valid: {', '.join(PRIVACY_OPTIONS)}")
        tp = PRIVACY_OPTIONS[key]
        if value is None or (isinstance(value, str) and value.lower() in ("none", "")):
            continue
        try:
            out[key] = tp(value) if not isinstance(value, bool) else _bad(key, value)
        except (TypeError, ValueError):
            raise InputError(f"privacy.{key} must be {tp.__name__}, got {value!r}") from None
    if "epsilon" not in out:
        raise InputError("privacy options need privacy.epsilon (a number > 0; inf: not private)")
    return PrivacyRequest(**out)


def _bad(key: str, value):
    raise InputError(f"privacy.{key} must be a number, got {value!r}")


def split_privacy_keys(values: dict) -> tuple[dict, dict]:
    """``(the other entries, the privacy.KEY entries without the prefix)``."""
    from ..config import split_prefixed

    return split_prefixed(values, PRIVACY_PREFIX)
