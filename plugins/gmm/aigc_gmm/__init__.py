"""aigc_gmm: Gaussian mixture models fitted with EM on aigc-engine's kernels.

``GaussianMixture`` is a drop-in for ``sklearn.mixture.GaussianMixture`` (plus ``device``,
``dtype`` and ``chunk_size``, and ``em_fit`` for an EM fit driven step by step and resumable:
:class:`EMFit`); the engine model ``gmm`` and the ``gmm-select`` command live in
``aigc_gmm.plugin``.
"""
from ._gaussian_mixture import EMFit, EMIteration, GaussianMixture

__all__ = ["GaussianMixture", "EMFit", "EMIteration"]
