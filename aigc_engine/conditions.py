"""Conditions on a table run's columns: what ``--condition`` and ``Engine.sample(condition=...)``
ask of the rows (see docs/conditions.md).

A condition is ``column<op>value`` with ``=``, ``!=``, ``<``, ``<=``, ``>``, ``>=``, or ``column in
a,b,c``; ``NA`` is the missing value (``sex=NA``, ``sex!=NA``). A bare value (``Gentoo``, or a
class id) names a class of the label column, as it always did. :func:`parse_conditions` checks
them against the run's :class:`~aigc_engine.tables.TableSchema` and returns typed
:class:`Condition`\\ s: a categorical condition becomes the set of categories it allows, a
numeric one keeps its operator and number. What no training row could meet is refused here,
before any model is asked (a category the column never had, a range past the observed one).

:meth:`Condition.holds` checks decoded rows: the engine returns only rows that meet every
condition. :func:`encode_conditions` translates the conditions it can into the encoded matrix
(:class:`Encoded`: allowed one-hot slots and value intervals), what a model that conditions
exactly (``Model.sample_conditioned``) reads.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import InputError
from .tables.kinds import BlockRole
from .tables.kinds.categorical import category_ids
from .tables.kinds.continuous import Quantile, Standard

__all__ = ["Condition", "Encoded", "parse_conditions", "encode_conditions", "all_hold", "class_id", "ORDERED"]

ORDERED = ("<", "<=", ">", ">=")
_OPERATOR = re.compile(r"(<=|>=|!=|=|<|>)")
_IN = re.compile(r"^\s*(.+?)\s+in\s+(.+?)\s*$")
NA = "NA"


@dataclass(frozen=True)
class Condition:
    """One condition on ``column``, as written (``text``). A categorical column's is ``op="in"``
    with ``values`` the allowed categories (None: missing); a numeric column's ``op`` is one of
    ``= != < <= > >= in`` with float ``values``, or ``na`` / ``present`` (no values)."""

    column: str
    op: str
    values: tuple = ()
    text: str = ""
    categorical: bool = False

    def holds(self, frame, spec) -> np.ndarray:
        """Whether each row of ``frame`` (decoded rows) meets the condition (``spec``: the
        column's ColumnSpec)."""
        values = frame[self.column]
        if self.categorical:
            slots = [len(spec.categories) if v is None else spec.categories.index(v) for v in self.values]
            return np.isin(category_ids(values, spec), slots)
        x = values.to_numpy(dtype=np.float64, na_value=np.nan)
        with np.errstate(invalid="ignore"):
            if self.op in ("na", "present"):
                return np.isnan(x) == (self.op == "na")
            if self.op == "in":
                return np.isin(x, self.values)
            v = self.values[0]
            return {"=": x == v, "!=": ~(x == v), "<": x < v, "<=": x <= v, ">": x > v, ">=": x >= v}[self.op]


def all_hold(conditions: list[Condition], frame, schema) -> tuple[np.ndarray, list[int]]:
    """Rows of ``frame`` that meet every condition, and how many rows meet each one."""
    ok, met = np.ones(len(frame), dtype=bool), []
    for c in conditions:
        holds = c.holds(frame, _spec(schema, c.column))
        met.append(int(holds.sum()))
        ok &= holds
    return ok, met


def _spec(schema, column: str):
    if schema.label is not None and schema.label.name == column:
        return schema.label
    found = next((s for s in schema.features if s.name == column), None)
    return found if found is not None else schema.derived_spec(column)  # a column a rule determines


# -- parsing ------------------------------------------------------------------------------------
def parse_conditions(condition: Any, schema, class_names: list[str] | None = None,
                     num_classes: int = 0) -> list[Condition]:
    """The typed conditions of ``condition``: a string, a list of strings (all must hold) or a
    dict ``{column: value}`` (a list or set value: one of them; None: missing), checked against
    ``schema`` (one-line InputErrors)."""
    if condition is None:
        return []
    if isinstance(condition, dict):
        texts = [_dict_text(column, value) for column, value in condition.items()]
    elif isinstance(condition, str):
        texts = [condition]
    else:
        texts = [str(c) for c in condition]
    out = [_parse(text, schema, class_names, num_classes) for text in texts]
    _check_together(out, schema)
    return out


def _dict_text(column, value) -> str:
    if isinstance(value, (list, tuple, set, frozenset)):
        return f"{column} in {','.join(NA if _missing(v) else str(v) for v in value)}"
    return f"{column}={NA if _missing(value) else value}"


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value))


