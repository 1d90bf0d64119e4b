"""EM maths for Gaussian mixtures, written once for in-memory, out-of-core and distributed data.

One EM iteration is one pass over the data in chunks: for each chunk the E-step runs on the
engine kernel (``aigc_engine.ops.gaussian_estep``) and the chunk's sufficient statistics are
added to float64 accumulators. The accumulators of all processes are summed with one
all-reduce of a single flat tensor, and the M-step turns them into parameters with batched
linear algebra (no Python loop over components).

Second moments are *shifted*, never raw ``sum r x x^T`` (which loses precision in float32):

* full: ``S_k = sum_n r_nk (x_n - c_k)(x_n - c_k)^T`` around a per-component shift ``c_k`` (the
  means the E-step used, which are close to the new means), one batched GEMM per block;
* tied: ``T = sum_n (x_n - s)(x_n - s)^T`` around a global shift ``s``;
* diag / spherical: ``Q_k = sum_n r_nk (x_n - s)^2`` around ``s`` (one GEMM).

Then ``cov_k = S_k / nk - (m_k - c_k)(m_k - c_k)^T`` etc., which is the exact centred
covariance up to rounding. The shifts are parameters every process already shares, so the
statistics of several processes (or chunks) add up exactly.
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

# rows x components x features of one block of the batched M-step (bounds temporary memory)
_BLOCK_ELEMENTS = 1 << 19

# default rows per chunk: in-memory tensors take large chunks (fewer passes of Python), streamed
# data (memmaps, engine Datasets) bounds memory by the chunk
IN_MEMORY_CHUNK = 1 << 18
STREAM_CHUNK = 65536


# --------------------------------------------------------------------------------------------
# data sources
class Source:
    """Rows of a data set, streamed in chunks: a tensor, a NumPy array or memmap, or an engine
    Dataset. ``chunks()`` yields ``(offset, tensor)`` with the compute dtype and device."""

    def __init__(self, data, dtype: torch.dtype, device: torch.device, chunk_size: int | None = None):
        self.data, self.dtype, self.device = data, dtype, torch.device(device)
        shape = tuple(data.shape)
        self.n_samples, self.n_features = shape[0], int(np.prod(shape[1:])) if len(shape) > 1 else 1
        self.global_offset = 0  # first row of this process's shard in the whole data set
        if chunk_size is None:
            chunk_size = IN_MEMORY_CHUNK if isinstance(data, torch.Tensor) else STREAM_CHUNK
        self.chunk_size = max(1, int(chunk_size))

    def _convert(self, block) -> torch.Tensor:
        if not isinstance(block, torch.Tensor):
            block = torch.from_numpy(np.array(block))  # a writable copy (memmaps are read-only)
        return block.to(device=self.device, dtype=self.dtype)

    def chunks(self) -> Iterator[tuple[int, torch.Tensor]]:
        data = self.data
        if hasattr(data, "iter_chunks"):  # an aigc_engine Dataset (maybe memory-mapped)
            offset = 0
            for block in data.iter_chunks(self.chunk_size, dtype=self.dtype, device=self.device):
                yield offset, block.reshape(len(block), -1)
                offset += len(block)
            return
        for start in range(0, self.n_samples, self.chunk_size):
            yield start, self._convert(data[start:start + self.chunk_size])

    def take(self, indices) -> torch.Tensor:
        """Rows at ``indices`` (any order), as a ``[len(indices), D]`` tensor."""
        indices = np.asarray(indices, dtype=np.int64)
        data = self.data
        if hasattr(data, "iter_chunks"):  # engine Dataset (or any object with shape + iter_chunks)
            if getattr(data, "in_memory", False):
                return data.x[torch.as_tensor(indices)].reshape(len(indices), -1).to(self.device, self.dtype)
            out = torch.empty(len(indices), self.n_features, dtype=self.dtype, device=self.device)
            for offset, x in self.chunks():
                hit = (indices >= offset) & (indices < offset + len(x))
                if hit.any():
                    pos = torch.as_tensor(np.nonzero(hit)[0], device=self.device)
                    out[pos] = x[torch.as_tensor(indices[hit] - offset, device=self.device)]
            return out
        if isinstance(data, torch.Tensor):
            return data[torch.as_tensor(indices, device=data.device)].to(self.device, self.dtype)
        order = np.argsort(indices)
        rows = np.asarray(data[indices[order]])
        out = np.empty_like(rows)
        out[order] = rows
        return self._convert(out)


# --------------------------------------------------------------------------------------------
# sufficient statistics
@dataclass
class Stats:
    """Float64 accumulators of one pass. ``second`` is S (full), T (tied) or Q (diag/spherical).
    ``shift`` is ``(c, s)``, exactly the shifts the pass used (compute dtype), when the M-step
    needs them (set by ``em_pass``; not part of the all-reduced statistics)."""
    nk: torch.Tensor      # [K]
    sx: torch.Tensor      # [K, D]   sum r (x - s)
    second: torch.Tensor  # see module docstring
    ll: torch.Tensor      # []       sum of log p(x_n)
    n: torch.Tensor       # []       number of rows
    shift: tuple[torch.Tensor, torch.Tensor] | None = None

    def flat(self) -> torch.Tensor:
        return torch.cat([self.nk.reshape(-1), self.sx.reshape(-1), self.second.reshape(-1),
                          self.ll.reshape(1), self.n.reshape(1)])

    def load_flat(self, flat: torch.Tensor) -> None:
        i = 0
        for name in ("nk", "sx", "second", "ll", "n"):
            t = getattr(self, name)
            setattr(self, name, flat[i:i + t.numel()].reshape(t.shape))
            i += t.numel()

    def all_reduce(self, all_reduce: Callable[[torch.Tensor], torch.Tensor] | None) -> "Stats":
        if all_reduce is not None:
            flat = self.flat()
            all_reduce(flat)
            self.load_flat(flat)
        return self


def empty_stats(K: int, D: int, covariance_type: str, device) -> Stats:
    f64 = dict(dtype=torch.float64, device=device)
    second = {"full": (K, D, D), "tied": (D, D), "diag": (K, D), "spherical": (K, D)}[covariance_type]
    return Stats(torch.zeros(K, **f64), torch.zeros(K, D, **f64), torch.zeros(second, **f64),
                 torch.zeros((), **f64), torch.zeros((), **f64))


def accumulate(stats: Stats, x: torch.Tensor, resp: torch.Tensor, c: torch.Tensor, s: torch.Tensor,
               covariance_type: str, global_shift: bool = False) -> None:
    """Add one chunk's statistics: ``x [n, D]``, ``resp [n, K]`` (compute dtype), shifts
    ``c [K, D]`` and ``s [D]`` (compute dtype). ``global_shift`` says every ``c_k`` equals ``s``;
    full covariances then take the faster outer-product GEMM ``resp^T [(x-s) (x) (x-s)]``."""
    n, D = x.shape
    K = resp.shape[1]
    stats.n += n
    if x.device.type == "cpu":  # row blocks: bounded temporaries, GEMMs still large
        rows = max(256, min(16384, (_BLOCK_ELEMENTS * 2) // max(D, K)))
    else:
        rows = max(1, n)
    for lo in range(0, n, rows):
        _accumulate_block(stats, x[lo:lo + rows], resp[lo:lo + rows], c, s, covariance_type, global_shift)


def _accumulate_block(stats, x, resp, c, s, covariance_type, global_shift):
    n, D = x.shape
    K = resp.shape[1]
    f64 = torch.float64
    moments = covariance_type in ("diag", "spherical")
    # one GEMM gives nk, sum r (x - s) and (diag/spherical) sum r (x - s)^2: resp^T [x - s | (x - s)^2 | 1]
    buf = torch.empty(n, (2 * D if moments else D) + 1, dtype=x.dtype, device=x.device)
    xs = torch.sub(x, s, out=buf[:, :D])
    if moments:
        torch.mul(xs, xs, out=buf[:, D:2 * D])
    buf[:, -1] = 1
    both = (resp.T @ buf).to(f64)
    stats.nk += both[:, -1]
    stats.sx += both[:, :D]
    if moments:
        stats.second += both[:, D:2 * D]
        return
    if covariance_type == "tied":
        stats.second += (xs.T @ xs).to(f64)
    elif global_shift:
        block = max(64, (_BLOCK_ELEMENTS // 2) // max(1, D * D))
        second = stats.second.view(K, D * D)
        for lo in range(0, n, block):
            xb = xs[lo:lo + block]
            outer = (xb[:, :, None] * xb[:, None, :]).reshape(len(xb), D * D)
            second += (resp[lo:lo + block].T @ outer).to(f64)
    else:
        block = max(1, _BLOCK_ELEMENTS // max(1, K * D))
        root = resp.sqrt()
        for lo in range(0, n, block):
            y = x[lo:lo + block][None, :, :] - c[:, None, :]   # [K, b, D]
            y.mul_(root[lo:lo + block].T[:, :, None])          # sqrt(r_nk) (x_n - c_k)
            stats.second += torch.bmm(y.transpose(1, 2), y).to(f64)


def parameters_from_stats(stats: Stats, c: torch.Tensor, s: torch.Tensor, covariance_type: str,
                          reg_covar: float, eps: float):
    """``(nk, means, covariances)`` in float64 as scikit-learn's ``_estimate_gaussian_parameters``
    computes them (``nk`` includes its ``10 * eps``)."""
    nk = stats.nk + 10 * eps
    c, s = c.to(torch.float64), s.to(torch.float64)
    dm = stats.sx / nk[:, None]                                # m - s
    means = s + dm
    D = means.shape[1]
    if covariance_type == "full":
        d = dm + (s - c)                                       # m - c
        cov = stats.second / nk[:, None, None] - d[:, :, None] * d[:, None, :]
        cov = cov + reg_covar * torch.eye(D, dtype=cov.dtype, device=cov.device)
    elif covariance_type == "tied":
        cov = (stats.second - (nk[:, None] * dm).T @ dm) / nk.sum()
        cov = cov + reg_covar * torch.eye(D, dtype=cov.dtype, device=cov.device)
    else:
        cov = stats.second / nk[:, None] - dm * dm + reg_covar
        if covariance_type == "spherical":
            cov = cov.mean(1)
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

    def compute(self, dtype):
        return (self.means.to(dtype), self.precisions_cholesky.to(dtype), torch.log(self.weights).to(dtype))

    def shifts(self, dtype):
        c = self.means.to(dtype)
        s = (self.weights[:, None] * self.means).sum(0).to(dtype)
        return c, s


def use_global_shift(params: Params, covariance_type: str, dtype: torch.dtype) -> bool:
    """Whether full covariances may use one global shift ``s`` (one outer-product GEMM) instead of
    a shift per component (a batched product per row block, slower).

    Around ``s`` the rounding error of ``cov_k`` relative to its smallest eigenvalue is about
    ``eps * |m_k - s|^2 / lambda_min(cov_k)``. float64 always affords that; float32 only when the
    ratio is small (< 64: at most ~6 of its 24 bits, a relative error <~ 1e-5). Otherwise (e.g.
    tight clusters far apart) each component is centred on its own mean (error ~ eps)."""
    if covariance_type != "full" or dtype == torch.float64:
        return True
    means = params.means
    s = (params.weights[:, None] * means).sum(0)
    P = params.precisions_cholesky
    lam_max_precision = torch.linalg.matrix_norm(P, ord=2) ** 2       # 1 / lambda_min(cov)
    ratio = ((means - s) ** 2).sum(1) * lam_max_precision
    return bool(ratio.max() < 64)


def em_pass(source: Source, params: Params, covariance_type: str, all_reduce=None) -> Stats:
    """One E-step over all chunks with the statistics of the M-step that follows."""
    dtype = source.dtype
    means, P, logw = params.compute(dtype)
    c, s = params.shifts(dtype)
    global_shift = use_global_shift(params, covariance_type, dtype)
    if global_shift:
        c = s.expand_as(c)
    stats = empty_stats(means.shape[0], means.shape[1], covariance_type, source.device)
    for _, x in source.chunks():
        log_prob_norm, log_resp = ops.gaussian_estep(x, means, P, covariance_type, logw)
        stats.ll += log_prob_norm.sum(dtype=torch.float64)
        accumulate(stats, x, log_resp.exp_(), c, s, covariance_type, global_shift)
    stats.all_reduce(all_reduce)
    stats.shift = (c, s)
    return stats


def resp_pass(source: Source, resp_fn, c: torch.Tensor, s: torch.Tensor, K: int, covariance_type: str,
              all_reduce=None) -> Stats:
    """Statistics under responsibilities ``resp_fn(offset, x) -> [n, K]`` (initialisation)."""
    stats = empty_stats(K, source.n_features, covariance_type, source.device)
    for offset, x in source.chunks():
        accumulate(stats, x, resp_fn(offset, x), c, s, covariance_type)
    return stats.all_reduce(all_reduce)


def m_step(stats: Stats, params_before: Params, covariance_type: str, reg_covar: float, eps: float,
           float32_hint: bool) -> Params:
    c, s = stats.shift if stats.shift is not None else params_before.shifts(torch.float64)
    nk, means, cov = parameters_from_stats(stats, c, s, covariance_type, reg_covar, eps)
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
