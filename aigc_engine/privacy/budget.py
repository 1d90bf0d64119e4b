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