def _parse(text: str, schema, class_names, num_classes: int) -> Condition:
    found = _IN.match(text)
    if found and not _OPERATOR.search(found.group(1)):  # not a value with " in " in it: city=Stratford in Avon
        column, op, raw = found.group(1).strip(), "in", [v.strip() for v in found.group(2).split(",")]
    else:
        parts = _OPERATOR.split(text, maxsplit=1)
        if len(parts) == 1:  # a bare class of the label column, as --condition always took
            if schema.label is None:
                raise InputError(f"--condition {text!r}: not column<op>value (=, !=, <, <=, >, >=, in), and this "
                                 "run has no label column whose class it could name")
            label = class_id(text.strip(), class_names or schema.class_names, num_classes or
                             len(schema.label.categories))
            return Condition(schema.label.name, "in", (schema.label.categories[label],), text, True)
        column, op, raw = parts[0].strip(), parts[1], [parts[2].strip()]
    spec = _spec(schema, column)
    if spec is None:
        where = "ignored by this run" if column in schema.ignored else "not a column of this run"
        names = [s.name for s in schema.features] + ([schema.label.name] if schema.label else [])
        raise InputError(f"--condition {text!r}: {column!r} is {where} (columns: {', '.join(names)})")
    if any(v == "" for v in raw):
        raise InputError(f"--condition {text!r}: a value is missing after {op!r} (write NA for a missing cell)")
    if spec.kind == "categorical" or spec is schema.label:
        if spec is schema.label and op == "=" and raw[0] != NA:
            label = class_id(raw[0], class_names or schema.class_names, len(spec.categories))
            return Condition(column, "in", (spec.categories[label],), text, True)
        return _categorical(text, spec, op, raw)
    return _numeric(text, spec, op, raw)


def _categorical(text: str, spec, op: str, raw: list[str]) -> Condition:
    """The categories a condition on a categorical column allows (None: the missing value)."""
    slots = list(spec.categories) + ([None] if spec.has_missing else [])
    if op in ORDERED:
        numbers = [c for c in spec.categories if isinstance(c, (int, float)) and not isinstance(c, bool)]
        if len(numbers) < len(spec.categories):
            raise InputError(f"--condition {text!r}: {spec.name!r} is categorical with values that are not "
                             "numbers: use =, != or in")
        bound = _number(text, raw[0])
        allowed = [c for c in numbers if _compare(float(c), op, bound)]
    else:
        named = [_category(text, spec, value) for value in raw]
        allowed = named if op in ("=", "in") else [c for c in slots if c not in named]
    if not allowed:
        raise InputError(f"--condition {text!r}: no row can meet it ({spec.name!r} holds "
                         f"{_listing(spec.categories)})")
    return Condition(spec.name, "in", tuple(allowed), text, True)


def _category(text: str, spec, value: str):
    if value == NA:
        if not spec.has_missing:
            raise InputError(f"--condition {text!r}: {spec.name!r} has no missing values in the training rows")
        return None
    for c in spec.categories:
        if str(c) == value or (_is_number(value) and not isinstance(c, (str, bool)) and float(c) == float(value)):
            return c
    raise InputError(f"--condition {text!r}: {spec.name!r} never had the value {value!r} "
                     f"(values: {_listing(spec.categories)})")


