"""The ``datetime`` kind: strings that all parse as dates, timestamps or times of day in one
format, inferred from the first value (pandas' ``guess_datetime_format``, month first, then day
first): ISO dates and datetimes, ``YYYY-MM-DD HH:MM:SS``, US ``MM/DD/YYYY``, with or without a
time zone (``Z``, ``+01:00``), ``HH:MM:SS``; forced with ``dataset.datetime=a,b``.

Like RDT's datetime transformer it keeps the format in ``ColumnSpec.details`` (``format``, the one
it parses with, and ``write``, the one that writes the values back as the file has them) and
models numbers: the day (days since 1970-01-01) and the time of day (seconds), each a value block
in the table's numeric encoding (a date has the first only, a time of day the second only). Two
numbers rather than one count of seconds because a float32 value cannot hold a second over
years: split, the round trip of the training rows is exact to the second (to float32 precision
below it). Times with a zone are modelled in the wall-clock time of the first value's offset and
written in it. Decoding rounds the day and the second, keeps the result within the observed
range and writes it in the file's format.
"""
from __future__ import annotations

import warnings

import numpy as np

from ...errors import InputError
from .base import Block, BlockRole, ColumnKind, ColumnSpec, Profile, Spend, private_numbers
from .continuous import NUMERIC_ENCODINGS

__all__ = ["Datetime", "infer_format"]

DAY = 86400
NS = 10 ** 9
DATE_CODES = ("%d", "%j")
TIME_CODES = ("%H", "%I", "%M", "%S")
TIMES_OF_DAY = ("%H:%M:%S", "%H:%M", "%H:%M:%S.%f")  # pandas guesses dates, not times alone


class _Part:
    """The observed range of one modelled number, as the numeric scalings read a ColumnSpec."""

    def __init__(self, low: float, high: float):
        self.low, self.high = low, high


