"""Stepwise EM (Cappé & Moulines 2009): a mixture updated one batch at a time, on the same
E-step pass as batch EM. :class:`StepwiseEM` gives an estimator ``partial_fit``;
:class:`StepwiseFit` streams a Dataset through it in checkpointable batches (the engine's
``fit=online``); :class:`StepwiseState` holds the running statistics.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from sklearn.utils import check_random_state

from aigc_engine import ops

from ._data import Source, Stats, check_sample_weight
from ._gaussian import Params, needs_double_moments
from ._passes import e_step_pass

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



class StepwiseEM:
    """``partial_fit`` of a Gaussian mixture estimator (a ``BaseMixture`` whose parameters are
    :class:`Params`: ``GaussianMixture``)."""

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


    def _stepwise_state(self) -> dict[str, Any]:
        """The parameters, the running statistics and the lower bounds of the batches so far."""
        return {"params": self._params.state(), "stepwise": self._stepwise.state(),
                "lower_bounds": [float(v) for v in self.lower_bounds_]}

    def _load_stepwise_state(self, state: dict[str, Any], first_batch, n_iter: int) -> None:
        """Go on from :meth:`_stepwise_state` after ``n_iter`` batches; ``first_batch`` gives the
        stream's dtype and origin, as it did when the stream began."""
        self._validate_params()
        source, self._out, _ = self._prepare(first_batch, reset=True)
        self._begin_fit(source, source, False)
        self._stepwise = StepwiseState.from_state(state["stepwise"], source.dtype, source.device)
        self._set_parameters(Params.from_state(state["params"], source.device))
        self.n_iter_, self.converged_ = n_iter, False
        self.lower_bounds_ = [float(v) for v in state["lower_bounds"]]
        self.lower_bound_ = self.lower_bounds_[-1]

class StepwiseFit:
    """A stepwise EM fit of ``gm`` (a ``GaussianMixture``) on an engine Dataset (or any object
    with ``shape``, ``subset`` and ``iter_chunks``) read in consecutive batches of ``batch_size``
    rows, ``epochs`` times: each ``step()`` is ``gm.partial_fit`` of the next batch (memory
    bounded by the batch) and returns its mean log-likelihood; ``done`` after ``steps`` batches.
    ``state_dict()`` / ``load_state_dict()`` hold the parameters and the running statistics, so
    that a resumed fit goes on at the next batch and ends as the uninterrupted one."""

    def __init__(self, gm, dataset, batch_size: int, epochs: int = 1):
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
        if self.seen == 0:
            return {"seen": 0}
        return {"seen": self.seen, **self.gm._stepwise_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.seen = int(state["seen"])
        if self.seen:
            self.gm._load_stepwise_state(state, self._batch(0), self.seen)
