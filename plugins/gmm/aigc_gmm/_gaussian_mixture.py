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

Layout (scikit-learn's ``_gaussian_mixture.py``): the Gaussian maths are plain functions in
:mod:`aigc_gmm._gaussian` on a parameter record :class:`Params`; :class:`GaussianMixture` fills
in the hooks of :class:`aigc_gmm._base.BaseMixture` (initialise, E-step statistics, M-step,
log-densities), whose :class:`aigc_gmm._em.EMFit` runs the EM loop; ``partial_fit`` is
:class:`aigc_gmm._stepwise.StepwiseEM`'s. ``fitted_state()`` / ``from_state()`` carry a fit as
tensors and numbers; ``criteria()`` gives BIC / AIC.
"""
from __future__ import annotations

from numbers import Real
from typing import Any

import numpy as np
import torch
from sklearn.mixture import GaussianMixture as _SkGaussianMixture
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_array

from aigc_engine import ops

from . import _missing
from ._base import TORCH_PARAMETER_CONSTRAINTS, BaseMixture, compute_dtype
from ._components import GaussianComponents
from ._data import Source, Stats
from ._gaussian import (COVARIANCE_TYPES, Params, covariances_of, n_parameters, needs_double_moments,
                        parameters_from_stats, precision_cholesky, precision_cholesky_from_precisions,
                        precisions_from_cholesky)
from ._passes import e_step_pass, missing_e_step_pass
from ._stepwise import StepwiseEM


class GaussianMixture(StepwiseEM, GaussianComponents, BaseMixture):
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
                           all_reduce, weights, reg_covar=self.reg_covar)

    def _m_step(self, stats: Stats, origin: torch.Tensor | None = None) -> Params:
        """The parameters that maximise the expected log-likelihood under ``stats`` (float64)."""
        nk, means, cov = parameters_from_stats(stats, self.covariance_type, self.reg_covar, self._eps, origin)
        weights = nk / nk.sum()
        P = precision_cholesky(cov, self.covariance_type, self._float32)
        return Params(weights, means, cov, P)

    def _params_from_state(self, state: dict[str, Any], device) -> Params:
        return Params.from_state(state, device)

    # ------------------------------------------------------------------------------------
    # the fit and its use
    def fit(self, X, y=None, sample_weight=None, *, on_iteration=None):
        self._stepwise = None  # a batch fit ends a stream of partial_fit calls
        return super().fit(X, y, sample_weight=sample_weight, on_iteration=on_iteration)

    fit.__doc__ = BaseMixture.fit.__doc__

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

