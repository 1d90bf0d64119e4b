"""Deprecated: :mod:`aigc_engine.store.rundir` (this name is that module, so old code sees one module)."""
import sys
import warnings

from .store import rundir

warnings.warn("aigc_engine.rundir is deprecated: use aigc_engine.store.rundir", DeprecationWarning, stacklevel=2)
sys.modules[__name__] = rundir