def _numeric(text: str, spec, op: str, raw: list[str]) -> Condition:
    """A condition on a numeric column, checked against the observed range."""
    if raw == [NA]:
        if op not in ("=", "!="):
            raise InputError(f"--condition {text!r}: NA takes = or != only")
        if op == "=" and not spec.has_missing:
            raise InputError(f"--condition {text!r}: {spec.name!r} has no missing values in the training rows")
        return Condition(spec.name, "na" if op == "=" else "present", (), text)
    values = tuple(_number(text, v) for v in raw)
    if op in ("=", "in"):
        possible = any(spec.low <= v <= spec.high for v in values)
    else:  # an ordered bound is met by the end of the observed range nearest to it, or by none
        possible = op == "!=" or _compare(spec.high if op[0] == ">" else spec.low, op, values[0])
    if not possible:
        raise InputError(f"--condition {text!r}: no row can meet it ({spec.name!r} is in "
                         f"[{spec.low:g}, {spec.high:g}] in the training rows)")
    return Condition(spec.name, op, values, text)


def _check_together(conditions: list[Condition], schema) -> None:
    """Conditions that each can be met but not together: disjoint ranges or category sets."""
    for column in {c.column for c in conditions}:
        mine = [c for c in conditions if c.column == column]
        if len(mine) < 2:
            continue
        if mine[0].categorical:
            common = set.intersection(*(set(c.values) for c in mine))
        else:
            lo, hi = _interval(mine, _spec(schema, column))
            common = {0} if lo <= hi else set()
        if not common:
            raise InputError(f"--condition: no row can meet {' and '.join(repr(c.text) for c in mine)} together")


def _interval(conditions: list[Condition], spec) -> tuple[float, float]:
    lo, hi = spec.low, spec.high
    for c in conditions:
        if c.op in (">", ">="):
            lo = max(lo, c.values[0])
        elif c.op in ("<", "<="):
            hi = min(hi, c.values[0])
        elif c.op == "=":
            lo, hi = max(lo, c.values[0]), min(hi, c.values[0])
    return lo, hi


def _compare(x: float, op: str, bound: float) -> bool:
    return {"=": x == bound, "<": x < bound, "<=": x <= bound, ">": x > bound, ">=": x >= bound}[op]


def _number(text: str, value: str) -> float:
    if not _is_number(value):
        raise InputError(f"--condition {text!r}: {value!r} is not a number")
    return float(value)


def _is_number(value: str) -> bool:
    try:
        return np.isfinite(float(value))
    except ValueError:
        return False


def _listing(values: list, most: int = 12) -> str:
    shown = ", ".join(map(str, values[:most]))
    return shown + (f", ... ({len(values)} in all)" if len(values) > most else "")


# -- in the encoded matrix ----------------------------------------------------------------------
@dataclass
class Encoded:
    """Conditions in a table encoding's matrix, for a model that conditions exactly: ``slots``
    one-hot blocks ``(start, stop, allowed slot offsets)``, ``ranges`` matrix column -> closed
    interval ``(lo, hi)`` of its value (lo == hi: the value itself). ``points``: the matrix
    columns whose interval is one value's (an ``=`` condition: the values that decode to it; a
    missing indicator set or unset), which a model may fix rather than bound (inpainting).
    ``rest``: the conditions not expressed here (the engine's final check and rejection still
    hold them)."""

    slots: list[tuple[int, int, list[int]]] = field(default_factory=list)
    ranges: dict[int, tuple[float, float]] = field(default_factory=dict)
    points: set[int] = field(default_factory=set)
    rest: list[Condition] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.slots or self.ranges)


def encode_conditions(conditions: list[Condition], encoding) -> Encoded:
    """The conditions on ``encoding``'s feature columns as slots and intervals of its matrix
    (conditions on the label column are left to the caller: they pick the class labels)."""
    out = Encoded()
    for cond in conditions:
        index = next((i for i, c in enumerate(encoding.columns) if c.spec.name == cond.column), None)
        if index is None:
            continue
        column, blocks = encoding.columns[index], encoding.spans[index]
        if cond.categorical:
            block = blocks[0]
            allowed = [block.categories.index(v) for v in cond.values]
            same = next((i for i, slot in enumerate(out.slots) if slot[0] == block.start), None)
            if same is None:
                out.slots.append((block.start, block.stop, allowed))
            else:  # two conditions on one column: the slots both allow
                out.slots[same] = (block.start, block.stop, [a for a in out.slots[same][2] if a in allowed])
        elif not _numeric_ranges(cond, column, blocks, out):
            out.rest.append(cond)
    return out


