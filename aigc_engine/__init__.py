"""aigc-engine: a plugin-based engine for generative models on PyTorch.

The public names are imported on first use (PEP 562 module ``__getattr__``), so that
``aigc-engine --version`` and ``--help`` start without importing torch; ``from aigc_engine
import Run`` and ``aigc_engine.ops`` work as with eager imports. A new public name is one line
of ``_PUBLIC``.
"""
from __future__ import annotations

import importlib as _importlib
from typing import TYPE_CHECKING

# public name -> the submodule that defines it (a submodule's own name: the submodule itself)
_PUBLIC = {
    "hookimpl": "hookspecs",
    "InputError": "errors",
    "Model": "model",
    "conditional_classes": "model",
    "sample_labels": "model",
    "class_frequencies": "model",
    "Run": "run",
    "Fabric": "fabric",
    "fabric": "fabric",
    "ProgressBar": "progress",
    "store": "store",
    "loop": "loop",
    "Engine": "engine",
    "RunSpec": "engine",
    "open_dataset": "engine",
    "Synthesizer": "synthesizer",
    "compare": "compare",
    "CompareResult": "compare",
    "data": "data",
    "metrics": "metrics",
    "ops": "ops",
    "plotting": "plotting",
    "Batches": "loop",
    "TrainLoop": "loop",
    "EMA": "loop",
    "Interrupted": "errors",
    # deprecated (each warns once, in one line): aigc_engine.store.io, .store.rundir,
    # .store.checkpoint; aigc_engine.loop and aigc_engine.fabric for training
    "io": "io",
    "rundir": "rundir",
    "checkpoint": "checkpoint",
    "training": "training",
    "lazy_exports": "lazy",
    "neural": "neural",
}

__all__ = [*_PUBLIC, "__version__"]

if TYPE_CHECKING:  # pragma: no cover - what type checkers and IDEs see
    from . import checkpoint, compare, data, fabric, io, loop, metrics, neural, ops, plotting, rundir, store, training
    from .compare import CompareResult
    from .engine import Engine, RunSpec, open_dataset
    from .synthesizer import Synthesizer
    from .errors import InputError
    from .hookspecs import hookimpl
    from .model import Model, class_frequencies, conditional_classes, sample_labels
    from .errors import Interrupted
    from .fabric import Fabric
    from .loop import EMA, Batches, TrainLoop
    from .progress import ProgressBar
    from .run import Run
    from .lazy import lazy_exports

    __version__: str


def __getattr__(name: str):
    if name == "__version__":
        value = _package_version()
    elif name in _PUBLIC:
        module = _importlib.import_module(f".{_PUBLIC[name]}", __name__)
        value = module if _PUBLIC[name] == name else getattr(module, name)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value  # looked up once: later accesses do not come here
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


def _package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("aigc-engine")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "0.0.0"
