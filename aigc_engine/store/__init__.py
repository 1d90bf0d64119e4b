"""What the engine keeps on disk, and nothing above it: :mod:`.io` (atomic files, JSON, tensor
trees in safetensors), :mod:`.checkpoint` (the versioned state format, the metrics rewind on
resume, the RNG states) and :mod:`.rundir` (the run directory: every file name in it, the
claim, the config, the metrics log, a table's encoding).

It imports only :mod:`aigc_engine.errors`, the standard library, NumPy, torch and safetensors.
The submodules load on first use: ``store.rundir`` needs no torch (the CLI reads it at start).
"""
from __future__ import annotations

import importlib as _importlib

_SUBMODULES = ("io", "checkpoint", "rundir")


def __getattr__(name: str):
    if name not in _SUBMODULES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return _importlib.import_module(f".{name}", __name__)
