"""The ``integer`` kind: a numeric column of whole numbers with more distinct values than a
categorical one (or forced with ``dataset.integer=a,b``). Encoded as a continuous column (in
the same numeric encoding), decoded rounded and within the observed range, as integers."""
from __future__ import annotations

import math

import numpy as np

from ...errors import InputError
from .base import ColumnSpec, Profile
from .continuous import Continuous

__all__ = ["Integer"]


INT64_SAFE = 2.0 ** 62  # the widest private range of an integer column (int64 holds it exactly)


class Integer(Continuous):
    name = "integer"
    option = "integer"

    @classmethod
    def detects(cls, profile: Profile) -> bool:
        return profile.numeric and profile.integral

    @classmethod
    def check(cls, profile: Profile, name: str, table: str, option: str) -> None:
        if not (profile.numeric and profile.integral):
            example = profile.present[~profile.present.map(_is_integral)].iloc[0]
            raise InputError(f"{table}: column {name!r} in {option} holds {example!r}, not an integer")

    @classmethod
    def describe(cls, values, profile: Profile, name: str) -> ColumnSpec:
        return ColumnSpec(name=name, kind=cls.name, dtype=str(values.dtype), has_missing=bool(values.isna().any()),
                          low=float(profile.numbers.min()), high=float(profile.numbers.max()))

    @staticmethod
    def private_range(low: float, high: float) -> tuple[float, float]:
        """Whole numbers: the range widened to them, within int64 (a noisy range may reach 2**63)."""
        low, high = np.clip([np.floor(low), np.ceil(high)], -INT64_SAFE, INT64_SAFE)
        return float(low), float(max(high, low + 1))

    @property
    def places(self) -> int:
        return 0

    def typed(self, values: np.ndarray, absent: np.ndarray):
        """int64 (``Int64`` with missing values) for a column read as numbers."""
        import pandas as pd

        return pd.array([None if a else int(v) for v, a in zip(values, absent)],
                        dtype="Int64" if self.spec.has_missing else "int64")


def _is_integral(value) -> bool:
    try:
        return math.isfinite(float(value)) and float(value) == round(float(value))
    except (TypeError, ValueError):
        return False
