"""The engine model ``gmm``: the adapter between the engine's ``Model`` contract and
:class:`aigc_gmm.GaussianMixture` (imported when a model is built: scikit-learn is not needed to
list the model)."""
from __future__ import annotations

import math
import sys
import warnings
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from aigc_engine import InputError, Model, Run, class_frequencies, conditional_classes, sample_labels

from aigc_engine.config import resolve_defaults
from aigc_engine.tables import BlockRole

from . import private_fit
from .config import DEFAULTS, DTYPES, WEIGHT_PRIORS, BGMMConfig, GMMConfig

if TYPE_CHECKING:  # pragma: no cover
    from aigc_engine import ProgressBar

    from . import BayesianGaussianMixture, GaussianMixture


# EM parameters are small, but a checkpoint (~2-7 ms with the RNG states) would still outweigh a
# small data set's iteration: by default (``checkpoint_seconds=1``) the EM state is checkpointed
# after the first iteration that ends at least a second after the last checkpoint (after every
# iteration when they are slower), at the end and on SIGINT / SIGTERM; 0 checkpoints every iteration.


def estimator_params(config: GMMConfig, seed: int = 0, device=None) -> dict[str, Any]:
    """The ``GaussianMixture`` constructor parameters of a ``gmm`` config (checked: a bad value
    is an InputError naming the config key)."""
    if config.chunk_size < 1:
        raise InputError(f"chunk_size must be >= 1, got {config.chunk_size}")
    if config.dtype not in DTYPES:
        raise InputError(f"dtype must be float32 or float64, got {config.dtype!r}")
    if config.batch_size < 1 or config.epochs < 1:
        raise InputError(f"batch_size and epochs must be >= 1, got {config.batch_size} and {config.epochs}")
    reg_covar = DEFAULTS["points"]["reg_covar"] if config.reg_covar is None else config.reg_covar  # no data yet
    return dict(n_components=config.n_components, covariance_type=config.covariance_type, tol=config.tol,
                reg_covar=reg_covar, max_iter=config.max_iter, n_init=config.n_init,
                init_params=config.init_params, random_state=seed, device=device, dtype=config.dtype,
                chunk_size=config.chunk_size, step_exponent=config.step_exponent,
                missing="marginalize" if config.missing == "marginalize" else "error")


def build_estimator(config: GMMConfig, seed: int = 0, device=None) -> GaussianMixture:
    """The estimator the ``gmm`` model fits for ``config`` (``gmm-select`` fits the same one, so
    that a run of the selected config refits the winner exactly)."""
    from . import GaussianMixture

    try:
        return GaussianMixture(**estimator_params(config, seed, device)).check_parameters()
    except ValueError as err:
        raise InputError(str(err).replace("GaussianMixture", "gmm")) from None


