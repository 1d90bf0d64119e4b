"""aigc_gan: generative adversarial networks for aigc-engine (the ``gan`` model), on the engine's
fused GAN losses and its training loop. Names are imported on first use (they need torch)."""
from __future__ import annotations

from typing import TYPE_CHECKING

from aigc_engine import lazy_exports

_PUBLIC = {"GAN": "model", "GANConfig": "model", "Generator": "networks", "Discriminator": "networks"}
__all__ = list(_PUBLIC)

if TYPE_CHECKING:  # pragma: no cover
    from .model import GAN, GANConfig
    from .networks import Discriminator, Generator

__getattr__, __dir__ = lazy_exports(__name__, _PUBLIC)
