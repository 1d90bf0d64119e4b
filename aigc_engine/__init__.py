"""aigc-engine: a plugin-based engine for generative models on PyTorch."""
from importlib.metadata import PackageNotFoundError, version as _version

from . import data, io, metrics, ops, plotting, training
from .engine import Engine, open_dataset
from .errors import InputError
from .hookspecs import hookimpl
from .model import Model
from .run import Run
from .training import EMA, Batches, Interrupted, TrainLoop

try:
    __version__ = _version("aigc-engine")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"

__all__ = ["hookimpl", "Model", "Run", "Engine", "open_dataset", "InputError", "data", "io", "ops",
           "metrics", "plotting", "training", "Batches", "TrainLoop", "EMA", "Interrupted", "__version__"]
