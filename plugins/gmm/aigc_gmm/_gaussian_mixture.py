"""``GaussianMixture``: a drop-in for ``sklearn.mixture.GaussianMixture`` on PyTorch.

Same constructor parameters and defaults, methods, fitted attributes, warnings and errors as
scikit-learn, plus ``device``, ``dtype`` and ``chunk_size``:

* ``dtype=None`` keeps the input's float dtype (float32 stays float32, float64 stays float64,
  anything else becomes float64), as scikit-learn does; ``dtype="float32"`` or ``"float64"``
  (or a torch / NumPy dtype) forces the compute dtype. The M-step always runs in float64 on
  float64-accumulated statistics, so float32 differs from float64 only through the E-step and
  the rounding of the second-moment products (formed in float64 where that would matter,
  see ``_em.needs_double_moments``).
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
"""
from __future__ import annotations

import warnings
from numbers import Integral
from time import time
from typing import Any, NamedTuple

import numpy as np
import torch
from sklearn.base import BaseEstimator, DensityMixin
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.mixture import GaussianMixture as _SkGaussianMixture
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval
from sklearn.utils.validation import check_array

from aigc_engine import ops

from . import _em
from ._em import Params, Source

_INIT_SAMPLE = 20000

_DTYPES = {"float32": torch.float32, "float64": torch.float64, "float": torch.float32,
           "double": torch.float64}


def _torch_dtype(dtype) -> torch.dtype | None:
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


