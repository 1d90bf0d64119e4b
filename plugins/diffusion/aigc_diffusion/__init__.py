"""aigc_diffusion: continuous-time Gaussian diffusion models for aigc-engine (the ``diffusion``
model). Names are imported on first use (they need torch)."""
from __future__ import annotations

from typing import TYPE_CHECKING

from aigc_engine import lazy_exports

_PUBLIC = {"Diffusion": "model", "DiffusionConfig": "config", "Schedule": "schedules", "LearnedSchedule": "schedules",
           "PointNet": "networks",
           "UNet": "networks", "sample_loop": "samplers", "SAMPLERS": "samplers", "ode_log_likelihood": "likelihoods",
           "discrete_bound": "likelihoods"}
__all__ = list(_PUBLIC)

if TYPE_CHECKING:  # pragma: no cover
    from .likelihoods import discrete_bound, ode_log_likelihood
    from .config import DiffusionConfig
    from .model import Diffusion
    from .networks import PointNet, UNet
    from .samplers import SAMPLERS, sample_loop
    from .schedules import LearnedSchedule, Schedule

__getattr__, __dir__ = lazy_exports(__name__, _PUBLIC)
