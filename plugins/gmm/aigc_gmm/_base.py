"""The estimator whatever its component densities (scikit-learn's ``mixture/_base.py``):
:class:`BaseMixture` checks the input, fits through :class:`aigc_gmm._em.EMFit` and uses the fit
(``score``, ``predict``, ``criteria`` / BIC / AIC). A mixture subclasses it and fills in the
hooks listed there (initialise, E-step statistics, M-step, log-densities).
"""
from __future__ import annotations

import math
from time import time
from numbers import Integral

import numpy as np
import torch
from sklearn.base import BaseEstimator, DensityMixin
from sklearn.exceptions import NotFittedError
from sklearn.utils._param_validation import Interval
from sklearn.utils.validation import check_array

from ._data import IN_MEMORY_CHUNK, STREAM_CHUNK, Source, Stats, check_sample_weight, choose_origin
from ._em import EMFit

# the parameters every mixture here adds to scikit-learn's (validated like its own)
TORCH_PARAMETER_CONSTRAINTS: dict = {
    "device": "no_validation",
    "dtype": "no_validation",
    "chunk_size": [Interval(Integral, 1, None, closed="left"), None],
}


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


class BaseMixture(DensityMixin, BaseEstimator):
    """A mixture estimator fitted with EM (scikit-learn's ``BaseMixture``): input handling,
    ``fit`` / ``fit_predict`` / ``em_fit``, ``score_samples``, ``score``, ``predict``,
    ``predict_proba``, ``criteria``, ``bic``, ``aic``. Subclasses define ``__init__`` with the
    parameters ``n_components``, ``tol``, ``max_iter``, ``n_init``, ``random_state``,
    ``warm_start``, ``verbose``, ``verbose_interval``, ``device``, ``dtype``, ``chunk_size``
    and fill in these hooks (``params`` is the subclass's parameter record, with a
    ``state()`` of tensors and numbers):

    - ``_initialize_parameters(source, full, random_state, all_reduce, weights) -> params``
    - ``_e_step(source, params, all_reduce, weights) -> Stats``: one :func:`aigc_gmm._data.statistics_pass`
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
    def fit(self, X, y=None, sample_weight=None, *, on_iteration=None):
        """Estimate model parameters with the EM algorithm (see scikit-learn). ``sample_weight``
        ``[n_samples]`` (non-negative) weighs every row in every expectation: integer weights
        fit as the rows repeated that many times, zero weights as the rows left out.
        ``on_iteration`` is called after each EM iteration (:meth:`EMFit.finish`)."""
        self.fit_predict(X, y, sample_weight=sample_weight, on_iteration=on_iteration)
        return self

    def fit_predict(self, X, y=None, sample_weight=None, *, on_iteration=None):
        """Estimate model parameters using X (weighted by ``sample_weight``, see :meth:`fit`)
        and predict the labels for X."""
        self._validate_params()
        source, out, kind = self._prepare(X, reset=True)
        weights = check_sample_weight(sample_weight, source.n_samples, source.device)
        self._out = out
        EMFit(self, source, weights=weights).finish(on_iteration)
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

