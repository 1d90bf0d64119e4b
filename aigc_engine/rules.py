"""Rules a table's rows keep, declared with the data (``--set "dataset.constraints=bill_depth_mm
<= bill_length_mm; 0 <= body_mass_g"``) and kept by every row the engine samples.

Three kinds, separated by ``;`` (docs/conditions.md):

- an inequality (:class:`Rule`) compares two numeric or two datetime columns, or such a column
  and a constant (a number; a date or time for a datetime column), with ``<``, ``<=``, ``>``,
  ``>=`` (a chain ``0 <= a <= 100`` is two rules); kept by rejection;
- a linear equality (:class:`Equality`, ``total = a + b``, ``net = 0.8*gross - 5``): one numeric
  column determined by others; kept by construction: the determined column is left out of the
  model and computed when rows are decoded (``TableSchema.rules["derived"]``);
- a fixed combination (:class:`Combination`, ``combination(island, species)``): the categorical
  columns named take together only the combinations the training rows hold (saved in
  ``TableSchema.rules["combinations"]``); kept by rejection.

They are parsed against the table's schema (:func:`parse_rules`), checked on the training rows
when the table is read (:func:`check_rules`: a rule the data breaks is a one-line error naming its
first rows), applied to the schema (:func:`apply_rules`), saved with the dataset options in the
run's ``config.json``, and kept by the sampling path (:func:`aigc_engine.sampling.draw_where` drops
the rows that break one). A missing cell keeps an inequality or an equality: there is nothing to
compare.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from .errors import InputError
from .tables.kinds.categorical import category_ids
from .tables.kinds.datetime import Datetime

__all__ = ["Rule", "Equality", "Combination", "parse_rules", "check_rules", "apply_rules", "check_conditions",
           "rule_validity", "column_spec"]

_SIDES = re.compile(r"\s*(<=|>=|<|>)\s*")
_EQUALS = re.compile(r"(?<![<>!=])=(?!=)")
_COMBINATION = re.compile(r"^combination\s*\((.*)\)$", re.IGNORECASE)
_TERM = re.compile(r"\s*([+-])\s*([^+-]+)")
_NUMBERS = "categorical of numbers"  # a categorical column whose values are all numbers (a coded age)
_NUMERIC = ("continuous", "integer", _NUMBERS)
_ORDERED = (*_NUMERIC, "datetime")
_WHERE = "dataset.constraints"


def column_spec(schema, name: str):
    """The ColumnSpec of ``name``: a feature, the label, or a column a rule determines (None: none)."""
    if schema.label is not None and schema.label.name == name:
        return schema.label
    found = next((s for s in schema.features if s.name == name), None)
    return found if found is not None else schema.derived_spec(name)


@dataclass(frozen=True)
class Rule:
    """``left op right``: each side a column name or a constant (float; seconds since 1970 for a
    datetime column's). ``dates``: the sides that are datetime columns."""

    left: str | float
    op: str
    right: str | float
    text: str
    dates: tuple = ()
    column = None  # not a condition on one column: the sampling path checks it like one

    def holds(self, frame, spec=None) -> np.ndarray:
        """Whether each row of ``frame`` keeps the rule (a missing cell keeps it)."""
        a, b = self._side(self.left, frame), self._side(self.right, frame)
        with np.errstate(invalid="ignore"):
            kept = {"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[self.op]
        return kept | np.isnan(a) | np.isnan(b)

    def _side(self, side, frame) -> np.ndarray:
        if not isinstance(side, str):
            return np.full(len(frame), side, dtype=np.float64)
        if side in self.dates:
            return Datetime.numbers(frame[side].astype(object))
        return frame[side].to_numpy(dtype=np.float64, na_value=np.nan)


@dataclass(frozen=True)
class Equality:
    """``column = const + sum(coef * term)`` within ``tolerance`` (the rounding of the values as
    written: half the last digit of each, weighted by its coefficient) and a relative 1e-9."""

    column_name: str
    terms: tuple
    const: float
    text: str
    tolerance: float = 0.0
    column = None

    def value(self, frame) -> np.ndarray:
        out = np.full(len(frame), self.const, dtype=np.float64)
        for name, coef in self.terms:
            out = out + coef * frame[name].to_numpy(dtype=np.float64, na_value=np.nan)
        return out

    def holds(self, frame, spec=None) -> np.ndarray:
        want, got = self.value(frame), frame[self.column_name].to_numpy(dtype=np.float64, na_value=np.nan)
        with np.errstate(invalid="ignore"):
            kept = np.abs(got - want) <= self.tolerance + 1e-9 * np.maximum(np.abs(want), 1.0)
        return kept | np.isnan(want) | np.isnan(got)

    def derived(self, spec) -> dict:
        """What the schema keeps to compute the column at decode."""
        return {"terms": [list(t) for t in self.terms], "const": self.const, "spec": spec.to_json()}


@dataclass(frozen=True)
class Combination:
    """The columns ``names`` (categorical, or the label) take only the combinations in ``seen``
    (tuples of category ids, a missing cell the id after the last category)."""

    names: tuple
    specs: tuple
    text: str
    seen: frozenset = field(default_factory=frozenset)
    column = None

    def keys(self, frame) -> np.ndarray:
        key = np.zeros(len(frame), dtype=np.int64)
        for name, spec in zip(self.names, self.specs):
            key = key * (len(spec.categories) + 1) + category_ids(frame[name], spec)
        return key

    def key_of(self, ids) -> int:
        key = 0
        for i, spec in zip(ids, self.specs):
            key = key * (len(spec.categories) + 1) + int(i)
        return key

    def holds(self, frame, spec=None) -> np.ndarray:
        if not self.seen:  # not fitted yet: the training rows define it, so they keep it
            return np.ones(len(frame), dtype=bool)
        return np.isin(self.keys(frame), np.fromiter((self.key_of(s) for s in self.seen), np.int64, len(self.seen)))

    def learned(self, frame) -> "Combination":
        """This rule with the combinations of ``frame``'s rows (the training rows)."""
        ids = np.stack([category_ids(frame[n], s) for n, s in zip(self.names, self.specs)], 1)
        return Combination(self.names, self.specs, self.text, frozenset(map(tuple, np.unique(ids, axis=0).tolist())))

    @property
    def key(self) -> str:
        return ",".join(self.names)


def parse_rules(spec, schema) -> list:
    """The rules of ``spec`` (``"a <= b; total = a + b; combination(c, d)"``, or a list of such
    strings) on ``schema``'s columns; anything else is a one-line InputError. A combination takes
    the combinations the schema saved at fit (none before :func:`apply_rules`)."""
    if spec is None or spec == "":
        return []
    texts = spec.split(";") if isinstance(spec, str) else [t for s in spec for t in str(s).split(";")]
    rules = []
    for text in (t.strip() for t in texts):
        if not text:
            continue
        if _COMBINATION.match(text):
            rules.append(_combination(text, schema))
        elif _EQUALS.search(text):
            rules.append(_equality(text, schema))
        else:
            rules.extend(_inequalities(text, schema))
    determined = [r.column_name for r in rules if isinstance(r, Equality)]
    for rule in rules:
        if isinstance(rule, Equality):
            used = [n for n, _ in rule.terms if n in determined]
            if determined.count(rule.column_name) > 1 or used:
                raise InputError(f"{_WHERE}: {rule.text!r}: column {(used or [rule.column_name])[0]!r} is "
                                 "determined by another equality (each column is determined by one at most, "
                                 "from columns no equality determines)")
    return rules


def _kinds(schema) -> dict[str, str]:
    kinds = {s.name: _NUMBERS if s.kind == "categorical" and s.categories and all(
        isinstance(c, (int, float)) and not isinstance(c, bool) for c in s.categories) else s.kind
        for s in schema.features}
    kinds.update((name, d["spec"]["kind"]) for name, d in schema.rules.get("derived", {}).items())
    if schema.label is not None:
        kinds[schema.label.name] = "categorical"
    return kinds


def _inequalities(text: str, schema) -> list[Rule]:
    parts = _SIDES.split(text)
    if len(parts) < 3 or not all(p.strip() for p in parts[::2]):
        raise InputError(f"{_WHERE}: {text!r} is not a rule (a <= b, 0 <= a, a < b <= 100, total = a + b, "
                         "combination(a, b))")
    kinds = _kinds(schema)
    names = [p.strip() for p in parts[::2]]
    dated = any(kinds.get(n) == "datetime" for n in names)
    sides = [_operand(n, text, kinds, dated) for n in names]
    dates = tuple(n for n in names if kinds.get(n) == "datetime")
    rules = []
    for i, op in enumerate(parts[1::2]):
        pair = sides[i:i + 2]
        if not any(isinstance(s, str) for s in pair):
            raise InputError(f"{_WHERE}: {text!r} compares two numbers")
        if len({kinds[s] == "datetime" for s in pair if isinstance(s, str)}) > 1:
            raise InputError(f"{_WHERE}: {text!r} compares a datetime column with a numeric one")
        rules.append(Rule(pair[0], op, pair[1], text, dates))
    return rules


def _operand(part: str, text: str, kinds: dict[str, str], dated: bool):
    if kinds.get(part) in (_ORDERED if dated else _NUMERIC):
        return part
    value = _constant(part, dated)
    if value is not None:
        return value
    if part in kinds:
        raise InputError(f"{_WHERE}: {text!r}: column {part!r} is not numeric (rules compare numbers or dates)")
    ordered = sorted(n for n, k in kinds.items() if k in _ORDERED)
    raise InputError(f"{_WHERE}: {text!r}: {part!r} is neither a {'date' if dated else 'number'} nor a column "
                     f"(numeric and datetime columns: {', '.join(ordered) or 'none'})")


def _constant(part: str, dated: bool) -> float | None:
    if dated:  # a date or time, as seconds since 1970
        import pandas as pd

        try:
            return pd.Timestamp(part).tz_localize(None).value / 1e9
        except (ValueError, TypeError):
            return None
    try:
        value = float(part)
    except ValueError:
        return None
    return value if np.isfinite(value) else None


def _equality(text: str, schema) -> Equality:
    left, _, right = text.partition("=")
    kinds, (left, right) = _kinds(schema), (left.strip(), right.strip())
    if kinds.get(left) not in _NUMERIC and kinds.get(right) in _NUMERIC:
        left, right = right, left  # "a + b = total"
    if kinds.get(left) not in _NUMERIC[:2]:
        raise InputError(f"{_WHERE}: {text!r}: one side of an equality is one numeric column, the one determined "
                         "(total = a + b, total = 2*a - b + 3)")
    terms, const = [], 0.0
    for sign, term in _TERM.findall(right if right[:1] in "+-" else "+" + right):
        coef, name = _term(term.strip(), text, kinds)
        coef = -coef if sign == "-" else coef
        if name is None:
            const += coef
        elif name == left:
            raise InputError(f"{_WHERE}: {text!r}: {left!r} is on both sides")
        else:
            terms.append((name, coef))
    if not terms:
        raise InputError(f"{_WHERE}: {text!r} fixes {left!r} to a number: that is a range (a <= 3; 3 <= a)")
    tolerance = _half_unit(column_spec(schema, left)) + sum(abs(c) * _half_unit(column_spec(schema, n)) for n, c in terms)
    return Equality(left, tuple(terms), const, text, tolerance)


def _half_unit(spec) -> float:
    """Half the last digit a column's values are written with (a rounding's most error)."""
    if spec.kind == "continuous" and spec.decimals is not None:
        return 0.5 * 10.0 ** -spec.decimals
    return 0.0  # integers and numeric categories are exact; values at full precision: none


def _term(term: str, text: str, kinds: dict[str, str]) -> tuple[float, str | None]:
    """``2*a``, ``a*2``, ``a``, ``2``: (coefficient, column or None)."""
    factors = [f.strip() for f in term.split("*")]
    numbers = [_constant(f, False) for f in factors]
    names = [f for f, v in zip(factors, numbers) if v is None]
    if len(factors) > 2 or len(names) > 1 or not all(factors):
        raise InputError(f"{_WHERE}: {text!r}: {term!r} is not a term (a, 2*a, 3)")
    for name in names:
        if kinds.get(name) not in _NUMERIC:
            what = "not numeric" if name in kinds else "neither a number nor a column"
            raise InputError(f"{_WHERE}: {text!r}: {name!r} is {what} (an equality adds numeric columns)")
    coef = float(np.prod([v for v in numbers if v is not None])) if len(names) < len(factors) else 1.0
    return coef, names[0] if names else None


def _combination(text: str, schema) -> Combination:
    names = tuple(n.strip() for n in _COMBINATION.match(text).group(1).split(","))
    kinds = _kinds(schema)
    if len(names) < 2 or not all(names) or len(set(names)) < len(names):
        raise InputError(f"{_WHERE}: {text!r}: a combination names two or more different columns")
    for name in names:
        if kinds.get(name) not in ("categorical", _NUMBERS):
            what = f"is {kinds[name]}" if name in kinds else "is not a column"
            raise InputError(f"{_WHERE}: {text!r}: {name!r} {what} (a combination takes categorical columns)")
    rule = Combination(names, tuple(column_spec(schema, n) for n in names), text)
    seen = schema.rules.get("combinations", {}).get(rule.key)
    return rule if seen is None else Combination(names, rule.specs, text, frozenset(map(tuple, seen)))


def check_rules(rules: list, frame, name: str = "the table") -> None:
    """Each rule kept by every row of ``frame`` (the training rows), else a one-line error
    naming the first rows (1-based, as in the file) that break it."""
    for rule in rules:
        broken = np.flatnonzero(~rule.holds(frame))
        if len(broken):
            rows = ", ".join(str(r + 1) for r in broken[:5]) + (", ..." if len(broken) > 5 else "")
            raise InputError(f"{_WHERE}: {rule.text!r} is broken by {len(broken)} of the {len(frame)} "
                             f"rows of {name} (rows {rows})")


def apply_rules(rules: list, frame, schema) -> list:
    """The rules as fitted on the training rows ``frame`` (checked already), written into
    ``schema``: a combination's combinations seen, an equality's column left out of the features
    (computed at decode). Returns the fitted rules."""
    out = []
    for rule in rules:
        if isinstance(rule, Combination) and not rule.seen:
            rule = rule.learned(frame)
            schema.rules.setdefault("combinations", {})[rule.key] = sorted(map(list, rule.seen))
        elif isinstance(rule, Equality) and rule.column_name not in schema.rules.get("derived", {}):
            spec = column_spec(schema, rule.column_name)
            schema.features.remove(spec)
            schema.rules.setdefault("derived", {})[rule.column_name] = rule.derived(spec)
        out.append(rule)
    return out


def rule_validity(rules: list, frame) -> float:
    """The share of the rows of ``frame`` that keep every rule."""
    kept = np.ones(len(frame), dtype=bool)
    for rule in rules:
        kept &= rule.holds(frame)
    return float(kept.mean()) if len(frame) else 1.0


def check_conditions(rules: list, conditions: list, schema) -> None:
    """A one-line InputError when conditions (:class:`aigc_engine.conditions.Condition`) leave a
    rule no row: an inequality's or an equality's sides as intervals (a constant, or a column's
    observed range narrowed by the conditions on it), a combination's columns as the categories
    the conditions allow. A side that may be missing keeps the rule, so only columns without
    missing cells or with a condition that needs a value count."""
    for rule in rules:
        if isinstance(rule, Combination):
            possible = _combination_possible(rule, conditions)
        elif isinstance(rule, Equality):
            possible = _equality_possible(rule, conditions, schema)
        else:
            possible = _inequality_possible(rule, conditions, schema)
        if not possible:
            named = rule.names if isinstance(rule, Combination) else \
                [rule.column_name, *(n for n, _ in rule.terms)] if isinstance(rule, Equality) else [rule.left, rule.right]
            texts = " and ".join(repr(c.text) for c in conditions if c.column in named)
            raise InputError(f"--condition {texts} contradicts the rule {rule.text!r}: no row can meet both")


def _inequality_possible(rule: Rule, conditions: list, schema) -> bool:
    if rule.dates:
        return True
    sides = [_side_interval(side, conditions, schema) for side in (rule.left, rule.right)]
    if None in sides:
        return True
    (llo, lhi), (rlo, rhi) = sides
    return {"<": llo < rhi, "<=": llo <= rhi, ">": lhi > rlo, ">=": lhi >= rlo}[rule.op]


def _equality_possible(rule: Equality, conditions: list, schema) -> bool:
    left = _side_interval(rule.column_name, conditions, schema)
    lo = hi = rule.const
    for name, coef in rule.terms:
        side = _side_interval(name, conditions, schema)
        if left is None or side is None:
            return True
        lo, hi = lo + min(coef * side[0], coef * side[1]), hi + max(coef * side[0], coef * side[1])
    slack = rule.tolerance + 1e-9 * max(abs(lo), abs(hi), 1.0)
    return left[0] <= hi + slack and lo - slack <= left[1]


def _combination_possible(rule: Combination, conditions: list) -> bool:
    allowed = []
    for name, spec in zip(rule.names, rule.specs):
        ids = set(range(len(spec.categories) + 1))
        for c in conditions:
            if c.column == name and c.categorical:
                ids &= {len(spec.categories) if v is None else spec.categories.index(v) for v in c.values}
        allowed.append(ids)
    return any(all(i in a for i, a in zip(seen, allowed)) for seen in rule.seen) if rule.seen else True


def _side_interval(side, conditions: list, schema) -> tuple[float, float] | None:
    if not isinstance(side, str):
        return side, side
    spec = column_spec(schema, side)
    lo, hi, present = spec.low, spec.high, not spec.has_missing
    if lo is None:  # a categorical column of numbers
        lo, hi = float(min(spec.categories)), float(max(spec.categories))
    for c in conditions:
        if c.column != side or c.op in ("na", "present", "!=", "in"):
            continue
        present, v = True, c.values[0]
        if c.op in (">", ">=", "="):
            lo = max(lo, v)
        if c.op in ("<", "<=", "="):
            hi = min(hi, v)
    return (lo, hi) if present else None
