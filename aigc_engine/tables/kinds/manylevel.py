"""The ``many_level`` kind: a column of strings with more than :data:`MAX_LEVELS` distinct values
(a city, a product, an aircraft's tail number); forced with ``dataset.many_level=a,b``.

A dense one-hot would grow as rows x levels; this one has at most ``MAX_LEVELS + 2`` slots: the
:data:`MAX_LEVELS` most frequent levels held by at least :data:`MIN_COUNT` rows (kept:
``ColumnSpec.categories``, each its own slot), one ``other`` slot for every other value, and the
missing slot of a column with missing values. The levels past the kept ones that are still held
by at least :data:`MIN_COUNT` rows are pooled (``details["pooled"]``, with their counts); an
``other`` slot decodes to a level drawn from the pool in proportion to the counts (to a kept
level in proportion to theirs when the pool is empty). Levels held by fewer than
:data:`MIN_COUNT` rows are in neither list: a rare value is never released. Kept levels
round-trip exactly; a value not seen at fitting is encoded as ``other``.
"""
from __future__ import annotations

import numpy as np

from .base import Block, BlockRole, ColumnKind, ColumnSpec, Profile, Spend, plain, private_categories
from .categorical import typed_categories

__all__ = ["ManyLevel", "MAX_LEVELS", "MIN_COUNT", "draw_rng"]

MAX_LEVELS = 100
MIN_COUNT = 5


class ManyLevel(ColumnKind):
    name = "many_level"
    option = "many_level"
    distribution = "categorical"

    @classmethod
    def detects(cls, profile: Profile) -> bool:
        return not profile.numeric and profile.distinct > MAX_LEVELS

    @classmethod
    def check(cls, profile: Profile, name: str, table: str, option: str) -> None:
        """Any column can be many-level."""

    @classmethod
    def describe(cls, values, profile: Profile, name: str) -> ColumnSpec:
        counts = profile.present.map(plain).value_counts(sort=False)
        counts = counts[counts >= MIN_COUNT]
        counts = counts.iloc[np.lexsort((counts.index.astype(str), -counts.to_numpy()))]  # by count, then by name
        kept, pooled = counts.iloc[:MAX_LEVELS], counts.iloc[MAX_LEVELS:]
        return ColumnSpec(name=name, kind=cls.name, dtype=str(values.dtype), has_missing=bool(values.isna().any()),
                          categories=[plain(v) for v in kept.index],
                          details={"pooled": [plain(v) for v in pooled.index], "counts": pooled.tolist(),
                                   "kept_counts": kept.tolist(), "min_count": MIN_COUNT})

    private_mechanisms = (1, 1)

    def fit_private(self, values, seed: int, spend: Spend) -> None:
        """Levels and counts from one thresholded histogram: the :data:`MAX_LEVELS` of the
        largest noisy counts kept, the other released ones pooled (with their noisy counts)."""
        from dataclasses import replace

        counts = private_categories(values, spend)
        order = sorted(counts, key=lambda v: (-counts[v], str(v)))
        kept, pooled = order[:MAX_LEVELS], order[MAX_LEVELS:]
        self.spec = replace(self.spec, categories=kept, has_missing=True, details={
            **self.spec.details, "pooled": pooled, "counts": [counts[v] for v in pooled],
            "kept_counts": [counts[v] for v in kept]})
        return self.params

    def blocks(self, start: int) -> list[Block]:
        slots = list(self.spec.categories) + ["(other)"] + ([None] if self.spec.has_missing else [])
        return [Block(self.spec.name, self.name, start, start + len(slots), slots, role=BlockRole.ONE_HOT)]

    def encode(self, values, absent: np.ndarray, out: np.ndarray, blocks: list[Block]) -> None:
        other = len(self.spec.categories)
        index = {c: i for i, c in enumerate(self.spec.categories)}  # 2007 and 2007.0 hash alike
        ids = values.map(index).to_numpy(dtype=np.float64, na_value=np.nan)
        ids = np.where(absent, other + 1, np.where(np.isnan(ids), other, ids)).astype(np.int64)
        out[np.arange(len(ids)), blocks[0].start + ids] = 1.0

    def decode(self, m: np.ndarray, blocks: list[Block]):
        ids = m[:, blocks[0].slice].argmax(axis=1)
        other = len(self.spec.categories)
        values = np.empty(len(ids), dtype=object)
        kept = ids < other
        values[kept] = np.array(self.spec.categories, dtype=object)[ids[kept]] if kept.any() else []
        pool, counts = self.spec.details["pooled"], self.spec.details["counts"]
        if not pool:
            pool, counts = self.spec.categories, self.spec.details["kept_counts"]
        drawn = ids == other
        if drawn.any() and pool:
            rng = draw_rng(ids)
            p = np.asarray(counts, dtype=np.float64)
            values[drawn] = np.array(pool, dtype=object)[rng.choice(len(pool), int(drawn.sum()), p=p / p.sum())]
        absent = ids > other
        return self.typed(values, absent)

    def typed(self, values: np.ndarray, absent: np.ndarray):
        return typed_categories(values, self.spec, absent)


def draw_rng(decoded: np.ndarray) -> np.random.Generator:
    """A generator seeded by what a column decoded to so far (``decoded``, an array): the draws a
    decoding makes are a function of the matrix, as the rest of decoding is."""
    import zlib

    return np.random.default_rng(zlib.crc32(np.ascontiguousarray(decoded).tobytes()))
