"""Tables: column kinds (:mod:`.schema`), a reversible encoding of rows as a float matrix
(:mod:`.encoding`); the CSV / Parquet reader that attaches it to a Dataset is
:func:`aigc_engine.data.tablefile.read_table`.
pandas is imported when a table is read, not with this package."""
from .encoding import Block, TableEncoding
from .schema import ColumnSpec, TableSchema, detect_schema, load_frame

__all__ = ["Block", "TableEncoding", "ColumnSpec", "TableSchema", "detect_schema", "load_frame"]
