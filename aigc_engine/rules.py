"""Rules a table's rows keep, declared with the data (``--set "dataset.constraints=bill_depth_mm
<= bill_length_mm; 0 <= body_mass_g"``) and kept by every row the engine samples.

A rule compares two numeric columns, or a numeric column and a number, with ``<``, ``<=``,
``>``, ``>=`` (a chain ``0 <= a <= 100`` is two rules); rules are separated by ``;``. They are
parsed against the table's schema (:func:`parse_rules`), checked on the training rows when the
table is read (:func:`check_rules`: a rule the data breaks is a one-line error naming its first
rows), saved with the dataset options in the run's ``config.json``, and kept by the sampling
path (:func:`aigc_engine.sampling.draw_where` drops the rows that break one). A missing cell
keeps a rule: there is nothing to compare.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from .errors import InputError

__all__ = ["Rule", "parse_rules", "check_rules", "check_conditions", "rule_validity"]

_SIDES = re.compile(r"\s*(<=|>=|<|>)\s*")
_NUMERIC = ("continuous", "integer")


@dataclass(frozen=True)
class Rule:
    """``left op right``: each side a column name or a number (float)."""

    left: str | float
    op: str
    right: str | float
    text: str
    column = None  # not a condition on one column: the sampling path checks it like one

    def holds(self, frame, spec=None) -> np.ndarray:
        """Whether each row of ``frame`` keeps the rule (a missing cell keeps it)."""
        a, b = self._side(self.left, frame), self._side(self.right, frame)
        with np.errstate(invalid="ignore"):
            kept = {"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[self.op]
        return kept | np.isnan(a) | np.isnan(b)

    @staticmethod
    def _side(side, frame) -> np.ndarray:
        if isinstance(side, str):
            return frame[side].to_numpy(dtype=np.float64, na_value=np.nan)
        return np.full(len(frame), side, dtype=np.float64)


def parse_rules(spec, schema) -> list[Rule]:
    """The rules of ``spec`` (``"a <= b; 0 <= c"``, or a list of such strings) on ``schema``'s
    numeric columns; anything else is a one-line InputError."""
    if spec is None or spec == "":
        return []
    texts = spec.split(";") if isinstance(spec, str) else [t for s in spec for t in str(s).split(";")]
    numeric = {s.name for s in schema.features if s.kind in _NUMERIC}
    rules = []
    for text in (t.strip() for t in texts):
        if not text:
            continue
        parts = _SIDES.split(text)
        if len(parts) < 3 or not all(p.strip() for p in parts[::2]):
            raise InputError(f"dataset.constraints: {text!r} is not a rule (a <= b, 0 <= a, a < b <= 100)")
        sides = [_operand(p.strip(), text, numeric, schema) for p in parts[::2]]
        for i, op in enumerate(parts[1::2]):
            if not isinstance(sides[i], str) and not isinstance(sides[i + 1], str):
                raise InputError(f"dataset.constraints: {text!r} compares two numbers")
            rules.append(Rule(sides[i], op, sides[i + 1], text))
    return rules


def _operand(part: str, text: str, numeric: set[str], schema):
    if part in numeric:
        return part
    try:
        value = float(part)
    except ValueError:
        value = None
    if value is not None and np.isfinite(value):
        return value
    if any(s.name == part for s in schema.features) or (schema.label is not None and schema.label.name == part):
        raise InputError(f"dataset.constraints: {text!r}: column {part!r} is not numeric (rules compare numbers)")
    raise InputError(f"dataset.constraints: {text!r}: {part!r} is neither a number nor a column "
                     f"(numeric columns: {', '.join(sorted(numeric)) or 'none'})")


def check_rules(rules: list[Rule], frame, name: str = "the table") -> None:
    """Each rule kept by every row of ``frame`` (the training rows), else a one-line error
    naming the first rows (1-based, as in the file) that break it."""
    for rule in rules:
        broken = np.flatnonzero(~rule.holds(frame))
        if len(broken):
            rows = ", ".join(str(r + 1) for r in broken[:5]) + (", ..." if len(broken) > 5 else "")
            raise InputError(f"dataset.constraints: {rule.text!r} is broken by {len(broken)} of the {len(frame)} "
                             f"rows of {name} (rows {rows})")


def rule_validity(rules: list[Rule], frame) -> float:
    """The share of the rows of ``frame`` that keep every rule."""
    kept = np.ones(len(frame), dtype=bool)
    for rule in rules:
        kept &= rule.holds(frame)
    return float(kept.mean()) if len(frame) else 1.0


def check_conditions(rules: list[Rule], conditions: list, schema) -> None:
    """A one-line InputError when conditions (:class:`aigc_engine.conditions.Condition`) leave a
    rule no row: each side's interval (a number, or a column's observed range narrowed by the
    conditions on it) compared by the rule's operator. A side that may be missing keeps the rule,
    so only columns without missing cells or with a condition that needs a value count."""
    for rule in rules:
        sides = [_side_interval(side, conditions, schema) for side in (rule.left, rule.right)]
        if None in sides:
            continue
        (llo, lhi), (rlo, rhi) = sides
        possible = {"<": llo < rhi, "<=": llo <= rhi, ">": lhi > rlo, ">=": lhi >= rlo}[rule.op]
        if not possible:
            texts = " and ".join(repr(c.text) for c in conditions if c.column in (rule.left, rule.right))
            raise InputError(f"--condition {texts} contradicts the rule {rule.text!r}: no row can meet both")


def _side_interval(side, conditions: list, schema) -> tuple[float, float] | None:
    if not isinstance(side, str):
        return side, side
    spec = next(s for s in schema.features if s.name == side)
    lo, hi, present = spec.low, spec.high, not spec.has_missing
    for c in conditions:
        if c.column != side or c.op in ("na", "present", "!=", "in"):
            continue
        present, v = True, c.values[0]
        if c.op in (">", ">=", "="):
            lo = max(lo, v)
        if c.op in ("<", "<=", "="):
            hi = min(hi, v)
    return (lo, hi) if present else None