class GaussianMixture(DensityMixin, BaseEstimator):
    """Gaussian mixture fitted with EM on PyTorch; see the module docstring and
    ``sklearn.mixture.GaussianMixture`` for the parameters."""

    _parameter_constraints: dict = {
        **_SkGaussianMixture._parameter_constraints,
        "device": "no_validation",
        "dtype": "no_validation",
        "chunk_size": [Interval(Integral, 1, None, closed="left"), None],
    }

    def __init__(self, n_components=1, *, covariance_type="full", tol=1e-3, reg_covar=1e-6,
                 max_iter=100, n_init=1, init_params="kmeans", weights_init=None, means_init=None,
                 precisions_init=None, random_state=None, warm_start=False, verbose=0,
                 verbose_interval=10, device=None, dtype=None, chunk_size=None):
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

    # ------------------------------------------------------------------------------------
    # input handling
    def _kind(self, X) -> str:
        if isinstance(X, torch.Tensor):
            return "torch"
        if hasattr(X, "iter_chunks"):
            return "dataset"
        if isinstance(X, np.memmap):
            return "memmap"
        return "numpy"

    def _prepare(self, X, reset: bool):
        """Validate X; returns ``(source, out)`` where ``out`` describes the output format."""
        kind = self._kind(X)
        name = type(self).__name__
        forced = _torch_dtype(self.dtype) if reset else self._dtype
        chunk = self.chunk_size or (_em.IN_MEMORY_CHUNK if kind in ("torch", "numpy") else _em.STREAM_CHUNK)
        if kind == "numpy":
            X = check_array(X, dtype=[np.float64, np.float32], ensure_min_samples=1 if not reset else 2,
                            estimator=self, input_name="X")
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
            if torch.isnan(X).any():
                raise ValueError(_nan_message(name))
            if not torch.isfinite(X).all():
                raise ValueError("Input X contains infinity or a value too large for "
                                 f"dtype('{str(X.dtype).removeprefix('torch.')}').")
            dtype = forced or (X.dtype if X.dtype in (torch.float32, torch.float64) else torch.float64)
            device = torch.device(self.device) if self.device is not None else X.device
            data, out = X.detach(), ("torch", X.device)
        else:  # memmap or engine Dataset: streamed, validated chunk by chunk during the first pass
            shape = tuple(X.shape)
            if len(shape) != 2:
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
        n_features = data.shape[1]
        if reset:
            self.n_features_in_ = n_features
            self._dtype, self._device = dtype, device
            self._origin = _em.choose_origin(Source(data, dtype, device, chunk))
        elif n_features != self.n_features_in_:
            raise ValueError(f"X has {n_features} features, but {name} is expecting "
                             f"{self.n_features_in_} features as input.")
        else:
            dtype, device = self._dtype, self._device
        return Source(data, dtype, device, chunk, self._origin_), out, kind

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

    # ------------------------------------------------------------------------------------
    # fitting
    def fit(self, X, y=None):
        """Estimate model parameters with the EM algorithm (see scikit-learn)."""
        self.fit_predict(X, y)
        return self

    def fit_predict(self, X, y=None):
        """Estimate model parameters using X and predict the labels for X."""
        self._validate_params()
        source, out, kind = self._prepare(X, reset=True)
        self._out = out
        self._fit_source(source, full_source=source)
        # a final E-step so that fit_predict(X) equals fit(X).predict(X)
        return self._to_out(self._predict_source(source), out)

    def _fit_source(self, source: Source, full_source: Source | None = None, all_reduce=None,
                    in_memory_init: bool | None = None):
        """EM over ``source`` (this process's rows) to the end; see :class:`EMFit`."""
        return EMFit(self, source, full_source, all_reduce, in_memory_init).finish()

    def em_fit(self, dataset, *, rank: int = 0, world_size: int = 1, all_reduce=None) -> "EMFit":
        """Begin an EM fit of an engine Dataset (streamed in chunks) that the caller drives one
        iteration at a time and can checkpoint and resume: see :class:`EMFit`.
        ``gm.em_fit(dataset).finish()`` is a whole fit; fitted attributes are torch tensors.

        As process ``rank`` of ``world_size`` (torchrun), this process reads its shard
        (``dataset.shard(rank, world_size)``), the statistics are summed with ``all_reduce``,
        and the initialisation (torch k-means on a sample every process draws alike) is the
        same on every process, so the result equals a one-process fit."""
        self._validate_params()
        dtype = _torch_dtype(self.dtype) or torch.float32
        device = torch.device(self.device) if self.device is not None else torch.device("cpu")
        chunk = self.chunk_size or _em.STREAM_CHUNK
        full = Source(dataset, dtype, device, chunk)
        full.origin = self._origin = _em.choose_origin(full) if full.n_samples else None
        if full.n_samples < 2:
            raise ValueError(f"Found array with {full.n_samples} sample(s) (shape={tuple(dataset.shape)}) "
                             f"while a minimum of 2 is required by {type(self).__name__}.")
        local = full
        if world_size > 1:
            local = Source(dataset.shard(rank, world_size), dtype, device, chunk, self._origin)
            local.global_offset = rank * full.n_samples // world_size
        self.n_features_in_ = full.n_features
        self._dtype, self._device, self._out = dtype, device, ("torch", device)
        return EMFit(self, local, full, all_reduce, in_memory_init=False)

    def _initialize_parameters(self, source: Source, full: Source, random_state, all_reduce) -> Params:
        K, cov_type = self.n_components, self.covariance_type
        w_init, m_init, p_init = self._inits
        dev, f64 = source.device, torch.float64
        weights = means = covariances = None
        if w_init is None or m_init is None or p_init is None:
            weights, means, covariances = self._initial_from_data(source, full, random_state, all_reduce)
        if w_init is not None:
            weights = torch.as_tensor(w_init, dtype=f64, device=dev)
        if m_init is not None:
            means = torch.as_tensor(m_init, dtype=f64, device=dev)
        if p_init is None:
            P = _em.precision_cholesky(covariances, cov_type, self._float32)
        else:
            P = _em.precision_cholesky_from_precisions(torch.as_tensor(p_init, dtype=f64, device=dev), cov_type)
            covariances = None
        return Params(weights, means, covariances, P)

    def _initial_from_data(self, source: Source, full: Source, rs, all_reduce):
        """Weights, means and covariances from the initial responsibilities, as scikit-learn's
        ``_initialize`` computes them (weights = nk / n_samples)."""
        K, cov_type, D = self.n_components, self.covariance_type, source.n_features
        n = full.n_samples
        if self.init_params == "random_from_data" or (self.init_params == "k-means++"):
            if self.init_params == "random_from_data":
                rows = full.take(rs.choice(n, size=K, replace=False))
            elif self._in_memory_init:
                from sklearn.cluster import kmeans_plusplus

                X_np = full.data.detach().cpu().numpy() if isinstance(full.data, torch.Tensor) else full.data
                _, idx = kmeans_plusplus(np.asarray(X_np), K, random_state=rs)
                rows = full.take(idx)
            else:
                rows = _em.kmeans(self._init_sample(full, rs), K, rs.randint(np.iinfo(np.int32).max),
                                  init="k-means++")
            # one-hot responsibilities on K rows: only those rows contribute, each centred on
            # itself (table [1 | 0 | 0]); tied: scikit-learn's (X^T X - sum nk m m^T) / sum nk
            # over *all* rows, so the scatter is around zero
            rows = rows.to(source.dtype)
            zero = torch.zeros(D, dtype=source.dtype, device=source.device)
            stats = _em.empty_stats(K, D, cov_type, rows, zero)
            stats.table[:, 0] = 1
            if cov_type == "tied":  # rows are in every process's hands: only the scatter is all-reduced
                for _, x in source.chunks():
                    stats.scatter += x.double().T @ x.double()
                if all_reduce is not None:
                    all_reduce(stats.scatter)
            nk, means, cov = _em.parameters_from_stats(stats, cov_type, self.reg_covar, self._eps, source.origin)
            return nk / n, means, cov

        if self.init_params == "kmeans":
            if self._in_memory_init:
                from sklearn.cluster import KMeans

                X_np = full.data.detach().cpu().numpy()
                labels = KMeans(n_clusters=K, n_init=1, random_state=rs).fit(X_np).labels_
                labels_t = torch.as_tensor(labels, device=source.device)

                def resp_fn(offset, x):
                    return _em.hard_resp(labels_t[offset:offset + len(x)], K, x.dtype)
                passes = [resp_fn, resp_fn]
            else:
                centres = _em.kmeans(self._init_sample(full, rs), K, rs.randint(np.iinfo(np.int32).max))
                centres = centres.to(source.dtype)

                def resp_fn(offset, x):
                    return _em.hard_resp(_em.nearest(x, centres), K, x.dtype)
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
        st1 = _em.resp_pass(source, passes[0], zero, zero, K, "spherical", all_reduce)
        means1 = st1.table[:, 1:1 + D] / (st1.table[:, :1] + 10 * self._eps)
        end_state = rs.get_state() if passes[1] is None else None
        fn2 = passes[1] if passes[1] is not None else make()
        c = means1.to(source.dtype)
        st2 = _em.resp_pass(source, fn2, c, c.mean(0), K, cov_type, all_reduce)
        if end_state is not None:
            if source.n_samples == n:
                rs.set_state(end_state)
            else:  # a shard: leave random_state where a one-process fit leaves it
                rs.set_state(state)
                for start in range(0, n, 65536):
                    rs.uniform(size=(min(65536, n - start), K))
        nk, means, cov = _em.parameters_from_stats(st2, cov_type, self.reg_covar, self._eps, source.origin)
        return nk / n, means, cov

    def _init_sample(self, full: Source, rs) -> torch.Tensor:
        n = full.n_samples
        if n <= _INIT_SAMPLE:
            return torch.cat([x for _, x in full.chunks()])
        idx = np.sort(rs.choice(n, size=_INIT_SAMPLE, replace=False))
        return full.take(idx)

    def _set_parameters(self, params: Params) -> None:
        self._params = params
        out = self._out_fmt
        dt = self._dtype
        cov = _em.covariances_of(params, self.covariance_type)
        self.weights_ = self._to_out(params.weights.to(dt), out)
        self.means_ = self._to_out(params.means.to(dt), out)
        self.covariances_ = self._to_out(cov.to(dt), out)
        self.precisions_cholesky_ = self._to_out(params.precisions_cholesky.to(dt), out)
        self.precisions_ = self._to_out(
            _em.precisions_from_cholesky(params.precisions_cholesky, self.covariance_type).to(dt), out)

    @property
    def _out_fmt(self):
        return getattr(self, "_out", ("numpy", None))

    # ------------------------------------------------------------------------------------
    # inference
    def _check_is_fitted(self):
        if not hasattr(self, "_params") or not hasattr(self, "n_iter_"):
            raise NotFittedError(f"This {type(self).__name__} instance is not fitted yet. Call 'fit' with "
                                 "appropriate arguments before using this estimator.")

    @property
    def _origin_(self) -> torch.Tensor | None:
        """The origin rows are fitted and scored in (``_em.choose_origin``; None near zero)."""
        return getattr(self, "_origin", None)

    def _weighted_log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """Weighted log-densities of rows ``x`` given less the origin (as ``Source`` yields them)."""
        means, P, logw = self._params.compute(x.dtype, self._origin_)
        return ops.gaussian_log_prob(x, means, P, self.covariance_type, logw)

    def _map(self, source: Source, fn) -> torch.Tensor:
        return torch.cat([fn(x) for _, x in source.chunks()])

    def _predict_source(self, source: Source) -> torch.Tensor:
        return self._map(source, lambda x: self._weighted_log_prob(x).argmax(1))

    def _inference(self, X, fn):
        self._check_is_fitted()
        source, out, kind = self._prepare(X, reset=False)
        res = self._map(source, fn)
        return self._to_out(res, out)

    def score_samples(self, X):
        """Log-likelihood of each sample."""
        return self._inference(X, lambda x: torch.logsumexp(self._weighted_log_prob(x), 1))

    def score(self, X, y=None):
        """Per-sample average log-likelihood of X."""
        self._check_is_fitted()
        source, _, _ = self._prepare(X, reset=False)
        total = sum(float(torch.logsumexp(self._weighted_log_prob(x), 1).sum(dtype=torch.float64))
                    for _, x in source.chunks())
        return total / source.n_samples

    def predict(self, X):
        """Most probable component of each sample."""
        return self._inference(X, lambda x: self._weighted_log_prob(x).argmax(1))

    def predict_proba(self, X):
        """Posterior probability of each component for each sample."""
        def fn(x):
            means, P, logw = self._params.compute(x.dtype, self._origin_)
            return torch.exp(ops.gaussian_estep(x, means, P, self.covariance_type, logw)[1])
        return self._inference(X, fn)

    def sample(self, n_samples=1):
        """Draw samples and their component labels (grouped by component, like scikit-learn)."""
        self._check_is_fitted()
        if n_samples < 1:
            raise ValueError("Invalid value for 'n_samples': %d . The sampling requires at "
                             "least one sample." % (self.n_components))
        p = self._params
        D = p.means.shape[1]
        rng = check_random_state(self.random_state)
        counts = rng.multinomial(n_samples, p.weights.cpu().numpy())
        z = torch.as_tensor(rng.standard_normal(size=(n_samples, D)), device=p.means.device)
        labels = torch.repeat_interleave(torch.arange(len(counts), device=p.means.device),
                                         torch.as_tensor(counts, device=p.means.device))
        X = _em.sample_from(p, self.covariance_type, labels, z)
        out = self._out_fmt
        if out[0] == "numpy":
            return X.cpu().numpy(), labels.cpu().numpy()
        return X.to(device=out[1], dtype=self._dtype), labels.to(out[1])

    def _n_parameters(self) -> int:
        return _em.n_parameters(self.n_components, self._params.means.shape[1], self.covariance_type)

    def _information_criteria(self, X) -> tuple[float, float]:
        n = X.shape[0]
        return _em.information_criteria(self.score(X) * n, n, self._n_parameters())

    def bic(self, X):
        """Bayesian information criterion (lower is better)."""
        return self._information_criteria(X)[0]

    def aic(self, X):
        """Akaike information criterion (lower is better)."""
        return self._information_criteria(X)[1]

    # ------------------------------------------------------------------------------------
    # verbose messages (scikit-learn's)
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


