"""Datasets: points ``N x D`` or images ``N x C x H x W`` in [-1, 1], optionally labelled.

The core registers the built-in datasets (``ring8``, ``grid25``, ``moons``, ``blobs``,
``digits``) through the same hook as any plugin, and reads ``.npy`` (memory-mapped) and ``.csv``
files by path.
"""
from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from .errors import InputError

__all__ = ["Dataset", "ring8", "grid25", "moons", "blobs", "digits", "from_file", "BUILTIN_DATASETS"]


class Dataset:
    """A data set held in memory, or memory-mapped from a ``.npy`` file and streamed in chunks.

    ``x`` is a float tensor (materialised on first access for memory-mapped data), ``y`` int64
    labels or None, ``num_classes`` 0 when unlabelled, ``class_names`` the name of each label id
    when the labels came as names (a CSV column of ``dog``, ``cat``), else None.
    ``iter_chunks`` streams rows without holding all of ``x``; ``shard`` gives one process's
    contiguous share of the rows.
    """

    def __init__(self, x, y: torch.Tensor | None = None, num_classes: int | None = None,
                 name: str = "", options: dict | None = None, class_names: list[str] | None = None):
        if isinstance(x, np.ndarray) and not isinstance(x, np.memmap):
            x = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
        if isinstance(x, torch.Tensor) and not x.is_floating_point():
            x = x.float()
        self._data = x  # a torch.Tensor, or a numpy memmap streamed by iter_chunks
        self.y = y
        if num_classes is None:
            num_classes = int(y.max().item()) + 1 if y is not None and len(y) else 0
        self.num_classes = num_classes
        self.name = name
        self.options = dict(options or {})
        self.class_names = list(class_names) if class_names is not None else None

    @property
    def x(self) -> torch.Tensor:
        if not isinstance(self._data, torch.Tensor):
            self._data = torch.from_numpy(np.asarray(self._data, dtype=np.float32).copy())
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

    def iter_chunks(self, chunk_size: int, dtype: torch.dtype = torch.float32,
                    device: torch.device | str = "cpu") -> Iterator[torch.Tensor]:
        """Yield consecutive blocks of at most ``chunk_size`` rows as tensors."""
        for start in range(0, len(self), chunk_size):
            block = self._data[start:start + chunk_size]
            if not isinstance(block, torch.Tensor):
                block = torch.from_numpy(np.array(block, dtype=np.float32))
            yield block.to(device=device, dtype=dtype)

    def subsample(self, k: int, seed: int = 0) -> torch.Tensor:
        """At most ``k`` rows drawn without replacement (in file order), read row by row from a
        memory-mapped file instead of loading it (for pictures of large data)."""
        n = len(self)
        if n <= k:
            return self.x if self.in_memory else torch.from_numpy(np.array(self._data, dtype=np.float32))
        rows = np.sort(_rng(seed).choice(n, size=k, replace=False))
        block = self._data[torch.from_numpy(rows)] if self.in_memory else self._data[rows]
        return block if isinstance(block, torch.Tensor) else torch.from_numpy(np.asarray(block, dtype=np.float32))

    def shard(self, rank: int, world_size: int) -> "Dataset":
        """Rows ``[rank * N / W, (rank + 1) * N / W)``: this process's share under torchrun."""
        n = len(self)
        lo, hi = rank * n // world_size, (rank + 1) * n // world_size
        y = self.y[lo:hi] if self.y is not None else None
        return Dataset(self._data[lo:hi], y, self.num_classes, self.name, self.options, self.class_names)

    def validate(self) -> "Dataset":
        """Raise InputError for empty data or non-finite values (checked chunk by chunk)."""
        if len(self) == 0:
            raise InputError(f"dataset {self.name!r} is empty")
        for i, chunk in enumerate(self.iter_chunks(1 << 16)):
            if not torch.isfinite(chunk).all():
                bad = (~torch.isfinite(chunk)).nonzero()[0, 0].item() + i * (1 << 16)
                raise InputError(f"dataset {self.name!r} has NaN or inf values (first in row {bad})")
        if self.y is not None and len(self.y) != len(self):
            raise InputError(f"dataset {self.name!r} has {len(self)} rows but {len(self.y)} labels")
        return self

    def __repr__(self) -> str:
        return f"Dataset(name={self.name!r}, shape={self.shape}, num_classes={self.num_classes})"


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def _check_positive(**values) -> None:
    for key, value in values.items():
        if value <= 0:
            raise InputError(f"dataset option {key} must be > 0, got {value}")


def _mixture(centres: np.ndarray, n: int, std: float, seed: int, name: str, options: dict) -> Dataset:
    _check_positive(n=n, std=std)
    rng = _rng(seed)
    labels = rng.integers(0, len(centres), size=n)
    x = centres[labels] + std * rng.standard_normal((n, centres.shape[1]))
    return Dataset(torch.from_numpy(x.astype(np.float32)), torch.from_numpy(labels.astype(np.int64)),
                   len(centres), name, options)


