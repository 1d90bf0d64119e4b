"""The Gaussian maths of the mixtures (scikit-learn's functions in ``_gaussian_mixture.py``):
plain functions (shapes in their docstrings) on a parameter record :class:`Params` and on a
pass's :class:`aigc_gmm._data.Stats`. The covariances of the M-step are one function per
covariance type (:data:`COVARIANCES`), as scikit-learn's ``_estimate_gaussian_covariances_*``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ._data import Stats

COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")

ILL_DEFINED = ("Fitting the mixture model failed because some components have "
               "ill-defined empirical covariance (for instance caused by singleton "
               "or collapsed samples). Try to decrease the number of components, "
               "increase reg_covar, or scale the input data.")
ILL_DEFINED_F32 = (" The numerical accuracy can also be improved by passing float64"
                   " data instead of float32.")


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
    cov = COVARIANCES[covariance_type](stats, nk, d, frame_means, reg_covar, eps)
    return nk, means, cov


# The covariances of the M-step, one function per covariance type, each of (the pass's ``stats``,
# ``nk [K]`` (the counts plus ``10 eps``), ``d [K, D]`` (each component's weighted mean less the
# shift), ``frame_means [K, D]`` (``sum r x / nk`` in the rows' frame), ``reg_covar``, ``eps``).
def covariance_full(stats: Stats, nk, d, frame_means, reg_covar: float, eps: float) -> torch.Tensor:
    """``[K, D, D]``: the centred scatter of each component over ``nk``, plus ``reg_covar``."""
    table, D = stats.table, d.shape[1]
    n_raw, moments, K = table[:, 0], table[:, 1 + D:], table.shape[0]
    iu = torch.triu_indices(D, D, device=table.device)
    S = table.new_zeros(K, D, D)
    S[:, iu[0], iu[1]] = moments
    S[:, iu[1], iu[0]] = moments
    cov = (S - n_raw[:, None, None] * d[:, :, None] * d[:, None, :]) / nk[:, None, None]
    return cov + reg_covar * torch.eye(D, dtype=cov.dtype, device=cov.device)


def covariance_tied(stats: Stats, nk, d, frame_means, reg_covar: float, eps: float) -> torch.Tensor:
    """``[D, D]``: the scatter of all rows less that of the component means, over ``sum nk``."""
    n_raw, D = stats.table[:, 0], d.shape[1]
    e = stats.shift + d - stats.tied_shift                     # weighted mean - tied shift
    cov = (stats.scatter - (n_raw[:, None] * e).T @ e) / nk.sum()
    return cov + reg_covar * torch.eye(D, dtype=cov.dtype, device=cov.device)


def covariance_diag(stats: Stats, nk, d, frame_means, reg_covar: float, eps: float) -> torch.Tensor:
    """``[K, D]``: the centred variances of each component."""
    table, D = stats.table, d.shape[1]
    n_raw, moments = table[:, 0], table[:, 1 + D:]
    cov = (moments - n_raw[:, None] * d * d) / nk[:, None]
    return origin_centred_if_collapsed(cov, frame_means ** 2, n_raw[:, None], eps) + reg_covar


def covariance_spherical(stats: Stats, nk, d, frame_means, reg_covar: float, eps: float) -> torch.Tensor:
    """``[K]``: the mean of each component's centred variances."""
    table, D = stats.table, d.shape[1]
    n_raw, moments = table[:, 0], table[:, 1 + D:]
    cov = (moments[:, 0] - n_raw * (d * d).sum(1)) / (D * nk)
    return origin_centred_if_collapsed(cov, (frame_means ** 2).mean(1), n_raw, eps) + reg_covar


COVARIANCES = {"full": covariance_full, "tied": covariance_tied, "diag": covariance_diag,
               "spherical": covariance_spherical}


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
    if covariance_type == "full":  # a component's rows at a time: gathering chol[labels] would hold n x D x D
        chol = torch.linalg.cholesky(cov)
        x = torch.empty_like(z)
        for k in torch.unique(labels).tolist():
            rows = labels == k
            x[rows] = z[rows] @ chol[k].T
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


def moments_cancelled(stats: Stats, covariance_type: str, product_dtype: torch.dtype, floor: float = 0.0) -> bool:
    """Whether a component's variance ``S/n - d^2`` around the shared shift kept fewer than ~6
    bits: a (nearly) collapsed component far from the shift, whose tiny variance the shifted
    moments can round to <= 0. Not where that rounding is below 1e-9 of ``floor`` (reg_covar,
    added to every variance): a table's constant or one-hot column, exactly 0 in a component,
    costs no second pass then."""
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
    rounding = 64 * torch.finfo(product_dtype).eps * second
    return bool(((second - square <= rounding) & (rounding >= 1e-9 * floor)).any())
