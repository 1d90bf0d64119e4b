"""Tables: column kinds (:mod:`.schema`), a reversible encoding of rows as a float matrix
(:mod:`.encoding`) and the CSV / Parquet reader that attaches it to a Dataset (:mod:`.reader`).
pandas is imported when a table is read, not with this package."""
from .encoding import Block, TableEncoding
from .reader import read_table
from .schema import ColumnSpec, TableSchema, detect_schema, load_frame

__all__ = ["Block", "TableEncoding", "read_table", "ColumnSpec", "TableSchema", "detect_schema", "load_frame"]
