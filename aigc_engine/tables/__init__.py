"""Tables: column kinds as classes and their registry (:mod:`.kinds`), a table's schema
(:mod:`.schema`), a reversible encoding of rows as a float matrix (:mod:`.encoding`) and the
output head models put on its blocks (:mod:`.head`); the CSV / Parquet reader that attaches it
to a Dataset is :func:`aigc_engine.data.tablefile.read_table`.
pandas is imported when a table is read, not with this package."""
from .encoding import TableEncoding
from .head import layout_from_json, layout_to_json, observed_mask, table_outputs
from .kinds import KINDS, Block, BlockRole, ColumnKind, kind_class
from .schema import ColumnSpec, TableSchema, detect_schema, load_frame

__all__ = ["Block", "BlockRole", "ColumnKind", "KINDS", "kind_class", "TableEncoding", "ColumnSpec", "TableSchema",
           "detect_schema", "load_frame", "table_outputs", "observed_mask", "layout_to_json", "layout_from_json"]
