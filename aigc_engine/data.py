"""Datasets: points ``N x D`` or images ``N x C x H x W`` in [-1, 1], optionally labelled.

The core registers the built-in datasets (``ring8``, ``grid25``, ``moons``, ``blobs``,
``digits``) through the same hook as any plugin, and reads files by path: ``.npy`` points or
images (memory-mapped), ``.npz`` with ``x`` and optional labels ``y``, ``.csv`` points, and
folders of PNG/JPEG images with one sub-folder per class (see ``from_file``).
"""
from __future__ import annotations

import math
import warnings
import zipfile
import zlib
from pathlib import Path
from typing import Iterator, Literal

import numpy as np
import torch

from .config import coerce
from .errors import InputError

__all__ = ["Dataset", "ring8", "grid25", "moons", "blobs", "digits", "from_file", "file_kind", "FILE_OPTIONS",
           "IMAGE_SUFFIXES", "BUILTIN_DATASETS"]


class Dataset:
    """A data set held in memory, or memory-mapped from a ``.npy`` file and streamed in chunks.

    ``x`` is a float tensor (materialised on first access for memory-mapped data), ``y`` int64
    labels or None, ``num_classes`` 0 when unlabelled, ``class_names`` the name of each class id
    (``class_names[k]`` for label ``k``) when the labels came from names (image folders, ``.npz``
    string labels), else None. ``labels_are_classes`` says whether ``y`` is a class a model may
    condition on (digits, image folders, ``.npz``, CSV label columns) or only metadata (the
    synthetic mixtures' component ids); ``conditional_classes`` is ``num_classes`` in the first
    case, else 0. Mixtures with known modes carry their centres ``modes`` (``K x D``) and
    ``mode_std`` for mode-coverage metrics. ``iter_chunks`` streams rows without holding all of
    ``x``; ``shard`` gives one process's contiguous share of the rows, ``subset`` any rows.
    ``splits`` names a data set's standard ``train`` / ``validation`` / ``test`` row ranges, when
    it has one (digits); :meth:`split` uses them, or draws a seeded random split.

    Memory-mapped storage (a ``numpy.memmap`` for points; for ``.npy`` images a view that scales
    on read) supports row slices (still lazy), integer-array row indexing (reads those rows as a
    float32 array) and ``numpy.asarray`` (reads all).
    """

    def __init__(self, x, y: torch.Tensor | None = None, num_classes: int | None = None,
                 name: str = "", options: dict | None = None, class_names: list[str] | None = None, *,
                 labels_are_classes: bool = True, modes: torch.Tensor | None = None,
                 mode_std: float | None = None, splits: dict[str, tuple[int, int]] | None = None):
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
        ``--set dataset.holdout=F``)."""
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
        return self.subset(keep), self.subset(held)

    def subset(self, rows: slice | torch.Tensor) -> "Dataset":
        """The rows ``rows`` (a slice or an index tensor) with this dataset's metadata (a
        held-out split, a shard)."""
        data = self._data[rows] if isinstance(rows, slice) or isinstance(self._data, torch.Tensor) \
            else self._data[np.asarray(rows)]
        y = self.y[rows] if self.y is not None else None
        return Dataset(data, y, self.num_classes, self.name, self.options, self.class_names,
                       labels_are_classes=self.labels_are_classes, modes=self.modes, mode_std=self.mode_std)

    def validate(self) -> "Dataset":
        """Raise InputError for empty data or non-finite values (checked chunk by chunk)."""
        if len(self) == 0:
            raise InputError(f"dataset {self.name!r} is empty")
        # image files were checked while their value range was scanned; the scaling keeps them finite
        scanned = isinstance(self._data, _ImageArray)
        rows = max(1, min(1 << 16, (1 << 22) // max(1, math.prod(self.shape[1:]))))  # bounded memory
        for i, chunk in enumerate(() if scanned else self.iter_chunks(rows)):
            if not torch.isfinite(chunk).all():
                bad = (~torch.isfinite(chunk)).nonzero()[0, 0].item() + i * rows
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
                   len(centres), name, options, labels_are_classes=False,
                   modes=torch.from_numpy(centres.astype(np.float64)), mode_std=float(std))


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
                   "moons", dict(n=n, noise=noise, seed=seed), labels_are_classes=False)


def blobs(n: int = 10_000, centers: int = 5, dim: int = 2, std: float = 1.0, seed: int = 0) -> Dataset:
    """Isotropic Gaussian blobs (scikit-learn's make_blobs), labelled by blob."""
    from sklearn.datasets import make_blobs

    _check_positive(n=n, centers=centers, dim=dim, std=std)
    x, y, c = make_blobs(n_samples=n, centers=centers, n_features=dim, cluster_std=std, random_state=seed,
                         return_centers=True)
    return Dataset(torch.from_numpy(x.astype(np.float32)), torch.from_numpy(y.astype(np.int64)), centers,
                   "blobs", dict(n=n, centers=centers, dim=dim, std=std, seed=seed), labels_are_classes=False,
                   modes=torch.from_numpy(c.astype(np.float64)), mode_std=float(std))


def digits(n: int = 0, seed: int = 0) -> Dataset:
    """scikit-learn's bundled 8x8 digits: 1797 labelled images, N x 1 x 8 x 8 in [-1, 1].

    ``n > 0`` keeps a random subset of that size. The full set carries the standard split
    (``splits``): rows 0:1000 train, 1000:1350 validation, 1350:1797 test."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = bunch.images.astype(np.float32) / 8.0 - 1.0  # pixel values are 0..16
    y = bunch.target.astype(np.int64)
    if n < 0 or n > len(x):
        raise InputError(f"dataset option n must be in [0, {len(x)}] for digits, got {n}")
    if n:
        keep = np.sort(_rng(seed).choice(len(x), size=n, replace=False))
        x, y = x[keep], y[keep]
    # the split of jmtomczak/intro_dgm, common for this set: rows 0:1000 / 1000:1350 / 1350:1797
    splits = None if n else {"train": (0, 1000), "validation": (1000, 1350), "test": (1350, 1797)}
    return Dataset(torch.from_numpy(x[:, None]), torch.from_numpy(y), 10, "digits", dict(n=n, seed=seed),
                   splits=splits)


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")

# Options each kind of file takes (``--set dataset.KEY=VALUE``), with their defaults and types.
FILE_OPTIONS: dict[str, dict[str, tuple[object, object]]] = {
    ".npy": {},
    ".npz": {},
    ".csv": {"label_column": (None, None), "delimiter": (",", str)},
    "folder": {"size": (None, int | None), "channels": ("auto", Literal["auto", 1, 3])},
}


_KIND_NAMES = {".npy": ".npy files", ".npz": ".npz files", ".csv": ".csv files", "folder": "image folders"}


def file_kind(spec: str | Path) -> str | None:
    """``".npy"``, ``".npz"``, ``".csv"``, ``"folder"`` (an existing directory), or None."""
    path = Path(spec)
    suffix = path.suffix.lower()
    if suffix in (".npy", ".npz", ".csv"):
        return suffix
    return "folder" if path.is_dir() else None


def from_file(path: str | Path, label_column: int | str | None = None, delimiter: str = ",",
              size: int | None = None, channels: Literal["auto", 1, 3] | str = "auto") -> Dataset:
    """A dataset read from a file or folder; bad input raises a one-line InputError naming it.

    - ``.npy``: ``N x D`` points (memory-mapped, streamed, values as they are), or images:
      ``N x H x W`` (one channel), ``N x C x H x W`` or ``N x H x W x C`` with C in 1, 3 (the
      second axis decides: channels-last only when it is not 1 or 3). Image arrays stay
      memory-mapped and are scaled block by block as they are read.
    - ``.npz`` (loaded in memory): array ``x`` (points or images as above) and optional ``y``:
      non-negative integer labels (class ids), or strings (class names, ids by sorted name,
      kept in ``class_names``).
    - ``.csv``: numeric points; ``label_column`` (0-based index or header name) is split off as
      int64 labels: non-negative integers are the ids themselves; any other values are class
      names, numbered in sorted order and kept as ``class_names``.
    - a folder of PNG/JPEG images: one sub-folder per class (the ImageFolder convention: class
      ids by sorted folder name, names in ``class_names``; images found at any depth below each
      class folder), or images directly in the folder (unlabelled). ``size=None`` requires every
      image to share one size; ``size=S`` scales the shorter side to S and centre-crops S x S.
      ``channels="auto"`` gives 1 channel when every image is greyscale, else 3 (palette and
      alpha images are converted to RGB, alpha dropped); 1 or 3 forces it.

    Pixel values of images become floats in [-1, 1]: integer arrays (and PNG/JPEG pixels) must
    hold 0..255 and map by ``x / 127.5 - 1``. Float arrays map by their range over the whole
    file, first rule that fits: within [0, 1] -> ``2x - 1``; within [-1, 1] -> kept; within
    [0, 255] -> ``x / 127.5 - 1``; anything else (or NaN/inf) is an error. Pickled or object
    arrays are refused without being unpickled.
    """
    path = Path(path)
    kind = file_kind(path)
    if not path.exists():
        raise InputError(f"dataset path {str(path)!r} does not exist")
    if kind is None or (kind != "folder" and not path.is_file()):
        raise InputError(f"unsupported dataset file {path.name!r}: use .npy, .npz, .csv or a folder "
                         f"of PNG/JPEG images")
    given = {"label_column": label_column is not None, "delimiter": delimiter != ",",
             "size": size is not None, "channels": channels != "auto"}
    for key, is_set in given.items():
        if is_set and key not in FILE_OPTIONS[kind]:
            allowed = " and ".join(_KIND_NAMES[k] for k, opts in FILE_OPTIONS.items() if key in opts)
            raise InputError(f"dataset option {key} applies to {allowed} only, "
                             f"not to {path.name or str(path)}")
    if kind == ".npy":
        return _read_npy(path)
    if kind == ".npz":
        return _read_npz(path)
    if kind == ".csv":
        return _read_csv(path, label_column, delimiter)
    size = coerce(FILE_OPTIONS["folder"]["size"][1], size, "dataset.size")
    if size is not None and size <= 0:
        raise InputError(f"dataset option size must be > 0, got {size}")
    channels = coerce(FILE_OPTIONS["folder"]["channels"][1], channels, "dataset.channels")
    return _read_folder(path, size, channels)


# -- arrays --------------------------------------------------------------------------------------
def _load_error(name: str, err: BaseException) -> InputError:
    text = str(err).splitlines()[0] if str(err) else type(err).__name__
    if any(word in text.lower() for word in ("pickle", "object arrays", "python objects")):
        return InputError(f"{name} holds pickled or object data, which is refused (never unpickled): "
                          f"save plain numeric arrays")
    return InputError(f"cannot read {name} (truncated, or not a valid {Path(name).suffix} file): {text}")


def _read_npy(path: Path) -> Dataset:
    name = path.name
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:
        raise _load_error(name, err) from None
    if not isinstance(arr, np.ndarray):
        raise InputError(f"{name} is not a .npy array file")
    _check_numeric(arr, name, "array")
    if arr.ndim == 2:
        return Dataset(arr, None, 0, name).validate()
    layout = _image_layout(arr.shape, name)
    return Dataset(_scaled_images(arr, layout, name), None, 0, name).validate()


def _read_npz(path: Path) -> Dataset:
    name = path.name
    try:
        archive = np.load(path, allow_pickle=False)
        if not isinstance(archive, np.lib.npyio.NpzFile):
            raise InputError(f"{name} is not an .npz archive (save it with numpy.savez)")
        with archive:
            if "x" not in archive.files:
                raise InputError(f"{name} has no array 'x' (arrays: {', '.join(archive.files) or 'none'}); "
                                 f"save it as numpy.savez(file, x=..., y=...)")
            x = archive["x"]
            y = archive["y"] if "y" in archive.files else None
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error, KeyError) as err:
        if isinstance(err, InputError):
            raise
        raise _load_error(name, err) from None
    _check_numeric(x, name, "array x")
    if x.ndim == 2:
        data = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    else:
        data = torch.from_numpy(np.asarray(_scaled_images(x, _image_layout(x.shape, name), name)))
    labels, class_names = _labels(y, len(x), name) if y is not None else (None, None)
    return Dataset(data, labels, None, name, class_names=class_names).validate()


def _check_numeric(arr: np.ndarray, name: str, what: str) -> None:
    if arr.dtype.kind not in "iuf":  # bool, complex, strings, records are not pixels or points
        raise InputError(f"{what} of {name} must hold integers or floats, got dtype {arr.dtype}")


def _image_layout(shape: tuple[int, ...], name: str) -> str:
    """``"NHW"``, ``"NCHW"`` or ``"NHWC"`` for an image array of this shape."""
    if len(shape) == 3:
        layout = "NHW"
    elif len(shape) == 4 and shape[1] in (1, 3):
        layout = "NCHW"
    elif len(shape) == 4 and shape[3] in (1, 3):
        layout = "NHWC"
    elif len(shape) == 4:
        raise InputError(f"{name}: image arrays need 1 or 3 channels (N x C x H x W or N x H x W x C), "
                         f"got shape {shape}")
    else:
        raise InputError(f"{name} must hold N x D points or N x H x W, N x C x H x W or N x H x W x C "
                         f"images, got shape {shape}")
    if 0 in shape[1:]:
        raise InputError(f"{name}: image arrays cannot have an empty axis, got shape {shape}")
    return layout


_SCAN_ELEMENTS = 1 << 24  # values per block when scanning or scaling a memory-mapped array


def _rows_per_block(arr) -> int:
    return max(1, _SCAN_ELEMENTS // max(1, int(np.prod(arr.shape[1:]))))


def _scaled_images(arr: np.ndarray, layout: str, name: str) -> "_ImageArray":
    """``arr`` as images in [-1, 1] (the rules in ``from_file``), read lazily block by block."""
    lo, hi = math.inf, -math.inf
    step = _rows_per_block(arr)
    for start in range(0, len(arr), step):
        block = np.asarray(arr[start:start + step])
        if block.dtype.kind == "f" and not np.isfinite(block).all():
            row = start + int(np.nonzero(~np.isfinite(block.reshape(len(block), -1)).all(1))[0][0])
            raise InputError(f"{name} has NaN or inf values (first in image {row})")
        if block.size:
            lo, hi = min(lo, float(block.min())), max(hi, float(block.max()))
    if np.issubdtype(arr.dtype, np.integer):
        if lo < 0 or hi > 255:
            raise InputError(f"{name}: integer pixel values must be in 0..255, got {lo:g}..{hi:g}")
        scale, shift = 1 / 127.5, -1.0
    elif lo >= 0 and hi <= 1:
        scale, shift = 2.0, -1.0
    elif lo >= -1 and hi <= 1:
        scale, shift = 1.0, 0.0
    elif lo >= 0 and hi <= 255:
        scale, shift = 1 / 127.5, -1.0
    else:
        raise InputError(f"{name}: float pixel values span [{lo:g}, {hi:g}]; expected them within "
                         f"[-1, 1], [0, 1] or [0, 255]")
    return _ImageArray(arr, layout, scale, shift)


class _ImageArray:
    """Images ``N x C x H x W`` float32 computed on read from a raw (often memory-mapped) array:
    ``raw * scale + shift``, moved to channels-first. Slicing rows gives another lazy view (so
    ``Dataset.shard`` and ``iter_chunks`` stay bounded in memory); any other index, and
    ``numpy.asarray``, reads and converts just those rows."""

    dtype = np.dtype(np.float32)
    ndim = 4

    def __init__(self, raw: np.ndarray, layout: str, scale: float, shift: float):
        self.raw, self.layout, self.scale, self.shift = raw, layout, scale, shift

    @property
    def shape(self) -> tuple[int, int, int, int]:
        s = self.raw.shape
        if self.layout == "NHW":
            return (s[0], 1, s[1], s[2])
        if self.layout == "NHWC":
            return (s[0], s[3], s[1], s[2])
        return tuple(s)

    def __len__(self) -> int:
        return self.raw.shape[0]

    def _convert(self, block: np.ndarray) -> np.ndarray:
        out = np.array(block, dtype=np.float32)  # a writable copy
        if self.scale != 1.0 or self.shift != 0.0:
            out *= np.float32(self.scale)
            out += np.float32(self.shift)
        np.clip(out, -1.0, 1.0, out=out)  # float32 rounding of 255 / 127.5 - 1 and the like
        if self.layout == "NHW":
            return out[:, None]
        if self.layout == "NHWC":
            return np.ascontiguousarray(out.transpose(0, 3, 1, 2))
        return out

    def __getitem__(self, key):
        if isinstance(key, slice):
            return _ImageArray(self.raw[key], self.layout, self.scale, self.shift)
        if isinstance(key, tuple):  # rows first, then the other axes on the converted rows
            head, rest = key[0], key[1:]
            rows = self[head]
            rows = np.asarray(rows) if isinstance(rows, _ImageArray) else rows
            return rows[rest] if isinstance(head, (int, np.integer)) else rows[(slice(None),) + rest]
        if isinstance(key, (int, np.integer)):
            return self._convert(self.raw[[int(key)]])[0]
        return self._convert(self.raw[np.asarray(key)])

    def __array__(self, dtype=None, copy=None):
        out = np.empty(self.shape, dtype=np.float32)
        step = _rows_per_block(self.raw)
        for start in range(0, len(self), step):
            out[start:start + step] = self._convert(self.raw[start:start + step])
        return out if dtype is None else out.astype(dtype, copy=False)

    def __repr__(self) -> str:
        return f"_ImageArray(shape={self.shape}, layout={self.layout!r})"


def _labels(y: np.ndarray, n: int, name: str) -> tuple[torch.Tensor, list[str] | None]:
    """Class ids from integer labels, or from string labels (ids by sorted name)."""
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise InputError(f"labels y of {name} must be one per row (shape N), got shape {y.shape}")
    if len(y) != n:
        raise InputError(f"{name} has {n} rows in x but {len(y)} labels in y")
    if y.dtype.kind in "US":
        try:
            names = y.astype(str)
        except UnicodeDecodeError:
            raise InputError(f"labels y of {name} are bytes that are not ASCII: save them as str") from None
        class_names, ids = np.unique(names, return_inverse=True)
        return torch.from_numpy(ids.reshape(-1).astype(np.int64)), [str(c) for c in class_names]
    if y.dtype.kind not in "iuf":
        raise InputError(f"labels y of {name} must be non-negative integers or strings, got dtype {y.dtype}")
    if y.dtype.kind == "f" and (not np.isfinite(y).all() or np.any(y != np.round(y))):
        raise InputError(f"labels y of {name} must be non-negative integers or strings")
    if len(y) and y.min() < 0:
        raise InputError(f"labels y of {name} must be non-negative integers, got {y.min():g}")
    return torch.from_numpy(y.astype(np.int64)), None


# -- image folders -------------------------------------------------------------------------------
_GREY_MODES = {"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"}


def _is_image_file(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".") and path.is_file()


def _images_below(folder: Path) -> list[Path]:
    found = []
    for p in folder.rglob("*"):
        if not any(part.startswith(".") for part in p.relative_to(folder).parts) and _is_image_file(p):
            found.append(p)
    return sorted(found)


def _read_folder(root: Path, size: int | None, channels: Literal["auto", 1, 3]) -> Dataset:
    from PIL import Image

    label = str(root)
    entries = sorted(p for p in root.iterdir() if not p.name.startswith("."))
    top = [p for p in entries if _is_image_file(p)]
    folders = [p for p in entries if p.is_dir()]
    per_class = {d.name: _images_below(d) for d in folders}
    if any(per_class.values()):
        if top:
            raise InputError(f"image folder {label} mixes images ({top[0].name}) with class sub-folders: "
                             f"put every image in a class folder, or none")
        empty = [k for k, files in per_class.items() if not files]
        if empty:
            raise InputError(f"class folder {str(root / empty[0])} has no PNG/JPEG images")
        class_names = sorted(per_class)
        files = [f for k in class_names for f in per_class[k]]
        labels = np.concatenate([np.full(len(per_class[k]), i, dtype=np.int64)
                                 for i, k in enumerate(class_names)])
    elif top:
        class_names, files, labels = None, top, None
    else:
        raise InputError(f"image folder {label} holds no PNG/JPEG images (expected one sub-folder of "
                         f"images per class, or the images themselves)")

    def fail(path: Path, err: BaseException):
        text = str(err).splitlines()[0] if str(err) else type(err).__name__
        return InputError(f"cannot read image {str(path)}: {text}")

    errors = (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError)
    headers = []  # (mode, (width, height)) of each file, read without decoding the pixels
    for f in files:
        try:
            with Image.open(f) as im:
                headers.append((im.mode, im.size))
        except errors as err:
            raise fail(f, err) from None
    if size is None:
        w, h = headers[0][1]
        for f, (_, other) in zip(files, headers):
            if other != (w, h):
                raise InputError(f"images differ in size: {str(files[0])} is {w}x{h}, {str(f)} is "
                                 f"{other[0]}x{other[1]}; set dataset.size=N to resize them")
    n_channels = channels
    if channels == "auto":
        n_channels = 1 if all(mode in _GREY_MODES for mode, _ in headers) else 3
    height, width = (size, size) if size is not None else headers[0][1][::-1]
    out = np.empty((len(files), n_channels, height, width), dtype=np.uint8)
    for i, f in enumerate(files):
        try:
            with Image.open(f) as im:
                im.load()  # a truncated or corrupt file fails here
                out[i] = _pixels(im, n_channels, size)
        except errors as err:
            raise fail(f, err) from None
    x = torch.from_numpy(out).float().div_(127.5).sub_(1.0).clamp_(-1.0, 1.0)
    y = torch.from_numpy(labels) if labels is not None else None
    options = {"size": size, "channels": channels}
    return Dataset(x, y, len(class_names) if class_names else 0, root.resolve().name, options,
                   class_names).validate()


def _pixels(im, channels: int, size: int | None) -> np.ndarray:
    """One image as ``C x H x W`` uint8: converted to L or RGB, then resized and centre-cropped."""
    from PIL import Image

    if im.mode.startswith("I") or im.mode == "F":  # 16-bit (or 32-bit) greyscale: keep the high byte
        raw = np.asarray(im, dtype=np.float64)
        peak = 65535.0 if raw.max() > 255 or im.mode.startswith("I;16") else 255.0
        im = Image.fromarray(np.clip(np.round(raw * (255.0 / peak)), 0, 255).astype(np.uint8), mode="L")
    im = im.convert("L" if channels == 1 else "RGB")
    if size is not None and im.size != (size, size):
        w, h = im.size
        scale = size / min(w, h)
        nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
        im = im.resize((nw, nh), Image.Resampling.BICUBIC)
        left, top = (nw - size) // 2, (nh - size) // 2
        im = im.crop((left, top, left + size, top + size))
    arr = np.asarray(im, dtype=np.uint8)
    return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)


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
    y, class_names = (_csv_labels(labels, path.name) if labels is not None else (None, None))
    options = {"label_column": label_column, "delimiter": delimiter}
    return Dataset(torch.from_numpy(arr.astype(np.float32)), y, len(class_names) if class_names else None,
                   path.name, options, class_names).validate()


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


BUILTIN_DATASETS = {"ring8": ring8, "grid25": grid25, "moons": moons, "blobs": blobs, "digits": digits}
