"""The Gaussian passes over the data: each one E-step under given parameters whose chunks'
statistics :func:`aigc_gmm._data.statistics_pass` adds up (the fused kernel for unweighted rows,
the weighted responsibilities otherwise; rows with missing entries by missingness pattern; the
initialisation's passes under given responsibilities).
"""
from __future__ import annotations

import torch

from aigc_engine import ops

from . import _missing
from ._data import Source, Stats, add_chunk, empty_stats, statistics_pass
from ._gaussian import Params, covariances_of, moments_cancelled


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
                all_reduce=None, weights: torch.Tensor | None = None, exact_fallback: bool = True,
                reg_covar: float = 0.0) -> Stats:
    """One E-step over all chunks with the statistics of the M-step that follows, around
    ``shift [D]``: ``compute = (means, precisions_cholesky, log_weights)`` in the rows' frame
    and dtype (the log weights may carry any per-component constant: the variational mixture's
    expected log weights and log-determinant terms). Unweighted rows go through the fused kernel
    ``ops.gaussian_em_stats``; weighted ones through ``ops.gaussian_estep`` and
    ``ops.mixture_stats`` of the weighted responsibilities. ``exact_fallback=False`` keeps the
    statistics around ``shift`` even where a component's moments cancelled (stepwise EM adds
    up statistics of many batches around one shift); ``reg_covar``: see ``moments_cancelled``."""
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
            stats, covariance_type, torch.float64 if double else source.dtype, reg_covar):
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
