"""Evaluation shared by every model plugin and by ``aigc-engine eval``; nothing is downloaded.

- :func:`mode_coverage`: modes captured on the synthetic mixtures (VEEGAN / PacGAN protocol).
- :class:`ImageJudge`: a small CNN trained on the real labelled images (cached per data set),
  standing in for Inception: its held-out ``accuracy``, ``predict``, ``features`` and
  ``conditional_accuracy`` of conditional samples (GAN-test).
- :func:`frechet_distance` and :func:`kernel_distance` (FID's and KID's formulas) in any
  feature space; :func:`precision_recall_density_coverage` (k-NN manifolds).
- :func:`image_metrics`: all of the above for image samples in one dict.
- :func:`sample_metrics`: what a model plugin's ``evaluate`` reports of its samples (mode
  coverage on points with modes, image metrics of class-conditional samples on images).
- :func:`heldout_log_likelihood`: nats and bits per dimension, exact or a bound.
- :func:`closest_distance_ratio`: distance of samples to the closest training point against
  that of held-out real points (memorisation).
- :func:`table_metrics` (:mod:`.tables`): column shapes, pair trends, ML efficacy, detection
  and DCR of decoded table rows (SDMetrics' definitions).
"""
from .distances import frechet_distance, frechet_distance_from_moments, kernel_distance
from .images import image_metrics
from .judge import ImageJudge, judge_cache_dir
from .likelihood import heldout_log_likelihood
from .manifold import precision_recall_density_coverage
from .memorisation import closest_distance_ratio
from .modes import mode_coverage
from .samples import sample_metrics
from .tables import table_metrics

__all__ = ["mode_coverage", "ImageJudge", "judge_cache_dir", "frechet_distance",
           "frechet_distance_from_moments", "kernel_distance", "precision_recall_density_coverage",
           "image_metrics", "heldout_log_likelihood", "closest_distance_ratio", "sample_metrics",
           "table_metrics"]
