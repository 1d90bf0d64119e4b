"""``BayesianGaussianMixture``: a drop-in for ``sklearn.mixture.BayesianGaussianMixture`` on the
same kernels and EM driver as :class:`aigc_gmm.GaussianMixture`.

Variational inference (scikit-learn's ``_bayesian_mixture.py``): a Dirichlet distribution or a
Dirichlet process (stick-breaking) prior on the weights, a Gaussian prior on the means and a
Wishart prior on the precisions. The E-step is the Gaussian one with each component's expected
log weight and expected log-determinant terms folded into its log weight, so every pass is
:func:`aigc_gmm._passes.e_step_pass` (the fused ``ops.gaussian_em_stats`` kernel, or
the weighted path with ``sample_weight``) and one :func:`aigc_gmm._data.statistics_pass`. The
variational lower bound's entropy term ``sum r log r`` comes from the same statistics:
``sum_nk r_nk log r_nk = sum_k sum_n r_nk log p~_nk - sum_n log p~_n``, where the component
term needs only the counts, first and second moments of the pass.

Same constructor parameters, defaults, fitted attributes, warnings and errors as scikit-learn,
plus ``device``, ``dtype`` and ``chunk_size`` (see ``GaussianMixture``), ``sample_weight`` in
``fit`` / ``fit_predict`` / ``score`` and, beyond scikit-learn, ``criteria`` / ``bic`` / ``aic``
(of the mixture of the fitted ``weights_``, ``means_`` and ``covariances_``) and
``n_effective_components(threshold)``.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import torch
from scipy.special import betaln, digamma, gammaln
from sklearn.mixture import BayesianGaussianMixture as _SkBayesianGaussianMixture
from sklearn.utils.validation import check_array

from aigc_engine import ops

from ._base import TORCH_PARAMETER_CONSTRAINTS, BaseMixture, compute_dtype
from ._components import GaussianComponents
from ._data import Source, Stats, empty_stats, statistics_pass
from ._gaussian import (COVARIANCE_TYPES, Params, n_parameters, needs_double_moments, parameters_from_stats,
                        precision_cholesky, precisions_from_cholesky)
from ._passes import e_step_pass


@dataclass
class VariationalParams:
    """The variational posterior in float64: ``weight_concentration`` (``[K]`` for a Dirichlet
    distribution, ``[2, K]`` (the Beta parameters of the sticks) for a Dirichlet process),
    ``mean_precision [K]``, ``means [K, D]``, ``degrees_of_freedom`` (``[K]``; tied ``[]``),
    ``covariances`` and ``precisions_cholesky`` (the Wishart scale over the degrees of freedom
    and its precision's Cholesky factor; ``GaussianMixture``'s shapes)."""
    weight_concentration: torch.Tensor
    mean_precision: torch.Tensor
    means: torch.Tensor
    degrees_of_freedom: torch.Tensor
    covariances: torch.Tensor
    precisions_cholesky: torch.Tensor

    def state(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_state(cls, state: dict[str, Any], device) -> "VariationalParams":
        return cls(**{f.name: state[f.name].to(device, torch.float64) for f in fields(cls)})


def mixture_weights(concentration: np.ndarray, prior_type: str) -> np.ndarray:
    """The expected weights of the posterior (scikit-learn's ``weights_``): stick-breaking means
    for a Dirichlet process, normalised concentrations for a Dirichlet distribution."""
    if prior_type == "dirichlet_process":
        a, b = concentration
        total = a + b
        w = a / total * np.hstack((1, np.cumprod(b / total)[:-1]))
        return w / w.sum()
    return concentration / concentration.sum()


def expected_log_weights(concentration: np.ndarray, prior_type: str) -> np.ndarray:
    """``E[log pi_k]`` under the posterior (scikit-learn's ``_estimate_log_weights``)."""
    if prior_type == "dirichlet_process":
        a, b = concentration
        digamma_sum = digamma(a + b)
        return digamma(a) - digamma_sum + np.hstack((0, np.cumsum(digamma(b) - digamma_sum)[:-1]))
    return digamma(concentration) - digamma(concentration.sum())


def log_prob_offsets(degrees_of_freedom: np.ndarray, mean_precision: np.ndarray, n_features: int) -> np.ndarray:
    """What scikit-learn's ``_estimate_log_prob`` adds to ``log N(x | m_k, P_k)``, per component
    ``[K]``: ``-D/2 log nu_k + (D log 2 + sum_i digamma((nu_k - i) / 2) - D / beta_k) / 2``."""
    D = n_features
    nu = np.asarray(degrees_of_freedom, dtype=np.float64)
    log_lambda = D * np.log(2.0) + np.sum(digamma(0.5 * (nu - np.arange(D)[:, None])), 0)
    return -0.5 * D * np.log(nu) + 0.5 * (log_lambda - D / mean_precision)


def log_det_cholesky(P: torch.Tensor, covariance_type: str, n_features: int) -> torch.Tensor:
    """``log det P`` per component (scikit-learn's ``_compute_log_det_cholesky``)."""
    if covariance_type == "full":
        return torch.log(torch.diagonal(P, dim1=-2, dim2=-1)).sum(-1)
    if covariance_type == "tied":
        return torch.log(torch.diagonal(P)).sum()
    if covariance_type == "diag":
        return torch.log(P).sum(1)
    return n_features * torch.log(P)


def log_wishart_norm(nu: np.ndarray, log_det_precisions_chol: np.ndarray, n_features: int) -> np.ndarray:
    """scikit-learn's ``_log_wishart_norm``."""
    D = n_features
    return -(nu * log_det_precisions_chol + nu * D * 0.5 * np.log(2.0)
             + np.sum(gammaln(0.5 * (nu - np.arange(D)[:, None])), 0))


def log_dirichlet_norm(concentration: np.ndarray) -> float:
    """Log normaliser of a Dirichlet distribution (scikit-learn's ``_log_dirichlet_norm``)."""
    return gammaln(np.sum(concentration)) - np.sum(gammaln(concentration))


def resp_log_resp(stats: Stats, compute: tuple, covariance_type: str) -> float:
    """``sum_nk r_nk log r_nk`` of the E-step that gave ``stats`` with ``compute = (means,
    precisions_cholesky, log_weights)`` (the rows' frame): ``sum_k sum_n r_nk log p~_nk`` from
    the counts and moments of ``stats`` less ``sum_n log p~_n`` (``stats.ll``)."""
    means, P, logw = (t.double() for t in compute)
    D, nk = means.shape[1], stats.table[:, 0]
    quad = QUADRATICS[covariance_type](stats, means, P)
    log_det = log_det_cholesky(P, covariance_type, D)
    constant = logw + log_det - 0.5 * D * np.log(2 * np.pi)     # [K]: log p~_nk = constant_k - q_nk / 2
    return float((nk * constant).sum() - 0.5 * quad - stats.ll)


# ``sum_nk r_nk (x_n - m_k)^T Prec_k (x_n - m_k)`` from a pass's statistics, one function per
# covariance type, each of (``stats``, ``means [K, D]`` and ``P`` (the precision Cholesky
# factors) in the rows' frame, float64).
def _moments(stats: Stats, means: torch.Tensor):
    """``(nk [K], sum r z [K, D], moments [K, C], e [K, D])``: the pass's counts, first and
    second moments around its shift, and each mean less that shift."""
    table, D = stats.table, means.shape[1]
    return table[:, 0], table[:, 1:1 + D], table[:, 1 + D:], means - stats.shift


def quadratic_full(stats: Stats, means: torch.Tensor, P: torch.Tensor) -> torch.Tensor:
    nk, sz, moments, e = _moments(stats, means)
    K, D = stats.table.shape[0], means.shape[1]
    iu = torch.triu_indices(D, D, device=stats.table.device)
    S = stats.table.new_zeros(K, D, D)
    S[:, iu[0], iu[1]] = moments
    S[:, iu[1], iu[0]] = moments
    C = (S - sz[:, :, None] * e[:, None, :] - e[:, :, None] * sz[:, None, :]
         + nk[:, None, None] * e[:, :, None] * e[:, None, :])
    return torch.einsum("kij,kij->", P @ P.transpose(-1, -2), C)


def quadratic_tied(stats: Stats, means: torch.Tensor, P: torch.Tensor) -> torch.Tensor:
    nk, sz, _, _ = _moments(stats, means)
    t = stats.tied_shift
    sz_t = sz + nk[:, None] * (stats.shift - t)             # sum_n r_nk (x_n - t)
    e_t = means - t
    prec = P @ P.T
    return (torch.einsum("ij,ij->", prec, stats.scatter) - 2 * torch.einsum("ki,ij,kj->", e_t, prec, sz_t)
            + torch.einsum("k,ki,ij,kj->", nk, e_t, prec, e_t))


def quadratic_diag(stats: Stats, means: torch.Tensor, P: torch.Tensor) -> torch.Tensor:
    nk, sz, moments, e = _moments(stats, means)
    return ((P * P) * (moments - 2 * e * sz + nk[:, None] * e * e)).sum()


def quadratic_spherical(stats: Stats, means: torch.Tensor, P: torch.Tensor) -> torch.Tensor:
    nk, sz, moments, e = _moments(stats, means)
    return ((P * P) * (moments[:, 0] - 2 * (e * sz).sum(1) + nk * (e * e).sum(1))).sum()


QUADRATICS = {"full": quadratic_full, "tied": quadratic_tied, "diag": quadratic_diag,
              "spherical": quadratic_spherical}


# The Wishart posterior of the precisions, one function per covariance type (scikit-learn's
# ``_estimate_wishart_*``): ``(degrees_of_freedom, covariances)`` (the scale over the degrees of
# freedom) from the Gaussian statistics ``nk [K]``, ``xk [K, D]``, ``sk``, the posterior's
# ``mean_precision [K]`` and the priors ``m0 [D]``, ``W0``, ``beta0``, ``nu0``.
def wishart_full(nk, xk, sk, mean_precision, m0, W0, beta0, nu0):
    diff = xk - m0
    dof = nu0 + nk
    cov = (W0 + nk[:, None, None] * sk
           + (nk * beta0 / mean_precision)[:, None, None] * diff[:, :, None] * diff[:, None, :])
    return dof, cov / dof[:, None, None]


def wishart_tied(nk, xk, sk, mean_precision, m0, W0, beta0, nu0):
    K, diff = nk.shape[0], xk - m0
    dof = nu0 + nk.sum() / K
    cov = W0 + sk * nk.sum() / K + beta0 / K * ((nk / mean_precision)[:, None] * diff).T @ diff
    return dof, cov / dof


def wishart_diag(nk, xk, sk, mean_precision, m0, W0, beta0, nu0):
    diff = xk - m0
    dof = nu0 + nk
    cov = W0 + nk[:, None] * (sk + (beta0 / mean_precision)[:, None] * diff * diff)
    return dof, cov / dof[:, None]


def wishart_spherical(nk, xk, sk, mean_precision, m0, W0, beta0, nu0):
    diff = xk - m0
    dof = nu0 + nk
    cov = W0 + nk * (sk + beta0 / mean_precision * (diff * diff).mean(1))
    return dof, cov / dof


WISHARTS = {"full": wishart_full, "tied": wishart_tied, "diag": wishart_diag, "spherical": wishart_spherical}


@dataclass
class VariationalStats(Stats):
    """:class:`Stats` of a variational E-step with its ``sum r log r``."""
    resp_log_resp: float = 0.0


class BayesianGaussianMixture(GaussianComponents, BaseMixture):
    """Variational Bayesian Gaussian mixture on PyTorch; see the module docstring and
    ``sklearn.mixture.BayesianGaussianMixture`` for the parameters."""

    _parameter_constraints: dict = {
        **_SkBayesianGaussianMixture._parameter_constraints,
        **TORCH_PARAMETER_CONSTRAINTS,
    }

    def __init__(self, *, n_components=1, covariance_type="full", tol=1e-3, reg_covar=1e-6, max_iter=100,
                 n_init=1, init_params="kmeans", weight_concentration_prior_type="dirichlet_process",
                 weight_concentration_prior=None, mean_precision_prior=None, mean_prior=None,
                 degrees_of_freedom_prior=None, covariance_prior=None, random_state=None, warm_start=False,
                 verbose=0, verbose_interval=10, device=None, dtype=None, chunk_size=None):
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.tol = tol
        self.reg_covar = reg_covar
        self.max_iter = max_iter
        self.n_init = n_init
        self.init_params = init_params
        self.weight_concentration_prior_type = weight_concentration_prior_type
        self.weight_concentration_prior = weight_concentration_prior
        self.mean_precision_prior = mean_precision_prior
        self.mean_prior = mean_prior
        self.degrees_of_freedom_prior = degrees_of_freedom_prior
        self.covariance_prior = covariance_prior
        self.random_state = random_state
        self.warm_start = warm_start
        self.verbose = verbose
        self.verbose_interval = verbose_interval
        self.device = device
        self.dtype = dtype
        self.chunk_size = chunk_size

    # ------------------------------------------------------------------------------------
    # the priors (scikit-learn's _check_parameters)
    def _begin_fit(self, source: Source, full: Source, in_memory_init: bool, all_reduce=None,
                   weights=None) -> None:
        super()._begin_fit(source, full, in_memory_init, all_reduce, weights)
        if self.covariance_type not in COVARIANCE_TYPES:  # only reachable without validation
            raise ValueError(f"covariance_type must be one of {COVARIANCE_TYPES}")
        D = source.n_features
        self.weight_concentration_prior_ = (1.0 / self.n_components if self.weight_concentration_prior is None
                                            else self.weight_concentration_prior)
        self.mean_precision_prior_ = 1.0 if self.mean_precision_prior is None else self.mean_precision_prior
        if self.degrees_of_freedom_prior is None:
            self.degrees_of_freedom_prior_ = D
        elif self.degrees_of_freedom_prior > D - 1.0:
            self.degrees_of_freedom_prior_ = self.degrees_of_freedom_prior
        else:
            raise ValueError("The parameter 'degrees_of_freedom_prior' should be greater than %d, but got %.3f."
                             % (D - 1, self.degrees_of_freedom_prior))
        mean_prior, covariance_prior = self._check_given_priors(D)
        if mean_prior is None or covariance_prior is None:
            mean, cov = self._data_moments(source, all_reduce, weights)
            mean_prior = mean if mean_prior is None else mean_prior
            covariance_prior = cov if covariance_prior is None else covariance_prior
        dev = source.device
        self._mean_prior = torch.as_tensor(mean_prior, dtype=torch.float64, device=dev)
        self._covariance_prior = torch.as_tensor(covariance_prior, dtype=torch.float64, device=dev)
        dt, out = compute_dtype(self.dtype) or source.dtype, self._out_fmt
        self.mean_prior_ = self._to_out(self._mean_prior.to(dt), out)
        cp = self._covariance_prior.to(dt)
        self.covariance_prior_ = float(cp) if self.covariance_type == "spherical" else self._to_out(cp, out)

    def _check_given_priors(self, D: int):
        """``mean_prior`` and ``covariance_prior`` as given (None when not), checked as
        scikit-learn checks them."""
        from sklearn.mixture._base import _check_shape
        from sklearn.mixture._gaussian_mixture import _check_precision_matrix, _check_precision_positivity

        def arr(a):
            a = a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else a
            return check_array(a, dtype=[np.float64, np.float32], ensure_2d=False)
        mean = cov = None
        if self.mean_prior is not None:
            mean = arr(self.mean_prior)
            _check_shape(mean, (D,), "means")
        if self.covariance_prior is not None:
            if self.covariance_type in ("full", "tied"):
                cov = arr(self.covariance_prior)
                _check_shape(cov, (D, D), "%s covariance_prior" % self.covariance_type)
                _check_precision_matrix(cov, self.covariance_type)
            elif self.covariance_type == "diag":
                cov = arr(self.covariance_prior)
                _check_shape(cov, (D,), "%s covariance_prior" % self.covariance_type)
                _check_precision_positivity(cov, self.covariance_type)
            else:
                cov = self.covariance_prior
        return mean, cov

    def _data_moments(self, source: Source, all_reduce, weights):
        """The (weighted) mean of the rows and their covariance with ``ddof=1`` (``np.cov``; the
        variances for diag, their mean for spherical), in float64 from two passes: the second
        around the first's mean, so nothing cancels."""
        D = source.n_features
        zero = torch.zeros(D, dtype=source.dtype, device=source.device)

        def ones(x, w):
            return torch.ones(len(x), 1, dtype=x.dtype, device=x.device) if w is None else w.to(x.dtype)[:, None]
        first = statistics_pass(source, empty_stats(1, D, "spherical", zero, zero),
                                lambda o, x, w: (ops.mixture_stats(x, ones(x, w), zero, "spherical", True), None),
                                "spherical", True, all_reduce, weights)
        n = first.n
        centre = (first.table[0, 1:1 + D] / n).to(source.dtype)
        kind = "full" if self.covariance_type in ("full", "tied") else "diag"
        second = statistics_pass(source, empty_stats(1, D, kind, centre, centre),
                                 lambda o, x, w: (ops.mixture_stats(x, ones(x, w), centre, kind, True), None),
                                 kind, True, all_reduce, weights)
        d = second.table[0, 1:1 + D] / n                         # mean - centre
        mean = centre.double() + d
        mean = mean + source.origin if source.origin is not None else mean
        moments = second.table[0, 1 + D:]
        if kind == "full":
            iu = torch.triu_indices(D, D, device=moments.device)
            S = moments.new_zeros(D, D)
            S[iu[0], iu[1]] = moments
            S[iu[1], iu[0]] = moments
            cov = (S - n * torch.outer(d, d)) / (n - 1)
        else:
            cov = (moments - n * d * d) / (n - 1)
            cov = cov.mean() if self.covariance_type == "spherical" else cov
        return mean, cov

    # ------------------------------------------------------------------------------------
    # the hooks of BaseMixture
    def _initialize_parameters(self, source: Source, full: Source, random_state, all_reduce,
                               sample_weight=None) -> VariationalParams:
        nk, xk, sk, _ = self._initial_from_data(source, full, random_state, all_reduce, sample_weight)
        return self._posterior(nk, xk, sk)

    def _posterior(self, nk: torch.Tensor, xk: torch.Tensor, sk: torch.Tensor) -> VariationalParams:
        """The variational M-step (scikit-learn's ``_estimate_weights``, ``_estimate_means``,
        ``_estimate_precisions``) from the Gaussian statistics ``nk``, ``xk``, ``sk`` of
        :func:`parameters_from_stats`."""
        cov_type = self.covariance_type
        alpha, beta0, nu0 = self.weight_concentration_prior_, self.mean_precision_prior_, self.degrees_of_freedom_prior_
        m0, W0 = self._mean_prior, self._covariance_prior
        if self.weight_concentration_prior_type == "dirichlet_process":
            tail = torch.cat([torch.flip(torch.cumsum(torch.flip(nk, (0,)), 0), (0,))[1:], nk.new_zeros(1)])
            concentration = torch.stack([1.0 + nk, alpha + tail])
        else:
            concentration = alpha + nk
        mean_precision = beta0 + nk
        means = (beta0 * m0 + nk[:, None] * xk) / mean_precision[:, None]
        dof, cov = WISHARTS[cov_type](nk, xk, sk, mean_precision, m0, W0, beta0, nu0)
        P = precision_cholesky(cov, cov_type, self._float32)
        return VariationalParams(concentration, mean_precision, means, torch.as_tensor(dof, dtype=torch.float64),
                                 cov, P)

    def _compute(self, params: VariationalParams, dtype, origin) -> tuple:
        """``(means, precisions_cholesky, log_weights)`` of the E-step in the rows' frame and
        ``dtype``: the log weights are scikit-learn's ``_estimate_log_weights`` plus the
        per-component terms of its ``_estimate_log_prob``."""
        conc = params.weight_concentration.cpu().numpy()
        offsets = log_prob_offsets(params.degrees_of_freedom.cpu().numpy(), params.mean_precision.cpu().numpy(),
                                   params.means.shape[1])
        logw = expected_log_weights(conc, self.weight_concentration_prior_type) + offsets
        means = params.means - origin if origin is not None else params.means
        return (means.to(dtype), params.precisions_cholesky.to(dtype),
                torch.as_tensor(logw, device=params.means.device).to(dtype))

    def _gaussian_of(self, params: VariationalParams) -> Params:
        w = mixture_weights(params.weight_concentration.cpu().numpy(), self.weight_concentration_prior_type)
        return Params(torch.as_tensor(w, device=params.means.device), params.means, params.covariances,
                      params.precisions_cholesky)

    def _e_step(self, source: Source, params: VariationalParams, all_reduce=None, weights=None) -> VariationalStats:
        dtype = source.dtype
        gaussian = self._gaussian_of(params)
        compute = self._compute(params, dtype, source.origin)
        stats = e_step_pass(source, compute, gaussian.shift(dtype, source.origin), self.covariance_type,
                            needs_double_moments(gaussian, self.covariance_type, dtype), all_reduce, weights,
                            reg_covar=self.reg_covar)
        values = {f.name: getattr(stats, f.name) for f in fields(Stats)}
        return VariationalStats(**values, resp_log_resp=resp_log_resp(stats, compute, self.covariance_type))

    def _m_step(self, stats: Stats, origin: torch.Tensor | None = None) -> VariationalParams:
        nk, xk, sk = parameters_from_stats(stats, self.covariance_type, self.reg_covar, self._eps, origin)
        return self._posterior(nk, xk, sk)

    def _lower_bound(self, stats: VariationalStats, params: VariationalParams) -> float:
        """scikit-learn's ``_compute_lower_bound``: the entropy of the E-step's responsibilities
        and the normalisers of the M-step's posterior (its constants left out)."""
        D, cov_type = params.means.shape[1], self.covariance_type
        nu = params.degrees_of_freedom.cpu().numpy()
        log_det = log_det_cholesky(params.precisions_cholesky, cov_type, D).cpu().numpy() - 0.5 * D * np.log(nu)
        wishart = log_wishart_norm(nu, log_det, D)
        log_wishart = (self.n_components if cov_type == "tied" else 1) * float(np.sum(wishart))
        conc = params.weight_concentration.cpu().numpy()
        if self.weight_concentration_prior_type == "dirichlet_process":
            log_norm_weight = -np.sum(betaln(conc[0], conc[1]))
        else:
            log_norm_weight = log_dirichlet_norm(conc)
        return float(-stats.resp_log_resp - log_wishart - log_norm_weight
                     - 0.5 * D * np.sum(np.log(params.mean_precision.cpu().numpy())))

    def _params_from_state(self, state: dict[str, Any], device) -> VariationalParams:
        return VariationalParams.from_state(state, device)

    def _gaussian_params(self) -> Params:
        return self._gaussian_of(self._params)

    def _set_parameters(self, params: VariationalParams) -> None:
        self._params = params
        out, dt = self._out_fmt, self._dtype
        conc = params.weight_concentration.to(dt)
        if self.weight_concentration_prior_type == "dirichlet_process":
            self.weight_concentration_ = (self._to_out(conc[0], out), self._to_out(conc[1], out))
        else:
            self.weight_concentration_ = self._to_out(conc, out)
        self.mean_precision_ = self._to_out(params.mean_precision.to(dt), out)
        self.means_ = self._to_out(params.means.to(dt), out)
        dof = params.degrees_of_freedom.to(dt)
        self.degrees_of_freedom_ = float(dof) if self.covariance_type == "tied" else self._to_out(dof, out)
        self.covariances_ = self._to_out(params.covariances.to(dt), out)
        self.precisions_cholesky_ = self._to_out(params.precisions_cholesky.to(dt), out)
        self.precisions_ = self._to_out(
            precisions_from_cholesky(params.precisions_cholesky, self.covariance_type).to(dt), out)
        self.weights_ = self._to_out(self._gaussian_of(params).weights.to(dt), out)

    def _estimate_weighted_log_prob(self, x: torch.Tensor) -> torch.Tensor:
        means, P, logw = self._compute(self._params, x.dtype, self._origin_)
        return ops.gaussian_log_prob(x, means, P, self.covariance_type, logw)

    def _estimate_log_resp(self, x: torch.Tensor) -> torch.Tensor:
        means, P, logw = self._compute(self._params, x.dtype, self._origin_)
        return ops.gaussian_estep(x, means, P, self.covariance_type, logw)[1]

    def _n_parameters(self) -> int:
        return n_parameters(self.n_components, self._params.means.shape[1], self.covariance_type)

    # ------------------------------------------------------------------------------------
    # beyond scikit-learn
    def n_effective_components(self, threshold: float = 1e-3) -> int:
        """The number of components whose expected weight ``weights_`` is at least
        ``threshold``: the prior prunes the others (they keep a weight near zero)."""
        self._check_is_fitted()
        return int((self._gaussian_params().weights >= threshold).sum())

    def point_estimate(self):
        """The :class:`aigc_gmm.GaussianMixture` of the fitted ``weights_``, ``means_`` and
        ``covariances_`` (a proper density, unlike ``score_samples``' variational expectation):
        torch tensors on the fit's device."""
        from ._gaussian_mixture import GaussianMixture

        self._check_is_fitted()
        p = self._gaussian_params()
        state = {"weights": p.weights, "means": p.means, "covariances": p.covariances,
                 "precisions_cholesky": p.precisions_cholesky, "covariance_type": self.covariance_type}
        if self._origin_ is not None:
            state["origin"] = self._origin_
        return GaussianMixture.from_state(state, device=p.means.device, dtype=self._dtype)

    # ------------------------------------------------------------------------------------
    # the fit as data
    _PRIORS = ("weight_concentration_prior_", "mean_precision_prior_", "degrees_of_freedom_prior_")

    def fitted_state(self) -> dict[str, Any]:
        """The fit as CPU float64 tensors, numbers, strings and lists (a safetensors file): the
        posterior (:class:`VariationalParams`' fields), ``weights``, the priors
        (``mean_prior``, ``covariance_prior``, ``weight_concentration_prior``,
        ``mean_precision_prior``, ``degrees_of_freedom_prior``), ``covariance_type``,
        ``weight_concentration_prior_type``, ``n_iter``, ``converged``, ``lower_bound``,
        ``lower_bounds`` and (data fitted away from zero) ``origin``. :meth:`from_state` takes
        it back."""
        self._check_is_fitted()
        state = {k: v.cpu() for k, v in self._params.state().items()}
        state.update({"weights": self._gaussian_params().weights.cpu(), "mean_prior": self._mean_prior.cpu(),
                      "covariance_prior": self._covariance_prior.cpu(), "covariance_type": self.covariance_type,
                      "weight_concentration_prior_type": self.weight_concentration_prior_type,
                      "n_iter": int(self.n_iter_), "converged": bool(self.converged_),
                      "lower_bound": float(self.lower_bound_), "lower_bounds": [float(v) for v in self.lower_bounds_]})
        state.update({name.rstrip("_"): float(getattr(self, name)) for name in self._PRIORS})
        if self._origin_ is not None:
            state["origin"] = self._origin_.cpu()
        return state

    @classmethod
    def from_state(cls, state: dict[str, Any], **params) -> "BayesianGaussianMixture":
        """The fitted estimator of ``state`` (:meth:`fitted_state`'s), constructed with
        ``params``; ``n_components``, ``covariance_type`` and ``weight_concentration_prior_type``
        default to the state's and must match it (else a ``ValueError``). It computes on
        ``device`` (default CPU) in ``dtype`` (default float64) and returns torch tensors."""
        saved = {"n_components": int(state["means"].shape[0]), "covariance_type": state["covariance_type"],
                 "weight_concentration_prior_type": state["weight_concentration_prior_type"]}
        for key, value in saved.items():
            params.setdefault(key, value)
        gm = cls(**params)
        for key, value in saved.items():
            if getattr(gm, key) != value:
                raise ValueError(f"state has {key} {value!r}, the estimator {getattr(gm, key)!r}")
        device = torch.device(gm.device) if gm.device is not None else torch.device("cpu")
        f64 = torch.float64
        gm._dtype, gm._device, gm._out = compute_dtype(gm.dtype) or f64, device, ("torch", device)
        gm._origin = state["origin"].to(device, f64) if state.get("origin") is not None else None
        gm._mean_prior = state["mean_prior"].to(device, f64)
        gm._covariance_prior = state["covariance_prior"].to(device, f64)
        gm.mean_prior_ = gm._mean_prior.to(gm._dtype)
        gm.covariance_prior_ = (float(gm._covariance_prior) if gm.covariance_type == "spherical"
                                else gm._covariance_prior.to(gm._dtype))
        for name in cls._PRIORS:
            setattr(gm, name, float(state[name.rstrip("_")]))
        params_ = VariationalParams.from_state(state, device)
        gm.n_features_in_ = params_.means.shape[1]
        gm._set_parameters(params_)
        gm.n_iter_ = int(state.get("n_iter", 0))
        gm.converged_ = bool(state.get("converged", False))
        gm.lower_bound_ = float(state.get("lower_bound", float("nan")))
        gm.lower_bounds_ = list(state.get("lower_bounds", []))
        return gm
