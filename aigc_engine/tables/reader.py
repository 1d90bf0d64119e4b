"""The table reader: a CSV or Parquet file as a :class:`aigc_engine.data.Dataset` of encoded rows."""
from __future__ import annotations

from pathlib import Path

from ..data import Dataset
from .encoding import TableEncoding
from .schema import detect_schema, load_frame

__all__ = ["read_table"]


def read_table(path, label_column: str | None = None, categorical="", integer="", ignore="",
               delimiter: str = ",") -> Dataset:
    """Read ``path`` (CSV with a header, or Parquet), detect its column kinds (see
    :mod:`aigc_engine.tables.schema`), and fit a :class:`TableEncoding` on its rows.

    ``x`` is the encoded matrix (float32), ``y`` the class ids of ``label_column`` (None without
    one), ``class_names`` the label values; ``dataset.encoding`` decodes samples back to rows."""
    path = Path(path)
    frame = load_frame(path, delimiter)
    schema = detect_schema(frame, label_column, categorical, integer, ignore, name=path.name)
    encoding = TableEncoding.fit(frame, schema)
    y = encoding.labels(frame) if schema.label is not None else None
    options = {k: v for k, v in (("label_column", label_column), ("categorical", categorical),
                                 ("integer", integer), ("ignore", ignore)) if v}
    dataset = Dataset(encoding.transform(frame), y, name=path.stem, options=options,
                      class_names=schema.class_names)
    dataset.encoding = encoding
    return dataset
