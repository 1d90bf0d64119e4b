"""aigc_diffusion: continuous-time Gaussian diffusion models for aigc-engine (the ``diffusion``
model). Names are imported on first use (they need torch)."""
from __future__ import annotations

from typing import TYPE_CHECKING

_PUBLIC = {"Diffusion": "model", "DiffusionConfig": "model", "Schedule": "schedules", "LearnedSchedule": "schedules",
           "PointNet": "networks",
           "UNet": "networks", "sample_loop": "samplers", "ode_log_likelihood": "likelihoods",
           "discrete_bound": "likelihoods"}
__all__ = list(_PUBLIC)

if TYPE_CHECKING:  # pragma: no cover
    from .likelihoods import discrete_bound, ode_log_likelihood
    from .model import Diffusion, DiffusionConfig
    from .networks import PointNet, UNet
    from .samplers import sample_loop
    from .schedules import LearnedSchedule, Schedule


def __getattr__(name: str):
    if name in _PUBLIC:
        import importlib

        return getattr(importlib.import_module(f".{_PUBLIC[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
