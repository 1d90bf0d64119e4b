"""aigc_gan: generative adversarial networks for aigc-engine (the ``gan`` model), on the engine's
fused GAN losses and its training loop."""
from .networks import Discriminator, Generator
from .plugin import GAN, GANConfig

__all__ = ["GAN", "GANConfig", "Generator", "Discriminator"]
