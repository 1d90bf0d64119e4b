"""Deprecated: :mod:`aigc_engine.store.checkpoint` (this name is that module, so old code sees one module)."""
import sys
import warnings

from .store import checkpoint

warnings.warn("aigc_engine.checkpoint is deprecated: use aigc_engine.store.checkpoint", DeprecationWarning, stacklevel=2)
sys.modules[__name__] = checkpoint
