"""The ``categorical`` kind: strings, booleans, and numeric columns with at most
:data:`MAX_NUMERIC_CATEGORIES` distinct values, each seen twice on average (at most half as many
distinct values as present cells): flags, years, ratings, coded bins such as 0.5 / 2.5 / 6
years; forced with ``dataset.categorical=a,b``. Categories keep their original values (strings,
booleans or numbers), sorted. Encoded as the one-hot of the category; a column with missing
values has one more slot for "missing" (its category ``None``), so a softmax covers missingness
too; decoded by argmax. The label column is a categorical column too (:func:`category_ids`)."""
from __future__ import annotations

import numpy as np

from ...errors import InputError
from .base import Block, BlockRole, ColumnKind, ColumnSpec, Profile, Spend, plain, private_categories

__all__ = ["Categorical", "category_ids", "typed_categories", "MAX_NUMERIC_CATEGORIES"]

MAX_NUMERIC_CATEGORIES = 10


class Categorical(ColumnKind):
    name = "categorical"
    option = "categorical"
    distribution = "categorical"

    @classmethod
    def detects(cls, profile: Profile) -> bool:
        return not profile.numeric or profile.distinct <= min(MAX_NUMERIC_CATEGORIES, len(profile.present) / 2)

    @classmethod
    def check(cls, profile: Profile, name: str, table: str, option: str) -> None:
        """Any column can be categorical."""

    @classmethod
    def describe(cls, values, profile: Profile, name: str) -> ColumnSpec:
        present = profile.present
        cells = [plain(v) for v in present.unique()]
        sortable = len({type(c) for c in cells}) == 1
        return ColumnSpec(name=name, kind=cls.name, dtype=str(values.dtype), has_missing=bool(values.isna().any()),
                          categories=sorted(cells) if sortable else sorted(cells, key=str))

    private_mechanisms = (1, 1)

    def fit_private(self, values, seed: int, spend: Spend) -> None:
        """The categories whose noisy count passes the release threshold, sorted; a value of
        another (a rare one) encodes as the released category of the largest noisy count
        (``details["fallback"]``: None, missing, when none is released). Missing cells are one
        more category of the histogram: the column has a missing slot when theirs passes too
        (else they encode as the fallback)."""
        counts = private_categories(values.astype(object).where(values.notna(), "\0missing"), spend)
        has_missing = counts.pop("\0missing", None) is not None or not counts  # no slot at all: the missing one
        self.spec = released_categories(self.spec, counts, has_missing=has_missing)
        return self.params

    def blocks(self, start: int) -> list[Block]:
        slots = list(self.spec.categories) + ([None] if self.spec.has_missing else [])
        return [Block(self.spec.name, self.name, start, start + len(slots), slots, role=BlockRole.ONE_HOT)]

    def encode(self, values, absent: np.ndarray, out: np.ndarray, blocks: list[Block]) -> None:
        ids = category_ids(values, self.spec)
        out[np.arange(len(ids)), blocks[0].start + ids] = 1.0  # a missing value's id is the extra slot

    def decode(self, m: np.ndarray, blocks: list[Block]):
        slots = np.array(blocks[0].categories, dtype=object)[m[:, blocks[0].slice].argmax(axis=1)]
        return self.typed(slots, np.array([v is None for v in slots], dtype=bool))

    def typed(self, values: np.ndarray, absent: np.ndarray):
        return typed_categories(values, self.spec, absent)


def released_categories(spec: ColumnSpec, counts: dict, has_missing: bool) -> ColumnSpec:
    """``spec`` with the categories of ``counts`` (``{category: noisy count}``), sorted as
    :meth:`Categorical.describe` sorts them, its fallback the one of the largest count."""
    from dataclasses import replace

    cells = list(counts)
    cells = sorted(cells) if len({type(c) for c in cells}) == 1 else sorted(cells, key=str)
    fallback = max(counts, key=counts.get) if counts else None
    return replace(spec, categories=cells, has_missing=has_missing, details={**spec.details, "fallback": fallback})


def release(values, spec: ColumnSpec):
    """``values`` (a Series) with each value not among the released categories of ``spec`` (a
    private encoding's) replaced by its fallback category."""
    index = {_key(c) for c in spec.categories}
    keep = [(a and spec.has_missing) or (not a and _key(v) in index)
            for v, a in zip(values.tolist(), values.isna().to_numpy())]
    return values.where(keep, spec.details.get("fallback"))


def category_ids(values, spec: ColumnSpec) -> np.ndarray:
    """The index of each value (a Series) in ``spec.categories``; a missing value's is
    ``len(categories)``; a value not among them is an InputError."""
    index = {_key(c): i for i, c in enumerate(spec.categories)}
    ids = np.full(len(values), len(spec.categories), dtype=np.int64)
    absent = values.isna().to_numpy()  # None, NaN and pandas' NA (nullable Int64 columns) alike
    for row, v in enumerate(values.tolist()):
        if absent[row]:
            continue
        k = index.get(_key(v))
        if k is None:
            raise InputError(f"column {spec.name!r} row {row + 1}: category {v!r} was not in the training rows")
        ids[row] = k
    return ids


def _key(value):
    """Categories compare by value: 2007 read as an integer or as 2007.0 (a column with missing
    values) is one category; True and 1 are not."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and value == round(value):
        value = int(value)
    return (type(value) is bool, value)


def typed_categories(values: np.ndarray, spec: ColumnSpec, absent: np.ndarray):
    """Categories in the dtype the column was read with: whole numbers as int64 (``Int64`` with
    missing values), booleans as bool, floats as float64, strings as objects with NaN for missing."""
    import pandas as pd

    values = np.where(absent, None, values).astype(object) if absent.any() else values
    kind = _dtype_kind(spec.dtype)
    if kind in "iuf" and all(isinstance(_key(c)[1], int) for c in spec.categories):
        return pd.array([None if a else int(v) for v, a in zip(values, absent)],
                        dtype="Int64" if spec.has_missing else "int64")
    if kind == "b" and not spec.has_missing:
        return values.astype(bool)
    if kind == "f":
        return np.where(absent, np.nan, values).astype(np.float64)
    return pd.array(np.where(absent, np.nan, values).astype(object), dtype=object)


def _dtype_kind(dtype: str) -> str:
    """NumPy's kind letter of a pandas dtype name (nullable ``Int64``, ``boolean`` included);
    ``O`` for strings and anything else."""
    from pandas.api import types

    try:
        dtype = types.pandas_dtype(dtype)
    except TypeError:
        return "O"
    return ("b" if types.is_bool_dtype(dtype) else "i" if types.is_integer_dtype(dtype) else
            "f" if types.is_float_dtype(dtype) else "O")
