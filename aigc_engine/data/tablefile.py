"""The reader of tables: a CSV (or Parquet) file as a Dataset of encoded rows.

Column kinds are detected (:mod:`aigc_engine.tables.schema`), a reversible encoding is fitted
on the rows (:class:`aigc_engine.tables.TableEncoding`) and attached as ``dataset.encoding``:
models see its float matrix and its blocks, the engine stores it in the run directory and
decodes samples back to the user's columns.
"""
from __future__ import annotations

import csv
import inspect
import os
import warnings
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..rules import apply_rules, check_rules, parse_rules
from ..tables.encoding import TableEncoding
from ..tables.kinds import override_options
from ..tables.schema import detect_schema, read_frame
from .dataset import Dataset, check_weights

__all__ = ["read_table", "LABEL_LIKE_COLUMNS", "IN_MEMORY"]

# header names that usually hold labels: modelled as features unless label_column says otherwise
LABEL_LIKE_COLUMNS = ("label", "labels", "class", "target", "y")
IN_MEMORY = "DataFrame"  # the name of a table given as a pandas DataFrame instead of a file


def read_table(path: Path, label_column: str | int | None = None, *, ignore: str = "", delimiter: str = "auto",
               decimal: str = "auto", thousands: str = "auto", encoding: str = "auto",
               weight_column: str | int | None = None, continuous: str = "quantile", kinds: str = "",
               constraints: str = "", public: str = "", **forced: str) -> Dataset:
    """A table with a header (a CSV whose first line is all numbers has none: its columns are
    named ``0``, ``1``, ...). Options: ``label_column`` (a column name, or a 0-based index, of
    classes for conditional models), ``weight_column`` (the same, of row weights for the models
    that take them: numbers >= 0, not modelled, not sampled), ``kinds`` (``a:integer,b:categorical``)
    and each column kind's list (``categorical=a,b``, ``integer=a,b``: the kinds' ``option``,
    generated from the registry) forcing kinds, ``ignore`` (columns left out), the CSV dialect
    (``delimiter``, ``decimal``, ``thousands``, ``encoding``: each ``auto``, sniffed, by default;
    :mod:`aigc_engine.tables.dialect`; the schema keeps it for the tables written back),
    ``continuous`` (the encoding of numeric columns: ``quantile``, ``standard`` or ``modes``),
    ``constraints`` (rules every row keeps, checked here: :mod:`aigc_engine.rules`), ``public``
    (columns whose categories and ranges a private run takes as they are: docs/privacy.md).
    Missing cells (empty, NA, NaN) are a state of their column, not an error. ``path`` may also
    be a pandas DataFrame held in memory (``aigc_engine.Synthesizer``: its rows as a file's;
    the reader's options have to be typed by this signature, hence ``Path`` alone in it)."""
    try:
        frame, dialect, name = _table(path, delimiter, decimal, thousands, encoding)
    except OverflowError as err:
        raise InputError(f"{Path(str(path)).name} holds a number out of range ({err})") from None
    except csv.Error as err:  # a field past the csv module's size limit
        raise InputError(f"cannot read {Path(str(path)).name}: {err}") from None
    label = _column_name(label_column, list(frame.columns))
    weight = _column_name(weight_column, list(frame.columns))
    weights, ignored = _weight_column(frame, weight, label, ignore)
    schema = detect_schema(frame, label, ignore=ignored, kinds=kinds, name=name, **forced)
    if weight is not None:  # row weights describe the real rows, not a column of the synthetic ones
        schema.columns.remove(weight)
        schema.ignored.remove(weight)
    _check_integer_range(frame, schema, name)
    schema.dialect = dialect
    if label is None:
        named = [c for c in schema.columns if c.lower() in LABEL_LIKE_COLUMNS and c not in schema.ignored]
        if named:
            warnings.warn(f"column {named[0]!r} of {name} is modelled as a feature; to condition on it, "
                          f"pass --set dataset.label_column={named[0]}", UserWarning, stacklevel=2)
    rules = parse_rules(constraints, schema)
    check_rules(rules, frame, name)
    apply_rules(rules, frame, schema)  # an equality's column leaves the features: computed at decode
    fitted = TableEncoding.fit(frame, schema, continuous, weights=weights, public=public)
    y = fitted.labels(frame) if schema.label is not None else None
    options = {k: v for k, v in (("label_column", label_column), ("weight_column", weight_column),
                                 *forced.items(), ("kinds", kinds), ("ignore", ignore),
                                 ("constraints", constraints), ("public", public)) if v not in (None, "")}
    options.update((k, v) for k, v in (("delimiter", delimiter), ("decimal", decimal), ("thousands", thousands),
                                        ("encoding", encoding)) if v != "auto")
    if continuous != "quantile":
        options["continuous"] = continuous
    classes = fitted.schema.class_names  # a private encoding's: the classes it released
    return Dataset(fitted.transform(frame), y, len(classes) if y is not None else None, name,
                   options, classes, encoding=fitted, weights=weights)


