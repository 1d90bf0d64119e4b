"""Hook implementations: the module named by the ``aigc_engine`` entry point."""
from aigc_engine import hookimpl

from .model import KDE


@hookimpl
def aigc_engine_register_models(register):
    register(KDE)
