"""aigc_gmm: Gaussian mixture models fitted with EM on aigc-engine's kernels.

``GaussianMixture`` is a drop-in for ``sklearn.mixture.GaussianMixture`` (plus ``device``,
``dtype`` and ``chunk_size``; ``em_fit`` for an EM fit driven step by step and resumable:
:class:`EMFit`; ``fitted_state`` / ``from_state`` and ``criteria``); the engine model ``gmm`` is
``aigc_gmm.model``, the ``gmm-select`` command ``aigc_gmm.select`` and their hooks
``aigc_gmm.plugin``. ``StepwiseFit`` streams a Dataset through ``partial_fit`` in
checkpointable batches (the engine's ``fit=online``). ``BayesianGaussianMixture`` is a drop-in for scikit-learn's variational
mixture on the same E-step kernel and driver (engine model ``bgmm``). The estimator classes are imported on first use (they need scikit-learn and
torch), so that loading the plugin to list commands stays light.

Modules: ``_em`` is the EM driver (data sources, the sufficient-statistics pass, the estimator
base class and the EM loop), ``_gaussian_mixture`` the Gaussian maths and the estimator that
fills in the driver's hooks, ``_bayesian_mixture`` the variational mixture, ``_kmeans`` the torch k-means of the streamed initialisation.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from aigc_engine import lazy_exports

__all__ = ["GaussianMixture", "BayesianGaussianMixture", "EMFit", "EMIteration", "StepwiseFit"]

_HOME = {"GaussianMixture": "_gaussian_mixture", "BayesianGaussianMixture": "_bayesian_mixture",
         "EMFit": "_em", "EMIteration": "_em", "StepwiseFit": "_gaussian_mixture"}

if TYPE_CHECKING:  # pragma: no cover
    from ._bayesian_mixture import BayesianGaussianMixture
    from ._em import EMFit, EMIteration
    from ._gaussian_mixture import GaussianMixture, StepwiseFit

__getattr__, __dir__ = lazy_exports(__name__, _HOME)