# ----------------------------------------------------------------------------------------------
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
    """

    def __init__(self, gm: GaussianMixture, source: Source, full_source: Source | None = None,
                 all_reduce=None, in_memory_init: bool | None = None):
        full_source = full_source or source
        n_total = full_source.n_samples
        if n_total < gm.n_components:
            raise ValueError("Expected n_samples >= n_components "
                             f"but got n_components = {gm.n_components}, n_samples = {n_total}")
        if gm.covariance_type not in _em.COVARIANCE_TYPES:  # only reachable without validation
            raise ValueError(f"covariance_type must be one of {_em.COVARIANCE_TYPES}")
        gm._inits = gm._check_init_arrays(source.n_features)
        if in_memory_init is None:
            in_memory_init = isinstance(full_source.data, torch.Tensor)
        gm._in_memory_init = in_memory_init
        gm._float32 = source.dtype == torch.float32
        gm._eps = float(torch.finfo(source.dtype).eps)
        self.gm, self.source, self.full_source, self.all_reduce = gm, source, full_source, all_reduce
        self.warm = gm.warm_start and hasattr(gm, "converged_")  # scikit-learn: one restart, from the fit
        gm.converged_ = False
        self.random_state = check_random_state(gm.random_state)
        self.restart = 0
        self.params: Params | None = None     # the current restart's (None until it is initialised)
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
        """One EM iteration (E-step pass over the data, M-step)."""
        gm = self.gm
        if self.done:
            raise RuntimeError("the EM fit is done: call finish()")
        if gm.max_iter < 1:
            raise RuntimeError("max_iter=0: there is no EM iteration to run; call finish()")
        if self.params is None:
            self._begin_restart()
        restart, previous = self.restart, self.lower_bound
        stats = _em.em_pass(self.source, self.params, gm.covariance_type, self.all_reduce)
        self.params = _em.m_step(stats, gm.covariance_type, gm.reg_covar, gm._eps, gm._float32, self.source.origin)
        self.lower_bound = float(stats.ll / stats.n)
        self.n_iter += 1
        self.lower_bounds.append(self.lower_bound)
        self.change = self.lower_bound - previous
        gm._print_verbose_msg_iter_end(self.n_iter, self.change)
        self._end_restart_if_due()
        return EMIteration(restart, self.n_iter, self.lower_bounds[-1])

    def finish(self) -> GaussianMixture:
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
                                                    self.all_reduce)
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
            best = {**self.best, "params": _params_state(self.best["params"]),
                    "lower_bounds": list(self.best["lower_bounds"])}
        return {"mixture": self._shape(), "restart": self.restart, "n_iter": self.n_iter,
                "lower_bound": self.lower_bound, "lower_bounds": list(self.lower_bounds), "change": self.change,
                "params": _params_state(self.params), "best": best, "max_lower_bound": self.max_lower_bound,
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
        self.params = _params_from_state(state["params"], device)
        self.best = None
        if state["best"] is not None:
            b = state["best"]
            self.best = {"params": _params_from_state(b["params"], device), "n_iter": int(b["n_iter"]),
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

    def _shape(self) -> dict[str, Any]:
        return {"covariance_type": self.gm.covariance_type, "n_components": int(self.gm.n_components),
                "n_features": int(self.source.n_features)}


def _params_state(params: Params | None) -> dict[str, Any] | None:
    if params is None:
        return None
    return {"weights": params.weights, "means": params.means, "covariances": params.covariances,
            "precisions_cholesky": params.precisions_cholesky}


def _params_from_state(state: dict[str, Any] | None, device) -> Params | None:
    if state is None:
        return None
    cov = state["covariances"]
    return Params(state["weights"].to(device), state["means"].to(device),
                  cov.to(device) if cov is not None else None, state["precisions_cholesky"].to(device))
