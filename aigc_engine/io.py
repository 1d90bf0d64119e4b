"""Deprecated: :mod:`aigc_engine.store.io` (this name is that module, so old code sees one module)."""
import sys
import warnings

from .store import io

warnings.warn("aigc_engine.io is deprecated: use aigc_engine.store.io", DeprecationWarning, stacklevel=2)
sys.modules[__name__] = io
