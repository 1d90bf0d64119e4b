"""The engine model ``gmm``: the adapter between the engine's ``Model`` contract and
:class:`aigc_gmm.GaussianMixture` (imported when a model is built: scikit-learn is not needed to
list the model)."""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from aigc_engine import InputError, Model, Run

from . import _em
from ._em import Params
from .config import GMMConfig

if TYPE_CHECKING:  # pragma: no cover
    from ._gaussian_mixture import GaussianMixture


# EM parameters are small, but a checkpoint (~2-7 ms with the RNG states) would still outweigh a
# small data set's iteration: by default (``checkpoint_seconds=1``) the EM state is checkpointed
# after the first iteration that ends at least a second after the last checkpoint (after every
# iteration when they are slower), at the end and on SIGINT / SIGTERM; 0 checkpoints every iteration.


class GMMModel(Model):
    """Gaussian mixture fitted with EM (streamed in chunks; distributed under torchrun)."""

    name = "gmm"
    Config = GMMConfig
    default_dataset = "ring8"

    def __init__(self, config: GMMConfig | None = None):
        super().__init__(config)
        self.gm: GaussianMixture | None = None
        self.sample_shape: tuple[int, ...] | None = None

    def _estimator(self, seed: int = 0, device=None) -> GaussianMixture:
        from ._gaussian_mixture import GaussianMixture, _torch_dtype

        c = self.config
        if c.chunk_size < 1:
            raise InputError(f"chunk_size must be >= 1, got {c.chunk_size}")
        try:
            _torch_dtype(c.dtype)
        except ValueError:
            raise InputError(f"dtype must be float32 or float64, got {c.dtype!r}") from None
        gm = GaussianMixture(c.n_components, covariance_type=c.covariance_type, tol=c.tol,
                             reg_covar=c.reg_covar, max_iter=c.max_iter, n_init=c.n_init,
                             init_params=c.init_params, random_state=seed, device=device,
                             dtype=c.dtype, chunk_size=c.chunk_size)
        try:
            gm._validate_params()
        except ValueError as err:
            raise InputError(str(err).replace("GaussianMixture", "gmm")) from None
        return gm

    def validate(self, dataset) -> None:
        """Check the config and the data before the engine makes a run directory."""
        gm = self._estimator()
        if len(dataset) < gm.n_components:
            raise InputError(f"n_components={gm.n_components} is more than the {len(dataset)} rows of "
                             f"dataset {dataset.name!r}")

    # -- fitting -------------------------------------------------------------------------------
    def fit(self, dataset, run: Run) -> None:
        """EM on ``dataset`` through the run's step loop, one EM iteration per step (numbered on
        across the ``n_init`` restarts): each iteration is logged, the EM state is checkpointed
        about every ``checkpoint_seconds`` (config) and at the end, SIGINT / SIGTERM checkpoint and stop, and
        ``--resume`` continues the fit at its iteration (ending as the uninterrupted fit would).
        A finished fit resumed with settings that let it go on (a larger ``max_iter``, a smaller
        ``tol``) continues its best restart from its final parameters."""
        gm = self._estimator(run.seed, run.device)
        if len(dataset) < gm.n_components:
            raise InputError(f"n_components={gm.n_components} is more than the {len(dataset)} rows of "
                             f"dataset {dataset.name!r}")
        try:
            em = gm.em_fit(dataset, rank=run.rank, world_size=run.world_size, all_reduce=run.all_reduce)
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

    def _fitted(self) -> GaussianMixture:
        if self.gm is None:
            raise InputError("the gmm model is not fitted: call fit or load_state_dict first")
        return self.gm

    # -- using the fit -------------------------------------------------------------------------
    def sample(self, n: int, condition: torch.Tensor | None = None) -> torch.Tensor:
        if condition is not None:
            raise InputError("gmm is an unconditional model: it cannot sample with a condition")
        if n < 1:
            raise InputError(f"the number of samples must be >= 1, got {n}")
        gm = self._fitted()
        p = gm._params
        dev = p.means.device
        labels = torch.multinomial(p.weights.cpu(), n, replacement=True).to(dev)
        z = torch.randn(n, p.means.shape[1], dtype=torch.float64, device="cpu").to(dev)
        x = _em.sample_from(p, gm.covariance_type, labels, z).to(gm._dtype).cpu()
        return x.reshape(n, *self.sample_shape) if self.sample_shape else x

    def _covariances(self) -> torch.Tensor:
        gm = self._fitted()
        return _em.covariances_of(gm._params, gm.covariance_type)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        return self._fitted().score_samples(x.reshape(len(x), -1))

    def evaluate(self, dataset, run: Run) -> dict[str, float]:
        """Mean log-likelihood per row, BIC, AIC (scikit-learn's definitions), n_iter, converged."""
        gm = self._fitted()
        local = dataset.shard(run.rank, run.world_size) if run.world_size > 1 else dataset
        device = gm._params.means.device  # NCCL reduces tensors on the GPU
        total = torch.zeros(2, dtype=torch.float64, device=device)
        rows = _em.Source(local, gm._dtype, device, gm.chunk_size or _em.STREAM_CHUNK, gm._origin_)
        for _, x in rows.chunks():
            lp = torch.logsumexp(gm._weighted_log_prob(x), 1)
            total[0] += lp.sum(dtype=torch.float64)
            total[1] += len(x)
        run.all_reduce(total)
        total = total.cpu()
        n = float(total[1])
        ll = float(total[0])
        k = gm._n_parameters()
        bic, aic = _em.information_criteria(ll, n, k)
        return {"mean_log_likelihood": ll / n, "bic": bic, "aic": aic,
                "n_iter": int(gm.n_iter_), "converged": bool(gm.converged_),
                "lower_bound": float(gm.lower_bound_), "n_parameters": int(k)}

    def annotate_plot(self, ax) -> None:
        """Component means and 2-sigma ellipses (2-D data only)."""
        gm = self._fitted()
        means = gm._params.means.cpu().numpy()
        if means.shape[1] != 2:
            return
        from matplotlib.patches import Ellipse

        cov = self._covariances().cpu().numpy()
        ct = gm.covariance_type
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
        gm = self._fitted()
        p = gm._params
        return {"weights": p.weights.cpu(), "means": p.means.cpu(), "covariances": self._covariances().cpu(),
                "precisions_cholesky": p.precisions_cholesky.cpu(), "covariance_type": gm.covariance_type,
                "n_iter": int(gm.n_iter_), "converged": bool(gm.converged_),
                "lower_bound": float(gm.lower_bound_), "lower_bounds": [float(v) for v in gm.lower_bounds_],
                "sample_shape": list(self.sample_shape or ()),
                **({"origin": gm._origin_.cpu()} if gm._origin_ is not None else {})}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        from ._gaussian_mixture import _torch_dtype

        gm = self._estimator()
        if state.get("covariance_type", gm.covariance_type) != gm.covariance_type:
            raise InputError(f"state has covariance_type {state['covariance_type']!r}, config says "
                             f"{gm.covariance_type!r}")
        f64 = torch.float64
        params = Params(state["weights"].to(f64), state["means"].to(f64), state["covariances"].to(f64),
                        state["precisions_cholesky"].to(f64))
        if params.weights.shape[0] != gm.n_components:
            raise InputError(f"state has {params.weights.shape[0]} components, config says {gm.n_components}")
        gm.n_features_in_ = params.means.shape[1]
        gm._dtype, gm._device, gm._out = _torch_dtype(gm.dtype), torch.device("cpu"), ("torch", torch.device("cpu"))
        gm._set_parameters(params)
        gm._origin = state["origin"].to(f64) if state.get("origin") is not None else None
        gm.n_iter_ = int(state.get("n_iter", 0))
        gm.converged_ = bool(state.get("converged", False))
        gm.lower_bound_ = float(state.get("lower_bound", float("nan")))
        gm.lower_bounds_ = list(state.get("lower_bounds", []))
        self.gm = gm
        self.sample_shape = tuple(state.get("sample_shape", ())) or None
