"""The data of a fit: its rows read in chunks and the sufficient-statistics pass over them.

- :class:`Source`: the rows of a data set, read in chunks (a tensor, a NumPy array or memmap,
  or an engine Dataset), and :func:`choose_origin`, the frame they are fitted in.
- :class:`Stats` and :func:`statistics_pass`: one pass over the data adds up each chunk's float64
  sufficient statistics and sums those of all processes with one all-reduce of a single flat
  tensor. Every pass of a fit (each E-step, the initialisation) is one call of it.
- :func:`check_sample_weight`: the rows' sample weights, checked.

The statistics table is ``sum_n r_nk [1 | z_n | moments(z_n)]`` with ``z = x - s`` around a
shift ``s`` (``ops.mixture_stats`` layout): second moments are *shifted*, never raw
``sum r x x^T``. Then ``cov_k = S_k / nk - (m_k - s)(m_k - s)^T``, the exact centred covariance
up to rounding; the shifts are parameters every process already shares, so the statistics of
several processes (or chunks) add up exactly. Tied covariances add the unweighted scatter
``sum_n (x_n - s)(x_n - s)^T``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterator

import numpy as np
import torch
from sklearn.utils.validation import check_array

from aigc_engine import ops

# default rows per chunk: in-memory tensors take large chunks (fewer passes of Python), streamed
# data (memmaps, engine Datasets) bounds memory by the chunk
IN_MEMORY_CHUNK = 1 << 18
STREAM_CHUNK = 65536


# --------------------------------------------------------------------------------------------
# data sources
class Source:
    """Rows of a data set, streamed in chunks: a tensor, a NumPy array or memmap, or an engine
    Dataset. ``chunks()`` yields ``(offset, tensor)`` with the compute dtype and device.

    ``origin`` (float64 ``[D]``, or None) is subtracted from every row before the cast to the
    compute dtype: data far from zero relative to its spread (see :func:`choose_origin`) is
    fitted in a frame near zero, so the E-step's products do not cancel. Parameters stay in the
    data's frame; :meth:`Params.compute` moves the means into the rows' frame."""

    def __init__(self, data, dtype: torch.dtype, device: torch.device, chunk_size: int | None = None,
                 origin: torch.Tensor | None = None):
        self.data, self.dtype, self.device = data, dtype, torch.device(device)
        self.origin = origin.to(self.device, torch.float64) if origin is not None else None
        shape = tuple(data.shape)
        self.n_samples, self.n_features = shape[0], int(np.prod(shape[1:])) if len(shape) > 1 else 1
        self.global_offset = 0  # first row of this process's shard in the whole data set
        if chunk_size is None:
            chunk_size = IN_MEMORY_CHUNK if isinstance(data, torch.Tensor) else STREAM_CHUNK
        self.chunk_size = max(1, int(chunk_size))

    def _convert(self, block) -> torch.Tensor:
        if not isinstance(block, torch.Tensor):
            block = torch.from_numpy(np.array(block))  # a writable copy (memmaps are read-only)
        if self.origin is None:
            return block.to(device=self.device, dtype=self.dtype)
        # subtract in the stored precision (float64, or float32 with a float32 origin: exact
        # for rows near it), then round to the compute dtype
        block = block.to(self.device)
        block = block if block.dtype in (torch.float32, torch.float64) else block.double()
        return (block - self.origin.to(block.dtype)).to(self.dtype)

    def chunks(self) -> Iterator[tuple[int, torch.Tensor]]:
        data = self.data
        if hasattr(data, "iter_chunks"):  # an aigc_engine Dataset (maybe memory-mapped)
            offset = 0
            dtype = self.dtype if self.origin is None else torch.float64
            for block in data.iter_chunks(self.chunk_size, dtype=dtype, device=self.device):
                yield offset, self._convert(block.reshape(len(block), -1))
                offset += len(block)
            return
        for start in range(0, self.n_samples, self.chunk_size):
            yield start, self._convert(data[start:start + self.chunk_size])

    def take(self, indices) -> torch.Tensor:
        """Rows at ``indices`` (any order), as a ``[len(indices), D]`` tensor."""
        indices = np.asarray(indices, dtype=np.int64)
        data = self.data
        if hasattr(data, "take") and hasattr(data, "iter_chunks"):  # an engine Dataset: it reads just these rows
            # rows in memory as stored; memory-mapped ones in the precision chunks() gives them
            dtype = data.x.dtype if data.in_memory else self.dtype if self.origin is None else torch.float64
            return self._convert(data.take(indices, dtype=dtype).reshape(len(indices), -1))
        if hasattr(data, "iter_chunks"):  # any object with shape + iter_chunks: found in one pass
            out = torch.empty(len(indices), self.n_features, dtype=self.dtype, device=self.device)
            for offset, x in self.chunks():
                hit = (indices >= offset) & (indices < offset + len(x))
                if hit.any():
                    pos = torch.as_tensor(np.nonzero(hit)[0], device=self.device)
                    out[pos] = x[torch.as_tensor(indices[hit] - offset, device=self.device)]
            return out
        if isinstance(data, torch.Tensor):
            return self._convert(data[torch.as_tensor(indices, device=data.device)])
        order = np.argsort(indices)
        rows = np.asarray(data[indices[order]])
        out = np.empty_like(rows)
        out[order] = rows
        return self._convert(out)


def choose_origin(source: Source) -> torch.Tensor | None:
    """The origin to fit ``source`` in: None for data near zero, else the mean of its first rows
    (rounded to float32, so that float32 rows minus it are exact; missing entries, NaN, left out).

    Data centred ``c`` away from zero with spread ``s`` loses ``eps (c / s)^2`` of the E-step's
    log-density to cancellation (diag / spherical expand ``|x - m|^2``; full's ``x L - m L`` loses
    ``eps c / s``): harmless below ``c / s = 100`` in float32 (and 1e4 in float64), one digit
    left at 1e3 in float32, none at 1e6."""
    probe = Source(source.data, torch.float64, source.device, min(source.chunk_size, 4096))
    _, x = next(probe.chunks())
    mean = torch.nan_to_num(torch.nanmean(x, 0))  # a column missing in every probed row: 0
    std = torch.nan_to_num(torch.nanmean((x - mean) ** 2, 0)).sqrt()
    limit = 100.0 if source.dtype == torch.float32 else 1e4
    if not bool((mean.abs() > limit * std).any()):
        return None
    return mean.float().double()


# --------------------------------------------------------------------------------------------
# sufficient statistics
@dataclass
class Stats:
    """Float64 sums of one pass. ``table [K, C]`` is ``ops.mixture_stats``'s table around
    ``shift`` (``[D]``, or ``[K, D]`` per component); ``scatter [D, D]`` (tied only, else empty)
    is ``sum (x - tied_shift)(x - tied_shift)^T`` over all rows. The shifts are exactly the
    values the pass used (compute dtype, held as float64) and are not all-reduced."""
    table: torch.Tensor
    scatter: torch.Tensor
    ll: torch.Tensor      # []  sum of log p(x_n)
    n: torch.Tensor       # []  number of rows
    shift: torch.Tensor
    tied_shift: torch.Tensor

    def flat(self) -> torch.Tensor:
        return torch.cat([self.table.reshape(-1), self.scatter.reshape(-1), self.ll.reshape(1),
                          self.n.reshape(1)])

    def load_flat(self, flat: torch.Tensor) -> None:
        i = 0
        for name in ("table", "scatter", "ll", "n"):
            t = getattr(self, name)
            setattr(self, name, flat[i:i + t.numel()].reshape(t.shape))
            i += t.numel()

    def all_reduce(self, all_reduce: Callable[[torch.Tensor], torch.Tensor] | None) -> "Stats":
        if all_reduce is not None:
            flat = self.flat()
            all_reduce(flat)
            self.load_flat(flat)
        return self


def empty_stats(K: int, D: int, covariance_type: str, shift: torch.Tensor, tied_shift: torch.Tensor) -> Stats:
    f64 = dict(dtype=torch.float64, device=shift.device)
    scatter = (D, D) if covariance_type == "tied" else (0,)
    return Stats(torch.zeros(K, ops.stats_columns(covariance_type, D), **f64), torch.zeros(scatter, **f64),
                 torch.zeros((), **f64), torch.zeros((), **f64), shift.to(torch.float64),
                 tied_shift.to(torch.float64))


def add_chunk(stats: Stats, x: torch.Tensor, table: torch.Tensor, covariance_type: str, double: bool,
              w: torch.Tensor | None = None) -> None:
    """Add one chunk: its statistics table, its row count (the sum of its sample weights ``w``
    ``[n]`` when given) and (tied) its scatter around ``stats.tied_shift`` (weighted by ``w``;
    float64 products with ``double``)."""
    stats.n += x.shape[0] if w is None else w.sum()
    stats.table += table
    if covariance_type == "tied":
        z = x.double() - stats.tied_shift if double else x - stats.tied_shift.to(x.dtype)
        zw = z if w is None else z * w.to(z.dtype)[:, None]
        stats.scatter += (zw.T @ z).to(torch.float64)


def statistics_pass(source: Source, stats: Stats, chunk_statistics: Callable, covariance_type: str,
                    double: bool, all_reduce: Callable[[torch.Tensor], Any] | None = None,
                    weights: torch.Tensor | None = None) -> Stats:
    """One pass over ``source``: for each chunk ``x [n, D]`` (``offset`` its first row among
    this process's rows) and its sample weights ``w`` (``weights[offset:offset + n]``, float64,
    or None for unit weights), ``chunk_statistics(offset, x, w) -> (table [K, C], ll [] or
    None)`` is added to ``stats`` with the chunk's (weighted) row count and (tied) its scatter
    (float64 products with ``double``); then the sums of all processes are combined with one
    all-reduce."""
    for offset, x in source.chunks():
        w = None if weights is None else weights[offset:offset + len(x)]
        table, ll = chunk_statistics(offset, x, w)
        add_chunk(stats, x, table, covariance_type, double, w)
        if ll is not None:
            stats.ll += ll
    return stats.all_reduce(all_reduce)


def check_sample_weight(sample_weight, n_samples: int, device) -> torch.Tensor | None:
    """``sample_weight`` (array-like or tensor ``[n_samples]``, or None) as float64 on ``device``;
    negative, non-finite or misshapen weights, or weights summing to zero, are a ``ValueError``.
    None stays None: unit weights, on the unweighted fast path."""
    if sample_weight is None:
        return None
    if isinstance(sample_weight, torch.Tensor):
        sample_weight = sample_weight.detach().cpu().numpy()
    w = check_array(sample_weight, ensure_2d=False, dtype=np.float64, input_name="sample_weight",
                    ensure_min_samples=0)
    if w.shape != (n_samples,):
        raise ValueError(f"sample_weight.shape == {w.shape}, expected ({n_samples},)!")
    if (w < 0).any():
        raise ValueError("Negative values in data passed to `sample_weight`")
    if not w.sum() > 0:
        raise ValueError("sample_weight must have a positive sum, got all zeros")
    return torch.as_tensor(w, dtype=torch.float64, device=device)

