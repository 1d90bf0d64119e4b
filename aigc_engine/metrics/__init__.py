"""Evaluation shared by every model plugin and by ``aigc-engine eval``; nothing is downloaded.

- :func:`mode_coverage`: modes captured on the synthetic mixtures (VEEGAN / PacGAN protocol).
- :func:`frechet_distance` and :func:`kernel_distance` (FID's and KID's formulas) in any
  feature space; :func:`precision_recall_density_coverage` (k-NN manifolds).
"""
from .distances import frechet_distance, frechet_distance_from_moments, kernel_distance
from .manifold import precision_recall_density_coverage
from .modes import mode_coverage

__all__ = ["mode_coverage", "frechet_distance", "frechet_distance_from_moments", "kernel_distance",
           "precision_recall_density_coverage"]
