"""aigc_gan: generative adversarial networks for aigc-engine (the ``gan`` model), on the engine's
fused GAN losses and its training loop. Names are imported on first use (they need torch)."""
from __future__ import annotations

from typing import TYPE_CHECKING

_PUBLIC = {"GAN": "model", "GANConfig": "model", "Generator": "networks", "Discriminator": "networks"}
__all__ = list(_PUBLIC)

if TYPE_CHECKING:  # pragma: no cover
    from .model import GAN, GANConfig
    from .networks import Discriminator, Generator


def __getattr__(name: str):
    if name in _PUBLIC:
        import importlib

        return getattr(importlib.import_module(f".{_PUBLIC[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
