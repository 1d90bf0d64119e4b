"""The reader of tables: a CSV (or Parquet) file as a Dataset of encoded rows.

Column kinds are detected (:mod:`aigc_engine.tables.schema`), a reversible encoding is fitted
on the rows (:class:`aigc_engine.tables.TableEncoding`) and attached as ``dataset.encoding``:
models see its float matrix and its blocks, the engine stores it in the run directory and
decodes samples back to the user's columns.
"""
from __future__ import annotations

import warnings
from pathlib import Path

from ..tables.encoding import TableEncoding
from ..tables.schema import detect_schema, load_frame
from .dataset import Dataset

__all__ = ["read_table", "LABEL_LIKE_COLUMNS"]

# header names that usually hold labels: modelled as features unless label_column says otherwise
LABEL_LIKE_COLUMNS = ("label", "labels", "class", "target", "y")


def read_table(path: Path, label_column: str | int | None = None, categorical: str = "", integer: str = "",
               ignore: str = "", delimiter: str = ",") -> Dataset:
    """A table with a header (a CSV whose first line is all numbers has none: its columns are
    named ``0``, ``1``, ...). Options: ``label_column`` (a column name, or a 0-based index, of
    classes for conditional models), ``categorical`` / ``integer`` / ``ignore`` (comma-separated
    column names overriding the detected kinds), ``delimiter``. Missing cells (empty, NA, NaN)
    are a state of their column, not an error."""
    path = Path(path)
    frame = load_frame(path, delimiter)
    label = _label_name(label_column, list(frame.columns))
    schema = detect_schema(frame, label, categorical, integer, ignore, name=path.name)
    if label is None:
        named = [c for c in schema.columns if c.lower() in LABEL_LIKE_COLUMNS and c not in schema.ignored]
        if named:
            warnings.warn(f"column {named[0]!r} of {path.name} is modelled as a feature; to condition on it, "
                          f"pass --set dataset.label_column={named[0]}", UserWarning, stacklevel=2)
    encoding = TableEncoding.fit(frame, schema)
    y = encoding.labels(frame) if schema.label is not None else None
    options = {k: v for k, v in (("label_column", label_column), ("categorical", categorical),
                                 ("integer", integer), ("ignore", ignore)) if v not in (None, "")}
    if delimiter != ",":
        options["delimiter"] = delimiter
    return Dataset(encoding.transform(frame), y, len(schema.class_names) if y is not None else None, path.name,
                   options, schema.class_names, encoding=encoding)


def _label_name(label_column: str | int | None, columns: list[str]) -> str | None:
    """A label column given by name, or by 0-based index (negative from the end) when no column
    has that name."""
    if label_column is None or str(label_column) in columns:
        return None if label_column is None else str(label_column)
    text = str(label_column).strip()
    if text.lstrip("-").isdigit() and -len(columns) <= int(text) < len(columns):
        return columns[int(text)]
    return text  # detect_schema says it is not a column, and lists them
