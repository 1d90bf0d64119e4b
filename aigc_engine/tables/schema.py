"""Column kinds of a table read from CSV (or Parquet), detected from the values and overridable.

Kinds:

- ``categorical``: strings, booleans, and numeric columns with at most
  :data:`MAX_NUMERIC_CATEGORIES` distinct values, each seen twice on average (at most half as
  many distinct values as present cells): flags, years, ratings, coded bins such as 0.5 / 2.5 /
  6 years; overridable with ``categorical=a,b``. Categories keep their original
  values (strings, booleans or numbers).
- ``integer``: the other integer-valued numeric columns (or ``integer=a,b``): decoded rounded
  and within the observed range.
- ``continuous``: every other numeric column.

A missing value (an empty cell, ``NA``, ``NaN``: pandas' defaults) is its own state in any
column; ``ignore=a,b`` drops columns; one ``label_column`` gives the classes of a conditional
model (class ids in the order of the sorted label values).
"""
from __future__ import annotations

import csv
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..errors import InputError

__all__ = ["ColumnSpec", "TableSchema", "detect_schema", "load_frame", "parse_names",
           "MAX_NUMERIC_CATEGORIES", "TABLE_SUFFIXES"]

MAX_NUMERIC_CATEGORIES = 10
MAX_DECIMALS = 8
TABLE_SUFFIXES = (".csv", ".parquet")
KINDS = ("continuous", "integer", "categorical")


@dataclass
class ColumnSpec:
    """One kept column: ``dtype`` is the pandas dtype it was read with; ``categories`` the sorted
    observed values of a categorical column; ``low``/``high`` the observed range of a numeric one;
    ``decimals`` the most decimal places a continuous column's values are written with (None past
    ``MAX_DECIMALS``: computed values, kept at full precision)."""

    name: str
    kind: str
    dtype: str
    has_missing: bool = False
    categories: list = field(default_factory=list)
    low: float | None = None
    high: float | None = None
    decimals: int | None = None


@dataclass
class TableSchema:
    """The table's header (``columns``, in file order), the kept feature columns (``features``),
    the ``label`` column (a ColumnSpec of kind categorical) or None, and the ignored names."""

    columns: list[str]
    features: list[ColumnSpec]
    label: ColumnSpec | None = None
    ignored: list[str] = field(default_factory=list)

    @property
    def class_names(self) -> list[str] | None:
        return [str(c) for c in self.label.categories] if self.label is not None else None

    def to_json(self) -> dict:
        return {"columns": list(self.columns), "features": [asdict(c) for c in self.features],
                "label": asdict(self.label) if self.label is not None else None,
                "ignored": list(self.ignored)}

    @classmethod
    def from_json(cls, data: dict) -> "TableSchema":
        label = data.get("label")
        return cls(columns=list(data["columns"]), features=[ColumnSpec(**c) for c in data["features"]],
                   label=ColumnSpec(**label) if label is not None else None,
                   ignored=list(data.get("ignored", [])))


def parse_names(spec, option: str, columns) -> list[str]:
    """``"a,b"`` (or a list) as column names, each checked against the header."""
    if spec is None or spec == "":
        return []
    names = [n.strip() for n in spec.split(",")] if isinstance(spec, str) else [str(n) for n in spec]
    names = [n for n in names if n]
    for name in names:
        if name not in columns:
            raise InputError(f"{option}: no column {name!r} in the table (columns: {', '.join(map(str, columns))})")
    return names


def load_frame(path: str | Path, delimiter: str = ","):
    """Read a CSV with a header (or a Parquet file) into a pandas DataFrame; empty cells, ``NA``
    and ``NaN`` become missing. Ragged rows and a header without rows are InputErrors."""
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path} does not exist")
    if path.suffix.lower() == ".parquet":
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            raise InputError(f"{path.name}: reading Parquet needs pyarrow (pip install pyarrow)") from None
        frame = pd.read_parquet(path)
    else:
        header = _check_rectangular(path, delimiter)
        numbers = all(_is_number(cell) for cell in header)  # a first line of numbers is data, not a header
        try:
            frame = pd.read_csv(path, sep=delimiter, skipinitialspace=True, header=None if numbers else "infer",
                                names=[str(i) for i in range(len(header))] if numbers else None)
        except (pd.errors.ParserError, UnicodeDecodeError) as err:
            raise InputError(f"{path.name}: not a readable CSV ({str(err).strip().splitlines()[0]})") from None
    if len(frame) == 0:
        raise InputError(f"{path.name} has a header but no rows")
    frame.columns = [str(c) for c in frame.columns]
    return frame