class Datetime(ColumnKind):
    name = "datetime"
    option = "datetime"

    @classmethod
    def detects(cls, profile: Profile) -> bool:
        return not profile.numeric and infer_format(profile.present) is not None

    @classmethod
    def check(cls, profile: Profile, name: str, table: str, option: str) -> None:
        if profile.numeric or infer_format(profile.present) is None:
            raise InputError(f"{table}: column {name!r} in {option} holds {profile.present.iloc[0]!r}, not a date "
                             "or time in one format")

    @classmethod
    def describe(cls, values, profile: Profile, name: str) -> ColumnSpec:
        fmt, tz = infer_format(profile.present)
        ns = _nanoseconds(profile.present, fmt, tz)
        text = profile.present.astype(str)
        head = text.iloc[:1000].to_numpy()
        write = next((w for w in _write_formats(fmt) if (_format(ns[:1000], w, tz) == head).all()), fmt)
        write = write if (_format(ns, write, tz) == text.to_numpy()).all() else fmt
        details = {"format": fmt, "write": write, "tz": tz, "date": any(c in fmt for c in DATE_CODES),
                   "time": any(c in fmt for c in TIME_CODES), "fraction": bool((ns % NS).any()),
                   "seconds": [float((ns % (DAY * NS)).min() // NS), float(-(-(ns % (DAY * NS)).max() // NS))]}
        return ColumnSpec(name=name, kind=cls.name, dtype=str(values.dtype), has_missing=bool(values.isna().any()),
                          low=float(ns.min() // NS), high=float(-(-ns.max() // NS)), details=details)

    @classmethod
    def numbers(cls, values) -> np.ndarray:
        """Seconds since 1970 (wall-clock time of a zoned column), in the format the first value
        shows (decoded rows are written in the training rows' format); NaN where missing or
        unreadable."""
        out = np.full(len(values), np.nan)
        present = values.notna().to_numpy()
        found = infer_format(values[present].iloc[:1]) if present.any() else None
        if found is not None:
            ts = _parse(values[present], *found, errors="coerce")
            ns = ts.to_numpy(dtype="datetime64[ns]")
            out[present] = np.where(np.isnat(ns), np.nan, ns.astype(np.int64) / NS)
        return out

    @classmethod
    def tick_labels(cls, numbers: np.ndarray) -> list[str]:
        """Dates, or times of day where every tick falls on one day."""
        days = np.floor_divide(numbers, DAY)
        wide = numbers.max() - numbers.min() > 3 * DAY
        fmt = "%H:%M" if len(set(days)) == 1 else "%Y-%m-%d" if wide else "%m-%d %H:%M"
        return list(_format(np.round(np.asarray(numbers) * NS).astype(np.int64), fmt, None))

    # -- the parts ------------------------------------------------------------------------------
    @property
    def parts(self) -> list[str]:
        d = self.spec.details
        return [p for p, on in (("day", d["date"] or not d["time"]), ("second", d["time"])) if on]

    def _split(self, ns: np.ndarray) -> dict[str, np.ndarray]:
        return {"day": (ns // (DAY * NS)).astype(np.float64), "second": (ns % (DAY * NS)) / NS}

    def _ranges(self) -> dict[str, _Part]:
        """The observed ranges of the day and of the time of day."""
        return {"day": _Part(self.spec.low // DAY, self.spec.high // DAY), "second": _Part(*self.spec.details["seconds"])}

    @property
    def scaling(self):
        return NUMERIC_ENCODINGS[self.encoding]

    def fit(self, values, seed: int = 0, fallback: dict | None = None) -> dict:
        present = values.dropna()
        if not len(present) and fallback is not None:
            self.params = fallback
            return fallback
        split, ranges = self._split(_nanoseconds(present, self.spec.details["format"], self.spec.details["tz"])), \
            self._ranges()
        self.params = {f"{p}.{k}": v for p in self.parts
                       for k, v in self.scaling.fit(split[p], ranges[p], seed).items()}
        return self.params

    @classmethod
    def mechanisms(cls, spec: ColumnSpec) -> tuple[int, int]:
        """Two histograms of the day (its range, its quantiles), one of the time of day (on the
        public range of a day)."""
        d = spec.details
        return (2 if d["date"] or not d["time"] else 0) + (1 if d["time"] else 0), 0

    def fit_private(self, values, seed: int, spend: Spend) -> dict:
        """The day's range and quantiles by :func:`~.base.private_numbers`; the time of day's
        quantiles on [0, 86400) (public); the numeric encoding fitted on their stand-ins."""
        from dataclasses import replace

        from ...privacy import histogram_quantiles

        import torch

        d = self.spec.details
        split = self._split(_nanoseconds(values.dropna(), d["format"], d["tz"]))
        stand_in, ranges = {}, {"second": _Part(0.0, DAY - 1.0)}
        if "day" in self.parts:
            low, high, stand_in["day"], _ = private_numbers(split["day"], spend)
            ranges["day"] = _Part(float(np.floor(low)), float(np.ceil(high)))
        if "second" in self.parts:
            levels = np.clip(np.linspace(0.0, 1.0, max(2, min(1000, spend.rows))), 1e-9, 1 - 1e-9).tolist()
            bins = int(np.clip(spend.rows / (3 * spend.noise_multiplier), 8, 256))
            stand_in["second"] = histogram_quantiles(torch.from_numpy(split["second"]), levels, 0.0, DAY - 1.0,
                                                     spend.noise_multiplier, bins, spend.generator).numpy()
        day = ranges.get("day", _Part(0.0, 0.0))
        self.spec = replace(self.spec, low=day.low * DAY, high=day.high * DAY + (DAY - 1 if d["time"] else 0),
                            has_missing=True, details={**d, "seconds": [0.0, DAY - 1.0]})
        self.params = {f"{p}.{k}": v for p in self.parts
                       for k, v in self.scaling.fit(np.clip(stand_in[p], ranges[p].low, ranges[p].high), ranges[p],
                                                    seed).items()}
        return self.params

    def _part_params(self, part: str) -> dict:
        return {k.split(".", 1)[1]: v for k, v in self.params.items() if k.startswith(part + ".")}

    def blocks(self, start: int) -> list[Block]:
        out = []
        for part in self.parts:
            at = out[-1].stop if out else start
            out.append(Block(self.spec.name, part, at, at + 1, role=BlockRole.VALUE))
            modes = self.scaling.modes(self._part_params(part))
            if modes:
                out.append(Block(self.spec.name, "mode", at + 1, at + 1 + modes, list(range(modes)),
                                 role=BlockRole.ONE_HOT))
        return out + self.missing_block(out[-1].stop)

    def encode(self, values, absent: np.ndarray, out: np.ndarray, blocks: list[Block]) -> None:
        d = self.spec.details
        ns = np.zeros(len(values), dtype=np.int64)
        ns[~absent] = _nanoseconds(values[~absent], d["format"], d["tz"])
        split = self._split(np.where(absent, int(self.spec.low) * NS, ns))
        for block in self._value_blocks(blocks):
            p = self._part_params(block.kind)
            value, mode = self.scaling.encode(split[block.kind], p)
            out[:, block.start] = np.where(absent, 0.0, value)
            if mode is not None:
                out[np.arange(len(ns)), block.stop + mode] = 1.0
        if self.spec.has_missing:
            out[:, blocks[-1].start] = absent

    def _value_blocks(self, blocks: list[Block]) -> list[Block]:
        return [b for b in blocks if b.role is BlockRole.VALUE]

    def decode(self, m: np.ndarray, blocks: list[Block]):
        ranges, parts = self._ranges(), {"day": np.full(len(m), self.spec.low // DAY), "second": np.zeros(len(m))}
        for block in self._value_blocks(blocks):
            p = self._part_params(block.kind)
            mode = m[:, block.stop:block.stop + self.scaling.modes(p)].argmax(axis=1) if self.scaling.modes(p) else None
            x = self.scaling.decode(m[:, block.start], mode, p)
            x = np.round(x, 6 if block.kind == "second" and self.spec.details["fraction"] else 0)
            parts[block.kind] = np.clip(x, ranges[block.kind].low, ranges[block.kind].high)
        seconds = np.clip(parts["day"] * DAY + parts["second"], self.spec.low, self.spec.high)
        absent = m[:, blocks[-1].start] > 0.5 if self.spec.has_missing else np.zeros(len(m), bool)
        return self.typed(np.round(seconds * 1e6).astype(np.int64) * 1000, absent)

    def typed(self, values: np.ndarray, absent: np.ndarray):
        """Nanoseconds since 1970 as strings in the file's format, missing where ``absent``."""
        import pandas as pd

        text = _format(values, self.spec.details["write"], self.spec.details["tz"]).astype(object)
        return pd.array(np.where(absent, np.nan, text).astype(object), dtype=object)


def infer_format(present) -> tuple[str, int | None] | None:
    """``(format, tz)`` that parses every value of ``present`` (a Series of strings), inferred from
    the first (month first, then day first), ``tz`` the first value's UTC offset in seconds (None
    without a zone); None when there is no such format or it names neither a day nor a time."""
    import pandas as pd
    from pandas.tseries.api import guess_datetime_format

    if not len(present) or not all(isinstance(v, str) for v in present.iloc[:100]):
        return None
    first = present.iloc[0].strip()
    with warnings.catch_warnings():  # a day-first guess warns when asked month first
        warnings.simplefilter("ignore")
        guesses = [guess_datetime_format(first, dayfirst=dayfirst) for dayfirst in (False, True)]
    for fmt in dict.fromkeys([*guesses, *TIMES_OF_DAY]):
        if fmt is None or not any(c in fmt for c in DATE_CODES + TIME_CODES):
            continue
        try:  # the first values, then all: most string columns fail at once
            if _parse(present.iloc[:100], fmt, 0, errors="coerce").isna().any() or \
                    _parse(present, fmt, 0, errors="coerce").isna().any():
                continue
        except (ValueError, TypeError):
            continue
        if "%z" not in fmt:
            return fmt, None
        return fmt, int(pd.to_datetime(present.iloc[:1], format=fmt).iloc[0].utcoffset().total_seconds())
    return None


def _parse(values, fmt: str, tz: int | None, errors: str = "raise"):
    """``values`` parsed with ``fmt`` as naive datetimes (a Series, NaT where unreadable), in the
    wall-clock time of UTC offset ``tz`` (seconds) when ``fmt`` reads a zone."""
    import pandas as pd

    ts = pd.to_datetime(pd.Series(values), format=fmt, errors=errors, utc="%z" in fmt)
    return ts.dt.tz_convert(_zone(tz or 0)).dt.tz_localize(None) if "%z" in fmt else ts


def _nanoseconds(present, fmt: str, tz: int | None) -> np.ndarray:
    """Present values as int64 nanoseconds since 1970; one that ``fmt`` cannot read is an InputError."""
    ts = _parse(present, fmt, tz, errors="coerce")
    if ts.isna().any():
        bad = present[ts.isna().to_numpy()].iloc[0]
        raise InputError(f"a date or time {bad!r} is not in the column's format {fmt!r}")
    return ts.to_numpy(dtype="datetime64[ns]").astype(np.int64)


def _zone(tz: int):
    from datetime import timedelta, timezone

    return timezone(timedelta(seconds=tz))


def _write_formats(fmt: str) -> list[str]:
    """The formats that may write back values read with ``fmt``: itself, without zero padding
    (``1/5/2015``), with ``Z`` or ``+01:00`` for the offset."""
    out = [fmt]
    if any(c in fmt for c in ("%m", "%d", "%H")):
        out.append(fmt.replace("%m", "%-m").replace("%d", "%-d").replace("%H", "%-H"))
    if "%z" in fmt:
        out += [f.replace("%z", z) for f in list(out) for z in ("Z", "%:z") if f.endswith("%z") or z == "Z"]
    return out


def _format(ns: np.ndarray, fmt: str, tz: int | None) -> np.ndarray:
    """Nanoseconds since 1970 (wall-clock time of offset ``tz``) as strings in ``fmt``."""
    ns, back = np.unique(np.asarray(ns, dtype=np.int64), return_inverse=True)  # each distinct time once
    return _format_distinct(ns, fmt, tz)[back.reshape(-1)]


def _format_distinct(ns: np.ndarray, fmt: str, tz: int | None) -> np.ndarray:
    import pandas as pd

    ts = pd.Series(pd.to_datetime(ns, unit="ns"))
    if tz is not None:
        ts = ts.dt.tz_localize(_zone(tz))
    if fmt.endswith("%:z"):  # pandas' strftime lacks it: +0100 written +01:00
        return ts.dt.strftime(fmt[:-3] + "%z").map(lambda t: t[:-2] + ":" + t[-2:]).to_numpy(dtype=object)
    return ts.dt.strftime(fmt).to_numpy(dtype=object)
