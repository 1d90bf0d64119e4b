"""Hooks of the ``diffusion`` plugin. The hook imports the model when it registers it, so that
``aigc-engine --help`` (which only asks for commands) loads no torch."""
from __future__ import annotations

from aigc_engine import hookimpl


@hookimpl
def aigc_engine_register_models(register):
    from .model import Diffusion

    register(Diffusion)