def _weight_column(frame, weight: str | None, label: str | None, ignore):
    """The row weights of column ``weight`` (None without one) and the columns ignored: ``ignore``
    and the weight column, which describes the real rows and is not modelled."""
    if weight is None:
        return None, ignore
    if weight not in frame.columns:
        raise InputError(f"weight_column: no column {weight!r} in the table (columns: "
                         f"{', '.join(map(str, frame.columns))})")
    if weight == label:
        raise InputError(f"column {weight!r} cannot be both the label and the weight column")
    names = [n.strip() for n in ignore.split(",")] if isinstance(ignore, str) else [str(n) for n in ignore]
    return _weights(frame[weight], weight), [n for n in names if n and n != weight] + [weight]


def _table(source, delimiter: str, decimal: str, thousands: str, encoding: str):
    """The rows, dialect and name of a table: a file read (its dialect sniffed), or a DataFrame
    given in memory (a copy, with its column names as strings, as a file's header gives them; no
    dialect)."""
    if isinstance(source, (str, os.PathLike)):
        frame, dialect = read_frame(Path(source), delimiter, decimal, thousands, encoding)
        if dialect is not None:
            _check_header(Path(source), dialect)
        return frame, dialect, Path(source).name
    import pandas as pd

    frame = source.reset_index(drop=True)  # a copy, indexed as a file's rows
    frame.columns = [str(c) for c in frame.columns]
    for name in frame.columns:  # "string" and "boolean" columns: missing as a file's (None), not pd.NA
        column = frame[name]
        if getattr(column.dtype, "na_value", None) is pd.NA and not pd.api.types.is_numeric_dtype(column.dtype):
            frame[name] = column.astype(object).where(column.notna(), None)
    if len(frame) == 0:
        raise InputError("the DataFrame has no rows")
    if frame.columns.duplicated().any():
        raise InputError(f"the DataFrame has two columns named {frame.columns[frame.columns.duplicated()][0]!r}")
    return frame, None, IN_MEMORY


def _with_kind_options(read):
    """``read``'s signature with one keyword option per kind list (``categorical=""``...),
    after ``label_column``, from the kind registry: the reader registry reads options from the
    signature, so ``--set dataset.<option>=a,b`` exists for every kind that declares one."""
    sig = inspect.signature(read)
    params = [p for p in sig.parameters.values() if p.kind is not p.VAR_KEYWORD]
    extra = [inspect.Parameter(option, inspect.Parameter.KEYWORD_ONLY, default="", annotation="str")
             for option in override_options()]
    read.__signature__ = sig.replace(parameters=params[:2] + extra + params[2:])
    read.__annotations__.update({option: "str" for option in override_options()})
    return read


read_table = _with_kind_options(read_table)


def _check_header(path: Path, dialect) -> None:
    """A CSV header naming a column twice: pandas renamed the second one (``a.1``) silently."""
    with open(path, encoding=dialect.encoding, newline="") as fh:
        header = [c.strip() for c in next(csv.reader(fh, delimiter=dialect.delimiter), [])]
    if all(dialect.number(c) for c in header):  # no header: the columns are named 0, 1, ...
        return
    twice = [c for i, c in enumerate(header) if c and c in header[:i]]
    if twice:
        raise InputError(f"{path.name} names the column {twice[0]!r} twice: give each column its own name")


def _check_integer_range(frame, schema, name: str) -> None:
    """Integral columns (integer, or categorical of whole numbers) decode to 64-bit integers: a
    value past them (1e308 is whole) could be fitted but never written back."""
    for spec in schema.features:
        column = frame[spec.name]
        if spec.kind == "continuous" or column.dtype.kind != "f":  # integer dtypes hold int64 already
            continue
        values = column.to_numpy(dtype=np.float64, na_value=np.nan)
        values = values[np.isfinite(values)]
        if len(values) and (values == np.round(values)).all() and np.abs(values).max() >= 2.0 ** 63:
            raise InputError(f"column {spec.name!r} of {name} holds whole numbers up to {np.abs(values).max():g}, "
                             "past the 64-bit integers samples are written in: rescale it, or drop it with "
                             "dataset.ignore")


def _weights(column, name: str):
    """A weight column's values (numbers, no missing cell) as checked row weights."""
    import pandas as pd

    if column.isna().any():
        row = int(column.isna().to_numpy().nonzero()[0][0])
        raise InputError(f"weight column {name!r} row {row + 1}: a missing weight")
    values = pd.to_numeric(column, errors="coerce")
    if values.isna().any():
        row = int(values.isna().to_numpy().nonzero()[0][0])
        raise InputError(f"weight column {name!r} row {row + 1}: {column.iloc[row]!r} is not a number")
    return check_weights(values.to_numpy(dtype=np.float64), len(column), f"weight column {name!r}")


def _column_name(column: str | int | None, columns: list[str]) -> str | None:
    """A column (the label or the weight column) given by name, or by 0-based index (negative
    from the end) when no column has that name."""
    if column is None or str(column) in columns:
        return None if column is None else str(column)
    text = str(column).strip()
    if text.lstrip("-").isdigit() and -len(columns) <= int(text) < len(columns):
        return columns[int(text)]
    return text  # not a column: the caller says so, and lists them
