"""Deprecated: the training loop is :mod:`aigc_engine.loop` (``Batches``, ``TrainLoop``, ``EMA``),
the DDP helpers :mod:`aigc_engine.fabric` (``unwrap``, ``no_sync``, ``rank_share``), the RNG
states :mod:`aigc_engine.store.checkpoint`."""
import warnings

from .errors import Interrupted
from .fabric import no_sync, rank_share, unwrap
from .loop import EMA, Batches, TrainLoop
from .store.checkpoint import rng_state, set_rng_state

__all__ = ["Batches", "TrainLoop", "EMA", "Interrupted", "rng_state", "set_rng_state", "unwrap", "no_sync",
           "rank_share"]

warnings.warn("aigc_engine.training is deprecated: use aigc_engine.loop and aigc_engine.fabric",
              DeprecationWarning, stacklevel=2)
