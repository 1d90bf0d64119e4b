"""Gaussian kernel density estimation, an aigc-engine model plugin."""
from .model import KDE

__all__ = ["KDE"]
