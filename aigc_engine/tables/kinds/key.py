"""The ``key`` kind: a value unique to its row, an id; forced with ``dataset.key=a,b``.

Detected in a column of at least :data:`MIN_ROWS` rows, none missing, all distinct, that holds
either integers (an integer dtype, not floats) named like an id (a word ``id``, ``key``, ``uuid``,
``guid``, or ``rownames``: ``id``, ``user_id``, ``CustomerID``) or counting ``1, 2, ... n`` from
some start; or strings without spaces. It is not modelled (no blocks: a model never sees it) and
not scored; decoding makes new keys in the values' pattern (``details["pattern"]``):

- ``integer``: integers after the largest training key (``max + 1, max + 2, ...``; below the
  smallest, counting down, where that would pass 2**63);
- ``sequence``: strings that are one prefix, a number and one suffix (``2015-000001``,
  ``C17``), numbers all zero-padded to one width or none padded: the prefix, the numbers after
  the largest, the suffix (``2015-049575``);
- ``shape``: any other strings: each character of a training key's shape (the shapes held,
  ``details["shapes"]``, drawn in proportion) replaced by a random one of its class (digit,
  lower or upper case letter; anything else kept).

Never a training key: an ``integer`` or ``sequence`` key is larger than every training key in
the one-to-one mapping of numbers to keys (same prefix, suffix and padding); a ``shape`` key is
drawn again while a 52-bit hash of it is among the hashes of the training keys (``params``: a
collision only draws again, so no training key passes). Unique: each decoding of one encoding
continues from where its last stopped (chunked sampling gives distinct keys too), and shape
keys are drawn again while they repeat one it made. Samples of different seeds get disjoint
integer and sequence keys (:meth:`Key.start_sampling`): seed 0 starts after the largest training
key, seed 1 10,000,000 further on; a shape key's draw depends on the seed.
"""
from __future__ import annotations

import re

import numpy as np

from ...errors import InputError
from .base import Block, ColumnKind, ColumnSpec, Profile, value_hash as _hash

__all__ = ["Key", "MIN_ROWS"]

MIN_ROWS = 20
ID_WORDS = {"id", "key", "uuid", "guid", "rownames"}
INT64_MAX = 2 ** 63 - 1
SHAPES = 20  # the most frequent key shapes kept
KEYS_PER_SEED = 10_000_000  # keys set aside for each sampling seed
CLASSES = {"9": "0123456789", "a": "abcdefghijklmnopqrstuvwxyz", "A": "ABCDEFGHIJKLMNOPQRSTUVWXYZ"}


