"""aigc_gmm: Gaussian mixture models fitted with EM on aigc-engine's kernels.

``GaussianMixture`` is a drop-in for ``sklearn.mixture.GaussianMixture`` (plus ``device``,
``dtype`` and ``chunk_size``; ``em_fit`` for an EM fit driven step by step and resumable:
:class:`EMFit`; ``fitted_state`` / ``from_state`` and ``criteria``); the engine model ``gmm`` is
``aigc_gmm.model``, the ``gmm-select`` command ``aigc_gmm.select`` and their hooks
``aigc_gmm.plugin``. ``StepwiseFit`` streams a Dataset through ``partial_fit`` in
checkpointable batches (the engine's ``fit=online``). ``BayesianGaussianMixture`` is a drop-in for scikit-learn's variational
mixture on the same E-step kernel and driver (engine model ``bgmm``). The estimator classes are imported on first use (they need scikit-learn and
torch), so that loading the plugin to list commands stays light.

Modules, floor by floor (scikit-learn's ``sklearn/mixture/`` layout): ``_data`` the rows in
chunks and the sufficient-statistics pass, ``_gaussian`` the Gaussian maths (one covariance
function per type), ``_passes`` the Gaussian E-step passes, ``_em`` the EM loop, ``_base`` the
estimator base class (input checks, ``fit``, scoring), ``_components`` the initialisation and
sampling both mixtures share, ``_stepwise`` stepwise EM, ``_gaussian_mixture`` and
``_bayesian_mixture`` the estimators, ``_missing`` missing values, ``_kmeans`` the torch k-means
of the streamed initialisation, ``_dp_em`` differentially private EM and ``private_fit`` the
engine model's private fit on it (``privacy_epsilon``), ``_conditional`` exact conditional
sampling (``draw_conditioned``: ``--condition`` on a table).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from aigc_engine import lazy_exports

__all__ = ["GaussianMixture", "BayesianGaussianMixture", "EMFit", "EMIteration", "StepwiseFit", "draw_conditioned"]

_HOME = {"GaussianMixture": "_gaussian_mixture", "BayesianGaussianMixture": "_bayesian_mixture",
         "EMFit": "_em", "EMIteration": "_em", "StepwiseFit": "_stepwise", "draw_conditioned": "_conditional"}

if TYPE_CHECKING:  # pragma: no cover
    from ._bayesian_mixture import BayesianGaussianMixture
    from ._conditional import draw_conditioned
    from ._em import EMFit, EMIteration
    from ._gaussian_mixture import GaussianMixture
    from ._stepwise import StepwiseFit

__getattr__, __dir__ = lazy_exports(__name__, _HOME)
