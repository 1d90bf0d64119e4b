"""Column kinds, one class each (:class:`~.base.ColumnKind`), and their registry.

:data:`KINDS` maps a kind's name to its class, in detection order: an unforced column takes
the first kind whose ``detects`` says yes. A new kind is a module here defining a ColumnKind and
one line below; its ``option`` (``dataset.<option>=a,b``) and its name in ``dataset.kinds``
(``a:<name>``) follow from it.
"""
from __future__ import annotations

from ...errors import InputError
from .base import Block, BlockRole, ColumnKind, ColumnSpec, Profile
from .categorical import Categorical
from .continuous import NUMERIC_ENCODINGS, Continuous
from .datetime import Datetime
from .integer import Integer
from .key import Key
from .manylevel import ManyLevel
from .text import Text

__all__ = ["KINDS", "kind_class", "override_options", "Block", "BlockRole", "ColumnKind", "ColumnSpec",
           "Profile", "Categorical", "Continuous", "Integer", "Datetime", "Key", "Text", "ManyLevel",
           "NUMERIC_ENCODINGS"]

KINDS: dict[str, type[ColumnKind]] = {
    "datetime": Datetime,
    "key": Key,
    "text": Text,
    "many_level": ManyLevel,
    "categorical": Categorical,
    "integer": Integer,
    "continuous": Continuous,
}


def kind_class(name: str, option: str = "kind") -> type[ColumnKind]:
    """The class of kind ``name``; an unknown name is a one-line InputError listing the kinds."""
    try:
        return KINDS[name]
    except KeyError:
        raise InputError(f"{option}: unknown column kind {name!r} (kinds: {', '.join(KINDS)})") from None


def override_options() -> dict[str, str]:
    """``{option: kind}``: the ``dataset.<option>=a,b`` lists that force a kind."""
    return {cls.option: name for name, cls in KINDS.items() if cls.option}
