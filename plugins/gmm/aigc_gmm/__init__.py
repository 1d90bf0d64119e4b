"""aigc_gmm: Gaussian mixture models fitted with EM on aigc-engine's kernels.

``GaussianMixture`` is a drop-in for ``sklearn.mixture.GaussianMixture`` (plus ``device``,
``dtype`` and ``chunk_size``); the engine model ``gmm`` is ``aigc_gmm.model``, the
``gmm-select`` command ``aigc_gmm.select`` and their hooks ``aigc_gmm.plugin``.
``GaussianMixture`` is imported on first use (it needs scikit-learn and torch), so that loading
the plugin to list commands stays light.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

__all__ = ["GaussianMixture"]

if TYPE_CHECKING:  # pragma: no cover
    from ._gaussian_mixture import GaussianMixture


def __getattr__(name: str):
    if name == "GaussianMixture":
        from ._gaussian_mixture import GaussianMixture

        return GaussianMixture
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