def _check_rectangular(path: Path, delimiter: str) -> list[str]:
    """pandas pads short rows with missing values silently; a ragged row is a broken file.
    Returns the first line's cells."""
    with open(path, newline="") as fh:
        reader = csv.reader(fh, delimiter=delimiter)
        header = next(reader, None)
        if header is None:
            raise InputError(f"{path.name} is empty")
        for row in reader:
            if row and len(row) != len(header):
                raise InputError(f"{path.name} line {reader.line_num}: {len(row)} fields, the header has {len(header)}")
    return header


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def detect_schema(frame, label_column: str | None = None, categorical="", integer="", ignore="",
                  name: str = "table") -> TableSchema:
    """The kind of every column of ``frame`` (see the module doc), with the overrides applied."""
    columns = list(frame.columns)
    forced_categorical = parse_names(categorical, "dataset.categorical", columns)
    forced_integer = parse_names(integer, "dataset.integer", columns)
    ignored = parse_names(ignore, "dataset.ignore", columns)
    label = parse_names(label_column, "dataset.label_column", columns)
    if len(label) > 1:
        raise InputError(f"dataset.label_column: one column, not {len(label)} ({', '.join(label)})")
    for a, an, b, bn in ((forced_categorical, "categorical", forced_integer, "integer"),
                         (label, "label_column", ignored, "ignore"),
                         (forced_categorical, "categorical", ignored, "ignore"),
                         (forced_integer, "integer", ignored, "ignore"), (forced_integer, "integer", label, "label_column")):
        both = sorted(set(a) & set(b))
        if both:
            raise InputError(f"column {both[0]!r} is in both dataset.{an} and dataset.{bn}")
    features = []
    for col in columns:
        if col in ignored:
            continue
        kind = "categorical" if col in forced_categorical or col in label else (
            "integer" if col in forced_integer else None)
        spec = column_spec(frame[col], col, kind, name)
        if col in label:
            if spec.has_missing:
                raise InputError(f"{name}: label column {col!r} has {int(frame[col].isna().sum())} missing values")
            label_spec = spec
        else:
            features.append(spec)
    if not features:
        raise InputError(f"{name}: no feature columns left (columns: {', '.join(columns)})")
    return TableSchema(columns=columns, features=features, label=label_spec if label else None, ignored=ignored)


def column_spec(values, name: str, kind: str | None, table: str) -> ColumnSpec:
    """Detect (``kind=None``) or check the given kind of one column (a pandas Series)."""
    import pandas as pd

    present = values.dropna()
    if len(present) == 0:
        raise InputError(f"{table}: column {name!r} holds only missing values (drop it with dataset.ignore={name})")
    numeric = pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
    if numeric:
        arr = present.to_numpy(dtype=np.float64)
        bad = ~np.isfinite(arr)
        if bad.any():
            row = int(np.flatnonzero(values.notna().to_numpy())[np.flatnonzero(bad)[0]])
            raise InputError(f"{table}: column {name!r} row {row + 1}: {arr[bad][0]} is not a finite number")
        integral = bool(np.all(arr == np.round(arr)))
    if kind == "integer" and not (numeric and integral):
        example = present[~present.map(_is_integral)].iloc[0]
        raise InputError(f"{table}: column {name!r} in dataset.integer holds {example!r}, not an integer")
    if kind is None:
        distinct = present.nunique()
        kind = ("categorical" if distinct <= min(MAX_NUMERIC_CATEGORIES, len(present) / 2) else
                "integer" if integral else "continuous") if numeric else "categorical"
    spec = ColumnSpec(name=name, kind=kind, dtype=str(values.dtype), has_missing=bool(values.isna().any()))
    if kind == "categorical":
        spec.categories = sorted(_plain(v) for v in present.unique()) if _sortable(present) else \
            sorted((_plain(v) for v in present.unique()), key=str)
    else:
        spec.low, spec.high = float(arr.min()), float(arr.max())
        if kind == "continuous":
            spec.decimals = _decimals(arr)
    return spec


def _decimals(arr: np.ndarray) -> int | None:
    """The fewest decimal places that write every value of ``arr`` back (48.2 -> 1), or None."""
    for places in range(MAX_DECIMALS + 1):
        if np.allclose(np.round(arr, places), arr, rtol=1e-12, atol=0):
            return places
    return None


def _is_integral(value) -> bool:
    try:
        return math.isfinite(float(value)) and float(value) == round(float(value))
    except (TypeError, ValueError):
        return False


def _sortable(present) -> bool:
    return len({type(_plain(v)) for v in present.unique()}) == 1


def _plain(value):
    """A JSON-able Python value of a cell (NumPy scalars to int / float / bool / str)."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and value == round(value):
        return int(value)
    return value