class Key(ColumnKind):
    name = "key"
    option = "key"
    distribution = None

    @classmethod
    def detects(cls, profile: Profile) -> bool:
        if profile.rows < MIN_ROWS or profile.distinct != profile.rows:
            return False
        if profile.numeric:
            return profile.present.dtype.kind in "iu" and (
                _id_name(profile.name) or int(profile.present.max()) - int(profile.present.min()) + 1 == profile.rows)
        return all(isinstance(v, str) and v and not any(c.isspace() for c in v) for v in profile.present)

    @classmethod
    def check(cls, profile: Profile, name: str, table: str, option: str) -> None:
        if profile.numeric and profile.present.dtype.kind not in "iu":
            raise InputError(f"{table}: column {name!r} in {option} holds {profile.present.iloc[0]!r}: a key is an "
                             "integer or a string, not a float")
        if profile.distinct != len(profile.present):
            twice = profile.present[profile.present.duplicated()].iloc[0]
            raise InputError(f"{table}: column {name!r} in {option} holds {twice!r} twice: a key is unique per row")

    @classmethod
    def describe(cls, values, profile: Profile, name: str) -> ColumnSpec:
        present = profile.present
        if profile.numeric:
            ints = [int(v) for v in present]
            pattern = {"pattern": "integer", "next": max(ints) + 1, "first": min(ints)}
        else:
            pattern = _sequence(present.astype(str).tolist()) or _shapes(present.astype(str).tolist())
        return ColumnSpec(name=name, kind=cls.name, dtype=str(values.dtype), has_missing=bool(values.isna().any()),
                          details=pattern)

    @classmethod
    def numbers(cls, values) -> np.ndarray:
        return np.full(len(values), np.nan)

    def __init__(self, spec: ColumnSpec, encoding: str = "quantile", params: dict | None = None):
        super().__init__(spec, encoding, params)
        self.issued = 0  # keys made by this encoding's decodings so far
        self.made: set[str] = set()  # the shape keys among them

    def start_sampling(self, seed: int) -> None:
        """Sampling with ``seed`` issues keys from ``(seed mod 2**32) x KEYS_PER_SEED`` on: two
        samples of other seeds (``sample --seed``, the Synthesizer's successive draws) share no
        key as long as each has at most KEYS_PER_SEED rows (``sample -n``'s limit)."""
        self.issued = (int(seed) % 2 ** 32) * KEYS_PER_SEED

    def fit(self, values, seed: int = 0, fallback: dict | None = None) -> dict | None:
        """Shape keys: the hashes of the training keys (with ``fallback``'s: a training split's
        encoding still refuses every key of the whole table)."""
        if self.spec.details["pattern"] != "shape":
            return None
        hashes = {_hash(str(v)) for v in values.dropna()} | set((fallback or {}).get("hashes", []))
        self.params = {"hashes": sorted(float(h) for h in hashes)}
        return self.params

    private_mechanisms = (0, 0)

    def fit_private(self, values, seed: int, spend) -> None:
        """Reads nothing: the keys of a private encoding count from 1 (``1, 2, ...``: integers
        for an integer column, their digits for strings), none of the training keys' pattern,
        range or hashes released (a made key may equal a training key: it says nothing of it)."""
        from dataclasses import replace

        pattern = {"pattern": "integer", "next": 1, "first": 1} if self.spec.details["pattern"] == "integer" else \
            {"pattern": "sequence", "prefix": "", "suffix": "", "width": 0, "next": 1}
        self.spec = replace(self.spec, details=pattern)
        self.params = None
        return None

    def blocks(self, start: int) -> list[Block]:
        return []

    def encode(self, values, absent: np.ndarray, out: np.ndarray, blocks: list[Block]) -> None:
        """Nothing: a key is not modelled."""

    def decode(self, m: np.ndarray, blocks: list[Block]):
        n, d = len(m), self.spec.details
        start, self.issued = self.issued, self.issued + n
        if d["pattern"] == "integer":
            return self.typed(_integers(d, start, n), np.zeros(n, bool))
        if d["pattern"] == "sequence":
            numbers = np.arange(n, dtype=object) + (d["next"] + start)
            keys = [f"{d['prefix']}{k:0{d['width']}d}{d['suffix']}" for k in numbers]
            return self.typed(np.array(keys, dtype=object), np.zeros(n, bool))
        return self.typed(self._shaped(n, start), np.zeros(n, bool))

    def _shaped(self, n: int, start: int) -> np.ndarray:
        d = self.spec.details
        taken = set(int(h) for h in (self.params or {}).get("hashes", []))
        rng = np.random.default_rng([start, n, len(taken)])
        counts = np.asarray(d["counts"], dtype=np.float64)
        out, made = [], self.made
        for _ in range(100):  # rounds of twice as many draws as keys are missing (1,000 at least)
            draws = rng.choice(len(counts), max(2 * (n - len(out)), 1000), p=counts / counts.sum())
            for shape in np.array(d["shapes"], dtype=object)[draws]:
                key = "".join(c if c not in CLASSES else CLASSES[c][rng.integers(len(CLASSES[c]))] for c in shape)
                if key not in made and _hash(key) not in taken and len(out) < n:
                    made.add(key)
                    out.append(key)
            if len(out) == n:
                break
        if len(out) < n:
            raise InputError(f"column {self.spec.name!r}: cannot make {n} new keys of its shapes "
                             f"({', '.join(d['shapes'][:3])}): too few are left")
        return np.array(out, dtype=object)

    def typed(self, values: np.ndarray, absent: np.ndarray):
        import pandas as pd

        if self.spec.details["pattern"] == "integer":
            return pd.array(values.astype(np.int64), dtype="Int64" if self.spec.has_missing else "int64")
        return pd.array(values.astype(object), dtype=object)


def _id_name(name: str) -> bool:
    words = re.split(r"[^A-Za-z0-9]+|(?<=[a-z])(?=[A-Z])", str(name))
    return any(w.lower() in ID_WORDS for w in words)


def _integers(d: dict, start: int, n: int) -> np.ndarray:
    if d["next"] + start + n - 1 <= INT64_MAX:
        return np.arange(n, dtype=np.int64) + np.int64(d["next"] + start)
    return np.int64(d["first"] - 1 - start) - np.arange(n, dtype=np.int64)  # counting down from the smallest


def _sequence(keys: list[str]) -> dict | None:
    """The ``sequence`` pattern of ``keys``, or None when they are not one."""
    parts = [re.fullmatch(r"(.*?)(\d+)(\D*)", k) for k in keys]
    if not all(parts):
        return None
    prefixes, suffixes = {p.group(1) for p in parts}, {p.group(3) for p in parts}
    widths = {len(p.group(2)) for p in parts}
    padded = any(p.group(2).startswith("0") and len(p.group(2)) > 1 for p in parts)
    if len(prefixes) != 1 or len(suffixes) != 1 or (padded and len(widths) != 1):
        return None
    return {"pattern": "sequence", "prefix": prefixes.pop(), "suffix": suffixes.pop(),
            "width": widths.pop() if padded else 0, "next": max(int(p.group(2)) for p in parts) + 1}


def _shapes(keys: list[str]) -> dict:
    import pandas as pd

    shapes = pd.Series([_shape(k) for k in keys]).value_counts().iloc[:SHAPES]
    return {"pattern": "shape", "shapes": shapes.index.tolist(), "counts": shapes.tolist()}


def _shape(key: str) -> str:
    return "".join("9" if c.isdigit() and c.isascii() else "a" if "a" <= c <= "z" else "A" if "A" <= c <= "Z"
                   else c for c in key)
