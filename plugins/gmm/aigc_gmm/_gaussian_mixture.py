"""``GaussianMixture``: a drop-in for ``sklearn.mixture.GaussianMixture`` on PyTorch.

Same constructor parameters and defaults, methods, fitted attributes, warnings and errors as
scikit-learn, plus ``device``, ``dtype`` and ``chunk_size`` (below), ``sample_weight`` in
``fit`` / ``fit_predict`` / ``score`` / ``bic`` / ``aic`` / ``criteria``, ``partial_fit`` (stepwise
EM, ``step_exponent``) and ``missing="marginalize"`` with ``impute`` (see docs/gmm-advanced.md):

* ``dtype=None`` keeps the input's float dtype (float32 stays float32, float64 stays float64,
  anything else becomes float64), as scikit-learn does; ``dtype="float32"`` or ``"float64"``
  (or a torch / NumPy dtype) forces the compute dtype. The M-step always runs in float64 on
  float64-accumulated statistics, so float32 differs from float64 only through the E-step and
  the rounding of the second-moment products (formed in float64 where that would matter,
  see ``needs_double_moments``).
* ``device=None`` computes where a torch input lives (CPU for NumPy input); ``"cuda"`` moves
  the work there. NumPy in gives NumPy out, torch in gives torch out on the input's device.
* ``X`` may be a NumPy array, a ``np.memmap`` (e.g. ``np.load(path, mmap_mode="r")``), a torch
  tensor, an ``aigc_engine`` Dataset, or any object with ``shape`` and
  ``iter_chunks(chunk_size, dtype, device)`` yielding consecutive row blocks as tensors.
  Memory-mapped arrays and Datasets are streamed in chunks of ``chunk_size`` rows (default
  65536) on every EM pass, so memory is bounded by the chunk size, not by N; in-memory NumPy
  arrays and tensors go through the same code in chunks of ``chunk_size`` rows (default 262144).

Initialisation: for in-memory data ``init_params="kmeans"`` calls scikit-learn's
``KMeans(n_init=1, random_state)`` and ``"k-means++"`` its ``kmeans_plusplus`` (so the same
``random_state`` gives scikit-learn's initialisation); ``"random"`` and ``"random_from_data"``
draw from ``random_state`` exactly as scikit-learn. For streamed data, k-means and k-means++
run in torch on a deterministic sample of at most ``20000`` rows drawn with ``random_state``.

Layout (scikit-learn's ``_gaussian_mixture.py``): the Gaussian maths are plain functions (shapes
in their docstrings) on a parameter record :class:`Params`; :class:`GaussianMixture` fills in the
hooks of :class:`aigc_gmm._em.BaseMixture` (initialise, E-step statistics, M-step,
log-densities), whose :class:`aigc_gmm._em.EMFit` runs the EM loop. ``fitted_state()`` /
``from_state()`` carry a fit as tensors and numbers; ``criteria()`` gives BIC / AIC.
"""
from __future__ import annotations

from dataclasses import dataclass
from numbers import Real
from typing import Any

import numpy as np
import torch
from sklearn.mixture import GaussianMixture as _SkGaussianMixture
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval
from sklearn.utils.validation import check_array

from aigc_engine import ops

from sklearn.utils._param_validation import StrOptions

from . import _missing
from ._em import (TORCH_PARAMETER_CONSTRAINTS, BaseMixture, Source, Stats, add_chunk, check_sample_weight, compute_dtype, empty_stats,
                  statistics_pass)
from ._kmeans import hard_resp, kmeans, nearest

COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")

ILL_DEFINED = ("Fitting the mixture model failed because some components have "
               "ill-defined empirical covariance (for instance caused by singleton "
               "or collapsed samples). Try to decrease the number of components, "
               "increase reg_covar, or scale the input data.")
ILL_DEFINED_F32 = (" The numerical accuracy can also be improved by passing float64"
                   " data instead of float32.")


_INIT_SAMPLE = 20000  # rows of streamed data that k-means initialises on