class GMMModel(Model):
    """Gaussian mixture fitted with EM (streamed in chunks; distributed under torchrun)."""

    name = "gmm"
    Config = GMMConfig
    default_dataset = "ring8"
    defaults_by_kind = DEFAULTS
    takes_weights = True  # dataset.weights: every expectation of EM weighted (GaussianMixture.fit's sample_weight)
    supports_privacy = True  # run.privacy: DP-EM (private_fit)

    def __init__(self, config: GMMConfig | None = None):
        super().__init__(config)
        self.gm: GaussianMixture | None = None
        self.sample_shape: tuple[int, ...] | None = None
        self.classes: list[GaussianMixture] = []  # conditional: one mixture per class
        self.class_freq: torch.Tensor | None = None
        # missing=marginalize on a table: per encoded column, the indicator column whose 1 makes it
        # NaN (-1: none; -2: an indicator itself, left out of the mixture), else None
        self.masked_by: torch.Tensor | None = None
        self.privacy: dict[str, Any] = {}  # what a private fit spent (summary.json)

    def _conditional(self, dataset) -> int:
        """Classes to fit one mixture each for: ``auto`` a table's label column (images and the
        synthetic mixtures stay one mixture), ``true`` any labels."""
        mode = self.config.conditional
        if mode == "auto" and getattr(dataset, "encoding", None) is None:
            return 0
        return conditional_classes(dataset, "true" if mode == "true" else mode)

    def build(self, seed: int = 0, device=None):
        """The estimator this model fits (checked: a bad value is an InputError)."""
        return build_estimator(self.config, seed, device)

    def restore(self, state: dict[str, Any]):
        """The fitted estimator of a ``state_dict``."""
        from . import GaussianMixture

        return GaussianMixture.from_state(state, **estimator_params(self.config))

    def validate(self, dataset) -> None:
        """Check the config and the data before the engine makes a run directory."""
        self.config = resolve_defaults(self.config, DEFAULTS, dataset)
        if private_fit.is_private(self.config):
            warnings.warn("privacy_epsilon is deprecated: use --set privacy.epsilon=E (the encoding is then private "
                          "too: docs/privacy.md)", FutureWarning, stacklevel=2)
            private_fit.check(self.config, dataset, self.name)
        gm = self.build()
        if self.config.missing == "marginalize" and getattr(dataset, "encoding", None) is None:
            raise InputError("missing=marginalize is for tables (a CSV or Parquet file with empty cells); "
                             f"dataset {dataset.name!r} is not one")
        if len(dataset) < gm.n_components:
            raise InputError(f"n_components={gm.n_components} is more than the {len(dataset)} rows of "
                             f"dataset {dataset.name!r}")
        if self.config.fit == "online" and min(self.config.batch_size, len(dataset)) < gm.n_components:
            raise InputError(f"batch_size={self.config.batch_size} is less than n_components={gm.n_components}: "
                             "the first batch initialises the components")

    def validate_privacy(self, dataset, budget) -> None:
        """What DP-EM does not cover (``private_fit.check``), refused before the run starts."""
        self.config = resolve_defaults(self.config, DEFAULTS, dataset)
        private_fit.check(self.config, dataset, self.name, budget)

    # -- fitting -------------------------------------------------------------------------------
    def fit(self, dataset, run: Run) -> None:
        """EM on ``dataset`` through the run's step loop, one EM iteration per step (numbered on
        across the ``n_init`` restarts): each iteration is logged, the EM state is checkpointed
        about every ``checkpoint_seconds`` (config) and at the end, SIGINT / SIGTERM checkpoint and stop, and
        ``--resume`` continues the fit at its iteration (ending as the uninterrupted fit would).
        A finished fit resumed with settings that let it go on (a larger ``max_iter``, a smaller
        ``tol``) continues its best restart from its final parameters."""
        self.config = resolve_defaults(self.config, DEFAULTS, dataset)
        gm = self.build(run.seed, run.device)
        if len(dataset) < gm.n_components:
            raise InputError(f"n_components={gm.n_components} is more than the {len(dataset)} rows of "
                             f"dataset {dataset.name!r}")
        self.num_classes = self._conditional(dataset)
        budget = getattr(run, "privacy", None)
        if budget is not None or private_fit.is_private(self.config):  # DP-EM: one mixture or one per class
            if budget is None and dataset.encoding is not None and run.is_main_process:
                print("aigc-engine: warning: privacy_epsilon covers the mixture's fit and the class rates, not the "
                      "table encoding: use --set privacy.epsilon=E (docs/privacy.md)", file=sys.stderr)
            self.classes, self.class_freq, self.privacy = private_fit.fit(self.config, dataset, self.num_classes,
                                                                          run.seed, self.name, budget)
            self.gm, self.sample_shape = self.classes[0], tuple(dataset.shape[1:])
            return
        if self.num_classes or dataset.encoding is not None:
            self._fit_groups(dataset, run)
            return
        try:
            if self.config.fit == "online":
                self._fit_online(gm, dataset, run)
                self.gm, self.sample_shape = gm, tuple(dataset.shape[1:])
                return
            em = gm.em_fit(dataset, rank=run.rank, world_size=run.world_size, all_reduce=run.all_reduce,
                           sample_weight=dataset.weights)
            bound = gm.n_init * gm.max_iter  # restarts may converge early: ``until`` ends the loop
            loop = run.loop(bound, {"em": em}, log_every=1, checkpoint_every=bound + 1,  # by time only
                            checkpoint_seconds=self.config.checkpoint_seconds, desc="EM", until=lambda: em.done)
            for _ in loop:
                it = em.step()
                loop.log(lower_bound=it.lower_bound, n_iter=it.n_iter)
            em.finish()  # sets the fitted attributes (and runs what the bound left: max_iter=0, or
            #              max_iter lowered on --resume)
        except InputError:
            raise
        except ValueError as err:  # ill-defined covariance, a checkpoint of another mixture: bad input
            raise InputError(str(err)) from None
        self.gm = gm
        self.sample_shape = tuple(dataset.shape[1:])

    def _fit_online(self, gm: GaussianMixture, dataset, run: Run) -> None:
        """``fit=online``: stepwise EM over the data in batches of ``batch_size`` rows, ``epochs``
        times, one batch per step of the run's loop (logged, checkpointed, resumable)."""
        from . import StepwiseFit

        if run.world_size > 1:
            raise InputError("fit=online runs in one process (stepwise EM is sequential): run it without torchrun")
        online = StepwiseFit(gm, dataset, self.config.batch_size, self.config.epochs)
        loop = run.loop(online.steps, {"stepwise": online}, log_every=max(1, online.batches_per_epoch // 20),
                        checkpoint_every=online.steps + 1, checkpoint_seconds=self.config.checkpoint_seconds,
                        desc="stepwise EM", until=lambda: online.done)
        for _ in loop:
            loop.log(batch_log_likelihood=online.step())

    def _fit_groups(self, dataset, run: Run) -> None:
        """A table, or one mixture per class: each group of rows (a class's, or all of them) fitted
        in memory with the number of components in 1..``n_components`` (at most one per 2 rows)
        that scikit-learn's BIC prefers, so that a small table is not memorised; labels are
        sampled at the training frequencies."""
        if run.world_size > 1:
            raise InputError("a gmm on a table or per class fits in one process: run it without torchrun")
        if self.config.fit != "batch":
            raise InputError("fit=online is for one mixture of points: a table or a class-conditional gmm fits in batch")
        groups = [(dataset.y == c).nonzero().flatten() for c in range(self.num_classes)] or [torch.arange(len(dataset))]
        self.class_freq = class_frequencies(dataset, self.num_classes) if self.num_classes else None
        self.masked_by = _masks(dataset.encoding) if self.config.missing == "marginalize" else None
        x, weights = self._native(dataset.x.reshape(len(dataset), -1)), dataset.weights
        # one bar over every EM iteration of every K of every group, its total the iteration bound
        # (lowered as fits converge): a long table fit shows progress and an ETA
        fits = sum(self._max_components(len(rows)) for rows in groups)
        bar = run.progress_bar(fits * self.config.n_init * self.config.max_iter,
                               "EM per class" if self.num_classes else "EM")
        rare = [rows for rows in groups if len(rows) < MIN_CLASS_ROWS]
        pool = torch.cat(rare) if rare else None
        if pool is not None and len(pool) < MIN_CLASS_ROWS:
            pool = torch.arange(len(dataset))
        fits: dict[int | str, GaussianMixture] = {}
        try:  # classes of fewer than MIN_CLASS_ROWS rows share one mixture of their rows pooled
            for c, rows in enumerate(groups):
                key = "rare" if len(rows) < MIN_CLASS_ROWS else c
                if key not in fits:
                    at = pool if key == "rare" else rows
                    fits[key] = self._select(x[at], run, c, weights[at] if weights is not None else None, bar)
            self.classes = [fits["rare" if len(rows) < MIN_CLASS_ROWS else c] for c, rows in enumerate(groups)]
        finally:
            bar.close()
        self.gm, self.sample_shape = self.classes[0], tuple(dataset.shape[1:])

    def _max_components(self, rows: int) -> int:
        return max(1, min(self.config.n_components, rows // 2))

    def _select(self, x: torch.Tensor, run: Run, group: int, weights: torch.Tensor | None,
                bar: ProgressBar) -> GaussianMixture:
        """The number of components BIC prefers, searched on at most ``select_rows`` of the rows
        (the BIC of all of them estimated from the subsample's mean log-likelihood: the BIC of the
        subsample itself would favour too few components); the chosen mixture then fitted on at
        most ``fit_rows`` of them (random subsamples of a large table, seeded), starting from the
        search's parameters."""
        best = None
        gen = torch.Generator().manual_seed(run.seed + group)
        search = _subsample(len(x), self.config.select_rows, gen)
        xs, ws = (x, weights) if search is None else (x[search], None if weights is None else weights[search])
        for k in range(1, self._max_components(len(xs)) + 1):
            gm = self._fit(self.build(run.seed + group, run.device).set_params(n_components=k), xs, ws, bar,
                           f"{'class %d ' % group if self.num_classes else ''}K={k}", group)
            bic = _full_bic(gm.criteria(xs, sample_weight=ws), len(x) if weights is None else float(weights.sum()))
            if best is None or bic < best[0]:
                best = (bic, gm)
        gm = best[1]
        if search is not None and len(search) < min(len(x), self.config.fit_rows or len(x)):
            rows = _subsample(len(x), self.config.fit_rows, gen)
            xs, ws = (x, weights) if rows is None else (x[rows], None if weights is None else weights[rows])
            bar.set_total(bar.total + gm.n_init * gm.max_iter)
            gm = self._fit(gm.set_params(warm_start=True), xs, ws, bar, f"K={gm.n_components} on {len(xs)} rows",
                           group)
        run.log(group, group=group, rows=len(x), fitted_rows=len(xs), n_components=gm.n_components, bic=best[0])
        return gm.point_estimate() if hasattr(gm, "point_estimate") else gm

    def _fit(self, gm: GaussianMixture, x: torch.Tensor, weights: torch.Tensor | None, bar: ProgressBar,
             what: str, group: int) -> GaussianMixture:
        """``gm`` fitted on ``x``, each EM iteration a step of ``bar`` (its total lowered when the fit
        converges early); an ill-defined fit is an InputError naming the group."""
        start = bar.done
        try:
            gm.fit(x, sample_weight=weights, on_iteration=lambda it: bar.advance(f"{what} lower_bound={it.lower_bound:.4f}"))
        except ValueError as err:
            raise InputError(f"{'class ' + str(group) if self.num_classes else 'the table'}: {err}") from None
        bar.set_total(bar.total - gm.n_init * gm.max_iter + bar.done - start)
        return gm

    def _native(self, x: torch.Tensor) -> torch.Tensor:
        """Encoded table rows as the mixture sees them under missing=marginalize: NaN where a
        numeric column is missing, the indicator columns left out (unchanged otherwise)."""
        if self.masked_by is None:
            return x
        x = x.clone()
        for col, ind in enumerate(self.masked_by.tolist()):
            if ind >= 0:
                x[x[:, ind] > 0.5, col] = float("nan")
        return x[:, self.masked_by != -2]

    def _encoded(self, x: torch.Tensor) -> torch.Tensor:
        """Mixture samples back in the table's encoded columns (indicators 0: complete rows)."""
        if self.masked_by is None:
            return x
        out = torch.zeros(len(x), len(self.masked_by), dtype=x.dtype)
        out[:, self.masked_by != -2] = x
        return out

    def _fitted(self) -> GaussianMixture:
        if self.gm is None:
            raise InputError(f"the {self.name} model is not fitted: call fit or load_state_dict first")
        return self.gm

    def _mixture(self) -> GaussianMixture:
        """The Gaussian mixture that samples, scores and is drawn."""
        return self._fitted()

    # -- using the fit -------------------------------------------------------------------------
    def sample(self, n: int, condition: torch.Tensor | None = None) -> torch.Tensor:
        if n < 1:
            raise InputError(f"the number of samples must be >= 1, got {n}")
        y = sample_labels(n, condition, self.num_classes, self.class_freq, self.name)
        if y is None:
            x, _ = self._mixture().draw(n)  # torch's global stream, which the engine seeds
        else:
            x = torch.empty(n, self.classes[0].means_.shape[-1], dtype=torch.float32)
            for c in y.unique().tolist():
                at = (y == c).nonzero().flatten()
                x[at] = self.classes[c].draw(len(at))[0].cpu().float()
        x = self._encoded(x.cpu())
        return x.reshape(n, *self.sample_shape) if self.sample_shape else x

    def sample_conditioned(self, n: int, where, class_weights: torch.Tensor | None = None):
        """Exact: each component (and each class) weighted and conditioned in closed form
        (:mod:`aigc_gmm._conditional`); None (the engine's rejection) under missing=marginalize,
        whose mixture lacks the indicators."""
        from . import draw_conditioned

        if self.masked_by is not None:
            return None
        states = [g.fitted_state() for g in self.classes] if self.num_classes else [self._mixture().fitted_state()]
        drawn = draw_conditioned(states, n, where, class_weights if self.num_classes else None)
        if drawn is None or not self.sample_shape:
            return drawn
        return drawn[0].reshape(n, *self.sample_shape), drawn[1]

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """log p(x); for a mixture per class the marginal log sum_c p(c) p(x | c)."""
        x = self._native(x.reshape(len(x), -1))
        if not self.num_classes:
            return self._mixture().score_samples(x)
        per_class = torch.stack([torch.as_tensor(gm.score_samples(x), dtype=torch.float64) for gm in self.classes], 1)
        return torch.logsumexp(per_class + self.class_freq.double().log(), 1)

    def evaluate(self, dataset, run: Run) -> dict[str, float]:
        """Mean log-likelihood per row, BIC, AIC (scikit-learn's definitions), n_iter, converged."""
        gm = self._fitted()
        if self.classes:
            return {"mean_log_likelihood": float(self.log_prob(dataset.x).mean()),
                    "n_components": sum(g.n_components for g in self.classes), "classes": self.num_classes,
                    **self.privacy}
        local = dataset.shard(run.rank, run.world_size) if run.world_size > 1 else dataset
        c = self._mixture().criteria(local, sample_weight=local.weights, all_reduce=run.all_reduce)
        return {"mean_log_likelihood": c["mean_log_likelihood"], "bic": c["bic"], "aic": c["aic"],
                "n_iter": int(gm.n_iter_), "converged": bool(gm.converged_),
                "lower_bound": float(gm.lower_bound_), "n_parameters": c["n_parameters"]}

    def annotate_plot(self, ax) -> None:
        """Component means and 2-sigma ellipses (2-D data only)."""
        state = self._mixture().fitted_state()
        means = state["means"].numpy()
        if means.shape[1] != 2:
            return
        from matplotlib.patches import Ellipse

        cov = state["covariances"].numpy()
        ct = state["covariance_type"]
        for k, mu in enumerate(means):
            c = {"full": lambda: cov[k], "tied": lambda: cov, "diag": lambda: np.diag(cov[k]),
                 "spherical": lambda: np.eye(2) * cov[k]}[ct]()
            vals, vecs = np.linalg.eigh(c)
            angle = math.degrees(math.atan2(vecs[1, 1], vecs[0, 1]))
            w, h = 2 * 2 * np.sqrt(np.maximum(vals[::-1], 0))
            ax.add_patch(Ellipse(mu, w, h, angle=angle, fill=False, color="black", lw=1.2, zorder=4,
                                 label="2-sigma ellipses" if k == 0 else None))
        ax.scatter(means[:, 0], means[:, 1], marker="+", c="black", s=12, linewidths=0.8, zorder=5, label="means")

    # -- persistence ---------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """The estimator's ``fitted_state()`` and the rows' ``sample_shape`` (``model.safetensors``)."""
        if self.classes:
            state = {"classes": [g.fitted_state() for g in self.classes], "class_freq": self.class_freq,
                     "sample_shape": list(self.sample_shape or ())}
            return state if self.masked_by is None else {**state, "masked_by": self.masked_by}
        return {**self._fitted().fitted_state(), "sample_shape": list(self.sample_shape or ())}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.sample_shape = tuple(state.get("sample_shape", ())) or None
        if "classes" in state:  # a mixture per class
            from . import GaussianMixture

            self.masked_by = state.get("masked_by")
            missing = "marginalize" if self.masked_by is not None else "error"
            self.classes = [GaussianMixture.from_state(s, device="cpu", missing=missing) for s in state["classes"]]
            self.class_freq, self.gm = state.get("class_freq"), self.classes[0]
            self.num_classes = len(self.classes) if self.class_freq is not None else 0
            return
        try:
            gm = self.restore(state)
        except ValueError as err:
            raise InputError(str(err).replace("the estimator", "config says")) from None
        self.gm = gm


def _subsample(n: int, cap: int | None, gen: torch.Generator) -> torch.Tensor | None:
    """``cap`` of ``range(n)`` drawn without replacement (sorted), or None where all n fit."""
    if cap is None or n <= cap:
        return None
    return torch.randperm(n, generator=gen)[:cap].sort().values


def _full_bic(figures: dict, n: float) -> float:
    """BIC on ``n`` rows of a mixture whose ``criteria`` on a subsample of them are ``figures``:
    ``-2 n mean_log_likelihood + n_parameters log n`` (the subsample's own BIC where it is all)."""
    return -2 * n * figures["mean_log_likelihood"] + figures["n_parameters"] * math.log(n)


MIN_CLASS_ROWS = 10  # a class with fewer training rows is fitted with the other rare classes' rows


def _masks(encoding) -> torch.Tensor:
    """``GMMModel.masked_by`` of a table encoding: each column of a numeric column with missing
    values masked by that column's indicator."""
    masked_by = torch.full((encoding.width,), -1, dtype=torch.int64)
    for block in encoding.blocks:
        if block.role is BlockRole.MISSING:
            for other in encoding.blocks:
                if other.column == block.column and other is not block:
                    masked_by[other.start:other.stop] = block.start
            masked_by[block.start] = -2
    return masked_by


def bayesian_params(config: BGMMConfig, seed: int = 0, device=None) -> dict[str, Any]:
    """The ``BayesianGaussianMixture`` constructor parameters of a ``bgmm`` config (a prior of 0
    is scikit-learn's default)."""
    params = estimator_params(config, seed, device)
    del params["step_exponent"], params["missing"]
    if config.missing != "indicator":
        raise InputError("bgmm models a table's missing values by their indicators only (missing=marginalize: use gmm)")
    if config.fit != "batch":
        raise InputError("bgmm fits in batch only (fit=online is stepwise EM of gmm)")
    if config.weight_concentration_prior_type not in WEIGHT_PRIORS:
        raise InputError(f"weight_concentration_prior_type must be one of {WEIGHT_PRIORS}, got "
                         f"{config.weight_concentration_prior_type!r}")
    params["weight_concentration_prior_type"] = config.weight_concentration_prior_type
    for name in ("weight_concentration_prior", "mean_precision_prior", "degrees_of_freedom_prior",
                 "covariance_prior"):
        value = getattr(config, name)
        if value < 0:
            raise InputError(f"{name} must be > 0 (or 0 for the default), got {value}")
        params[name] = value or None
    if config.covariance_prior and config.covariance_type != "spherical":
        raise InputError("covariance_prior is a scalar: set it only with covariance_type=spherical")
    return params


class BGMMModel(GMMModel):
    """Variational Bayesian Gaussian mixture (scikit-learn's ``BayesianGaussianMixture``):
    ``n_components`` is an upper bound, the prior empties the components the data does not
    need. Fitted, checkpointed and resumed as ``gmm``; it samples and scores the mixture of the
    posterior's expected weights, means and covariances, and ``evaluate`` reports the number of
    components left (``n_effective_components``) and pruned."""

    name = "bgmm"
    supports_privacy = False  # no private fit (DP-EM is the gmm's)
    Config = BGMMConfig

    def __init__(self, config: BGMMConfig | None = None):
        super().__init__(config)
        self._point: GaussianMixture | None = None   # the point estimate of self.gm, when made
        self._point_of: BayesianGaussianMixture | None = None

    def build(self, seed: int = 0, device=None) -> BayesianGaussianMixture:
        from . import BayesianGaussianMixture

        try:
            return BayesianGaussianMixture(**bayesian_params(self.config, seed, device)).check_parameters()
        except ValueError as err:
            raise InputError(str(err).replace("BayesianGaussianMixture", "bgmm")) from None

    def restore(self, state: dict[str, Any]) -> BayesianGaussianMixture:
        from . import BayesianGaussianMixture

        return BayesianGaussianMixture.from_state(state, **bayesian_params(self.config))

    def _mixture(self) -> GaussianMixture:
        if self.classes:  # fitted per group: already point estimates
            return self._fitted()
        if self._point is None or self._point_of is not self.gm:
            self._point, self._point_of = self._fitted().point_estimate(), self.gm
        return self._point

    def evaluate(self, dataset, run: Run) -> dict[str, float]:
        metrics = super().evaluate(dataset, run)
        if self.classes:  # mixtures per class or of a table: point estimates, reported as gmm's
            return metrics
        kept = self._fitted().n_effective_components(self.config.prune_threshold)
        return {**metrics, "n_effective_components": kept, "n_pruned_components": self.config.n_components - kept}