def ring8(n: int = 10_000, std: float = 0.01, radius: float = 1.0, modes: int = 8, seed: int = 0) -> Dataset:
    """Gaussians evenly spaced on a circle (8 modes, radius 1, std 0.01)."""
    _check_positive(radius=radius, modes=modes)
    angles = 2 * math.pi * np.arange(modes) / modes
    centres = radius * np.stack([np.cos(angles), np.sin(angles)], 1)
    return _mixture(centres, n, std, seed, "ring8", dict(n=n, std=std, radius=radius, modes=modes, seed=seed))


def grid25(n: int = 10_000, std: float = 0.05, seed: int = 0) -> Dataset:
    """25 Gaussians with means on {-4, -2, 0, 2, 4}^2, std 0.05."""
    g = np.arange(-4, 5, 2, dtype=np.float64)
    centres = np.stack(np.meshgrid(g, g, indexing="ij"), -1).reshape(-1, 2)
    return _mixture(centres, n, std, seed, "grid25", dict(n=n, std=std, seed=seed))


def moons(n: int = 10_000, noise: float = 0.05, seed: int = 0) -> Dataset:
    """scikit-learn's two interleaving half circles, labelled by moon."""
    from sklearn.datasets import make_moons

    _check_positive(n=n)
    x, y = make_moons(n_samples=n, noise=noise, random_state=seed)
    return Dataset(torch.from_numpy(x.astype(np.float32)), torch.from_numpy(y.astype(np.int64)), 2,
                   "moons", dict(n=n, noise=noise, seed=seed))


def blobs(n: int = 10_000, centers: int = 5, dim: int = 2, std: float = 1.0, seed: int = 0) -> Dataset:
    """Isotropic Gaussian blobs (scikit-learn's make_blobs), labelled by blob."""
    from sklearn.datasets import make_blobs

    _check_positive(n=n, centers=centers, dim=dim, std=std)
    x, y = make_blobs(n_samples=n, centers=centers, n_features=dim, cluster_std=std, random_state=seed)
    return Dataset(torch.from_numpy(x.astype(np.float32)), torch.from_numpy(y.astype(np.int64)), centers,
                   "blobs", dict(n=n, centers=centers, dim=dim, std=std, seed=seed))


def digits(n: int = 0, seed: int = 0) -> Dataset:
    """scikit-learn's bundled 8x8 digits: 1797 labelled images, N x 1 x 8 x 8 in [-1, 1].

    ``n > 0`` keeps a random subset of that size."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = bunch.images.astype(np.float32) / 8.0 - 1.0  # pixel values are 0..16
    y = bunch.target.astype(np.int64)
    if n < 0 or n > len(x):
        raise InputError(f"dataset option n must be in [0, {len(x)}] for digits, got {n}")
    if n:
        keep = np.sort(_rng(seed).choice(len(x), size=n, replace=False))
        x, y = x[keep], y[keep]
    return Dataset(torch.from_numpy(x[:, None]), torch.from_numpy(y), 10, "digits", dict(n=n, seed=seed))


def from_file(path: str | Path, label_column: int | str | None = None, delimiter: str = ",") -> Dataset:
    """Read ``.npy`` (N x D, memory-mapped, not loaded whole) or numeric ``.csv`` points.

    For CSV, ``label_column`` (0-based index or header name) is split off as int64 labels:
    non-negative integers are the ids themselves; any other values are class names, numbered
    in sorted order and kept as ``class_names``.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"dataset file {str(path)!r} does not exist")
    suffix = path.suffix.lower()
    name = path.name
    if suffix == ".npy":
        if label_column is not None:
            raise InputError("label_column applies to .csv files only")
        try:
            arr = np.load(path, mmap_mode="r", allow_pickle=False)
        except ValueError as err:
            raise InputError(f"cannot read {name}: {err}") from None
        if arr.ndim != 2 or not np.issubdtype(arr.dtype, np.number):
            raise InputError(f"{name} must hold a numeric N x D array, got shape {arr.shape} "
                             f"of dtype {arr.dtype}")
        return Dataset(arr, None, 0, name).validate()
    if suffix == ".csv":
        return _read_csv(path, label_column, delimiter)
    raise InputError(f"unsupported dataset file {name!r}: use .npy or .csv")


# header names that usually hold labels: fitted as features unless label_column says otherwise
LABEL_LIKE_COLUMNS = ("label", "labels", "class", "target", "y")


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _read_csv(path: Path, label_column, delimiter: str) -> Dataset:
    """CSV points. Errors name lines and columns 1-based, as an editor shows them (the header,
    when there is one, is line 1)."""
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
    y, class_names = (_labels(labels, path.name) if labels is not None else (None, None))
    options = {"label_column": label_column, "delimiter": delimiter}
    return Dataset(torch.from_numpy(arr.astype(np.float32)), y, len(class_names) if class_names else None,
                   path.name, options, class_names).validate()


def _labels(cells: np.ndarray, file_name: str) -> tuple[torch.Tensor, list[str] | None]:
    """Label ids and, for names, the sorted names (id i is ``class_names[i]``)."""
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


BUILTIN_DATASETS = {"ring8": ring8, "grid25": grid25, "moons": moons, "blobs": blobs, "digits": digits}
