"""Gaussian kernel density estimation, an aigc-engine model plugin."""

__all__ = ["KDE"]


def __getattr__(name):  # the model (and torch) on first use: loading the plugin's hooks stays light
    if name == "KDE":
        from .model import KDE

        return KDE
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
