"""The ``text`` kind: long, mostly distinct strings (a comment, a job title, a tweet): more than
:data:`~.manylevel.MAX_LEVELS` distinct values that are on average longer than
:data:`LONG` characters, or distinct in more than half the rows with a space in at least half
of them (single words that mostly differ, an order id that repeats, are ``many_level``); forced
with ``dataset.text=a,b``.

Not one-hot: a text is modelled by its length (a value block in the table's numeric encoding,
and the missing block of a column with missing values), and decoded to a value drawn from the
values held by at least :data:`~.manylevel.MIN_COUNT` rows (``details["pool"]``, the
:data:`POOL` most frequent, with their counts), among those of the length nearest the decoded
one, in proportion to their counts. Where fewer than :data:`FEW` values are held by that many
rows (tweets, comments), a text is instead written as words found in at least that many rows
(``details["words"]``, the :data:`POOL` most frequent), drawn in proportion to their counts up
to the decoded length, and drawn again while a 52-bit hash of it is among the hashes of the
training values (``params["hashes"]``). Either way a value held by fewer rows is never released.
Detection says what it does in one warning line. Scored and drawn by length.
"""
from __future__ import annotations

import warnings

import numpy as np

from ...errors import InputError
from .base import ColumnSpec, Profile, Spend, private_categories, value_hash
from .continuous import Continuous
from .manylevel import MAX_LEVELS, MIN_COUNT, draw_rng

__all__ = ["Text", "LONG", "POOL"]

LONG = 30
POOL = 1000
FEW = 20
REDRAWS = 20  # draws of a text that is a training value before words are added to it


class Text(Continuous):
    name = "text"
    option = "text"

    @classmethod
    def detects(cls, profile: Profile) -> bool:
        if profile.numeric or profile.distinct <= MAX_LEVELS:
            return False
        text = profile.present.astype(str)
        if text.str.len().mean() > LONG:
            return True
        # mostly distinct words (an order id that repeats) are many-level: a text has words
        return profile.distinct > len(text) / 2 and text.str.contains(r"\s").mean() >= 0.5

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
        details = {"pool": pool.index.tolist(), "counts": pool.tolist(), "min_count": MIN_COUNT}
        if len(pool) >= FEW:
            drawn = f"drawn from the {len(pool):,} values held by >= {MIN_COUNT} rows"
        else:
            words = text.str.split().map(set).explode().value_counts()
            words = words[words >= MIN_COUNT].iloc[:POOL]
            details.update(pool=[], counts=[], words=words.index.tolist(), word_counts=words.tolist())
            drawn = (f"written as words found in >= {MIN_COUNT} rows ({len(words):,}), never a training value"
                     if len(words) else f"left empty (no word is in >= {MIN_COUNT} rows)")
        warnings.warn(f"column {name}: text, {profile.distinct:,} values: modelled by its length and {drawn}",
                      UserWarning, stacklevel=2)
        return ColumnSpec(name=name, kind=cls.name, dtype=str(values.dtype), has_missing=bool(values.isna().any()),
                          low=float(lengths.min()), high=float(lengths.max()), decimals=0, details=details)

    @classmethod
    def numbers(cls, values) -> np.ndarray:
        """The texts' lengths, NaN where missing."""
        return values.astype(object).where(values.notna()).map(len, na_action="ignore").to_numpy(
            dtype=np.float64, na_value=np.nan)

    def _lengths(self, values):
        import pandas as pd

        return pd.Series(self.numbers(values), index=values.index)

    def fit(self, values, seed: int = 0, fallback: dict | None = None) -> dict:
        """The scaling of the lengths; in words mode also the hashes of the values (with
        ``fallback``'s: a training split's encoding still refuses every value of the table)."""
        params = dict(super().fit(self._lengths(values), seed, fallback))
        if "words" in self.spec.details:
            hashes = {value_hash(str(v)) for v in values.dropna().unique()} | set((fallback or {}).get("hashes", []))
            params["hashes"] = sorted(float(h) for h in hashes)
        self.params = params
        return params

    private_mechanisms = (3, 1)

    def fit_private(self, values, seed: int, spend: Spend) -> dict:
        """The lengths as a numeric column (two histograms); the pool of values from one
        thresholded histogram of whole values (the :data:`POOL` of the largest noisy counts; a
        value held by a handful of rows is never released). No words: a row's words would need
        its contribution to a word histogram bounded. No value passing: the column decodes empty."""
        from dataclasses import replace

        params = dict(super().fit_private(self._lengths(values), seed, spend))
        counts = private_categories(values.dropna().astype(str), spend)
        pool = sorted(counts, key=lambda v: (-counts[v], v))[:POOL]
        details = {k: v for k, v in self.spec.details.items() if k not in ("words", "word_counts")}
        self.spec = replace(self.spec, decimals=0, details={**details, "pool": pool,
                                                             "counts": [counts[v] for v in pool]})
        self.params = params
        return params

    def encode(self, values, absent: np.ndarray, out: np.ndarray, blocks) -> None:
        super().encode(self._lengths(values), absent, out, blocks)

    def typed(self, values: np.ndarray, absent: np.ndarray):
        """Decoded lengths as texts of the pool, missing where ``absent`` (and everywhere when
        the pool is empty)."""
        import pandas as pd

        pool = np.array(self.spec.details["pool"], dtype=object)
        out = np.full(len(values), np.nan, dtype=object)
        if self.spec.details.get("words"):
            out = self._words(values)
        elif len(pool):
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

    def _words(self, lengths: np.ndarray) -> np.ndarray:
        """Texts of frequent words, each as long as its decoded length allows (one word at
        least), none a training value: after :data:`REDRAWS` draws that are all training values
        (every frequent word may be one: order ids, each held by several rows) words are added
        to the last one until it is not, which ends (training values are finite)."""
        words = np.array(self.spec.details["words"], dtype=object)
        p = np.asarray(self.spec.details["word_counts"], dtype=np.float64)
        p = p / p.sum()
        taken = {int(h) for h in self.params.get("hashes", [])}
        rng = draw_rng(np.asarray(lengths, dtype=np.float64))
        out = np.empty(len(lengths), dtype=object)
        for row, size in enumerate(lengths):
            text, draws = None, 0
            while text is None or value_hash(text) in taken:
                if draws == REDRAWS:
                    text = f"{text} {words[rng.choice(len(words), p=p)]}"
                    continue
                draws += 1
                drawn = words[rng.choice(len(words), max(int(size) // 3, 1) + 1, p=p)]
                ends = np.cumsum([len(w) + 1 for w in drawn]) - 1
                text = " ".join(drawn[:max(int(np.searchsorted(ends, size, side="right")), 1)])
            out[row] = text
        return out
