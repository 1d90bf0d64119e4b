"""aigc_cvae: conditional variational autoencoders for aigc-engine (the ``cvae`` model): a learned
prior p(z|c), a Gaussian decoder p(x|z,c) (integrated over each level's bin for discrete images),
training on the ELBO (images) or the IWAE bound (points), early stopping on its held-out value
and importance-weighted likelihoods. Names are imported on first use (they need torch)."""
from __future__ import annotations

from typing import TYPE_CHECKING

from aigc_engine import lazy_exports

_PUBLIC = {"CVAE": "model", "CVAEConfig": "model"}
__all__ = list(_PUBLIC)

if TYPE_CHECKING:  # pragma: no cover
    from .model import CVAE, CVAEConfig

__getattr__, __dir__ = lazy_exports(__name__, _PUBLIC)
