"""Missing values in a Gaussian mixture (Ghahramani & Jordan 1994), for ``missing="marginalize"``.

A row's observed dimensions ``o`` have the marginal density ``N(x_o | m_ko, S_koo)`` under
component k (the marginal of a Gaussian is a Gaussian), so the E-step is the Gaussian kernel
``ops.gaussian_log_prob`` on the observed columns with the marginal's precision factor. The
M-step takes the expected statistics: the missing entries' conditional mean ``x^_m = m_km +
S_kmo S_koo^-1 (x_o - m_ko)`` and, in the second moments, their conditional covariance ``S_kmm -
S_kmo S_koo^-1 S_kom``. Rows are batched by missingness pattern (the unique NaN masks of a
chunk), so few patterns mean few small factorisations; complete rows keep the fused kernel.
"""
from __future__ import annotations

import torch

from aigc_engine import ops

BLOCK = 4096  # rows of one pattern handled at once ([K, rows, D] temporaries)


def patterns(x: torch.Tensor):
    """``(observed [D] bool, rows [n_p] long)`` for each missingness pattern of ``x``."""
    mask = torch.isnan(x)
    unique, inverse = torch.unique(mask, dim=0, return_inverse=True)
    for p in range(unique.shape[0]):
        yield ~unique[p], torch.nonzero(inverse == p).flatten()


def _marginal(means, cov, covariance_type, observed):
    """Component means on ``observed``, the marginal's precision factor and ``covariance_type``
    (the kernel's shapes), and the regression ``(B [K, b, a], C [K, b, b])`` of the missing
    entries on the observed ones (B is None for diag / spherical: no correlation)."""
    o, m = observed, ~observed
    if covariance_type in ("full", "tied"):
        S = cov if covariance_type == "full" else cov.expand(means.shape[0], -1, -1)
        S_oo, S_om, S_mm = S[:, o][:, :, o], S[:, o][:, :, m], S[:, m][:, :, m]
        L = torch.linalg.cholesky(S_oo)
        eye = torch.eye(L.shape[-1], dtype=L.dtype, device=L.device).expand_as(L)
        P = torch.linalg.solve_triangular(L, eye, upper=False).transpose(-1, -2)
        B = torch.cholesky_solve(S_om, L).transpose(-1, -2)           # S_mo S_oo^-1
        C = S_mm - B @ S_om
        if covariance_type == "tied":
            P = P[0]
        return means[:, o], P, covariance_type, B, C
    if covariance_type == "diag":
        return means[:, o], 1.0 / torch.sqrt(cov[:, o]), "diag", None, torch.diag_embed(cov[:, m])
    b = int(m.sum())
    eye = torch.eye(b, dtype=cov.dtype, device=cov.device)
    return means[:, o], 1.0 / torch.sqrt(cov), "spherical", None, cov[:, None, None] * eye


def _completed(x_p, means, observed, marginal):
    """``X^ [K, n, D]``: the rows with their missing entries replaced by each component's
    conditional mean."""
    means_o, _, _, B, _ = marginal
    o, m = observed, ~observed
    K, n = means.shape[0], x_p.shape[0]
    out = x_p.new_empty(K, n, x_p.shape[1])
    out[:, :, o] = x_p[:, o]
    fill = means[:, None, m].expand(K, n, int(m.sum()))
    if B is not None and bool(o.any()):
        fill = fill + (x_p[None, :, o] - means_o[:, None, :]) @ B.transpose(-1, -2)
    out[:, :, m] = fill
    return out


def observed_log_prob(x, means, cov, covariance_type, log_weights):
    """``log w_k + log N(x_o | m_ko, S_koo)`` ``[n, K]`` (float64) of rows with NaN entries."""
    x = x.double()
    out = x.new_empty(x.shape[0], means.shape[0])
    for observed, rows in patterns(x):
        if not bool(observed.any()):
            out[rows] = log_weights
            continue
        means_o, P, kind, _, _ = _marginal(means, cov, covariance_type, observed)
        out[rows] = ops.gaussian_log_prob(x[rows][:, observed].contiguous(), means_o.contiguous(), P.contiguous(),
                                          kind, log_weights)
    return out


def conditional_means(x, means, cov, covariance_type, log_weights):
    """Rows with each missing entry replaced by its conditional mean given the observed ones
    (``sum_k r_nk x^_nk``; float64)."""
    x = x.double()
    out = x.clone()
    for observed, rows in patterns(x):
        if bool(observed.all()):
            continue
        marginal = _marginal(means, cov, covariance_type, observed)
        for lo in range(0, len(rows), BLOCK):
            idx = rows[lo:lo + BLOCK]
            x_p = x[idx]
            resp = torch.softmax(observed_log_prob(x_p, means, cov, covariance_type, log_weights), 1)
            filled = torch.einsum("nk,knd->nd", resp, _completed(x_p, means, observed, marginal))
            out[idx] = torch.where(observed, x_p, filled)  # the observed entries exactly as given
    return out


def add_missing_rows(stats, x_p, w_p, observed, means, cov, covariance_type, log_weights) -> None:
    """Add the expected statistics of rows ``x_p`` (one pattern, float64) to ``stats`` (the
    ``ops.mixture_stats`` layout around ``stats.shift``; tied: the scatter around
    ``stats.tied_shift``) and their observed log-likelihood to ``stats.ll``."""
    marginal = _marginal(means, cov, covariance_type, observed)
    D = x_p.shape[1]
    m = ~observed
    weighted = observed_log_prob(x_p, means, cov, covariance_type, log_weights)
    log_norm = torch.logsumexp(weighted, 1)
    resp = torch.exp(weighted - log_norm[:, None])
    if w_p is not None:
        resp = resp * w_p[:, None]
        log_norm = log_norm * w_p
    stats.ll += log_norm.sum()
    stats.n += x_p.shape[0] if w_p is None else w_p.sum()
    nk = resp.sum(0)
    C = torch.zeros(means.shape[0], D, D, dtype=x_p.dtype, device=x_p.device)
    C[:, m.nonzero().flatten()[:, None], m.nonzero().flatten()[None, :]] = marginal[4]
    z = _completed(x_p, means, observed, marginal) - stats.shift
    stats.table[:, 0] += nk
    stats.table[:, 1:1 + D] += torch.einsum("nk,knd->kd", resp, z)
    if covariance_type == "full":
        second = torch.einsum("nk,kni,knj->kij", resp, z, z) + nk[:, None, None] * C
        iu = torch.triu_indices(D, D, device=x_p.device)
        stats.table[:, 1 + D:] += second[:, iu[0], iu[1]]
    elif covariance_type == "diag":
        stats.table[:, 1 + D:] += torch.einsum("nk,knd->kd", resp, z * z) + nk[:, None] * torch.diagonal(C, dim1=1, dim2=2)
    elif covariance_type == "spherical":
        stats.table[:, 1 + D] += torch.einsum("nk,kn->k", resp, (z * z).sum(2)) + nk * torch.diagonal(C, dim1=1, dim2=2).sum(1)
    else:
        zt = z + stats.shift - stats.tied_shift
        stats.scatter += torch.einsum("nk,kni,knj->ij", resp, zt, zt) + (nk[:, None, None] * C).sum(0)
