"""Hook implementations: the module named by the ``aigc_engine`` entry point."""
from aigc_engine import hookimpl


@hookimpl
def aigc_engine_register_models(register):
    from .model import KDE  # here, not at the top: `aigc-engine --help` loads plugins without torch

    register(KDE)
