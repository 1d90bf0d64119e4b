"""The ``Dataset`` container: points ``N x D`` or images ``N x C x H x W`` in [-1, 1], optionally
labelled, held in memory or memory-mapped, with a public way to read its rows."""
from __future__ import annotations

import functools
import math
from typing import Any, Iterator

import numpy as np
import torch

from ..errors import InputError
from .storage import ImageArray

__all__ = ["Dataset", "check_weights"]

MAX_LEVELS = 256  # more distinct values than this: continuous data (8-bit images have 256)


class Dataset:
    """A data set held in memory, or memory-mapped from a ``.npy`` file and streamed in chunks.

    ``x`` is a float tensor (materialised on first access for memory-mapped data), ``y`` int64
    labels or None, ``num_classes`` 0 when unlabelled, ``class_names`` the name of each class id
    (``class_names[k]`` for label ``k``) when the labels came from names (image folders, ``.npz``
    string labels), else None. ``labels_are_classes`` says whether ``y`` is a class a model may
    condition on (digits, image folders, ``.npz``, CSV label columns) or only metadata (the
    synthetic mixtures' component ids); ``conditional_classes`` is ``num_classes`` in the first
    case, else 0. Mixtures with known modes carry their centres ``modes`` (``K x D``) and
    ``mode_std`` for mode-coverage metrics. Rows are read with :meth:`rows` (a contiguous
    block), :meth:`take` (rows at any indices) and :meth:`iter_chunks` (consecutive blocks),
    none of which holds all of ``x``; ``shard`` gives one process's contiguous share of the
    rows, ``subset`` any rows. :attr:`levels` / :attr:`bin_width` describe quantised (image)
    values, for dequantisation; ``encoding`` is a reversible encoding of the rows that a reader
    fitted (tables), or None. ``splits`` names a data set's standard ``train`` / ``validation`` / ``test`` row ranges, when
    it has one (digits); :meth:`split` uses them, or draws a seeded random split.

    Memory-mapped storage (a ``numpy.memmap`` for points; for ``.npy`` images a view that scales
    on read) supports row slices (still lazy), integer-array row indexing (reads those rows as a
    float32 array) and ``numpy.asarray`` (reads all).
    """

    def __init__(self, x, y: torch.Tensor | None = None, num_classes: int | None = None,
                 name: str = "", options: dict | None = None, class_names: list[str] | None = None, *,
                 labels_are_classes: bool = True, modes: torch.Tensor | None = None,
                 mode_std: float | None = None, splits: dict[str, tuple[int, int]] | None = None,
                 encoding: Any = None, weights: torch.Tensor | None = None):
        if isinstance(x, np.ndarray) and not isinstance(x, np.memmap):
            x = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
        if isinstance(x, torch.Tensor) and not x.is_floating_point():
            x = x.float()
        self._data = x  # a torch.Tensor, or a numpy memmap streamed by iter_chunks
        self.y = y
        self.class_names = list(class_names) if class_names is not None else None
        if num_classes is None and self.class_names is not None:
            num_classes = len(self.class_names)
        if num_classes is None:
            num_classes = int(y.max().item()) + 1 if y is not None and len(y) else 0
        self.num_classes = num_classes
        self.name = name
        self.options = dict(options or {})
        self.labels_are_classes = bool(labels_are_classes)
        self.modes = modes
        self.mode_std = mode_std
        self.splits = dict(splits) if splits else None
        # A reversible encoding of the rows, fitted by the reader (tables: columns to the float
        # matrix ``x``), that the engine stores in the run directory and uses to decode samples
        # back to the user's form; None when ``x`` is the data as the user gave it. Subsets,
        # splits and shards carry it unchanged.
        self.encoding = encoding
        # Row weights (float64, >= 0, from a reader's weight column or the .npz key ``w``) for
        # the models that take them (``Model.takes_weights``); None: every row counts once.
        self.weights = weights

    @property
    def conditional_classes(self) -> int:
        """How many classes a conditional model should condition on (0: train unconditionally)."""
        return self.num_classes if self.labels_are_classes and self.y is not None else 0

    @property
    def x(self) -> torch.Tensor:
        if not isinstance(self._data, torch.Tensor):
            self._data = torch.from_numpy(np.array(self._data, dtype=np.float32))  # one writable copy
        return self._data

    @property
    def in_memory(self) -> bool:
        return isinstance(self._data, torch.Tensor)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self._data.shape)

    def __len__(self) -> int:
        return self.shape[0]

    @property
    def is_image(self) -> bool:
        return len(self.shape) == 4

    def rows(self, start: int = 0, stop: int | None = None, dtype: torch.dtype = torch.float32,
             device: torch.device | str = "cpu") -> torch.Tensor:
        """Rows ``[start, stop)`` as a tensor (Python slice bounds: clipped, negatives from the end).
        Memory-mapped data is read from the file, just those rows; for in-memory data the block
        may share memory with ``x`` when ``dtype`` and ``device`` are already its own."""
        block = self._data[slice(start, stop)]
        if not isinstance(block, torch.Tensor):
            block = torch.from_numpy(np.array(block, dtype=np.float32))  # a writable copy
        return block.to(device=device, dtype=dtype)

    def take(self, indices, dtype: torch.dtype = torch.float32,
             device: torch.device | str = "cpu") -> torch.Tensor:
        """Rows at ``indices`` (a sequence or tensor of ints, any order, repeats allowed), in that
        order. Memory-mapped data is read in file order, only those rows."""
        indices = torch.as_tensor(indices, dtype=torch.int64).reshape(-1)
        if self.in_memory:
            return self._data[indices.to(self._data.device)].to(device=device, dtype=dtype)
        order = torch.argsort(indices)
        block = torch.from_numpy(np.asarray(self._data[indices[order].numpy()], dtype=np.float32))
        out = torch.empty_like(block)
        out[order] = block
        return out.to(device=device, dtype=dtype)

    def iter_chunks(self, chunk_size: int, dtype: torch.dtype = torch.float32,
                    device: torch.device | str = "cpu") -> Iterator[torch.Tensor]:
        """Yield consecutive blocks of at most ``chunk_size`` rows as tensors (:meth:`rows`)."""
        for start in range(0, len(self), chunk_size):
            yield self.rows(start, start + chunk_size, dtype=dtype, device=device)

    def subsample(self, k: int, seed: int = 0) -> torch.Tensor:
        """At most ``k`` rows drawn without replacement (in file order), read row by row from a
        memory-mapped file instead of loading it (for pictures of large data)."""
        n = len(self)
        if n <= k:
            return self.x if self.in_memory else self.rows()
        return self.take(np.sort(np.random.default_rng(seed).choice(n, size=k, replace=False)))

    @functools.cached_property
    def levels(self) -> int:
        """The number ``L`` of evenly spaced levels ``-1 + 2 k / (L - 1)`` in [-1, 1] that hold
        every value of ``x`` (17 for digits, 256 for 8-bit images, 2 for binary ones), the
        smallest such ``L``; 0 for continuous data (more than 256 distinct values, or values off
        any such grid). Computed once per dataset from its own values, streamed in chunks."""
        values = torch.empty(0)
        rows = max(1, (1 << 22) // max(1, math.prod(self.shape[1:])))
        for chunk in self.iter_chunks(rows):
            values = torch.unique(torch.cat([values, torch.unique(chunk)]))
            if len(values) > MAX_LEVELS:
                return 0
        if len(values) < 2 or values[0] < -1 - 1e-6 or values[-1] > 1 + 1e-6:
            return 0
        for levels in range(len(values), MAX_LEVELS + 1):
            k = (values + 1) * (levels - 1) / 2
            if torch.allclose(k, torch.round(k), atol=1e-4):
                return levels
        return 0

    @property
    def bin_width(self) -> float | None:
        """The spacing ``2 / (levels - 1)`` of quantised values (the width of uniform
        dequantisation noise), or None for continuous data."""
        return 2.0 / (self.levels - 1) if self.levels else None

    def shard(self, rank: int, world_size: int) -> "Dataset":
        """Rows ``[rank * N / W, (rank + 1) * N / W)``: this process's share under torchrun."""
        n = len(self)
        lo, hi = rank * n // world_size, (rank + 1) * n // world_size
        return self.subset(slice(lo, hi))

    def split(self, validation: float = 0.1, test: float = 0.1, seed: int = 0) -> dict[str, "Dataset"]:
        """``{"train", "validation", "test"}`` subsets: the data set's standard split when it has
        one (``splits``; the fractions are then ignored), else a random split with these
        fractions from ``seed`` (every model fitted with one seed holds out the same rows)."""
        if self.splits:
            return {name: self.subset(slice(lo, hi)) for name, (lo, hi) in self.splits.items()}
        if not (0 <= validation < 1 and 0 <= test < 1 and validation + test < 1):
            raise InputError(f"held-out fractions must be in [0, 1) with a sum below 1, got {validation} and {test}")
        n = len(self)
        n_val, n_test = int(round(n * validation)), int(round(n * test))
        if n - n_val - n_test < 1:
            raise InputError(f"dataset {self.name!r} has too few rows ({n}) to hold out {validation} and {test}")
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(int(seed)))
        parts = {"train": perm[n_val + n_test:], "validation": perm[:n_val], "test": perm[n_val:n_val + n_test]}
        return {name: self.subset(rows.sort().values) for name, rows in parts.items()}

    def holdout_split(self, fraction: float = 0.2, seed: int = 0) -> tuple["Dataset", "Dataset"]:
        """``(train, holdout)``: the data set's standard ``test`` rows held out when it has a
        standard split (``splits``: the fraction is then ignored; ``train`` is every other row),
        else ``round(fraction * N)`` random rows from ``seed``. The same data, fraction and seed
        always hold out the same rows, whatever the model (``aigc-engine compare``, and
        ``--set dataset.holdout=F``). A table's encoding is refitted on the training rows
        (:meth:`~aigc_engine.tables.TableEncoding.refit`): both parts come back in its columns."""
        n = len(self)
        if self.splits and "test" in self.splits:
            lo, hi = self.splits["test"]
            held = torch.arange(lo, hi)
            keep = torch.cat([torch.arange(0, lo), torch.arange(hi, n)])
        else:
            if not 0 < fraction < 1:
                raise InputError(f"holdout must be in (0, 1), got {fraction}")
            n_held = int(round(n * fraction))
            if n_held < 1 or n - n_held < 1:
                raise InputError(f"dataset {self.name!r} has too few rows ({n}) to hold out {fraction}")
            perm = torch.randperm(n, generator=torch.Generator().manual_seed(int(seed)))
            held, keep = perm[:n_held].sort().values, perm[n_held:].sort().values
        train, held = self.subset(keep), self.subset(held)
        if self.encoding is None:
            return train, held
        # a table: the encoding's statistics refitted on the training rows, both parts re-encoded
        encoding = self.encoding.refit(self.encoding.decode(train.x, train.y), weights=train.weights)
        if encoding is self.encoding:  # kept (a private encoding): the rows are in its columns already
            return train, held
        return train.reencoded(encoding), held.reencoded(encoding)

    def reencoded(self, encoding) -> "Dataset":
        """These rows (a table read with an encoding of its own) in the columns of ``encoding``
        (a run's): decoded by their own encoding (exact for categories, integers and missing
        cells), encoded by the run's, so the run's model sees them as it saw its training rows.
        A category the run never saw is an InputError."""
        frame = self.encoding.decode(self.x, self.y)
        y = encoding.labels(frame) if encoding.schema.label is not None else None
        return Dataset(encoding.transform(frame), y, len(encoding.schema.class_names) if y is not None else None,
                       self.name, self.options, encoding.schema.class_names, encoding=encoding,
                       weights=self.weights)

    def subset(self, rows: slice | torch.Tensor) -> "Dataset":
        """The rows ``rows`` (a slice or an index tensor) with this dataset's metadata (a
        held-out split, a shard)."""
        data = self._data[rows] if isinstance(rows, slice) or isinstance(self._data, torch.Tensor) \
            else self._data[np.asarray(rows)]
        y = self.y[rows] if self.y is not None else None
        w = self.weights[rows] if self.weights is not None else None
        return Dataset(data, y, self.num_classes, self.name, self.options, self.class_names,
                       labels_are_classes=self.labels_are_classes, modes=self.modes, mode_std=self.mode_std,
                       encoding=self.encoding, weights=w)

    def validate(self) -> "Dataset":
        """Raise InputError for empty data or non-finite values (checked chunk by chunk)."""
        if len(self) == 0:
            raise InputError(f"dataset {self.name!r} is empty")
        # image files were checked while their value range was scanned; the scaling keeps them finite
        scanned = isinstance(self._data, ImageArray)
        rows = max(1, min(1 << 16, (1 << 22) // max(1, math.prod(self.shape[1:]))))  # bounded memory
        for i, chunk in enumerate(() if scanned else self.iter_chunks(rows)):
            if not torch.isfinite(chunk).all():
                bad = (~torch.isfinite(chunk)).nonzero()[0, 0].item() + i * rows
                raise InputError(f"dataset {self.name!r} has NaN or inf values (first in row {bad})")
        if self.y is not None and len(self.y) != len(self):
            raise InputError(f"dataset {self.name!r} has {len(self)} rows but {len(self.y)} labels")
        if self.weights is not None:
            check_weights(self.weights, len(self), f"dataset {self.name!r}: weights")
        return self

    def __repr__(self) -> str:
        return f"Dataset(name={self.name!r}, shape={self.shape}, num_classes={self.num_classes})"


def check_weights(values, n: int, what: str) -> torch.Tensor:
    """Row weights as a float64 tensor of ``n`` values, each finite and >= 0, with a positive sum;
    anything else is an InputError that starts with ``what`` (``"column 'w'"``) and names the row."""
    w = np.asarray(values.cpu() if isinstance(values, torch.Tensor) else values)
    if w.dtype.kind not in "iuf":
        raise InputError(f"{what} must be numbers, got {w.dtype}")
    if w.ndim != 1:
        raise InputError(f"{what} must be one number per row, got shape {list(w.shape)}")
    if len(w) != n:
        raise InputError(f"{what}: {len(w)} weights for {n} rows")
    w = w.astype(np.float64)
    for bad, why in ((~np.isfinite(w), "is not a finite number"), (w < 0, "is negative")):
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise InputError(f"{what} row {row + 1}: {float(w[row])!r} {why}")
    if not w.sum() > 0:
        raise InputError(f"{what}: all weights are 0")
    return torch.from_numpy(w)
