"""The EM loop of the mixtures (scikit-learn's ``BaseMixture.fit``), one iteration at a time:
:class:`EMFit` runs ``n_init`` restarts, tests convergence and keeps the best restart; each
``step()`` is ``stats = gm._e_step(source, params)`` (one pass over the data) then ``params =
gm._m_step(stats)``, on the hooks of the estimator (a :class:`aigc_gmm._base.BaseMixture`). Its
state is a checkpoint: a fit resumed from it ends bit for bit as the uninterrupted one.
"""
from __future__ import annotations

import warnings
from typing import Any, Callable, NamedTuple

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_random_state

from ._data import Source

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
    - ``finish(on_iteration)`` runs whatever remains and sets the estimator's fitted attributes (with
      scikit-learn's ``ConvergenceWarning``); it returns the estimator.
    - ``state_dict()`` is everything the fit needs to go on exactly where it is: the restart,
      its iteration count, parameters and lower bounds, the best restart so far and the state of
      the ``random_state`` generator that initialises the restarts to come (tensors, numbers and
      lists only). ``load_state_dict()`` continues from it under the estimator's *current*
      ``max_iter``, ``tol`` and ``n_init``: a restart that those end is ended; a finished fit
      whose best restart they let go on (a larger ``max_iter``, a smaller ``tol``) continues
      that restart from its parameters, and a larger ``n_init`` adds restarts. Stepping a
      loaded fit to the end gives bit for bit the result of the uninterrupted fit.

    ``source`` holds this process's rows, ``full_source`` all rows (the same source on one
    process); ``all_reduce`` sums the statistics of all processes; ``weights`` (float64
    ``[source.n_samples]``, or None) are the sample weights of this process's rows.
    """

    def __init__(self, gm, source: Source, full_source: Source | None = None,
                 all_reduce=None, in_memory_init: bool | None = None, weights: torch.Tensor | None = None):
        full_source = full_source or source
        if in_memory_init is None:
            in_memory_init = isinstance(full_source.data, torch.Tensor)
        gm._begin_fit(source, full_source, in_memory_init, all_reduce, weights)
        self.gm, self.source, self.full_source, self.all_reduce = gm, source, full_source, all_reduce
        self.weights = weights
        self.warm = gm.warm_start and hasattr(gm, "converged_")  # scikit-learn: one restart, from the fit
        gm.converged_ = False
        self.random_state = check_random_state(gm.random_state)
        self.restart = 0
        self.params = None                    # the current restart's (None until it is initialised)
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
        """One EM iteration: the E-step's pass over the data, then the M-step."""
        gm = self.gm
        if self.done:
            raise RuntimeError("the EM fit is done: call finish()")
        if gm.max_iter < 1:
            raise RuntimeError("max_iter=0: there is no EM iteration to run; call finish()")
        if self.params is None:
            self._begin_restart()
        restart, previous = self.restart, self.lower_bound
        stats = gm._e_step(self.source, self.params, self.all_reduce, self.weights)
        self.params = gm._m_step(stats, self.source.origin)
        self.lower_bound = gm._lower_bound(stats, self.params)
        self.n_iter += 1
        self.lower_bounds.append(self.lower_bound)
        self.change = self.lower_bound - previous
        gm._print_verbose_msg_iter_end(self.n_iter, self.change)
        self._end_restart_if_due()
        return EMIteration(restart, self.n_iter, self.lower_bounds[-1])

    def finish(self, on_iteration: Callable[[EMIteration], Any] | None = None):
        """Run what remains, then set the fitted attributes to the best restart's;
        ``on_iteration`` (such as a progress bar's advance) is called with each iteration's
        :class:`EMIteration` and must leave the fit alone."""
        gm = self.gm
        while not self.done:
            if gm.max_iter < 1:  # scikit-learn: each restart is initialised and kept as it is
                self._begin_restart()
                self.best = {"params": self.params, "n_iter": 0, "lower_bounds": [], "converged": False,
                             "change": np.inf}
                self.restart, self.params = self.restart + 1, None
            else:
                it = self.step()
                if on_iteration is not None:
                    on_iteration(it)
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
                                                    self.all_reduce, self.weights)
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
            best = {**self.best, "params": self.best["params"].state(),
                    "lower_bounds": list(self.best["lower_bounds"])}
        return {"mixture": self._shape(), "restart": self.restart, "n_iter": self.n_iter,
                "lower_bound": self.lower_bound, "lower_bounds": list(self.lower_bounds), "change": self.change,
                "params": self.params.state() if self.params is not None else None, "best": best,
                "max_lower_bound": self.max_lower_bound,
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
        self.params = self._params_from_state(state["params"], device)
        self.best = None
        if state["best"] is not None:
            b = state["best"]
            self.best = {"params": self._params_from_state(b["params"], device), "n_iter": int(b["n_iter"]),
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

    def _params_from_state(self, state: dict[str, Any] | None, device):
        return None if state is None else self.gm._params_from_state(state, device)

    def _shape(self) -> dict[str, Any]:
        return {"covariance_type": self.gm.covariance_type, "n_components": int(self.gm.n_components),
                "n_features": int(self.source.n_features)}
