"""aigc_gmm: Gaussian mixture models fitted with EM on aigc-engine's kernels.

``GaussianMixture`` is a drop-in for ``sklearn.mixture.GaussianMixture`` (plus ``device``,
``dtype`` and ``chunk_size``, and ``em_fit`` for an EM fit driven step by step and resumable:
:class:`EMFit`); the engine model ``gmm`` is ``aigc_gmm.model``, the ``gmm-select`` command
``aigc_gmm.select`` and their hooks ``aigc_gmm.plugin``. The estimator classes are imported on
first use (they need scikit-learn and torch), so that loading the plugin to list commands stays
light.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

__all__ = ["GaussianMixture", "EMFit", "EMIteration"]

if TYPE_CHECKING:  # pragma: no cover
    from ._gaussian_mixture import EMFit, EMIteration, GaussianMixture


def __getattr__(name: str):
    if name in __all__:
        from . import _gaussian_mixture

        return getattr(_gaussian_mixture, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