def _numeric_ranges(cond: Condition, column, blocks, out: Encoded) -> bool:
    """Add the intervals of a numeric condition; False when it is not one interval of a
    monotone encoding (``!=``, a set, the ``modes`` encoding)."""
    missing = blocks[-1] if blocks[-1].role is BlockRole.MISSING else None
    if cond.op in ("na", "present"):
        if missing is None:
            return cond.op == "present"
        _narrow(out, missing.start, (0.5, np.inf) if cond.op == "na" else (-np.inf, 0.5))
        out.points.add(missing.start)
        return True
    scaling = column.scaling
    if cond.op not in ("=", *ORDERED) or scaling not in (Quantile, Standard):
        return False
    half = 0.5 * 10.0 ** -column.places if column.places is not None else 0.0
    v = cond.values[0]
    lo, hi = {"=": (v - half, v + half), "<": (-np.inf, _below(v, column.places) + half),
              "<=": (-np.inf, v + half), ">": (_above(v, column.places) - half, np.inf),
              ">=": (v - half, np.inf)}[cond.op]
    _narrow(out, blocks[0].start, (_encoded_bound(lo, column, True), _encoded_bound(hi, column, False)))
    if cond.op == "=":
        out.points.add(blocks[0].start)
    if missing is not None:
        _narrow(out, missing.start, (-np.inf, 0.5))
        out.points.add(missing.start)
    return True


def _below(v: float, places: int | None) -> float:
    """The largest value written with ``places`` decimals below ``v`` (``v`` itself without)."""
    if places is None:
        return v
    unit = 10.0 ** -places
    return (np.ceil(round(v / unit, 9)) - 1) * unit


def _above(v: float, places: int | None) -> float:
    if places is None:
        return v
    unit = 10.0 ** -places
    return (np.floor(round(v / unit, 9)) + 1) * unit


def _narrow(out: Encoded, at: int, interval: tuple[float, float]) -> None:
    lo, hi = out.ranges.get(at, (-np.inf, np.inf))
    out.ranges[at] = (max(lo, interval[0]), min(hi, interval[1]))


def _encoded_bound(x: float, column, lower: bool) -> float:
    """The encoded value whose decoding (before rounding) is ``x``; a bound at or past the end
    of the quantiles is open (every encoded value past it decodes to the end)."""
    if not np.isfinite(x):
        return x
    p = column.params
    if column.scaling is Standard:
        return (x - p["mean"]) / p["std"]
    from scipy.special import ndtri

    q = np.asarray(p["quantiles"], dtype=np.float64)
    steps = max(len(q) - 1, 1)
    if x <= q[0] or x >= q[-1]:
        return -np.inf if x <= q[0] else np.inf
    # the first (lower) or last (upper) level where the piecewise-linear quantile function is x
    i = int(np.searchsorted(q, x, side="left" if lower else "right")) - (0 if lower else 1)
    j = i - 1 if lower else i
    u = (j + (x - q[j]) / (q[j + 1] - q[j])) / steps
    return float(ndtri((u * steps + 0.5) / (steps + 1)))


def class_id(condition: str, class_names: list[str] | None, num_classes: int) -> int:
    """The label id that ``--condition`` names: a class name of the training data, or an id."""
    if class_names and condition in class_names:
        return class_names.index(condition)
    try:
        label = int(condition)
    except ValueError:
        known = f"one of {', '.join(class_names)} or an id" if class_names else "an integer id"
        raise InputError(f"--condition must be {known} in [0, {num_classes - 1}], got {condition!r}") from None
    if not 0 <= label < num_classes:
        raise InputError(f"--condition must be in [0, {num_classes - 1}], got {label}")
    return label
