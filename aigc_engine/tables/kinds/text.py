"""The ``text`` kind: long, mostly distinct strings (a comment, a job title, a tweet): more than
:data:`~.manylevel.MAX_LEVELS` distinct values that are on average longer than
:data:`LONG` characters or distinct in more than half the rows; forced with ``dataset.text=a,b``.

Not one-hot: a text is modelled by its length (a value block in the table's numeric encoding,
and the missing block of a column with missing values), and decoded to a value drawn from the
values held by at least :data:`~.manylevel.MIN_COUNT` rows (``details["pool"]``, the
:data:`POOL` most frequent, with their counts), among those of the length nearest the decoded
one, in proportion to their counts. A value held by fewer rows is never released; when no value
is held by that many, the column is decoded empty. Detection says so in one warning line.
Scored and drawn by length.
"""
from __future__ import annotations

import warnings

import numpy as np

from ...errors import InputError
from .base import ColumnSpec, Profile
from .continuous import Continuous
from .manylevel import MAX_LEVELS, MIN_COUNT, draw_rng

__all__ = ["Text", "LONG", "POOL"]

LONG = 30
POOL = 1000


class Text(Continuous):
    name = "text"
    option = "text"

    @classmethod
    def detects(cls, profile: Profile) -> bool:
        if profile.numeric or profile.distinct <= MAX_LEVELS:
            return False
        lengths = profile.present.astype(str).str.len()
        return lengths.mean() > LONG or profile.distinct > len(profile.present) / 2

    @classmethod
    def check(cls, profile: Profile, name: str, table: str, option: str) -> None:
        if profile.numeric:
            raise InputError(f"{table}: column {name!r} in {option} holds {profile.present.iloc[0]!r}, a number, "
                             "not text")

    @classmethod
    def describe(cls, values, profile: Profile, name: str) -> ColumnSpec:
        text = profile.present.astype(str)
        counts = text.value_counts()
        pool = counts[counts >= MIN_COUNT].iloc[:POOL]
        lengths = text.str.len()
        drawn = (f"drawn from the {len(pool):,} values held by >= {MIN_COUNT} rows" if len(pool) else
                 f"left empty (no value is held by >= {MIN_COUNT} rows)")
        warnings.warn(f"column {name}: text, {profile.distinct:,} values: modelled by its length and {drawn}",
                      UserWarning, stacklevel=2)
        return ColumnSpec(name=name, kind=cls.name, dtype=str(values.dtype), has_missing=bool(values.isna().any()),
                          low=float(lengths.min()), high=float(lengths.max()), decimals=0,
                          details={"pool": pool.index.tolist(), "counts": pool.tolist(), "min_count": MIN_COUNT})

    @classmethod
    def numbers(cls, values) -> np.ndarray:
        """The texts' lengths, NaN where missing."""
        return values.astype(object).where(values.notna()).map(len, na_action="ignore").to_numpy(
            dtype=np.float64, na_value=np.nan)

    def _lengths(self, values):
        import pandas as pd

        return pd.Series(self.numbers(values), index=values.index)

    def fit(self, values, seed: int = 0, fallback: dict | None = None) -> dict:
        return super().fit(self._lengths(values), seed, fallback)

    def encode(self, values, absent: np.ndarray, out: np.ndarray, blocks) -> None:
        super().encode(self._lengths(values), absent, out, blocks)

    def typed(self, values: np.ndarray, absent: np.ndarray):
        """Decoded lengths as texts of the pool, missing where ``absent`` (and everywhere when
        the pool is empty)."""
        import pandas as pd

        pool = np.array(self.spec.details["pool"], dtype=object)
        out = np.full(len(values), np.nan, dtype=object)
        if len(pool):
            counts = np.asarray(self.spec.details["counts"], dtype=np.float64)
            sizes = np.array([len(t) for t in pool])
            choices = np.unique(sizes)
            above = np.clip(np.searchsorted(choices, values), 0, len(choices) - 1)
            below = np.clip(above - 1, 0, len(choices) - 1)
            nearest = np.where(np.abs(choices[below] - values) <= np.abs(choices[above] - values),
                               choices[below], choices[above])
            rng = draw_rng(np.asarray(values, dtype=np.float64))
            for size in np.unique(nearest):
                rows, mine = np.flatnonzero(nearest == size), np.flatnonzero(sizes == size)
                out[rows] = pool[mine[rng.choice(len(mine), len(rows), p=counts[mine] / counts[mine].sum())]]
        return pd.array(np.where(absent, np.nan, out).astype(object), dtype=object)
