"""aigc_gmm: Gaussian mixture models fitted with EM on aigc-engine's kernels.

``GaussianMixture`` is a drop-in for ``sklearn.mixture.GaussianMixture`` (plus ``device``,
``dtype`` and ``chunk_size``); the engine model ``gmm`` and the ``gmm-select`` command live in
``aigc_gmm.plugin``.
"""
from ._gaussian_mixture import GaussianMixture

__all__ = ["GaussianMixture"]
