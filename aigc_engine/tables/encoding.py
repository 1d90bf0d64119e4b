"""A reversible encoding of table rows as a float matrix, fitted on the training rows.

Blocks, in column order (:attr:`TableEncoding.blocks`):

- a continuous or integer column: its normal score ``Phi^-1(F(x))`` under the training rows'
  quantiles (the default, ``continuous="quantile"``, TabDDPM's Gaussianisation: skewed columns
  and atoms such as a column of mostly zeros become one normal bell), one standardised value
  ``(x - mean) / std`` (``continuous="standard"``), or CTGAN's mode-specific normalisation (``continuous="modes"``: a
  variational Gaussian mixture per column, up to 10 modes; the value is the offset within its
  most likely mode, ``(x - mu_k) / (4 sigma_k)``, followed by a ``mode`` block, the one-hot of k);
- a categorical column: the one-hot of its category; a column with missing values has one more
  slot for "missing" (its category ``None``), so a softmax covers missingness too;
- a numeric column with missing values: a ``missing`` block, one 0/1 indicator (the value is 0,
  the median or mean, where the indicator is 1).

:meth:`TableEncoding.decode` inverts it: argmax per one-hot block, rounding and the observed
range for integers, the observed range for continuous values, and a missing value wherever the
indicator exceeds 1/2 (thresholding, so decoding is a function of the matrix and the round trip
of the training rows is exact). The state is a tree of tensors and JSON values
(:meth:`state_dict`, :meth:`from_state`), saved with :func:`aigc_engine.io.save_state`.
"""
from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass

import numpy as np
import torch

from ..errors import InputError
from .schema import ColumnSpec, TableSchema

__all__ = ["Block", "TableEncoding", "CONTINUOUS_ENCODINGS"]

CONTINUOUS_ENCODINGS = ("standard", "quantile", "modes")
MAX_MODES = 10
MAX_QUANTILES = 1000


@dataclass
class Block:
    """Columns ``start:stop`` of the matrix: one column's ``kind`` of block (``continuous``,
    ``integer``, ``categorical``, ``mode`` or ``missing``) and, for one-hot blocks, the value of
    each slot (``categories``; None is the missing slot)."""

    column: str
    kind: str
    start: int
    stop: int
    categories: list | None = None

    @property
    def slice(self) -> slice:
        return slice(self.start, self.stop)

    @property
    def one_hot(self) -> bool:
        return self.kind in ("categorical", "mode")


