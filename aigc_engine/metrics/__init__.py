"""Evaluation shared by every model plugin and by ``aigc-engine eval``; nothing is downloaded.

- :func:`mode_coverage`: modes captured on the synthetic mixtures (VEEGAN / PacGAN protocol).
"""
from .modes import mode_coverage

__all__ = ["mode_coverage"]