# --------------------------------------------------------------------------------------------
# the Gaussian maths
@dataclass
class Params:
    """Mixture parameters in float64 (the M-step's precision): ``weights [K]``, ``means [K, D]``,
    ``covariances`` (full ``[K, D, D]``, tied ``[D, D]``, diag ``[K, D]``, spherical ``[K]``;
    None when only precisions were given) and ``precisions_cholesky`` (the same shapes), plus
    the compute-dtype copies the E-step uses."""
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

    def state(self) -> dict[str, Any]:
        """The four tensors by name (an EM checkpoint's ``params``)."""
        return {"weights": self.weights, "means": self.means, "covariances": self.covariances,
                "precisions_cholesky": self.precisions_cholesky}

    @classmethod
    def from_state(cls, state: dict[str, Any], device) -> "Params":
        cov = state["covariances"]
        return cls(state["weights"].to(device), state["means"].to(device),
                   cov.to(device) if cov is not None else None, state["precisions_cholesky"].to(device))


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
    a smaller one); here the covariance stays the centred one, unless that is <= 0 (a component
    on one point: :func:`origin_centred_if_collapsed`). The statistics are of rows in
    the frame of the source's ``origin``: the means come back in the data's frame."""
    table, shift = stats.table, stats.shift
    D = shift.shape[-1]
    n_raw = table[:, 0]
    nk = n_raw + 10 * eps
    sx = table[:, 1:1 + D]                                     # sum r (x - shift)
    d = sx / torch.where(n_raw > 0, n_raw, 1)[:, None]         # weighted mean - shift
    frame_means = (sx + n_raw[:, None] * shift) / nk[:, None]  # sum r x / nk
    means = frame_means + origin if origin is not None else frame_means
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
        cov = (moments - n_raw[:, None] * d * d) / nk[:, None]
        cov = origin_centred_if_collapsed(cov, frame_means ** 2, n_raw[:, None], eps) + reg_covar
    else:
        cov = (moments[:, 0] - n_raw * (d * d).sum(1)) / (D * nk)
        cov = origin_centred_if_collapsed(cov, (frame_means ** 2).mean(1), n_raw, eps) + reg_covar
    return nk, means, cov


def origin_centred_if_collapsed(var: torch.Tensor, mean_square: torch.Tensor, n_raw: torch.Tensor,
                                eps: float) -> torch.Tensor:
    """Centred variances ``var``, except where a component collapsed onto single points (``var
    <= 0``): there scikit-learn's origin-centred value ``var + 10 eps m^2 / n_k`` (its ``nk =
    n_k + 10 eps`` leaves that residue), so that a fit scikit-learn carries on with
    ``reg_covar=0`` (its issue #18216) carries on here too; on identical points away from a
    lone one both stay 0, scikit-learn's 'ill-defined' error."""
    residue = 10 * eps * mean_square / torch.where(n_raw > 0, n_raw, 1)
    return torch.where((var <= 0) & (n_raw > 0), var + residue, var)


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


def precisions_from_cholesky(P: torch.Tensor, covariance_type: str) -> torch.Tensor:
    if covariance_type in ("full", "tied"):
        return P @ P.transpose(-1, -2)
    return P * P


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


def moments_cancelled(stats: Stats, covariance_type: str, product_dtype: torch.dtype) -> bool:
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


def weighted(resp: torch.Tensor, w: torch.Tensor | None) -> torch.Tensor:
    """Responsibilities ``[n, K]`` times the rows' sample weights ``w [n]`` (None: unchanged)."""
    return resp if w is None else resp.mul_(w.to(resp.dtype)[:, None])


def exact_moments_pass(source: Source, compute: tuple, covariance_type: str, first: Stats,
                       all_reduce=None, weights: torch.Tensor | None = None) -> Stats:
    """The E-step again, its moments each around the component's new mean (float64 products):
    no cancellation, so a collapsing component's variance is right however small (two-pass
    variance). Only when :func:`moments_cancelled` says so: it costs one more pass over the data.
    ``compute``: the E-step's ``(means, precisions_cholesky, log_weights)`` in the rows' frame."""
    D = source.n_features
    n = first.table[:, :1]
    centres = first.shift + first.table[:, 1:1 + D] / torch.where(n > 0, n, 1)   # [K, D], rows' frame
    means, P, logw = compute
    centres = centres.to(source.dtype)

    def chunk_statistics(offset, x, w):
        _, log_resp = ops.gaussian_estep(x, means, P, covariance_type, logw)
        return ops.mixture_stats(x, weighted(log_resp.exp(), w), centres, covariance_type, True), None
    stats = empty_stats(means.shape[0], D, covariance_type, centres, first.tied_shift)
    stats = statistics_pass(source, stats, chunk_statistics, covariance_type, True, all_reduce, weights)
    stats.ll = first.ll
    return stats


def e_step_pass(source: Source, compute: tuple, shift: torch.Tensor, covariance_type: str, double: bool,
                all_reduce=None, weights: torch.Tensor | None = None, exact_fallback: bool = True) -> Stats:
    """One E-step over all chunks with the statistics of the M-step that follows, around
    ``shift [D]``: ``compute = (means, precisions_cholesky, log_weights)`` in the rows' frame
    and dtype (the log weights may carry any per-component constant: the variational mixture's
    expected log weights and log-determinant terms). Unweighted rows go through the fused kernel
    ``ops.gaussian_em_stats``; weighted ones through ``ops.gaussian_estep`` and
    ``ops.mixture_stats`` of the weighted responsibilities. ``exact_fallback=False`` keeps the
    statistics around ``shift`` even where a component's moments cancelled (stepwise EM adds
    up statistics of many batches around one shift)."""
    means, P, logw = compute

    def chunk_statistics(offset, x, w):
        if w is None:
            return ops.gaussian_em_stats(x, means, P, covariance_type, logw, shift, double)
        log_prob_norm, log_resp = ops.gaussian_estep(x, means, P, covariance_type, logw)
        table = ops.mixture_stats(x, weighted(log_resp.exp_(), w), shift, covariance_type, double)
        return table, (log_prob_norm.double() * w).sum()
    stats = empty_stats(means.shape[0], means.shape[1], covariance_type, shift, shift)
    stats = statistics_pass(source, stats, chunk_statistics, covariance_type, double, all_reduce, weights)
    if exact_fallback and covariance_type != "tied" and moments_cancelled(
            stats, covariance_type, torch.float64 if double else source.dtype):
        stats = exact_moments_pass(source, compute, covariance_type, stats, all_reduce, weights)
    return stats


def missing_e_step_pass(source: Source, params: Params, covariance_type: str, all_reduce=None,
                        weights: torch.Tensor | None = None) -> Stats:
    """The E-step of rows with missing (NaN) entries, in float64: each chunk's complete rows
    through the fused kernel, the others by missingness pattern (:mod:`aigc_gmm._missing`: the
    observed marginal's log-density and the expected statistics)."""
    means, P, logw = params.compute(torch.float64, source.origin)
    cov = covariances_of(params, covariance_type)
    s = params.shift(torch.float64, source.origin)
    stats = empty_stats(means.shape[0], means.shape[1], covariance_type, s, s)
    for offset, x in source.chunks():
        x = x.double()
        w = None if weights is None else weights[offset:offset + len(x)]
        incomplete = torch.isnan(x).any(1)
        xc, wc = x[~incomplete], None if w is None else w[~incomplete]
        if len(xc):
            if wc is None:
                table, ll = ops.gaussian_em_stats(xc, means, P, covariance_type, logw, s, False)
            else:
                log_prob_norm, log_resp = ops.gaussian_estep(xc, means, P, covariance_type, logw)
                table = ops.mixture_stats(xc, weighted(log_resp.exp_(), wc), s, covariance_type, False)
                ll = (log_prob_norm * wc).sum()
            add_chunk(stats, xc, table, covariance_type, True, wc)
            stats.ll += ll
        xm, wm = x[incomplete], None if w is None else w[incomplete]
        for observed, rows in _missing.patterns(xm):
            for lo in range(0, len(rows), _missing.BLOCK):
                idx = rows[lo:lo + _missing.BLOCK]
                _missing.add_missing_rows(stats, xm[idx], None if wm is None else wm[idx], observed, means, cov,
                                          covariance_type, logw)
    return stats.all_reduce(all_reduce)


def resp_pass(source: Source, resp_fn, shift: torch.Tensor, tied_shift: torch.Tensor, K: int,
              covariance_type: str, all_reduce=None, weights: torch.Tensor | None = None) -> Stats:
    """Statistics under responsibilities ``resp_fn(offset, x) -> [n, K]`` times the sample
    weights (initialisation: float32 data forms its products in float64, a one-off cost)."""
    stats = empty_stats(K, source.n_features, covariance_type, shift, tied_shift)
    return statistics_pass(
        source, stats,
        lambda offset, x, w: (ops.mixture_stats(x, weighted(resp_fn(offset, x), w), shift, covariance_type, True), None),
        covariance_type, True, all_reduce, weights)


@dataclass
class StepwiseState:
    """Stepwise EM's running statistics: ``table [K, C]`` and ``scatter`` (tied) per unit weight
    around the fixed ``shift [D]`` (the rows' frame and compute dtype, chosen by the first
    batch), ``t`` the batches seen and ``rows`` their summed weight."""
    shift: torch.Tensor
    table: torch.Tensor
    scatter: torch.Tensor
    t: int
    rows: float

    def state(self) -> dict[str, Any]:
        return {"shift": self.shift.double(), "table": self.table, "scatter": self.scatter, "t": self.t,
                "rows": self.rows}

    @classmethod
    def from_state(cls, state: dict[str, Any], dtype, device) -> "StepwiseState":
        return cls(state["shift"].to(device, dtype), state["table"].to(device, torch.float64),
                   state["scatter"].to(device, torch.float64), int(state["t"]), float(state["rows"]))


# --------------------------------------------------------------------------------------------
# what the Gaussian mixtures share
class GaussianComponents:
    """The parts of a mixture of Gaussians that do not depend on how its parameters are
    estimated (EM or variational): the initial responsibilities from the data (scikit-learn's
    ``init_params``), and sampling. The estimator provides ``n_components``,
    ``covariance_type``, ``init_params``, ``reg_covar``, ``random_state`` and
    ``_gaussian_params() -> Params`` (the fitted weights, means and covariances)."""

    def _initial_from_data(self, source: Source, full: Source, rs, all_reduce, sample_weight=None):
        """``(nk, means, covariances, n)`` from the initial responsibilities, as scikit-learn's
        ``_initialize`` computes them (its weights are ``nk / n``; ``n`` is the number of rows,
        or the sum of their weights). With ``sample_weight`` (float64 ``[n]``) in-memory k-means
        and k-means++ are weighted (scikit-learn's ``sample_weight``) and so is every pass."""
        K, cov_type, D = self.n_components, self.covariance_type, source.n_features
        n = full.n_samples
        w = sample_weight
        w_np = None if w is None else w.cpu().numpy()
        if self.init_params == "random_from_data" or (self.init_params == "k-means++"):
            if self.init_params == "random_from_data":
                rows = full.take(rs.choice(n, size=K, replace=False))
            elif self._in_memory_init:
                from sklearn.cluster import kmeans_plusplus

                X_np = full.data.detach().cpu().numpy() if isinstance(full.data, torch.Tensor) else full.data
                _, idx = kmeans_plusplus(np.asarray(X_np), K, random_state=rs, sample_weight=w_np)
                rows = full.take(idx)
            else:
                rows = kmeans(self._init_sample(full, rs), K, rs.randint(np.iinfo(np.int32).max),
                                  init="k-means++")
            # one-hot responsibilities on K rows: only those rows contribute, each centred on
            # itself (table [1 | 0 | 0]); tied: scikit-learn's (X^T X - sum nk m m^T) / sum nk
            # over *all* rows, so the scatter is around zero
            rows = rows.to(source.dtype)
            zero = torch.zeros(D, dtype=source.dtype, device=source.device)
            stats = empty_stats(K, D, cov_type, rows, zero)
            stats.table[:, 0] = 1
            if cov_type == "tied":  # rows are in every process's hands: only the scatter is all-reduced
                for offset, x in source.chunks():
                    xw = x.double() if w is None else x.double() * w[offset:offset + len(x), None]
                    stats.scatter += xw.T @ x.double()
                if all_reduce is not None:
                    all_reduce(stats.scatter)
            nk, means, cov = parameters_from_stats(stats, cov_type, self.reg_covar, self._eps, source.origin)
            return nk, means, cov, self._total_weight(n, w, all_reduce)

        if self.init_params == "kmeans":
            if self._in_memory_init:
                from sklearn.cluster import KMeans

                X_np = full.data.detach().cpu().numpy()
                labels = KMeans(n_clusters=K, n_init=1, random_state=rs).fit(X_np, sample_weight=w_np).labels_
                labels_t = torch.as_tensor(labels, device=source.device)

                def resp_fn(offset, x):
                    return hard_resp(labels_t[offset:offset + len(x)], K, x.dtype)
                passes = [resp_fn, resp_fn]
            else:
                centres = kmeans(self._init_sample(full, rs), K, rs.randint(np.iinfo(np.int32).max))
                centres = centres.to(source.dtype)

                def resp_fn(offset, x):
                    return hard_resp(nearest(x, centres), K, x.dtype)
                passes = [resp_fn, resp_fn]
        else:  # "random": the same stream of uniforms as scikit-learn, chunk by chunk
            state = rs.get_state()
            skip = getattr(source, "global_offset", 0)

            def make():
                rs.set_state(state)
                for start in range(0, skip, 65536):
                    rs.uniform(size=(min(65536, skip - start), K))

                def resp_fn(offset, x):
                    r = torch.as_tensor(rs.uniform(size=(len(x), K)), device=x.device).to(x.dtype)
                    return r / r.sum(1, keepdim=True)
                return resp_fn
            passes = [make(), None]
        # pass 1: means (for the shifts); pass 2: second moments, each component centred on its
        # pass-1 mean
        zero = torch.zeros(D, dtype=source.dtype, device=source.device)
        st1 = resp_pass(source, passes[0], zero, zero, K, "spherical", all_reduce, w)
        means1 = st1.table[:, 1:1 + D] / (st1.table[:, :1] + 10 * self._eps)
        end_state = rs.get_state() if passes[1] is None else None
        fn2 = passes[1] if passes[1] is not None else make()
        c = means1.to(source.dtype)
        st2 = resp_pass(source, fn2, c, c.mean(0), K, cov_type, all_reduce, w)
        if end_state is not None:
            if source.n_samples == n:
                rs.set_state(end_state)
            else:  # a shard: leave random_state where a one-process fit leaves it
                rs.set_state(state)
                for start in range(0, n, 65536):
                    rs.uniform(size=(min(65536, n - start), K))
        nk, means, cov = parameters_from_stats(st2, cov_type, self.reg_covar, self._eps, source.origin)
        return nk, means, cov, (n if w is None else float(st2.n))

    @staticmethod
    def _total_weight(n: int, w: torch.Tensor | None, all_reduce) -> float:
        """The number of rows ``n``, or the sum of all processes' sample weights."""
        if w is None:
            return n
        total = w.sum().reshape(1).clone()
        if all_reduce is not None:
            all_reduce(total)
        return float(total)

    def _init_sample(self, full: Source, rs) -> torch.Tensor:
        n = full.n_samples
        if n <= _INIT_SAMPLE:
            return torch.cat([x for _, x in full.chunks()])
        idx = np.sort(rs.choice(n, size=_INIT_SAMPLE, replace=False))
        return full.take(idx)

    # ------------------------------------------------------------------------------------
    # sampling
    def sample(self, n_samples=1):
        """Draw samples and their component labels (grouped by component, like scikit-learn)."""
        self._check_is_fitted()
        if n_samples < 1:
            raise ValueError("Invalid value for 'n_samples': %d . The sampling requires at "
                             "least one sample." % (self.n_components))
        p = self._gaussian_params()
        D = p.means.shape[1]
        rng = check_random_state(self.random_state)
        counts = rng.multinomial(n_samples, p.weights.cpu().numpy())
        z = torch.as_tensor(rng.standard_normal(size=(n_samples, D)), device=p.means.device)
        labels = torch.repeat_interleave(torch.arange(len(counts), device=p.means.device),
                                         torch.as_tensor(counts, device=p.means.device))
        X = sample_from(p, self.covariance_type, labels, z)
        out = self._out_fmt
        if out[0] == "numpy":
            return X.cpu().numpy(), labels.cpu().numpy()
        return X.to(device=out[1], dtype=self._dtype), labels.to(out[1])

    def draw(self, n_samples: int, generator: torch.Generator | None = None):
        """``(X, labels)``: ``n_samples`` rows drawn with torch's random stream (``generator``, or
        the global one the engine seeds), each row's component drawn from the weights, in draw
        order (``sample`` draws from ``random_state`` and groups rows by component, as
        scikit-learn). Torch tensors on the fit's device, ``X [n, D]`` in the compute dtype."""
        self._check_is_fitted()
        if n_samples < 1:
            raise ValueError(f"the number of samples must be >= 1, got {n_samples}")
        p = self._gaussian_params()
        dev = p.means.device
        labels = torch.multinomial(p.weights.cpu(), n_samples, replacement=True, generator=generator).to(dev)
        z = torch.randn(n_samples, p.means.shape[1], dtype=torch.float64, device="cpu", generator=generator).to(dev)
        return sample_from(p, self.covariance_type, labels, z).to(self._dtype), labels


# --------------------------------------------------------------------------------------------
# the estimator
class GaussianMixture(GaussianComponents, BaseMixture):
    """Gaussian mixture fitted with EM on PyTorch; see the module docstring and
    ``sklearn.mixture.GaussianMixture`` for the parameters."""

    _parameter_constraints: dict = {
        **_SkGaussianMixture._parameter_constraints,
        **TORCH_PARAMETER_CONSTRAINTS,
        "step_exponent": [Interval(Real, 0.5, 1, closed="right")],
        "missing": [StrOptions({"error", "marginalize"})],
    }

    def __init__(self, n_components=1, *, covariance_type="full", tol=1e-3, reg_covar=1e-6,
                 max_iter=100, n_init=1, init_params="kmeans", weights_init=None, means_init=None,
                 precisions_init=None, random_state=None, warm_start=False, verbose=0,
                 verbose_interval=10, device=None, dtype=None, chunk_size=None, step_exponent=0.6,
                 missing="error"):
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.tol = tol
        self.reg_covar = reg_covar
        self.max_iter = max_iter
        self.n_init = n_init
        self.init_params = init_params
        self.weights_init = weights_init
        self.means_init = means_init
        self.precisions_init = precisions_init
        self.random_state = random_state
        self.warm_start = warm_start
        self.verbose = verbose
        self.verbose_interval = verbose_interval
        self.device = device
        self.dtype = dtype
        self.chunk_size = chunk_size
        self.step_exponent = step_exponent
        self.missing = missing

    # ------------------------------------------------------------------------------------
    # parameter checks (scikit-learn's messages)
    def _check_init_arrays(self, n_features: int):
        K, cov = self.n_components, self.covariance_type

        def arr(a):
            a = a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else a
            return check_array(a, dtype=[np.float64, np.float32], ensure_2d=False, allow_nd=True)

        def shape(a, expected, label):
            if a.shape != expected:
                raise ValueError("The parameter '%s' should have the shape of %s, but got %s"
                                 % (label, expected, a.shape))

        w = m = p = None
        if self.weights_init is not None:
            w = arr(self.weights_init)
            shape(w, (K,), "weights")
            if any(np.less(w, 0.0)) or any(np.greater(w, 1.0)):
                raise ValueError("The parameter 'weights' should be in the range [0, 1], but got max value "
                                 "%.5f, min value %.5f" % (np.min(w), np.max(w)))
            atol = 1e-6 if w.dtype == np.float32 else 1e-8
            if not np.allclose(float(np.abs(1.0 - np.sum(w))), 0.0, atol=atol):
                raise ValueError("The parameter 'weights' should be normalized, but got sum(weights) = %.5f"
                                 % np.sum(w))
        if self.means_init is not None:
            m = arr(self.means_init)
            shape(m, (K, n_features), "means")
        if self.precisions_init is not None:
            p = arr(self.precisions_init)
            expected = {"full": (K, n_features, n_features), "tied": (n_features, n_features),
                        "diag": (K, n_features), "spherical": (K,)}[cov]
            shape(p, expected, "%s precision" % cov)
            if cov in ("diag", "spherical"):
                if np.any(np.less_equal(p, 0.0)):
                    raise ValueError("'%s precision' should be positive" % cov)
            else:
                for mat in (p if cov == "full" else [p]):
                    if not (np.all(np.isclose(mat, mat.T)) and np.all(np.linalg.eigvalsh(mat) > 0.0)):
                        raise ValueError("'%s precision' should be symmetric, positive-definite" % cov)
        return w, m, p

    def _begin_fit(self, source: Source, full: Source, in_memory_init: bool, all_reduce=None,
                   weights=None) -> None:
        super()._begin_fit(source, full, in_memory_init, all_reduce, weights)
        if self.covariance_type not in COVARIANCE_TYPES:  # only reachable without validation
            raise ValueError(f"covariance_type must be one of {COVARIANCE_TYPES}")
        self._inits = self._check_init_arrays(source.n_features)
        if self._allows_missing() and not isinstance(source.data, torch.Tensor):
            raise ValueError("missing='marginalize' needs in-memory data (a NumPy array or a tensor)")
        self._missing_fit = self._allows_missing() and bool(torch.isnan(source.data).any())

    def _allows_missing(self) -> bool:
        return self.missing == "marginalize"

    def _mean_filled(self, source: Source) -> Source:
        """``source`` with each missing entry replaced by its column's mean (the initialisation
        of a fit with missing values: k-means and the first responsibilities need every entry)."""
        data = source.data.double()
        filled = torch.where(torch.isnan(data), torch.nanmean(data, 0), data)
        return Source(filled.to(source.data.dtype), source.dtype, source.device, source.chunk_size, source.origin)

    # ------------------------------------------------------------------------------------
    # the hooks of BaseMixture: initialisation, E-step, M-step
    def _initialize_parameters(self, source: Source, full: Source, random_state, all_reduce,
                               sample_weight: torch.Tensor | None = None) -> Params:
        cov_type = self.covariance_type
        w_init, m_init, p_init = self._inits
        dev, f64 = source.device, torch.float64
        if self._missing_fit:
            source = full = self._mean_filled(source)
        weights = means = covariances = None
        if w_init is None or m_init is None or p_init is None:
            nk, means, covariances, n = self._initial_from_data(source, full, random_state, all_reduce,
                                                                sample_weight)
            weights = nk / n
        if w_init is not None:
            weights = torch.as_tensor(w_init, dtype=f64, device=dev)
        if m_init is not None:
            means = torch.as_tensor(m_init, dtype=f64, device=dev)
        if p_init is None:
            P = precision_cholesky(covariances, cov_type, self._float32)
        else:
            P = precision_cholesky_from_precisions(torch.as_tensor(p_init, dtype=f64, device=dev), cov_type)
            covariances = None
        return Params(weights, means, covariances, P)

    def _e_step(self, source: Source, params: Params, all_reduce=None, weights=None) -> Stats:
        """One E-step over all chunks (:func:`e_step_pass`) with the statistics of the M-step
        that follows, around the mixture mean."""
        if self._missing_fit:
            return missing_e_step_pass(source, params, self.covariance_type, all_reduce, weights)
        dtype = source.dtype
        return e_step_pass(source, params.compute(dtype, source.origin), params.shift(dtype, source.origin),
                           self.covariance_type, needs_double_moments(params, self.covariance_type, dtype),
                           all_reduce, weights)

    def _m_step(self, stats: Stats, origin: torch.Tensor | None = None) -> Params:
        """The parameters that maximise the expected log-likelihood under ``stats`` (float64)."""
        nk, means, cov = parameters_from_stats(stats, self.covariance_type, self.reg_covar, self._eps, origin)
        weights = nk / nk.sum()
        P = precision_cholesky(cov, self.covariance_type, self._float32)
        return Params(weights, means, cov, P)

    def _params_from_state(self, state: dict[str, Any], device) -> Params:
        return Params.from_state(state, device)

    # ------------------------------------------------------------------------------------
    # stepwise EM
    def fit(self, X, y=None, sample_weight=None):
        self._stepwise = None  # a batch fit ends a stream of partial_fit calls
        return super().fit(X, y, sample_weight=sample_weight)

    fit.__doc__ = BaseMixture.fit.__doc__

    def partial_fit(self, X, y=None, sample_weight=None):
        """Update the fit with one batch of rows: stepwise EM (Cappé & Moulines 2009). The
        batch's sufficient statistics per unit weight, from one E-step under the current
        parameters, are blended into the running ones with step size ``(t + 2) **
        -step_exponent`` (``t`` the batches seen before, ``step_exponent`` in (0.5, 1]), then
        the M-step sets the parameters; memory is bounded by the batch.

        The first call (or the first after ``fit``) initialises from its batch as ``fit`` does
        (``init_params``, ``random_state``, the init arrays) and takes the batch's statistics
        whole: it equals ``fit`` of that batch with ``max_iter=1``. Later batches must have the
        first's number of features. ``n_iter_`` counts the batches, ``lower_bound_`` is the last
        batch's mean log-likelihood under the parameters before its update, ``converged_`` stays
        False (a stream has no convergence test)."""
        stepwise = getattr(self, "_stepwise", None)
        if stepwise is None:
            self._validate_params()
            source, out, _ = self._prepare(X, reset=True)
            weights = check_sample_weight(sample_weight, source.n_samples, source.device)
            self._out = out
            self._begin_fit(source, source, isinstance(source.data, torch.Tensor), None, weights)
            if self._missing_fit:
                raise ValueError("partial_fit does not take missing values: use fit with missing='marginalize'")
            self._inits = self._check_init_arrays(source.n_features)
            params = self._initialize_parameters(source, source, check_random_state(self.random_state), None,
                                                 weights)
            shift = params.shift(source.dtype, source.origin)
            C = ops.stats_columns(self.covariance_type, source.n_features)
            stepwise = StepwiseState(shift, torch.zeros(self.n_components, C, dtype=torch.float64,
                                                        device=source.device),
                                     torch.zeros(0, dtype=torch.float64, device=source.device), 0, 0.0)
            self.lower_bounds_ = []
        else:
            source, _, _ = self._prepare(X, reset=False)
            if self._allows_missing() and bool(torch.isnan(source.data).any()):
                raise ValueError("partial_fit does not take missing values: use fit with missing='marginalize'")
            weights = check_sample_weight(sample_weight, source.n_samples, source.device)
            params = self._params
        self._stepwise = self._stepwise_update(source, params, stepwise, weights)
        return self

    def _stepwise_update(self, source: Source, params: Params, stepwise: StepwiseState, weights) -> StepwiseState:
        dtype, cov_type = source.dtype, self.covariance_type
        stats = e_step_pass(source, params.compute(dtype, source.origin), stepwise.shift, cov_type,
                            needs_double_moments(params, cov_type, dtype), None, weights, exact_fallback=False)
        n = float(stats.n)
        step = 1.0 if stepwise.t == 0 else (stepwise.t + 2.0) ** -self.step_exponent
        table = (1 - step) * stepwise.table + step * stats.table / n
        scatter = stats.scatter / n if stepwise.t == 0 else (1 - step) * stepwise.scatter + step * stats.scatter / n
        running = Stats(table, scatter, stats.ll, torch.ones((), dtype=torch.float64, device=table.device),
                        stats.shift, stats.tied_shift)
        self._set_parameters(self._m_step(running, source.origin))
        self.n_iter_, self.converged_ = stepwise.t + 1, False
        self.lower_bound_ = float(stats.ll) / n
        self.lower_bounds_.append(self.lower_bound_)
        return StepwiseState(stepwise.shift, table, scatter, stepwise.t + 1, stepwise.rows + n)

    def _gaussian_params(self) -> Params:
        return self._params

    def _set_parameters(self, params: Params) -> None:
        self._params = params
        out = self._out_fmt
        dt = self._dtype
        cov = covariances_of(params, self.covariance_type)
        self.weights_ = self._to_out(params.weights.to(dt), out)
        self.means_ = self._to_out(params.means.to(dt), out)
        self.covariances_ = self._to_out(cov.to(dt), out)
        self.precisions_cholesky_ = self._to_out(params.precisions_cholesky.to(dt), out)
        self.precisions_ = self._to_out(
            precisions_from_cholesky(params.precisions_cholesky, self.covariance_type).to(dt), out)

    def _estimate_weighted_log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """``log w_k + log N(x_n | m_k, S_k)`` ``[n, K]`` of rows ``x [n, D]`` given less the
        origin (as ``Source`` yields them)."""
        if self.missing == "marginalize" and bool(torch.isnan(x).any()):
            means, _, logw = self._params.compute(torch.float64, self._origin_)
            cov = covariances_of(self._params, self.covariance_type)
            return _missing.observed_log_prob(x, means, cov, self.covariance_type, logw).to(x.dtype)
        means, P, logw = self._params.compute(x.dtype, self._origin_)
        return ops.gaussian_log_prob(x, means, P, self.covariance_type, logw)

    def _estimate_log_resp(self, x: torch.Tensor) -> torch.Tensor:
        """Log responsibilities ``[n, K]`` of rows ``x [n, D]`` (as ``Source`` yields them)."""
        if self.missing == "marginalize" and bool(torch.isnan(x).any()):
            weighted_log_prob = self._estimate_weighted_log_prob(x)
            return weighted_log_prob - torch.logsumexp(weighted_log_prob, 1, keepdim=True)
        means, P, logw = self._params.compute(x.dtype, self._origin_)
        return ops.gaussian_estep(x, means, P, self.covariance_type, logw)[1]

    def impute(self, X):
        """X with each missing (NaN) entry replaced by its conditional mean given the row's
        observed entries under the fitted mixture (``missing="marginalize"``); complete rows
        are returned unchanged. NumPy in, NumPy out; torch in, torch out."""
        self._check_is_fitted()
        if self.missing != "marginalize":
            raise ValueError("impute needs missing='marginalize' (NaN entries are an error otherwise)")
        means, _, logw = self._params.compute(torch.float64, self._origin_)
        cov = covariances_of(self._params, self.covariance_type)
        origin = self._origin_

        def fill(x):
            out = _missing.conditional_means(x, means, cov, self.covariance_type, logw)
            return (out + origin if origin is not None else out).to(self._dtype)
        return self._inference(X, fill)

    def _n_parameters(self) -> int:
        return n_parameters(self.n_components, self._params.means.shape[1], self.covariance_type)

    # ------------------------------------------------------------------------------------
    # the fit as data
    def fitted_state(self) -> dict[str, Any]:
        """The fit as CPU tensors (float64), numbers, strings and lists, for a safetensors file:
        ``weights``, ``means``, ``covariances``, ``precisions_cholesky``, ``covariance_type``,
        ``n_iter``, ``converged``, ``lower_bound``, ``lower_bounds`` and, when the data was
        fitted in a frame away from zero, its ``origin [D]``. :meth:`from_state` takes it back."""
        self._check_is_fitted()
        p = self._params
        state = {"weights": p.weights.cpu(), "means": p.means.cpu(),
                 "covariances": covariances_of(p, self.covariance_type).cpu(),
                 "precisions_cholesky": p.precisions_cholesky.cpu(), "covariance_type": self.covariance_type,
                 "n_iter": int(self.n_iter_), "converged": bool(self.converged_),
                 "lower_bound": float(self.lower_bound_), "lower_bounds": [float(v) for v in self.lower_bounds_]}
        if self._origin_ is not None:
            state["origin"] = self._origin_.cpu()
        return state

    @classmethod
    def from_state(cls, state: dict[str, Any], **params) -> "GaussianMixture":
        """The fitted estimator of ``state`` (:meth:`fitted_state`'s), constructed with
        ``params`` (``n_components`` and ``covariance_type`` default to the state's, and must
        match it when given: else a ``ValueError``). It computes on ``device`` (default CPU) in
        ``dtype`` (default float64) and returns torch tensors."""
        n_components = int(state["weights"].shape[0])
        params.setdefault("n_components", n_components)
        params.setdefault("covariance_type", state.get("covariance_type", "full"))
        gm = cls(**params)
        saved = state.get("covariance_type", gm.covariance_type)
        if saved != gm.covariance_type:
            raise ValueError(f"state has covariance_type {saved!r}, the estimator {gm.covariance_type!r}")
        if n_components != gm.n_components:
            raise ValueError(f"state has {n_components} components, the estimator n_components={gm.n_components}")
        device = torch.device(gm.device) if gm.device is not None else torch.device("cpu")
        f64 = torch.float64
        p = Params(state["weights"].to(device, f64), state["means"].to(device, f64),
                   state["covariances"].to(device, f64), state["precisions_cholesky"].to(device, f64))
        gm.n_features_in_ = p.means.shape[1]
        gm._dtype, gm._device, gm._out = compute_dtype(gm.dtype) or f64, device, ("torch", device)
        gm._origin = state["origin"].to(device, f64) if state.get("origin") is not None else None
        gm._set_parameters(p)
        gm.n_iter_ = int(state.get("n_iter", 0))
        gm.converged_ = bool(state.get("converged", False))
        gm.lower_bound_ = float(state.get("lower_bound", float("nan")))
        gm.lower_bounds_ = list(state.get("lower_bounds", []))
        return gm


class StepwiseFit:
    """A stepwise EM fit of an engine Dataset (or any object with ``shape``, ``subset`` and
    ``iter_chunks``) read in consecutive batches of ``batch_size`` rows, ``epochs`` times: each
    ``step()`` is ``gm.partial_fit`` of the next batch (memory bounded by the batch) and returns
    its mean log-likelihood; ``done`` after ``steps`` batches. ``state_dict()`` /
    ``load_state_dict()`` hold the parameters and the running statistics, so that a resumed
    fit goes on at the next batch and ends as the uninterrupted one."""

    def __init__(self, gm: GaussianMixture, dataset, batch_size: int, epochs: int = 1):
        if batch_size < 1 or epochs < 1:
            raise ValueError(f"batch_size and epochs must be >= 1, got {batch_size} and {epochs}")
        self.gm, self.dataset, self.batch_size = gm, dataset, int(batch_size)
        self.n_rows = int(dataset.shape[0])
        self.batches_per_epoch = -(-self.n_rows // self.batch_size)
        self.steps = self.batches_per_epoch * int(epochs)
        self.seen = 0  # batches fitted

    @property
    def done(self) -> bool:
        return self.seen >= self.steps

    def _batch(self, i: int):
        lo = (i % self.batches_per_epoch) * self.batch_size
        return self.dataset.subset(slice(lo, min(lo + self.batch_size, self.n_rows)))

    def step(self) -> float:
        batch = self._batch(self.seen)
        self.gm.partial_fit(batch, sample_weight=getattr(batch, "weights", None))
        self.seen += 1
        return self.gm.lower_bound_

    def state_dict(self) -> dict[str, Any]:
        gm = self.gm
        if self.seen == 0:
            return {"seen": 0}
        return {"seen": self.seen, "params": gm._params.state(), "stepwise": gm._stepwise.state(),
                "lower_bounds": [float(v) for v in gm.lower_bounds_]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.seen = int(state["seen"])
        if self.seen == 0:
            return
        gm = self.gm
        gm._validate_params()
        source, gm._out, _ = gm._prepare(self._batch(0), reset=True)  # the first batch's dtype and origin
        gm._begin_fit(source, source, False)
        gm._stepwise = StepwiseState.from_state(state["stepwise"], source.dtype, source.device)
        gm._set_parameters(Params.from_state(state["params"], source.device))
        gm.n_iter_, gm.converged_ = self.seen, False
        gm.lower_bounds_ = [float(v) for v in state["lower_bounds"]]
        gm.lower_bound_ = gm.lower_bounds_[-1]
