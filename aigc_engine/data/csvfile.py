"""The reader of ``.csv`` points: numeric columns, an optional header and label column."""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch

from ..errors import InputError
from .dataset import Dataset

__all__ = ["read_csv", "LABEL_LIKE_COLUMNS"]

# header names that usually hold labels: fitted as features unless label_column says otherwise
LABEL_LIKE_COLUMNS = ("label", "labels", "class", "target", "y")


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def read_csv(path: Path, label_column: int | str | None = None, delimiter: str = ",") -> Dataset:
    """Numeric columns of points, with an optional header and label column.

    ``label_column`` (0-based index or header name) is split off as int64 labels: non-negative
    integers are the ids themselves; any other values are class names, numbered in sorted order
    and kept as ``class_names``. Errors name lines and columns 1-based, as an editor shows them
    (the header, when there is one, is line 1)."""
    with open(path, newline="") as fh:
        first = fh.readline()
    cells = [c.strip() for c in first.rstrip("\r\n").split(delimiter)]
    by_name = isinstance(label_column, str) and not label_column.lstrip("-").isdigit()
    label_idx = None if label_column is None or by_name else int(label_column)
    if label_idx is not None:
        if not -len(cells) <= label_idx < len(cells):
            raise InputError(f"label_column {label_idx} is out of range for {len(cells)} columns")
        label_idx %= len(cells)
    # a header when a feature cell of line 1 is not a number (or a label column is named)
    header = cells if by_name or any(not _is_number(c) for i, c in enumerate(cells) if i != label_idx) else None
    if by_name:
        if label_column not in cells:
            raise InputError(f"label_column {label_column!r} is not a column of {path.name} "
                             f"(columns: {', '.join(cells)})")
        label_idx = cells.index(label_column)
    skip = 1 if header else 0
    features = [i for i in range(len(cells)) if i != label_idx]
    if not features:
        raise InputError(f"{path.name} has no feature column besides the label column")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "input contained no data": checked below
            arr = np.loadtxt(path, delimiter=delimiter, skiprows=skip, usecols=features, ndmin=2,
                             dtype=np.float64, quotechar='"')
            labels = (np.loadtxt(path, delimiter=delimiter, skiprows=skip, usecols=[label_idx], ndmin=1,
                                 dtype=str, quotechar='"') if label_idx is not None else None)
    except ValueError:
        raise InputError(_csv_problem(path, delimiter, skip, header, features, len(cells))) from None
    if arr.size == 0:
        raise InputError(f"dataset file {path.name!r} has no rows")
    bad = ~np.isfinite(arr)
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise InputError(f"{path.name} line {row + skip + 1}, column {features[col] + 1}: NaN or inf value")
    if header and label_idx is None:
        named = [c for c in header if c.lower() in LABEL_LIKE_COLUMNS]
        if named:
            warnings.warn(f"column {named[0]!r} of {path.name} is fitted as a feature; if it holds labels, "
                          f"pass --set dataset.label_column={named[0]}", UserWarning, stacklevel=2)
    y, class_names = (_csv_labels(labels, path.name) if labels is not None else (None, None))
    options = {"label_column": label_column, "delimiter": delimiter}
    return Dataset(torch.from_numpy(arr.astype(np.float32)), y, len(class_names) if class_names else None,
                   path.name, options, class_names)


def _csv_labels(cells: np.ndarray, file_name: str) -> tuple[torch.Tensor, list[str] | None]:
    """A CSV label column's ids and, for names, the sorted names (id i is ``class_names[i]``)."""
    cells = np.char.strip(cells.astype(str))
    if all(_is_number(c) for c in cells):
        values = cells.astype(np.float64)
        if not np.all(np.isfinite(values)) or np.any(values != np.round(values)) or np.any(values < 0):
            raise InputError(f"label column of {file_name} must hold non-negative integers or class names")
        return torch.from_numpy(values.astype(np.int64)), None
    names, ids = np.unique(cells, return_inverse=True)
    return torch.from_numpy(ids.astype(np.int64).reshape(-1)), [str(n) for n in names]


def _csv_problem(path: Path, delimiter: str, skip: int, header: list[str] | None, features: list[int],
                 width: int) -> str:
    """The first cell NumPy could not read, found again with the csv module: line and column
    1-based, with the column's header name."""
    import csv

    with open(path, newline="") as fh:
        for line_no, row in enumerate(csv.reader(fh, delimiter=delimiter), start=1):
            if line_no <= skip or not row:
                continue
            if len(row) != width:
                return (f"{path.name} line {line_no} has {len(row)} columns, "
                        f"{'the header' if header else 'line 1'} has {width}")
            for col in features:
                cell = row[col].strip()
                if not _is_number(cell):
                    named = f" ({header[col]!r})" if header else ""
                    hint = (f"; if this column holds labels, pass --set dataset.label_column="
                            + (header[col] if header else f"{col} (0-based)"))
                    return f"{path.name} line {line_no}, column {col + 1}{named}: {cell!r} is not a number{hint}"
    return f"{path.name} is not a numeric CSV"

