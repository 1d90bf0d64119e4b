"""Lazy storage of memory-mapped images: ``N x C x H x W`` floats in [-1, 1] computed from the
raw array as rows are read."""
from __future__ import annotations

import numpy as np

_SCAN_ELEMENTS = 1 << 24  # values per block when scanning or scaling a memory-mapped array


def rows_per_block(arr) -> int:
    """Rows of ``arr`` in one block of about ``_SCAN_ELEMENTS`` values (bounded memory)."""
    return max(1, _SCAN_ELEMENTS // max(1, int(np.prod(arr.shape[1:]))))


class ImageArray:
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
            return ImageArray(self.raw[key], self.layout, self.scale, self.shift)
        if isinstance(key, tuple):  # rows first, then the other axes on the converted rows
            head, rest = key[0], key[1:]
            rows = self[head]
            rows = np.asarray(rows) if isinstance(rows, ImageArray) else rows
            return rows[rest] if isinstance(head, (int, np.integer)) else rows[(slice(None),) + rest]
        if isinstance(key, (int, np.integer)):
            return self._convert(self.raw[[int(key)]])[0]
        return self._convert(self.raw[np.asarray(key)])

    def __array__(self, dtype=None, copy=None):
        out = np.empty(self.shape, dtype=np.float32)
        step = rows_per_block(self.raw)
        for start in range(0, len(self), step):
            out[start:start + step] = self._convert(self.raw[start:start + step])
        return out if dtype is None else out.astype(dtype, copy=False)

    def __repr__(self) -> str:
        return f"ImageArray(shape={self.shape}, layout={self.layout!r})"