class TableEncoding:
    """``fit(frame, schema)`` on the training rows; ``transform(frame)`` to a float32 matrix,
    ``labels(frame)`` to class ids, ``decode(matrix, labels)`` back to a DataFrame with the
    original header (ignored columns left out), column order and dtypes."""

    def __init__(self, schema: TableSchema, continuous: str = "quantile", params: dict | None = None,
                 label_freq: list[float] | None = None):
        if continuous not in CONTINUOUS_ENCODINGS:
            raise InputError(f"continuous encoding {continuous!r}: choose one of {', '.join(CONTINUOUS_ENCODINGS)}")
        self.schema, self.continuous, self.params = schema, continuous, dict(params or {})
        self.label_freq = list(label_freq) if label_freq is not None else None  # of the fitted rows
        self.blocks = self._layout()
        self.width = self.blocks[-1].stop if self.blocks else 0

    @classmethod
    def fit(cls, frame, schema: TableSchema, continuous: str = "quantile", seed: int = 0,
            fallback: dict | None = None, weights=None) -> "TableEncoding":
        """The encoding of ``schema``'s columns with the statistics of ``frame``'s rows; a numeric
        column without a value there takes its parameters from ``fallback`` (an encoding's
        ``params``). Row ``weights`` (a dataset's) weight the label rates."""
        params = {}
        for spec in schema.features:
            if spec.kind == "categorical":
                continue
            values = frame[spec.name].dropna().to_numpy(dtype=np.float64)
            if not len(values) and fallback and spec.name in fallback:
                params[spec.name] = fallback[spec.name]
                continue
            params[spec.name] = (_fit_modes(values, seed) if continuous == "modes" else
                                 {"quantiles": _fit_quantiles(values, spec)} if continuous == "quantile" else
                                 {"mean": float(values.mean()), "std": float(values.std()) or 1.0})
        freq = None
        if schema.label is not None:
            counts = np.bincount(_category_ids(frame[schema.label.name], schema.label),
                                 weights=None if weights is None else np.asarray(weights, dtype=np.float64),
                                 minlength=len(schema.label.categories))
            freq = (counts / counts.sum()).tolist()
        return cls(schema, continuous, params, freq)

    def refit(self, frame, seed: int = 0, weights=None) -> "TableEncoding":
        """This encoding's schema and layout (columns, kinds, categories, missing blocks, the
        observed ranges that decoding clips to: whatever it transforms still transforms, and
        decodes back unchanged) with its statistics fitted on ``frame``'s rows alone: the
        standardisation or modes of each numeric column and the label rates. A training split's
        encoding, whose scales the held-out rows do not shape."""
        return TableEncoding.fit(frame, self.schema, self.continuous, seed, fallback=self.params, weights=weights)

    def _layout(self) -> list[Block]:
        blocks, at = [], 0

        def add(column, kind, width, categories=None):
            nonlocal at
            blocks.append(Block(column, kind, at, at + width, categories))
            at += width
        for spec in self.schema.features:
            if spec.kind == "categorical":
                add(spec.name, "categorical", len(spec.categories) + spec.has_missing,
                    list(spec.categories) + ([None] if spec.has_missing else []))
                continue
            add(spec.name, spec.kind, 1)
            if self.continuous == "modes":
                add(spec.name, "mode", len(self.params[spec.name]["means"]),
                    list(range(len(self.params[spec.name]["means"]))))
            if spec.has_missing:
                add(spec.name, "missing", 1)
        return blocks

    def roles(self) -> list[list]:
        """The blocks as ``[role, start, stop]`` rows (JSON, what a model saves to shape its
        outputs): ``one_hot`` for a categorical or mode block (a softmax), ``missing`` for a 0/1
        indicator, ``value`` for a standardised continuous or integer column."""
        def role(block: Block) -> str:
            return "one_hot" if block.one_hot else ("missing" if block.kind == "missing" else "value")
        return [[role(b), int(b.start), int(b.stop)] for b in self.blocks]

    def describe(self) -> list[dict]:
        """The blocks as JSON-able dicts (column, kind, start, stop, categories)."""
        return [asdict(b) for b in self.blocks]

    def transform(self, frame) -> torch.Tensor:
        """Rows of ``frame`` (a DataFrame with the feature columns) as an ``N x width`` float32
        matrix; a category or a missing value not seen at fitting is an InputError."""
        missing = [s.name for s in self.schema.features if s.name not in frame.columns]
        if missing:
            raise InputError(f"the table lacks column {missing[0]!r}")
        out = np.zeros((len(frame), self.width), dtype=np.float64)
        by_column = {}
        for block in self.blocks:
            by_column.setdefault(block.column, []).append(block)
        for spec in self.schema.features:
            self._encode_column(spec, frame[spec.name], by_column[spec.name], out)
        return torch.from_numpy(out.astype(np.float32))

    def _encode_column(self, spec: ColumnSpec, values, blocks: list[Block], out: np.ndarray) -> None:
        absent = values.isna().to_numpy()
        if absent.any() and not spec.has_missing:
            raise InputError(f"column {spec.name!r} row {int(np.flatnonzero(absent)[0]) + 1}: a missing "
                             "value, and the training rows had none in this column")
        if spec.kind == "categorical":
            out[:, blocks[0].start:blocks[0].stop] = _one_hot(values, spec, absent)
            return
        x = values.to_numpy(dtype=np.float64, na_value=np.nan)
        p = self.params[spec.name]
        if self.continuous == "standard":
            out[:, blocks[0].start] = np.where(absent, 0.0, (x - p["mean"]) / p["std"])
        elif self.continuous == "quantile":
            out[:, blocks[0].start] = np.where(absent, 0.0, _normal_scores(np.where(absent, 0.0, x), p["quantiles"]))
        else:
            means, stds = np.asarray(p["means"]), np.asarray(p["stds"])
            mode = _likeliest_mode(np.where(absent, means[0], x), p)
            out[:, blocks[0].start] = np.where(absent, 0.0, (x - means[mode]) / (4 * stds[mode]))
            out[np.arange(len(x)), blocks[1].start + mode] = 1.0
        if spec.has_missing:
            out[:, blocks[-1].start] = absent

    def labels(self, frame) -> torch.Tensor:
        """The label column's values as class ids (int64); an unknown label is an InputError."""
        spec = self.schema.label
        if spec is None:
            raise InputError("the table has no label column")
        if spec.name not in frame.columns:
            raise InputError(f"the table lacks its label column {spec.name!r}")
        return torch.from_numpy(_category_ids(frame[spec.name], spec)).long()

    def class_id(self, name: str) -> int:
        """The class id of a label value given by name (``--condition species=Gentoo``)."""
        names = self.schema.class_names or []
        if str(name) not in names:
            raise InputError(f"{self.schema.label.name if self.schema.label else 'label'}: no class {name!r} "
                             f"(classes: {', '.join(names)})")
        return names.index(str(name))

    def decode(self, matrix, labels=None):
        """The inverse of :meth:`transform` (and of :meth:`labels`): a DataFrame with the kept
        columns in file order, their dtypes, category values and observed ranges."""
        import pandas as pd

        m = np.asarray(matrix.detach().cpu().double() if isinstance(matrix, torch.Tensor) else matrix, dtype=np.float64)
        if m.ndim != 2 or m.shape[1] != self.width:
            raise InputError(f"decode: expected an N x {self.width} matrix, got shape {tuple(m.shape)}")
        columns = {}
        for spec in self.schema.features:
            blocks = [b for b in self.blocks if b.column == spec.name]
            columns[spec.name] = self._decode_column(spec, blocks, m)
        label = self.schema.label
        if label is not None:
            if labels is None:
                raise InputError(f"decode: the table's label column {label.name!r} needs the class ids")
            ids = np.asarray(labels.cpu() if isinstance(labels, torch.Tensor) else labels, dtype=np.int64)
            if ids.shape != (len(m),) or (len(ids) and not 0 <= ids.min() <= ids.max() < len(label.categories)):
                raise InputError(f"decode: {len(m)} class ids in 0..{len(label.categories) - 1} expected for "
                                 f"{label.name!r}")
            columns[label.name] = _typed(np.array(label.categories, dtype=object)[ids], label, np.zeros(len(ids), bool))
        order = [c for c in self.schema.columns if c in columns]
        return pd.DataFrame({c: columns[c] for c in order})

    def _decode_column(self, spec: ColumnSpec, blocks: list[Block], m: np.ndarray):
        if spec.kind == "categorical":
            slots = np.array(blocks[0].categories, dtype=object)[m[:, blocks[0].slice].argmax(axis=1)]
            absent = np.array([v is None for v in slots], dtype=bool)
            return _typed(slots, spec, absent)
        p, value = self.params[spec.name], m[:, blocks[0].start]
        if self.continuous == "standard":
            x = value * p["std"] + p["mean"]
        elif self.continuous == "quantile":
            x = _from_normal_scores(value, p["quantiles"])
        else:
            mode = m[:, blocks[1].slice].argmax(axis=1)
            x = value * 4 * np.asarray(p["stds"])[mode] + np.asarray(p["means"])[mode]
        places = 0 if spec.kind == "integer" else spec.decimals
        x = np.clip(x if places is None else np.round(x, places), spec.low, spec.high)
        absent = m[:, blocks[-1].start] > 0.5 if spec.has_missing else np.zeros(len(x), bool)
        return _typed(x, spec, absent)

    def state_dict(self) -> dict:
        params = {name: {k: torch.tensor(v, dtype=torch.float64) if isinstance(v, list) else v
                         for k, v in p.items()} for name, p in self.params.items()}
        state = {"format": 1, "schema": self.schema.to_json(), "continuous": self.continuous, "params": params}
        if self.label_freq is not None:
            state["label_freq"] = torch.tensor(self.label_freq, dtype=torch.float64)
        return state

    @classmethod
    def from_state(cls, state: dict) -> "TableEncoding":
        if state.get("format") != 1:
            raise InputError(f"table encoding format {state.get('format')!r} is not supported")
        params = {name: {k: v.tolist() if isinstance(v, torch.Tensor) else v for k, v in p.items()}
                  for name, p in state["params"].items()}
        freq = state.get("label_freq")
        return cls(TableSchema.from_json(state["schema"]), state["continuous"], params,
                   freq.tolist() if freq is not None else None)

    def __repr__(self) -> str:
        kinds = {}
        for spec in self.schema.features:
            kinds[spec.kind] = kinds.get(spec.kind, 0) + 1
        return (f"TableEncoding({len(self.schema.features)} columns "
                f"({', '.join(f'{n} {k}' for k, n in kinds.items())}), width {self.width}, {self.continuous})")


