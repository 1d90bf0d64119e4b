"""The EM driver of the mixtures (scikit-learn's ``mixture/_base.py``), written once for
in-memory, out-of-core and distributed data.

- :class:`Source`: the rows of a data set, read in chunks.
- :class:`Stats` and :func:`statistics_pass`: one pass over the data adds up each chunk's float64
  sufficient statistics and sums those of all processes with one all-reduce of a single flat
  tensor. Every pass of a fit (each E-step, the initialisation) is one call of it.
- :class:`BaseMixture`: what an estimator does whatever its component densities (input checks,
  ``fit``, ``score``, ``predict``, ``criteria`` / BIC / AIC). A mixture subclasses it and fills in
  the hooks listed there (initialise, E-step statistics, M-step, log-densities).
- :class:`EMFit`: the EM loop (``n_init`` restarts, convergence, checkpoints) one iteration per
  ``step()``: ``stats = _e_step(source, params)`` (one pass), ``params = _m_step(stats)``.

The statistics table is ``sum_n r_nk [1 | z_n | moments(z_n)]`` with ``z = x - s`` around a
shift ``s`` (``ops.mixture_stats`` layout): second moments are *shifted*, never raw
``sum r x x^T``. Then ``cov_k = S_k / nk - (m_k - s)(m_k - s)^T``, the exact centred covariance
up to rounding; the shifts are parameters every process already shares, so the statistics of
several processes (or chunks) add up exactly. Tied covariances add the unweighted scatter
``sum_n (x_n - s)(x_n - s)^T``.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from time import time
from numbers import Integral
from typing import Any, Callable, Iterator, NamedTuple

import numpy as np
import torch
from sklearn.base import BaseEstimator, DensityMixin
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval
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


def information_criteria(total_log_likelihood: float, n_samples: float, n_params: int) -> tuple[float, float]:
    """``(bic, aic)`` from the summed log-likelihood of ``n_samples`` rows (lower is better)."""
    ll = total_log_likelihood
    return -2 * ll + n_params * math.log(n_samples), -2 * ll + 2 * n_params


_DTYPES = {"float32": torch.float32, "float64": torch.float64, "float": torch.float32,
           "double": torch.float64}


def compute_dtype(dtype) -> torch.dtype | None:
    """The torch compute dtype of an estimator's ``dtype`` parameter (None keeps the input's)."""
    if dtype is None:
        return None
    if isinstance(dtype, torch.dtype):
        if dtype in (torch.float32, torch.float64):
            return dtype
    else:
        name = str(np.dtype(dtype)) if not isinstance(dtype, str) else dtype.removeprefix("torch.")
        if name in _DTYPES:
            return _DTYPES[name]
    raise ValueError(f"dtype must be None, 'float32' or 'float64', got {dtype!r}")


def _nan_message(estimator_name: str) -> str:
    try:
        check_array(np.array([[np.nan]]), estimator=estimator_name, input_name="X")
    except ValueError as err:
        return str(err)
    return "Input X contains NaN."  # pragma: no cover


# --------------------------------------------------------------------------------------------
# the estimator, whatever its components
# the parameters every mixture here adds to scikit-learn's (validated like its own)
TORCH_PARAMETER_CONSTRAINTS: dict = {
    "device": "no_validation",
    "dtype": "no_validation",
    "chunk_size": [Interval(Integral, 1, None, closed="left"), None],
}


class BaseMixture(DensityMixin, BaseEstimator):
    """A mixture estimator fitted with EM (scikit-learn's ``BaseMixture``): input handling,
    ``fit`` / ``fit_predict`` / ``em_fit``, ``score_samples``, ``score``, ``predict``,
    ``predict_proba``, ``criteria``, ``bic``, ``aic``. Subclasses define ``__init__`` with the
    parameters ``n_components``, ``tol``, ``max_iter``, ``n_init``, ``random_state``,
    ``warm_start``, ``verbose``, ``verbose_interval``, ``device``, ``dtype``, ``chunk_size``
    and fill in these hooks (``params`` is the subclass's parameter record, with a
    ``state()`` of tensors and numbers):

    - ``_initialize_parameters(source, full, random_state, all_reduce, weights) -> params``
    - ``_e_step(source, params, all_reduce, weights) -> Stats``: one :func:`statistics_pass`
      (``weights``: the rows' float64 sample weights, or None)
    - ``_m_step(stats, origin) -> params`` and ``_lower_bound(stats, params) -> float`` (the
      bound of the iteration whose E-step gave ``stats`` and whose M-step gave ``params``)
    - ``_estimate_weighted_log_prob(x) -> [n, K]`` and ``_estimate_log_resp(x) -> [n, K]`` of
      the fitted parameters, for rows ``x`` as :class:`Source` yields them
    - ``_set_parameters(params)`` (the fitted attributes), ``_n_parameters() -> int``,
      ``_params_from_state(state, device) -> params``
    - optionally ``_begin_fit(source, full, in_memory_init, all_reduce, weights)`` (checks before
      the first restart; call ``super()``).
    """

    # -- input -------------------------------------------------------------------------------
    def check_parameters(self) -> "BaseMixture":
        """Validate the constructor parameters as ``fit`` does (scikit-learn's messages, a
        ``ValueError``), without fitting; returns the estimator."""
        self._validate_params()
        compute_dtype(self.dtype)
        return self

    def _kind(self, X) -> str:
        if isinstance(X, torch.Tensor):
            return "torch"
        if hasattr(X, "iter_chunks"):
            return "dataset"
        if isinstance(X, np.memmap):
            return "memmap"
        return "numpy"

    def _prepare(self, X, reset: bool):
        """Validate X; returns ``(source, out, kind)`` where ``out`` describes the output format."""
        kind = self._kind(X)
        name = type(self).__name__
        allow_nan = self._allows_missing()
        forced = compute_dtype(self.dtype) if reset else self._dtype
        chunk = self.chunk_size or (IN_MEMORY_CHUNK if kind in ("torch", "numpy") else STREAM_CHUNK)
        if kind == "numpy":
            X = check_array(X, dtype=[np.float64, np.float32], ensure_min_samples=1 if not reset else 2,
                            estimator=self, input_name="X", ensure_all_finite="allow-nan" if allow_nan else True)
            dtype = forced or (torch.float32 if X.dtype == np.float32 else torch.float64)
            device = torch.device(self.device) if self.device is not None else torch.device("cpu")
            data, out = torch.from_numpy(X), ("numpy", None)
        elif kind == "torch":
            if X.ndim != 2:
                check_array(X.detach().cpu().numpy(), ensure_min_samples=2 if reset else 1, estimator=self, input_name="X")
            if reset and X.shape[0] < 2:
                raise ValueError(f"Found array with {X.shape[0]} sample(s) (shape={tuple(X.shape)}) while a "
                                 f"minimum of 2 is required by {name}.")
            if not X.is_floating_point():
                X = X.to(torch.float64)
            if not allow_nan and torch.isnan(X).any():
                raise ValueError(_nan_message(name))
            if torch.isinf(X).any():
                raise ValueError("Input X contains infinity or a value too large for "
                                 f"dtype('{str(X.dtype).removeprefix('torch.')}').")
            dtype = forced or (X.dtype if X.dtype in (torch.float32, torch.float64) else torch.float64)
            device = torch.device(self.device) if self.device is not None else X.device
            data, out = X.detach(), ("torch", X.device)
        else:  # memmap or engine Dataset: streamed, validated chunk by chunk during the first pass
            if allow_nan:
                raise ValueError("missing='marginalize' needs in-memory data (a NumPy array or a tensor), "
                                 f"got a {type(X).__name__}")
            shape = tuple(X.shape)
            # a Dataset's rows may be images (N x C x H x W), read flattened
            if len(shape) != 2 and not (kind == "dataset" and len(shape) > 2):
                raise ValueError(f"Expected 2D array, got {len(shape)}D array instead.")
            if reset and shape[0] < 2:
                raise ValueError(f"Found array with {shape[0]} sample(s) (shape={shape}) while a "
                                 f"minimum of 2 is required by {name}.")
            src_dtype = getattr(X, "dtype", np.float32)
            default = torch.float32 if src_dtype in (np.float32, torch.float32) else torch.float64
            if kind == "dataset":
                default = torch.float32
            dtype = forced or default
            device = torch.device(self.device) if self.device is not None else torch.device("cpu")
            data, out = X, ("numpy", None)
            self._check_finite_stream(Source(X, dtype, device, chunk))
        n_features = Source(data, dtype, device, chunk).n_features
        if reset:
            self.n_features_in_ = n_features
            self._dtype, self._device = dtype, device
            self._origin = choose_origin(Source(data, dtype, device, chunk))
        elif n_features != self.n_features_in_:
            raise ValueError(f"X has {n_features} features, but {name} is expecting "
                             f"{self.n_features_in_} features as input.")
        else:
            dtype, device = self._dtype, self._device
        return Source(data, dtype, device, chunk, self._origin_), out, kind

    def _allows_missing(self) -> bool:
        """Whether NaN entries are missing values to marginalise (else an input error)."""
        return False

    def _check_finite_stream(self, source: Source) -> None:
        for offset, x in source.chunks():
            if torch.isnan(x).any():
                raise ValueError(_nan_message(type(self).__name__))
            if not torch.isfinite(x).all():
                raise ValueError("Input X contains infinity or a value too large for dtype('float64').")

    def _to_out(self, t: torch.Tensor | None, out):
        if t is None:
            return None
        if out[0] == "numpy":
            return t.detach().cpu().numpy()
        return t.to(out[1])

    @property
    def _out_fmt(self):
        return getattr(self, "_out", ("numpy", None))

    @property
    def _origin_(self) -> torch.Tensor | None:
        """The origin rows are fitted and scored in (:func:`choose_origin`; None near zero)."""
        return getattr(self, "_origin", None)

    # -- fitting -----------------------------------------------------------------------------
    def fit(self, X, y=None, sample_weight=None):
        """Estimate model parameters with the EM algorithm (see scikit-learn). ``sample_weight``
        ``[n_samples]`` (non-negative) weighs every row in every expectation: integer weights
        fit as the rows repeated that many times, zero weights as the rows left out."""
        self.fit_predict(X, y, sample_weight=sample_weight)
        return self

    def fit_predict(self, X, y=None, sample_weight=None):
        """Estimate model parameters using X (weighted by ``sample_weight``, see :meth:`fit`)
        and predict the labels for X."""
        self._validate_params()
        source, out, kind = self._prepare(X, reset=True)
        weights = check_sample_weight(sample_weight, source.n_samples, source.device)
        self._out = out
        EMFit(self, source, weights=weights).finish()
        # a final E-step so that fit_predict(X) equals fit(X).predict(X)
        return self._to_out(self._predict_source(source), out)

    def em_fit(self, dataset, *, rank: int = 0, world_size: int = 1, all_reduce=None,
               sample_weight=None) -> "EMFit":
        """Begin an EM fit of an engine Dataset (streamed in chunks) that the caller drives one
        iteration at a time and can checkpoint and resume: see :class:`EMFit`.
        ``gm.em_fit(dataset).finish()`` is a whole fit; fitted attributes are torch tensors.

        As process ``rank`` of ``world_size`` (torchrun), this process reads its shard
        (``dataset.shard(rank, world_size)``), the statistics are summed with ``all_reduce``,
        and the initialisation (torch k-means on a sample every process draws alike) is the
        same on every process, so the result equals a one-process fit. ``sample_weight`` holds
        the weights of all ``len(dataset)`` rows (each process uses its shard's); the k-means
        sample of the initialisation is unweighted, every pass after it weighted."""
        self._validate_params()
        dtype = compute_dtype(self.dtype) or torch.float32
        device = torch.device(self.device) if self.device is not None else torch.device("cpu")
        chunk = self.chunk_size or STREAM_CHUNK
        full = Source(dataset, dtype, device, chunk)
        full.origin = self._origin = choose_origin(full) if full.n_samples else None
        if full.n_samples < 2:
            raise ValueError(f"Found array with {full.n_samples} sample(s) (shape={tuple(dataset.shape)}) "
                             f"while a minimum of 2 is required by {type(self).__name__}.")
        weights = check_sample_weight(sample_weight, full.n_samples, device)
        local = full
        if world_size > 1:
            local = Source(dataset.shard(rank, world_size), dtype, device, chunk, self._origin)
            local.global_offset = rank * full.n_samples // world_size
            if weights is not None:
                weights = weights[local.global_offset:local.global_offset + local.n_samples]
        self.n_features_in_ = full.n_features
        self._dtype, self._device, self._out = dtype, device, ("torch", device)
        return EMFit(self, local, full, all_reduce, in_memory_init=False, weights=weights)

    def _begin_fit(self, source: Source, full: Source, in_memory_init: bool, all_reduce=None,
                   weights: torch.Tensor | None = None) -> None:
        """Checks and settings of a fit, before its first restart (a subclass may pass over the
        data here, e.g. for the priors of a variational mixture)."""
        if full.n_samples < self.n_components:
            raise ValueError("Expected n_samples >= n_components "
                             f"but got n_components = {self.n_components}, n_samples = {full.n_samples}")
        self._in_memory_init = in_memory_init
        self._float32 = source.dtype == torch.float32
        self._eps = float(torch.finfo(source.dtype).eps)

    def _lower_bound(self, stats: Stats, params) -> float:
        """The mean log-likelihood per (weighted) row of the pass that gave ``stats`` (``params``:
        the M-step's parameters from those statistics, unused here)."""
        return float(stats.ll / stats.n)

    # -- using the fit -----------------------------------------------------------------------
    def _check_is_fitted(self):
        if not hasattr(self, "_params") or not hasattr(self, "n_iter_"):
            raise NotFittedError(f"This {type(self).__name__} instance is not fitted yet. Call 'fit' with "
                                 "appropriate arguments before using this estimator.")

    def _map(self, source: Source, fn) -> torch.Tensor:
        return torch.cat([fn(x) for _, x in source.chunks()])

    def _predict_source(self, source: Source) -> torch.Tensor:
        return self._map(source, lambda x: self._estimate_weighted_log_prob(x).argmax(1))

    def _inference(self, X, fn):
        self._check_is_fitted()
        source, out, kind = self._prepare(X, reset=False)
        return self._to_out(self._map(source, fn), out)

    def _total_log_likelihood(self, source: Source, all_reduce=None,
                              weights: torch.Tensor | None = None) -> tuple[float, float]:
        """``(sum of log p(x), number of rows)`` over ``source`` (each row counted with its
        weight when ``weights`` is given), summed over processes with ``all_reduce`` (one float64
        tensor on the fit's device: NCCL reduces on the GPU)."""
        total = torch.zeros(2, dtype=torch.float64, device=source.device)
        for offset, x in source.chunks():
            lp = torch.logsumexp(self._estimate_weighted_log_prob(x), 1).double()
            if weights is None:
                total[0] += lp.sum()
                total[1] += len(x)
            else:
                w = weights[offset:offset + len(x)]
                total[0] += (lp * w).sum()
                total[1] += w.sum()
        if all_reduce is not None:
            all_reduce(total)
        total = total.cpu()
        return float(total[0]), float(total[1])

    def score_samples(self, X):
        """Log-likelihood of each sample."""
        return self._inference(X, lambda x: torch.logsumexp(self._estimate_weighted_log_prob(x), 1))

    def score(self, X, y=None, sample_weight=None):
        """Per-sample average log-likelihood of X (weighted by ``sample_weight`` when given)."""
        self._check_is_fitted()
        source, _, _ = self._prepare(X, reset=False)
        weights = check_sample_weight(sample_weight, source.n_samples, source.device)
        total, n = self._total_log_likelihood(source, weights=weights)
        return total / n

    def predict(self, X):
        """Most probable component of each sample."""
        return self._inference(X, lambda x: self._estimate_weighted_log_prob(x).argmax(1))

    def predict_proba(self, X):
        """Posterior probability of each component for each sample."""
        return self._inference(X, lambda x: torch.exp(self._estimate_log_resp(x)))

    def criteria(self, X, *, sample_weight=None, all_reduce=None) -> dict[str, float]:
        """The fit's figures on ``X`` from one pass: ``mean_log_likelihood``, ``bic``, ``aic``
        (scikit-learn's definitions, lower is better), ``n_parameters`` and ``n_samples``. With
        ``sample_weight`` the log-likelihood and the count ``n_samples`` (a float then) are
        weighted: BIC's ``log n`` is that of the weighted count, as for the rows repeated.

        Under torchrun each process passes its shard (and its shard's weights) and
        ``all_reduce`` (summing a float64 tensor in place across processes): the figures are
        those of the whole data."""
        self._check_is_fitted()
        source, _, _ = self._prepare(X, reset=False)
        weights = check_sample_weight(sample_weight, source.n_samples, source.device)
        total, n = self._total_log_likelihood(source, all_reduce, weights)
        k = self._n_parameters()
        bic, aic = information_criteria(total, n, k)
        return {"mean_log_likelihood": total / n, "bic": bic, "aic": aic, "n_parameters": int(k),
                "n_samples": int(n) if weights is None else n}

    def bic(self, X, sample_weight=None):
        """Bayesian information criterion (lower is better; weighted by ``sample_weight``)."""
        return self.criteria(X, sample_weight=sample_weight)["bic"]

    def aic(self, X, sample_weight=None):
        """Akaike information criterion (lower is better; weighted by ``sample_weight``)."""
        return self.criteria(X, sample_weight=sample_weight)["aic"]

    # -- verbose messages (scikit-learn's) ---------------------------------------------------
    def _print_verbose_msg_init_beg(self, n_init):
        if self.verbose == 1:
            print("Initialization %d" % n_init)
        elif self.verbose >= 2:
            print("Initialization %d" % n_init)
            self._init_prev_time = time()
            self._iter_prev_time = self._init_prev_time

    def _print_verbose_msg_iter_end(self, n_iter, diff_ll):
        if n_iter % self.verbose_interval == 0:
            if self.verbose == 1:
                print("  Iteration %d" % n_iter)
            elif self.verbose >= 2:
                cur_time = time()
                print("  Iteration %d\t time lapse %.5fs\t ll change %.5f"
                      % (n_iter, cur_time - self._iter_prev_time, diff_ll))
                self._iter_prev_time = cur_time

    def _print_verbose_msg_init_end(self, lb, init_has_converged):
        converged_msg = "converged" if init_has_converged else "did not converge"
        if self.verbose == 1:
            print(f"Initialization {converged_msg}.")
        elif self.verbose >= 2:
            t = time() - self._init_prev_time
            print(f"Initialization {converged_msg}. time lapse {t:.5f}s\t lower bound {lb:.5f}.")


# --------------------------------------------------------------------------------------------
# EM, one iteration at a time
class EMIteration(NamedTuple):
    """What one :meth:`EMFit.step` did: iteration ``n_iter`` (from 1) of restart ``restart``
    (from 0), and the lower bound it reached."""
    restart: int
    n_iter: int
    lower_bound: float


class EMFit:
    """An EM fit in progress: scikit-learn's ``fit`` (``n_init`` restarts of up to ``max_iter``
    iterations, the one with the best lower bound kept) unrolled into steps.

    - ``step()`` runs the next EM iteration, initialising a restart first when one is due, and
      returns an :class:`EMIteration`; ``done`` says whether every restart has ended (it
      converged or reached ``max_iter``).
    - ``finish()`` runs whatever remains and sets the estimator's fitted attributes (with
      scikit-learn's ``ConvergenceWarning``); it returns the estimator.
    - ``state_dict()`` is everything the fit needs to go on exactly where it is: the restart,
      its iteration count, parameters and lower bounds, the best restart so far and the state of
      the ``random_state`` generator that initialises the restarts to come (tensors, numbers and
      lists only). ``load_state_dict()`` continues from it under the estimator's *current*
      ``max_iter``, ``tol`` and ``n_init``: a restart that those end is ended; a finished fit
      whose best restart they let go on (a larger ``max_iter``, a smaller ``tol``) continues
      that restart from its parameters, and a larger ``n_init`` adds restarts. Stepping a
      loaded fit to the end gives bit for bit the result of the uninterrupted fit.

    ``source`` holds this process's rows, ``full_source`` all rows (the same source on one
    process); ``all_reduce`` sums the statistics of all processes; ``weights`` (float64
    ``[source.n_samples]``, or None) are the sample weights of this process's rows.
    """

    def __init__(self, gm: BaseMixture, source: Source, full_source: Source | None = None,
                 all_reduce=None, in_memory_init: bool | None = None, weights: torch.Tensor | None = None):
        full_source = full_source or source
        if in_memory_init is None:
            in_memory_init = isinstance(full_source.data, torch.Tensor)
        gm._begin_fit(source, full_source, in_memory_init, all_reduce, weights)
        self.gm, self.source, self.full_source, self.all_reduce = gm, source, full_source, all_reduce
        self.weights = weights
        self.warm = gm.warm_start and hasattr(gm, "converged_")  # scikit-learn: one restart, from the fit
        gm.converged_ = False
        self.random_state = check_random_state(gm.random_state)
        self.restart = 0
        self.params = None                    # the current restart's (None until it is initialised)
        self.n_iter = 0
        self.lower_bound = -np.inf
        self.lower_bounds: list[float] = []
        self.change = np.inf                  # the last iteration's gain in lower bound
        self.best: dict | None = None         # the best ended restart: params, n_iter, lower_bounds, ...
        self.max_lower_bound = -np.inf

    @property
    def n_init(self) -> int:
        return 1 if self.warm else self.gm.n_init

    @property
    def done(self) -> bool:
        return self.restart >= self.n_init

    # -- stepping ------------------------------------------------------------------------------
    def step(self) -> EMIteration:
        """One EM iteration: the E-step's pass over the data, then the M-step."""
        gm = self.gm
        if self.done:
            raise RuntimeError("the EM fit is done: call finish()")
        if gm.max_iter < 1:
            raise RuntimeError("max_iter=0: there is no EM iteration to run; call finish()")
        if self.params is None:
            self._begin_restart()
        restart, previous = self.restart, self.lower_bound
        stats = gm._e_step(self.source, self.params, self.all_reduce, self.weights)
        self.params = gm._m_step(stats, self.source.origin)
        self.lower_bound = gm._lower_bound(stats, self.params)
        self.n_iter += 1
        self.lower_bounds.append(self.lower_bound)
        self.change = self.lower_bound - previous
        gm._print_verbose_msg_iter_end(self.n_iter, self.change)
        self._end_restart_if_due()
        return EMIteration(restart, self.n_iter, self.lower_bounds[-1])

    def finish(self) -> BaseMixture:
        """Run what remains, then set the fitted attributes to the best restart's."""
        gm = self.gm
        while not self.done:
            if gm.max_iter < 1:  # scikit-learn: each restart is initialised and kept as it is
                self._begin_restart()
                self.best = {"params": self.params, "n_iter": 0, "lower_bounds": [], "converged": False,
                             "change": np.inf}
                self.restart, self.params = self.restart + 1, None
            else:
                self.step()
        best = self.best
        gm.converged_ = best["converged"]
        if not gm.converged_ and gm.max_iter > 0:
            warnings.warn("Best performing initialization did not converge. Try different init "
                          "parameters, or increase max_iter, tol, or check for degenerate data.",
                          ConvergenceWarning)
        gm._set_parameters(best["params"])
        gm.n_iter_ = best["n_iter"]
        gm.lower_bound_ = self.max_lower_bound
        gm.lower_bounds_ = list(best["lower_bounds"])
        return gm

    def _begin_restart(self) -> None:
        gm = self.gm
        gm._print_verbose_msg_init_beg(self.restart)
        if self.warm:
            self.params, self.lower_bound = gm._params, gm.lower_bound_
        else:
            self.params = gm._initialize_parameters(self.source, self.full_source, self.random_state,
                                                    self.all_reduce, self.weights)
            self.lower_bound = -np.inf
        self.n_iter, self.lower_bounds, self.change = 0, [], np.inf

    def _end_restart_if_due(self) -> None:
        converged = abs(self.change) < self.gm.tol
        if not (converged or self.n_iter >= self.gm.max_iter):
            return
        self.gm._print_verbose_msg_init_end(self.lower_bound, converged)
        if self.lower_bound > self.max_lower_bound or self.max_lower_bound == -np.inf:
            self.max_lower_bound = self.lower_bound
            self.best = {"params": self.params, "n_iter": self.n_iter, "lower_bounds": self.lower_bounds,
                         "converged": converged, "change": self.change}
        self.restart, self.params = self.restart + 1, None

    # -- checkpoints ---------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        kind, keys, pos, has_gauss, cached = self.random_state.get_state()
        best = None
        if self.best is not None:
            best = {**self.best, "params": self.best["params"].state(),
                    "lower_bounds": list(self.best["lower_bounds"])}
        return {"mixture": self._shape(), "restart": self.restart, "n_iter": self.n_iter,
                "lower_bound": self.lower_bound, "lower_bounds": list(self.lower_bounds), "change": self.change,
                "params": self.params.state() if self.params is not None else None, "best": best,
                "max_lower_bound": self.max_lower_bound,
                "random_state": {"keys": keys.copy(), "pos": int(pos), "has_gauss": int(has_gauss),
                                 "cached_gaussian": float(cached)}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if dict(state["mixture"]) != self._shape():
            saved, here = state["mixture"], self._shape()
            raise ValueError(f"the saved EM state is of a {saved['covariance_type']!r} mixture of "
                             f"{saved['n_components']} components in {saved['n_features']} features; this fit "
                             f"is {here['covariance_type']!r} with {here['n_components']} components in "
                             f"{here['n_features']} features")
        device = self.source.device
        self.restart, self.n_iter = int(state["restart"]), int(state["n_iter"])
        self.lower_bound, self.change = float(state["lower_bound"]), float(state["change"])
        self.lower_bounds = [float(v) for v in state["lower_bounds"]]
        self.params = self._params_from_state(state["params"], device)
        self.best = None
        if state["best"] is not None:
            b = state["best"]
            self.best = {"params": self._params_from_state(b["params"], device), "n_iter": int(b["n_iter"]),
                         "lower_bounds": [float(v) for v in b["lower_bounds"]], "converged": bool(b["converged"]),
                         "change": float(b["change"])}
        self.max_lower_bound = float(state["max_lower_bound"])
        rs = state["random_state"]
        self.random_state.set_state(("MT19937", np.asarray(rs["keys"], dtype=np.uint32), int(rs["pos"]),
                                     int(rs["has_gauss"]), float(rs["cached_gaussian"])))
        # under the current settings: end a restart they end, reopen a best restart they continue
        if self.params is not None:
            self._end_restart_if_due()
        elif self.done and self.best is not None and self.gm.max_iter > 0:
            b = self.best
            if b["n_iter"] < self.gm.max_iter and not abs(b["change"]) < self.gm.tol:
                self.restart, self.params, self.n_iter = self.n_init - 1, b["params"], b["n_iter"]
                self.lower_bound, self.lower_bounds, self.change = self.max_lower_bound, list(b["lower_bounds"]), b["change"]
                self.best, self.max_lower_bound = None, -np.inf

    def _params_from_state(self, state: dict[str, Any] | None, device):
        return None if state is None else self.gm._params_from_state(state, device)

    def _shape(self) -> dict[str, Any]:
        return {"covariance_type": self.gm.covariance_type, "n_components": int(self.gm.n_components),
                "n_features": int(self.source.n_features)}
