"""A table's columns: which are kept, which is the label, and the kind of each, detected from
the values and overridable.

The kinds are classes (:mod:`aigc_engine.tables.kinds`, registry ``KINDS``: datetime, key,
text, many_level, categorical, integer, continuous; see each module's doc); an unforced column
takes the first kind, in registry order, that detects it. A kind is forced per column with ``kinds=a:integer,b:categorical``
or with the kind's own list (``categorical=a,b``, ``integer=a,b``: each kind's ``option``).

A missing value (an empty cell, ``NA``, ``NaN``: pandas' defaults) is its own state in any
column; ``ignore=a,b`` drops columns; one ``label_column`` gives the classes of a conditional
model (class ids in the order of the sorted label values).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import InputError
from .dialect import Dialect, read_csv, sniff
from .kinds import KINDS, ColumnSpec, Profile, kind_class, override_options
from .kinds.categorical import MAX_NUMERIC_CATEGORIES
from .kinds.continuous import MAX_DECIMALS

__all__ = ["ColumnSpec", "TableSchema", "detect_schema", "load_frame", "read_frame", "parse_names", "parse_kinds",
           "MAX_NUMERIC_CATEGORIES", "MAX_DECIMALS", "TABLE_SUFFIXES"]

TABLE_SUFFIXES = (".csv", ".parquet")
LABEL_KIND = "categorical"  # a label's values are classes


@dataclass
class TableSchema:
    """The table's header (``columns``, in file order), the kept feature columns (``features``),
    the ``label`` column (a ColumnSpec of kind categorical) or None, the ignored names, and the
    CSV :class:`Dialect` of the file it was read from (None: not a CSV, or a run saved before
    dialects: written as a comma CSV)."""

    columns: list[str]
    features: list[ColumnSpec]
    label: ColumnSpec | None = None
    ignored: list[str] = field(default_factory=list)
    dialect: Dialect | None = None
    #: what declared rules keep here (aigc_engine.rules.apply_rules): ``derived`` (column ->
    #: ``terms``, ``const`` and ``spec`` of a column an equality determines: not a feature,
    #: computed at decode), ``combinations`` (columns "a,b" -> the category-id tuples seen)
    rules: dict = field(default_factory=dict)

    def derived_spec(self, name: str) -> ColumnSpec | None:
        """The ColumnSpec of a column an equality determines (None: no such column)."""
        found = self.rules.get("derived", {}).get(name)
        return ColumnSpec(**found["spec"]) if found is not None else None

    @property
    def class_names(self) -> list[str] | None:
        return [str(c) for c in self.label.categories] if self.label is not None else None

    def kind(self, name: str):
        """The kind class of column ``name`` (the label's is categorical)."""
        spec = self.label if self.label is not None and self.label.name == name else \
            next((s for s in self.features if s.name == name), None) or self.derived_spec(name)
        return kind_class(spec.kind, f"column {name!r}")

    def to_json(self) -> dict:
        out = {"columns": list(self.columns), "features": [c.to_json() for c in self.features],
               "label": self.label.to_json() if self.label is not None else None, "ignored": list(self.ignored)}
        if self.dialect is not None:
            out["dialect"] = self.dialect.to_json()
        if self.rules:
            out["rules"] = self.rules
        return out

    @classmethod
    def from_json(cls, data: dict) -> "TableSchema":
        label = data.get("label")
        return cls(columns=list(data["columns"]), features=[ColumnSpec(**c) for c in data["features"]],
                   label=ColumnSpec(**label) if label is not None else None,
                   ignored=list(data.get("ignored", [])),
                   dialect=Dialect.from_json(data["dialect"]) if data.get("dialect") else None,
                   rules=dict(data.get("rules", {})))


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


def load_frame(path: str | Path, delimiter: str = "auto", **dialect: str):
    """Read a CSV with a header (or a Parquet file) into a pandas DataFrame; empty cells, ``NA``
    and ``NaN`` become missing. The CSV dialect is sniffed (:mod:`aigc_engine.tables.dialect`;
    ``delimiter``, ``decimal``, ``thousands``, ``encoding`` given instead). Ragged rows and a
    header without rows are InputErrors."""
    return read_frame(path, delimiter, **dialect)[0]


def read_frame(path: str | Path, delimiter: str = "auto", decimal: str = "auto", thousands: str = "auto",
               encoding: str = "auto"):
    """:func:`load_frame`'s DataFrame and the file's :class:`Dialect` (None for Parquet)."""
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path} does not exist")
    dialect = None
    if path.suffix.lower() == ".parquet":
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            raise InputError(f"{path.name}: reading Parquet needs pyarrow (pip install pyarrow)") from None
        frame = pd.read_parquet(path)
    else:
        dialect = sniff(path, delimiter, decimal, thousands, encoding)
        frame = read_csv(path, dialect, sniffed=delimiter == "auto")
    if len(frame) == 0:
        raise InputError(f"{path.name} has a header but no rows")
    frame.columns = [str(c) for c in frame.columns]
    return frame, dialect