def _fit_modes(values: np.ndarray, seed: int) -> dict:
    """CTGAN's per-column variational Gaussian mixture: a Dirichlet-process prior of 0.001 prunes
    unused modes; modes of weight above 0.005 are kept."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.mixture import BayesianGaussianMixture

    n = min(MAX_MODES, len(np.unique(values)))
    bgm = BayesianGaussianMixture(n_components=n, weight_concentration_prior_type="dirichlet_process",
                                  weight_concentration_prior=0.001, max_iter=100, random_state=seed)
    with warnings.catch_warnings():  # CTGAN silences the same non-convergence warnings
        warnings.simplefilter("ignore", ConvergenceWarning)
        bgm.fit(values.reshape(-1, 1))
    keep = bgm.weights_ > 0.005
    stds = np.sqrt(bgm.covariances_.reshape(-1))[keep]
    return {"weights": (bgm.weights_[keep] / bgm.weights_[keep].sum()).tolist(),
            "means": bgm.means_.reshape(-1)[keep].tolist(), "stds": np.maximum(stds, 1e-6).tolist()}


def _fit_quantiles(values: np.ndarray, spec: ColumnSpec) -> list[float]:
    """The column's quantiles at ``min(MAX_QUANTILES, n)`` evenly spaced levels in [0, 1], the
    ends stretched to the observed range (a training split's encoding still spans the rows held
    out, which decode to themselves)."""
    q = np.quantile(values, np.linspace(0.0, 1.0, min(MAX_QUANTILES, len(values))))
    q[0], q[-1] = min(q[0], spec.low), max(q[-1], spec.high)
    return q.tolist()


def _levels(quantiles) -> tuple[np.ndarray, np.ndarray, int]:
    q = np.asarray(quantiles, dtype=np.float64)
    return q, np.linspace(0.0, 1.0, len(q)), max(len(q) - 1, 1)


def _normal_scores(x: np.ndarray, quantiles) -> np.ndarray:
    """``Phi^-1`` of the empirical CDF (scikit-learn's QuantileTransformer: ties go to the middle
    of their levels), the levels kept off 0 and 1 by half a step, so the extremes map to about
    +-3 (1,000 quantiles) instead of infinity."""
    from scipy.special import ndtri

    q, levels, steps = _levels(quantiles)
    u = 0.5 * (np.interp(x, q, levels) - np.interp(-x, -q[::-1], -levels[::-1]))
    return ndtri((u * steps + 0.5) / (steps + 1))


def _from_normal_scores(z: np.ndarray, quantiles) -> np.ndarray:
    from scipy.special import ndtr

    q, levels, steps = _levels(quantiles)
    return np.interp(np.clip((ndtr(z) * (steps + 1) - 0.5) / steps, 0.0, 1.0), levels, q)


def _likeliest_mode(x: np.ndarray, p: dict) -> np.ndarray:
    means, stds, weights = (np.asarray(p[k]) for k in ("means", "stds", "weights"))
    z = (x[:, None] - means) / stds
    return (np.log(weights) - np.log(stds) - 0.5 * z * z).argmax(axis=1)


def _category_ids(values, spec: ColumnSpec) -> np.ndarray:
    index = {_key(c): i for i, c in enumerate(spec.categories)}
    ids = np.full(len(values), len(spec.categories), dtype=np.int64)
    for row, v in enumerate(values.tolist()):
        if v is None or (isinstance(v, float) and np.isnan(v)):
            continue
        k = index.get(_key(v))
        if k is None:
            raise InputError(f"column {spec.name!r} row {row + 1}: category {v!r} was not in the training rows")
        ids[row] = k
    return ids


def _key(value):
    """Categories compare by value: 2007 read as an integer or as 2007.0 (a column with missing
    values) is one category; True and 1 are not."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and value == round(value):
        value = int(value)
    return (type(value) is bool, value)


