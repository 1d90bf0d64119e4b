"""EM maths for Gaussian mixtures, written once for in-memory, out-of-core and distributed data.

One EM iteration is one pass over the data in chunks: for each chunk the fused engine kernel
``aigc_engine.ops.gaussian_em_stats`` runs the E-step and returns the chunk's sufficient
statistics (float64), which are added up. The sums of all processes are combined with one
all-reduce of a single flat tensor, and the M-step turns them into parameters with batched
linear algebra (no Python loop over components).

The statistics table is ``sum_n r_nk [1 | z_n | moments(z_n)]`` with ``z = x - s`` around a
shift ``s`` (``ops.mixture_stats`` layout): second moments are *shifted*, never raw
``sum r x x^T``. Then ``cov_k = S_k / nk - (m_k - s)(m_k - s)^T``, the exact centred covariance
up to rounding; the shifts are parameters every process already shares, so the statistics of
several processes (or chunks) add up exactly. ``s`` is the mixture mean (the data mean after
the first iteration). Rounding costs about ``eps |m_k - s|^2 / lambda_min(cov_k)`` relative to
the smallest variance: nothing in float64; float32 data forms its products in float64 when that
ratio is large (tight clusters far apart, see ``needs_double_moments``). Tied covariances add
the unweighted scatter ``sum_n (x_n - s)(x_n - s)^T``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np
import torch

from aigc_engine import ops

COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")

ILL_DEFINED = ("Fitting the mixture model failed because some components have "
               "ill-defined empirical covariance (for instance caused by singleton "
               "or collapsed samples). Try to decrease the number of components, "
               "increase reg_covar, or scale the input data.")
ILL_DEFINED_F32 = (" The numerical accuracy can also be improved by passing float64"
                   " data instead of float32.")

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
    (rounded to float32, so that float32 rows minus it are exact).

    Data centred ``c`` away from zero with spread ``s`` loses ``eps (c / s)^2`` of the E-step's
    log-density to cancellation (diag / spherical expand ``|x - m|^2``; full's ``x L - m L`` loses
    ``eps c / s``): harmless below ``c / s = 100`` in float32 (and 1e4 in float64), one digit
    left at 1e3 in float32, none at 1e6."""
    probe = Source(source.data, torch.float64, source.device, min(source.chunk_size, 4096))
    _, x = next(probe.chunks())
    mean, std = x.mean(0), x.std(0, correction=0)
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


def add_chunk(stats: Stats, x: torch.Tensor, table: torch.Tensor, covariance_type: str, double: bool) -> None:
    """Add one chunk: its statistics table, its row count and (tied) its scatter around
    ``stats.tied_shift`` (float64 products with ``double``)."""
    stats.n += x.shape[0]
    stats.table += table
    if covariance_type == "tied":
        z = x.double() - stats.tied_shift if double else x - stats.tied_shift.to(x.dtype)
        stats.scatter += (z.T @ z).to(torch.float64)


def parameters_from_stats(stats: Stats, covariance_type: str, reg_covar: float, eps: float,
                          origin: torch.Tensor | None = None):
    """``(nk, means, covariances)`` in float64 as scikit-learn's ``_estimate_gaussian_parameters``
    computes them (``nk`` includes its ``10 * eps``).

    Centring uses the raw counts ``n_k = sum r``: ``S - n_k d d^T`` with ``d = sum r z / n_k`` is
    the exact centred scatter whatever the shift; scikit-learn's ``nk = n_k + 10 eps`` only
    divides it (and the means ``sum r x / nk``). Centring with ``nk`` instead would add
    ``10 eps / n_k |m_k - s|^2`` to the covariance, visible when s is far from m_k. The one
    departure from scikit-learn: for a nearly empty component (``n_k`` below ~1e-8) its
    origin-centred diag/spherical formula carries that ``10 eps |m_k|^2 / n_k`` term (and full
    a smaller one); here the covariance stays the centred one. The statistics are of rows in
    the frame of the source's ``origin``: the means come back in the data's frame."""
    table, shift = stats.table, stats.shift
    D = shift.shape[-1]
    n_raw = table[:, 0]
    nk = n_raw + 10 * eps
    sx = table[:, 1:1 + D]                                     # sum r (x - shift)
    d = sx / torch.where(n_raw > 0, n_raw, 1)[:, None]         # weighted mean - shift
    means = (sx + n_raw[:, None] * shift) / nk[:, None]        # sum r x / nk
    means = means + origin if origin is not None else means
    moments = table[:, 1 + D:]
    if covariance_type == "full":
        K = table.shape[0]
        iu = torch.triu_indices(D, D, device=table.device)
        S = table.new_zeros(K, D, D)
        S[:, iu[0], iu[1]] = moments
        S[:, iu[1], iu[0]] = moments
        cov = (S - n_raw[:, None, None] * d[:, :, None] * d[:, None, :]) / nk[:, None, None]
        cov = cov + reg_covar * torch.eye(D, dtype=cov.dtype, device=cov.device)
    elif covariance_type == "tied":
        e = shift + d - stats.tied_shift                       # weighted mean - tied shift
        cov = (stats.scatter - (n_raw[:, None] * e).T @ e) / nk.sum()
        cov = cov + reg_covar * torch.eye(D, dtype=cov.dtype, device=cov.device)
    elif covariance_type == "diag":
        cov = (moments - n_raw[:, None] * d * d) / nk[:, None] + reg_covar
    else:
        cov = (moments[:, 0] - n_raw * (d * d).sum(1)) / (D * nk) + reg_covar
    return nk, means, cov


