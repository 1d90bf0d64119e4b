"""A reversible encoding of table rows as a float matrix, fitted on the training rows.

Each column is encoded by its kind's class (:mod:`aigc_engine.tables.kinds`: datetime, key,
text, many_level, categorical, integer, continuous; numbers in the table's numeric encoding
``quantile``, ``standard`` or ``modes``);
this module only orchestrates them. The matrix is their blocks side by side, in column order
(:attr:`TableEncoding.blocks`: typed :class:`~aigc_engine.tables.kinds.Block`\\ s whose
:class:`~aigc_engine.tables.kinds.BlockRole` tells a model which output each needs).

:meth:`TableEncoding.decode` inverts it: argmax per one-hot block, rounding and the observed
range for integers, the observed range for continuous values, and a missing value wherever the
indicator exceeds 1/2 (thresholding, so decoding is a function of the matrix and the round trip
of the training rows is exact). The state is a tree of tensors and JSON values
(:meth:`state_dict`, :meth:`from_state`), saved with :func:`aigc_engine.store.io.save_state`.
"""
from __future__ import annotations

import numpy as np
import torch

from ..errors import InputError
from .kinds import NUMERIC_ENCODINGS, Block, ColumnKind, kind_class
from .kinds.categorical import category_ids, typed_categories
from .schema import TableSchema

__all__ = ["Block", "TableEncoding", "CONTINUOUS_ENCODINGS", "STATE_FORMAT"]

CONTINUOUS_ENCODINGS = tuple(NUMERIC_ENCODINGS)
STATE_FORMAT = 1