def _one_hot(values, spec: ColumnSpec, absent: np.ndarray) -> np.ndarray:
    ids = _category_ids(values, spec)
    out = np.zeros((len(values), len(spec.categories) + spec.has_missing))
    out[np.arange(len(ids)), ids] = 1.0  # a missing value's id is the extra slot
    return out


def _typed(values: np.ndarray, spec: ColumnSpec, absent: np.ndarray):
    """A column in the dtype it was read with: integers as int64 (``Int64`` with missing values),
    booleans as bool, floats as float64, strings as objects with NaN for missing."""
    import pandas as pd

    values = np.where(absent, None, values).astype(object) if absent.any() else values
    kind = _dtype_kind(spec.dtype)
    if spec.kind == "continuous":
        return pd.array(np.where(absent, np.nan, values).astype(np.float64), dtype="float64")
    integral = spec.kind == "integer" or (kind in "iuf" and all(isinstance(_key(c)[1], int) for c in spec.categories))
    if integral and kind in "iuf":
        return pd.array([None if a else int(v) for v, a in zip(values, absent)],
                        dtype="Int64" if spec.has_missing else "int64")
    if kind == "b" and not spec.has_missing:
        return values.astype(bool)
    if kind == "f":
        return np.where(absent, np.nan, values).astype(np.float64)
    return pd.array(np.where(absent, np.nan, values).astype(object), dtype=object)


def _dtype_kind(dtype: str) -> str:
    """NumPy's kind letter of a pandas dtype name (nullable ``Int64``, ``boolean`` included);
    ``O`` for strings and anything else."""
    from pandas.api import types

    try:
        dtype = types.pandas_dtype(dtype)
    except TypeError:
        return "O"
    return ("b" if types.is_bool_dtype(dtype) else "i" if types.is_integer_dtype(dtype) else
            "f" if types.is_float_dtype(dtype) else "O")