def precision_cholesky(cov: torch.Tensor, covariance_type: str, float32_hint: bool = False) -> torch.Tensor:
    """P with precision = P P^T from covariances (batched Cholesky + triangular solve); an
    ill-defined covariance raises scikit-learn's ValueError."""
    msg = ILL_DEFINED + (ILL_DEFINED_F32 if float32_hint else "")
    if covariance_type in ("full", "tied"):
        L, info = torch.linalg.cholesky_ex(cov)
        if bool((info != 0).any()) or not bool(torch.isfinite(L).all()):
            raise ValueError(msg)
        eye = torch.eye(cov.shape[-1], dtype=cov.dtype, device=cov.device).expand_as(cov)
        return torch.linalg.solve_triangular(L, eye, upper=False).transpose(-1, -2).contiguous()
    if bool((cov <= 0).any()) or not bool(torch.isfinite(cov).all()):
        raise ValueError(msg)
    return 1.0 / torch.sqrt(cov)


def precision_cholesky_from_precisions(prec: torch.Tensor, covariance_type: str) -> torch.Tensor:
    """scikit-learn's ``_compute_precision_cholesky_from_precisions`` (flip, Cholesky, flip)."""
    if covariance_type in ("full", "tied"):
        flipped = torch.flip(prec, dims=(-2, -1))
        return torch.flip(torch.linalg.cholesky(flipped), dims=(-2, -1))
    return torch.sqrt(prec)


def covariances_from_precision_cholesky(P: torch.Tensor, covariance_type: str) -> torch.Tensor:
    if covariance_type in ("full", "tied"):
        prec = P @ P.transpose(-1, -2)
        return torch.linalg.inv(prec)
    return 1.0 / (P * P)


def covariances_of(params: "Params", covariance_type: str) -> torch.Tensor:
    """``params.covariances``, or (when only precisions were given) the covariances derived from
    the precision Cholesky factors."""
    if params.covariances is not None:
        return params.covariances
    return covariances_from_precision_cholesky(params.precisions_cholesky, covariance_type)