class TableEncoding:
    """``fit(frame, schema)`` on the training rows; ``transform(frame)`` to a float32 matrix,
    ``labels(frame)`` to class ids, ``decode(matrix, labels)`` back to a DataFrame with the
    original header (ignored columns empty), column order and dtypes. ``columns`` holds one
    fitted :class:`~aigc_engine.tables.kinds.ColumnKind` per feature column."""

    def __init__(self, schema: TableSchema, continuous: str = "quantile", params: dict | None = None,
                 label_freq: list[float] | None = None, private: dict | None = None):
        if continuous not in CONTINUOUS_ENCODINGS:
            raise InputError(f"continuous encoding {continuous!r}: choose one of {', '.join(CONTINUOUS_ENCODINGS)}")
        self.schema, self.continuous, self.params = schema, continuous, dict(params or {})
        self.label_freq = list(label_freq) if label_freq is not None else None  # of the fitted rows
        # a private encoding's spend and public columns (:mod:`.private`); None: not private
        self.private = dict(private) if private is not None else None
        self.columns: list[ColumnKind] = [kind_class(spec.kind, f"column {spec.name!r}")(
            spec, continuous, self.params.get(spec.name)) for spec in schema.features]
        self.spans: list[list[Block]] = []  # each column's blocks
        at = 0
        for column in self.columns:
            self.spans.append(column.blocks(at))
            at = self.spans[-1][-1].stop if self.spans[-1] else at  # a key has no blocks
        self.blocks = [b for span in self.spans for b in span]
        self.width = at

    def start_sampling(self, seed: int) -> None:
        """Tell each column that the rows of one sample of ``seed`` follow (keys: see
        :meth:`aigc_engine.tables.kinds.key.Key.start_sampling`)."""
        for column in self.columns:
            column.start_sampling(seed)

    @classmethod
    def fit(cls, frame, schema: TableSchema, continuous: str = "quantile", seed: int = 0,
            fallback: dict | None = None, weights=None, public="") -> "TableEncoding":
        """The encoding of ``schema``'s columns with the statistics of ``frame``'s rows; a numeric
        column without a value there takes its parameters from ``fallback`` (an encoding's
        ``params``). Row ``weights`` (a dataset's) weight the label rates. Inside
        :func:`~aigc_engine.tables.private.private_encoding`, the private encoding of
        :func:`~aigc_engine.tables.private.fit_private` (``public``: the columns taken as they are)."""
        from .private import current_plan, fit_private

        if continuous not in CONTINUOUS_ENCODINGS:
            raise InputError(f"continuous encoding {continuous!r}: choose one of {', '.join(CONTINUOUS_ENCODINGS)}")
        if current_plan() is not None:
            if weights is not None:
                raise InputError("a private run takes no row weights (a weight changes a row's sensitivity)")
            schema, params, freq, private = fit_private(frame, schema, continuous, seed, current_plan(), public)
            return cls(schema, continuous, params, freq, private)
        params = {}
        for spec in schema.features:
            column = kind_class(spec.kind, f"column {spec.name!r}")(spec, continuous)
            fitted = column.fit(frame[spec.name], seed, (fallback or {}).get(spec.name))
            if fitted is not None:
                params[spec.name] = fitted
        freq = None
        if schema.label is not None:
            counts = np.bincount(category_ids(frame[schema.label.name], schema.label),
                                 weights=None if weights is None else np.asarray(weights, dtype=np.float64),
                                 minlength=len(schema.label.categories))
            freq = (counts / counts.sum()).tolist()
        return cls(schema, continuous, params, freq)

    def refit(self, frame, seed: int = 0, weights=None) -> "TableEncoding":
        """This encoding's schema and layout (columns, kinds, categories, missing blocks, the
        observed ranges that decoding clips to: whatever it transforms still transforms, and
        decodes back unchanged) with its statistics fitted on ``frame``'s rows alone: the
        standardisation or modes of each numeric column and the label rates. A training split's
        encoding, whose scales the held-out rows do not shape. A private encoding is kept as it is
        (its statistics are private for every row of the table, the held-out ones included)."""
        if self.private is not None:
            return self
        return TableEncoding.fit(frame, self.schema, self.continuous, seed, fallback=self.params, weights=weights)

    def describe(self) -> list[dict]:
        """The blocks as JSON-able dicts (column, kind, role, start, stop, categories)."""
        return [b.to_json() for b in self.blocks]

    def transform(self, frame) -> torch.Tensor:
        """Rows of ``frame`` (a DataFrame with the feature columns) as an ``N x width`` float32
        matrix; a category or a missing value not seen at fitting is an InputError."""
        missing = [s.name for s in self.schema.features if s.name not in frame.columns]
        if missing:
            raise InputError(f"the table lacks column {missing[0]!r}")
        frame = self._released(frame)
        out = np.zeros((len(frame), self.width), dtype=np.float64)
        for column, span in zip(self.columns, self.spans):
            values = frame[column.spec.name]
            absent = values.isna().to_numpy()
            if absent.any() and not column.spec.has_missing:
                raise InputError(f"column {column.spec.name!r} row {int(np.flatnonzero(absent)[0]) + 1}: a missing "
                                 "value, and the training rows had none in this column")
            column.encode(values, absent, out, span)
        return torch.from_numpy(out.astype(np.float32))

    def labels(self, frame) -> torch.Tensor:
        """The label column's values as class ids (int64); an unknown label is an InputError."""
        spec = self.schema.label
        if spec is None:
            raise InputError("the table has no label column")
        if spec.name not in frame.columns:
            raise InputError(f"the table lacks its label column {spec.name!r}")
        frame = self._released(frame)
        return torch.from_numpy(category_ids(frame[spec.name], spec)).long()

    def _released(self, frame):
        """A private encoding: the values it did not release replaced by released ones."""
        if self.private is None:
            return frame
        from .private import release_frame

        return release_frame(frame, self.schema, self.private.get("public", []))

    def class_id(self, name: str) -> int:
        """The class id of a label value given by name (``--condition species=Gentoo``)."""
        names = self.schema.class_names or []
        if str(name) not in names:
            raise InputError(f"{self.schema.label.name if self.schema.label else 'label'}: no class {name!r} "
                             f"(classes: {', '.join(names)})")
        return names.index(str(name))

    def decode(self, matrix, labels=None):
        """The inverse of :meth:`transform` (and of :meth:`labels`): a DataFrame with the file's
        columns in file order, the kept ones in their dtypes, category values and observed ranges,
        the ignored ones empty."""
        import pandas as pd

        m = np.asarray(matrix.detach().cpu().double() if isinstance(matrix, torch.Tensor) else matrix, dtype=np.float64)
        if m.ndim != 2 or m.shape[1] != self.width:
            raise InputError(f"decode: expected an N x {self.width} matrix, got shape {tuple(m.shape)}")
        columns = {column.spec.name: column.decode(m, span) for column, span in zip(self.columns, self.spans)}
        label = self.schema.label
        if label is not None:
            if labels is None:
                raise InputError(f"decode: the table's label column {label.name!r} needs the class ids")
            ids = np.asarray(labels.cpu() if isinstance(labels, torch.Tensor) else labels, dtype=np.int64)
            if ids.shape != (len(m),) or (len(ids) and not 0 <= ids.min() <= ids.max() < len(label.categories)):
                raise InputError(f"decode: {len(m)} class ids in 0..{len(label.categories) - 1} expected for "
                                 f"{label.name!r}")
            columns[label.name] = typed_categories(np.array(label.categories, dtype=object)[ids], label,
                                                   np.zeros(len(ids), bool))
        columns.update(self._derived(columns))
        for name in self.schema.ignored:  # left empty, so the header is the file's
            columns[name] = pd.array([None] * len(m), dtype=object)
        order = [c for c in self.schema.columns if c in columns]
        return pd.DataFrame({c: columns[c] for c in order})

    def _derived(self, columns: dict) -> dict:
        """The columns an equality rule determines (``schema.rules["derived"]``), computed from
        the decoded ones: rounded as the column was written, missing where a term is."""
        import pandas as pd

        out = {}
        for name, d in self.schema.rules.get("derived", {}).items():
            x = np.full(len(next(iter(columns.values()))) if columns else 0, float(d["const"]))
            for term, coef in d["terms"]:
                x = x + coef * pd.Series(columns[term]).to_numpy(dtype=np.float64, na_value=np.nan)
            spec = d["spec"]
            if spec["kind"] == "integer" and not np.isnan(x).any():
                out[name] = np.round(x).astype(np.int64)
            elif spec["kind"] == "integer":
                out[name] = pd.array(np.where(np.isnan(x), None, np.round(x)).astype(object), dtype="Int64")
            else:
                out[name] = np.round(x, spec["decimals"]) if spec.get("decimals") is not None else x
        return out

    def state_dict(self) -> dict:
        params = {name: {k: torch.tensor(v, dtype=torch.float64) if isinstance(v, list) else v
                         for k, v in p.items()} for name, p in self.params.items()}
        state = {"format": STATE_FORMAT, "schema": self.schema.to_json(), "continuous": self.continuous,
                 "params": params}
        if self.label_freq is not None:
            state["label_freq"] = torch.tensor(self.label_freq, dtype=torch.float64)
        if self.private is not None:
            state["private"] = self.private
        return state

    @classmethod
    def from_state(cls, state: dict) -> "TableEncoding":
        if state.get("format") != STATE_FORMAT:
            raise InputError(f"table encoding format {state.get('format')!r} is not supported")
        params = {name: {k: v.tolist() if isinstance(v, torch.Tensor) else v for k, v in p.items()}
                  for name, p in state["params"].items()}
        freq = state.get("label_freq")
        return cls(TableSchema.from_json(state["schema"]), state["continuous"], params,
                   freq.tolist() if freq is not None else None, state.get("private"))

    def __repr__(self) -> str:
        kinds = {}
        for spec in self.schema.features:
            kinds[spec.kind] = kinds.get(spec.kind, 0) + 1
        return (f"TableEncoding({len(self.schema.features)} columns "
                f"({', '.join(f'{n} {k}' for k, n in kinds.items())}), width {self.width}, {self.continuous})")
