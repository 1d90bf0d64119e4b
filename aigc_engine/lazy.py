"""Names of a package imported on first use (PEP 562), so that a plugin's package loads without
torch: listing models and commands imports no more than the plugin's hooks need.

In a plugin's ``__init__.py``::

    from aigc_engine import lazy_exports

    _PUBLIC = {"GAN": "model", "Generator": "networks"}  # name -> the submodule that defines it
    __all__ = list(_PUBLIC)
    __getattr__, __dir__ = lazy_exports(__name__, _PUBLIC)
"""
from __future__ import annotations

import importlib
import sys
from typing import Callable


def lazy_exports(package: str, homes: dict[str, str]) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """The module ``__getattr__`` and ``__dir__`` of ``package``: ``homes`` maps each public name
    to the submodule (relative to ``package``) that defines it. A name is looked up once: it is
    then a global of the package."""
    def __getattr__(name: str) -> object:
        if name not in homes:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f".{homes[name]}", package), name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted({*vars(sys.modules[package]), *homes})

    return __getattr__, __dir__