def parse_kinds(spec, columns) -> dict[str, str]:
    """``"a:integer,b:categorical"`` (or a dict) as ``{column: kind}``, columns and kinds checked."""
    if spec is None or spec == "":
        return {}
    if isinstance(spec, str):
        items = [item for item in map(str.strip, spec.split(",")) if item]
        pairs = [item.split(":", 1) if ":" in item else [item, None] for item in items]
    else:
        pairs = [[str(k), v] for k, v in dict(spec).items()]
    out = {}
    for column, kind in pairs:
        if kind is None:
            raise InputError(f"dataset.kinds: {column!r} is not column:kind (kinds: {', '.join(KINDS)})")
        parse_names([column.strip()], "dataset.kinds", columns)
        out[column.strip()] = kind_class(str(kind).strip(), "dataset.kinds").name
    return out


def detect_schema(frame, label_column: str | None = None, *, ignore="", kinds="", name: str = "table",
                  **forced) -> TableSchema:
    """The kind of every column of ``frame`` (see the module doc), with the overrides applied:
    ``kinds`` (``"a:integer,b:categorical"``) and each kind's list (``categorical="a,b"``...)."""
    columns, options = list(frame.columns), override_options()
    unknown = sorted(set(forced) - set(options))
    if unknown:
        raise TypeError(f"detect_schema: no option {unknown[0]!r} (kind options: {', '.join(options)})")
    groups = [(f"dataset.{option}", options[option], parse_names(forced.get(option), f"dataset.{option}", columns))
              for option in options]
    by_column = parse_kinds(kinds, columns)
    groups += [("dataset.kinds", kind, [c for c, k in by_column.items() if k == kind]) for kind in KINDS]
    label = parse_names(label_column, "dataset.label_column", columns)
    if len(label) > 1:
        raise InputError(f"dataset.label_column: one column, not {len(label)} ({', '.join(label)})")
    ignored = parse_names(ignore, "dataset.ignore", columns)
    groups += [("dataset.label_column", LABEL_KIND, label), ("dataset.ignore", None, ignored)]
    chosen = _check_groups(groups)
    features, label_spec = [], None
    for col in columns:
        if col in ignored:
            continue
        option, kind = chosen.get(col, (None, None))
        spec = column_spec(frame[col], col, kind, name, option)
        if col in label:
            if spec.has_missing:
                raise InputError(f"{name}: label column {col!r} has {int(frame[col].isna().sum())} missing values")
            label_spec = spec
        else:
            features.append(spec)
    if not features:
        raise InputError(f"{name}: no feature columns left (columns: {', '.join(columns)})")
    return TableSchema(columns=columns, features=features, label=label_spec, ignored=ignored)


def _check_groups(groups) -> dict[str, tuple[str, str]]:
    """``{column: (option, kind)}`` of the forced columns; a column in two groups is an error,
    except a label forced to its own kind."""
    chosen: dict[str, tuple[str, str | None]] = {}
    for option, kind, names in groups:
        for col in names:
            if col in chosen and not (LABEL_KIND == kind == chosen[col][1] and option == "dataset.label_column"):
                raise InputError(f"column {col!r} is in both {chosen[col][0]} and {option}")
            chosen.setdefault(col, (option, kind))
    return chosen


def column_spec(values, name: str, kind: str | None, table: str, option: str = "dataset.kinds") -> ColumnSpec:
    """Detect (``kind=None``) or check the given kind of one column (a pandas Series; ``option``
    the override that forced it, for the message)."""
    profile = _profile(values, name, table)
    if kind is None:
        cls = next(c for c in KINDS.values() if c.detects(profile))
    else:
        cls = kind_class(kind)
        cls.check(profile, name, table, option)
    return cls.describe(values, profile, name)


def _profile(values, name: str, table: str) -> Profile:
    import pandas as pd

    present = values.dropna()
    if len(present) == 0:
        raise InputError(f"{table}: column {name!r} holds only missing values (drop it with dataset.ignore={name})")
    numeric = pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
    arr, integral = None, False
    if numeric:
        arr = present.to_numpy(dtype=np.float64)
        bad = ~np.isfinite(arr)
        if bad.any():
            row = int(np.flatnonzero(values.notna().to_numpy())[np.flatnonzero(bad)[0]])
            raise InputError(f"{table}: column {name!r} row {row + 1}: {arr[bad][0]} is not a finite number")
        integral = bool(np.all(arr == np.round(arr)))
    return Profile(present=present, numeric=numeric, numbers=arr, integral=integral, distinct=int(present.nunique()),
                   name=name, rows=len(values))
