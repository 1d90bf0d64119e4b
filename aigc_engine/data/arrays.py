"""Readers of NumPy files: ``.npy`` (memory-mapped) and ``.npz`` archives, points or images.
Pickled or object arrays are refused without being unpickled."""
from __future__ import annotations

import math
import zipfile
import zlib
from pathlib import Path

import numpy as np
import torch

from ..errors import InputError
from .dataset import Dataset, check_weights
from .storage import ImageArray, rows_per_block

__all__ = ["read_npy", "read_npz", "from_arrays"]


def _load_error(name: str, err: BaseException) -> InputError:
    text = str(err).splitlines()[0] if str(err) else type(err).__name__
    if any(word in text.lower() for word in ("pickle", "object arrays", "python objects")):
        return InputError(f"{name} holds pickled or object data, which is refused (never unpickled): "
                          f"save plain numeric arrays")
    return InputError(f"cannot read {name} (truncated, or not a valid {Path(name).suffix} file): {text}")


def read_npy(path: Path) -> Dataset:
    """N x D points, or N x H x W, N x C x H x W or N x H x W x C images (C 1 or 3), memory-mapped.

    Points keep their values; images are scaled to [-1, 1] as they are read. Image layout: the
    second axis decides (channels-last only when it is not 1 or 3). Integer pixel arrays must
    hold 0..255 and map by ``x / 127.5 - 1``; float arrays map by their range over the whole
    file, first rule that fits: within [0, 1] -> ``2x - 1``; within [-1, 1] -> kept; within
    [0, 255] -> ``x / 127.5 - 1``; anything else (or NaN/inf) is an error."""
    name = path.name
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:
        raise _load_error(name, err) from None
    if not isinstance(arr, np.ndarray):
        raise InputError(f"{name} is not a .npy array file")
    _check_numeric(arr, name, "array")
    if arr.ndim == 2:
        return Dataset(arr, None, 0, name)
    layout = _image_layout(arr.shape, name)
    return Dataset(_scaled_images(arr, layout, name), None, 0, name)


def read_npz(path: Path) -> Dataset:
    """Array x (points or images, as for .npy), optional labels y (ids or names) and optional
    row weights w (finite, >= 0; for the models that take weights), in memory.

    ``y`` holds non-negative integer class ids, or strings (class names, ids by sorted name, kept
    in ``class_names``)."""
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
            w = archive["w"] if "w" in archive.files else None
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error, KeyError) as err:
        if isinstance(err, InputError):
            raise
        raise _load_error(name, err) from None
    return from_arrays(x, y, w, name)


def from_arrays(x, y=None, w=None, name: str = "arrays") -> Dataset:
    """What an ``.npz`` archive holds, given as arrays in memory (NumPy arrays or CPU tensors):
    ``x`` points ``N x D`` or images (laid out and scaled to [-1, 1] as :func:`read_npy` does),
    optional labels ``y`` (ids or names) and row weights ``w``. ``name`` names them in messages."""
    x = np.asarray(x)
    _check_numeric(x, name, "array x")
    if x.ndim == 2:
        data = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    else:
        data = torch.from_numpy(np.asarray(_scaled_images(x, _image_layout(x.shape, name), name)))
    labels, class_names = _labels(np.asarray(y), len(x), name) if y is not None else (None, None)
    weights = check_weights(np.asarray(w), len(x), f"{name}: array w") if w is not None else None
    return Dataset(data, labels, None, name, class_names=class_names, weights=weights)


def _check_numeric(arr: np.ndarray, name: str, what: str) -> None:
    if arr.dtype.kind not in "iuf":  # bool, complex, strings, records are not pixels or points
        raise InputError(f"{what} of {name} must hold integers or floats, got dtype {arr.dtype}")
    if 0 in arr.shape[1:]:  # (200, 0): rows of no values, which no model can fit
        raise InputError(f"{what} of {name} has shape {tuple(arr.shape)}: each row must hold at least one value")


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


def _scaled_images(arr: np.ndarray, layout: str, name: str) -> ImageArray:
    """``arr`` as images in [-1, 1] (the rules in :func:`read_npy`), read lazily block by block."""
    lo, hi = math.inf, -math.inf
    step = rows_per_block(arr)
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
    return ImageArray(arr, layout, scale, shift)



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