def sample_from(params: "Params", covariance_type: str, labels: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """Samples ``means[labels] + chol(cov[labels]) z`` (float64) for component ``labels [n]`` and
    standard normal draws ``z [n, D]``; the caller draws both (the random stream is its choice)."""
    cov = covariances_of(params, covariance_type)
    if covariance_type == "full":
        x = torch.einsum("nij,nj->ni", torch.linalg.cholesky(cov)[labels], z)
    elif covariance_type == "tied":
        x = z @ torch.linalg.cholesky(cov).T
    elif covariance_type == "diag":
        x = z * torch.sqrt(cov)[labels]
    else:
        x = z * torch.sqrt(cov)[labels][:, None]
    return params.means[labels] + x


def n_parameters(n_components: int, n_features: int, covariance_type: str) -> int:
    """Free parameters of a mixture (scikit-learn's ``_n_parameters``)."""
    K, D = n_components, n_features
    cov_params = {"full": K * D * (D + 1) / 2.0, "diag": K * D, "tied": D * (D + 1) / 2.0,
                  "spherical": K}[covariance_type]
    return int(cov_params + D * K + K - 1)


def information_criteria(total_log_likelihood: float, n_samples: int, n_params: int) -> tuple[float, float]:
    """``(bic, aic)`` from the summed log-likelihood of ``n_samples`` rows (lower is better)."""
    ll = total_log_likelihood
    return -2 * ll + n_params * math.log(n_samples), -2 * ll + 2 * n_params


def precisions_from_cholesky(P: torch.Tensor, covariance_type: str) -> torch.Tensor:
    if covariance_type in ("full", "tied"):
        return P @ P.transpose(-1, -2)
    return P * P


# --------------------------------------------------------------------------------------------
# passes
@dataclass
class Params:
    """Mixture parameters in float64 (the M-step's precision) plus the compute-dtype copies the
    E-step uses."""
    weights: torch.Tensor
    means: torch.Tensor
    covariances: torch.Tensor | None
    precisions_cholesky: torch.Tensor

    def compute(self, dtype, origin: torch.Tensor | None = None):
        """Means (moved to the frame of rows less ``origin``), precision Cholesky factors and log
        weights in ``dtype``."""
        means = self.means - origin if origin is not None else self.means
        return (means.to(dtype), self.precisions_cholesky.to(dtype), torch.log(self.weights).to(dtype))

    def shift(self, dtype, origin: torch.Tensor | None = None) -> torch.Tensor:
        """The mixture mean ``sum_k w_k m_k`` (less ``origin``) in ``dtype``: the shift of the
        statistics."""
        s = (self.weights[:, None] * self.means).sum(0)
        return (s - origin if origin is not None else s).to(dtype)


def needs_double_moments(params: Params, covariance_type: str, dtype: torch.dtype) -> bool:
    """Whether float32 data must form its second moments in float64.

    Around the shift ``s`` the rounding error of ``cov_k`` relative to its smallest eigenvalue is
    about ``eps |m_k - s|^2 / lambda_min(cov_k)``. float32 products afford that when the ratio is
    small (< 64: at most ~6 of its 24 bits, a relative error <~ 1e-5); otherwise (e.g. tight
    clusters far apart) the products are formed in float64, which always suffices."""
    if dtype == torch.float64:
        return False
    s = (params.weights[:, None] * params.means).sum(0)
    P = params.precisions_cholesky
    if covariance_type in ("full", "tied"):
        lam = torch.linalg.matrix_norm(P, ord=2) ** 2          # 1 / lambda_min(cov)
    elif covariance_type == "diag":
        lam = (P * P).amax(1)
    else:
        lam = P * P
    ratio = ((params.means - s) ** 2).sum(1) * lam
    return not bool(ratio.max() < 64)


def em_pass(source: Source, params: Params, covariance_type: str, all_reduce=None) -> Stats:
    """One E-step over all chunks with the statistics of the M-step that follows."""
    dtype = source.dtype
    means, P, logw = params.compute(dtype, source.origin)
    s = params.shift(dtype, source.origin)
    double = needs_double_moments(params, covariance_type, dtype)
    stats = empty_stats(means.shape[0], means.shape[1], covariance_type, s, s)
    for _, x in source.chunks():
        table, ll = ops.gaussian_em_stats(x, means, P, covariance_type, logw, s, double)
        add_chunk(stats, x, table, covariance_type, double)
        stats.ll += ll
    stats.all_reduce(all_reduce)
    if covariance_type != "tied" and _cancelled(stats, covariance_type, torch.float64 if double else dtype):
        stats = _exact_moments_pass(source, params, covariance_type, stats, all_reduce)
    return stats


def _cancelled(stats: Stats, covariance_type: str, product_dtype: torch.dtype) -> bool:
    """Whether a component's variance ``S/n - d^2`` around the shared shift kept fewer than ~6
    bits: a (nearly) collapsed component far from the shift, whose tiny variance the shifted
    moments can round to <= 0."""
    table, D = stats.table, stats.shift.shape[-1]
    n = table[:, 0]
    live = n > 0
    if not bool(live.any()):
        return False
    d = table[live, 1:1 + D] / n[live, None]
    moments = table[live, 1 + D:]
    if covariance_type == "full":
        iu = torch.triu_indices(D, D, device=table.device)
        moments = moments[:, iu[0] == iu[1]]
    second = moments / n[live, None]
    square = d * d if covariance_type != "spherical" else (d * d).sum(1, keepdim=True)
    return bool((second - square <= 64 * torch.finfo(product_dtype).eps * second).any())


def _exact_moments_pass(source: Source, params: Params, covariance_type: str, first: Stats,
                        all_reduce=None) -> Stats:
    """The E-step again, its moments each around the component's new mean (float64 products):
    no cancellation, so a collapsing component's variance is right however small (two-pass
    variance). Only when :func:`_cancelled` says so: it costs one more pass over the data."""
    D = source.n_features
    n = first.table[:, :1]
    centres = first.shift + first.table[:, 1:1 + D] / torch.where(n > 0, n, 1)   # [K, D], rows' frame
    means, P, logw = params.compute(source.dtype, source.origin)
    centres = centres.to(source.dtype)
    stats = empty_stats(means.shape[0], D, covariance_type, centres, first.tied_shift)
    for _, x in source.chunks():
        _, log_resp = ops.gaussian_estep(x, means, P, covariance_type, logw)
        add_chunk(stats, x, ops.mixture_stats(x, log_resp.exp(), centres, covariance_type, True),
                  covariance_type, double=True)
    stats.all_reduce(all_reduce)
    stats.ll = first.ll
    return stats


def resp_pass(source: Source, resp_fn, shift: torch.Tensor, tied_shift: torch.Tensor, K: int,
              covariance_type: str, all_reduce=None) -> Stats:
    """Statistics under responsibilities ``resp_fn(offset, x) -> [n, K]`` (initialisation: float32
    data forms its products in float64, a one-off cost)."""
    stats = empty_stats(K, source.n_features, covariance_type, shift, tied_shift)
    for offset, x in source.chunks():
        add_chunk(stats, x, ops.mixture_stats(x, resp_fn(offset, x), shift, covariance_type, True),
                  covariance_type, double=True)
    return stats.all_reduce(all_reduce)


def m_step(stats: Stats, covariance_type: str, reg_covar: float, eps: float, float32_hint: bool,
           origin: torch.Tensor | None = None) -> Params:
    nk, means, cov = parameters_from_stats(stats, covariance_type, reg_covar, eps, origin)
    weights = nk / nk.sum()
    P = precision_cholesky(cov, covariance_type, float32_hint)
    return Params(weights, means, cov, P)


def hard_resp(labels: torch.Tensor, K: int, dtype) -> torch.Tensor:
    resp = torch.zeros(len(labels), K, dtype=dtype, device=labels.device)
    resp[torch.arange(len(labels), device=labels.device), labels] = 1
    return resp


def nearest(x: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
    """Index of the nearest centre for each row (squared Euclidean, one GEMM)."""
    d = (centres * centres).sum(1)[None, :] - 2.0 * (x @ centres.T)
    return d.argmin(1)


# --------------------------------------------------------------------------------------------
# torch k-means (out-of-core / distributed initialisation)
def kmeans_plusplus(x: torch.Tensor, K: int, gen: torch.Generator) -> torch.Tensor:
    """Greedy k-means++ seeding (2 + log K trials per centre, as scikit-learn) in torch."""
    n = x.shape[0]
    n_trials = 2 + int(math.log(K))
    first = int(torch.randint(n, (1,), generator=gen, device="cpu"))
    centres = [x[first]]
    closest = ((x - x[first]) ** 2).sum(1)
    for _ in range(1, K):
        total = closest.sum()
        u = torch.rand(n_trials, generator=gen, device="cpu", dtype=torch.float64).to(x.device) * total
        cand = torch.searchsorted(torch.cumsum(closest, 0).to(torch.float64), u).clamp_(max=n - 1)
        d = ((x[None, :, :] - x[cand][:, None, :]) ** 2).sum(-1)      # [trials, n]
        d = torch.minimum(d, closest[None])
        best = int(d.sum(1).argmin())
        closest = d[best]
        centres.append(x[cand[best]])
    return torch.stack(centres)


def kmeans(x: torch.Tensor, K: int, seed: int, n_iter: int = 100, tol: float = 1e-4,
           init: str = "kmeans") -> torch.Tensor:
    """k-means++ seeding then Lloyd iterations (``init="k-means++"``: seeding only) on an
    in-memory sample; deterministic for a given seed on every process."""
    gen = torch.Generator(device="cpu").manual_seed(int(seed))
    centres = kmeans_plusplus(x, K, gen)
    if init == "k-means++":
        return centres
    var_tol = tol * float(x.var(0).mean())
    for _ in range(n_iter):
        labels = nearest(x, centres)
        resp = hard_resp(labels, K, x.dtype)
        counts = resp.sum(0)
        new = (resp.T @ x) / counts.clamp(min=1)[:, None]
        new = torch.where(counts[:, None] > 0, new, centres)
        shift = float(((new - centres) ** 2).sum())
        centres = new
        if shift <= var_tol:
            break
    return centres
