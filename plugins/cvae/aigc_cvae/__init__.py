"""aigc_cvae: conditional variational autoencoders for aigc-engine (the ``cvae`` model): a learned
prior p(z|c), a Gaussian decoder p(x|z,c) (integrated over each level's bin for discrete images),
early stopping on held-out ELBO and importance-weighted likelihoods."""
from .plugin import CVAE, CVAEConfig

__all__ = ["CVAE", "CVAEConfig"]
