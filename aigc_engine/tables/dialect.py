"""CSV dialects: how a table file is written, sniffed from its bytes, and the same dialect for
the tables written back (``sample -o out.csv`` writes what it read).

:func:`sniff` finds the :class:`Dialect` of a file: its encoding (a BOM, else UTF-8, else
cp1252 or latin-1 with a one-line warning), its delimiter among ``,`` ``;`` tab ``|`` (the one
that splits the first lines evenly; ``csv.Sniffer`` breaks ties), its decimal mark (a comma
only with another delimiter, when numbers look like ``1,5``), its thousands separator
(``1,234,567``, ``1.234.567``, ``1 234``), its line ends and its quoting. Each part can be
given instead (the dataset options ``delimiter``, ``decimal``, ``thousands``, ``encoding``).

:func:`read_csv` reads it with pandas, then fixes what pandas leaves as text or rounds: grouped
numbers become numbers, 64-bit integers with missing cells stay exact (``Int64``), and a numeric
column with a few stray strings (at most :data:`STRAY_SHARE` of its cells, such as ``-`` or
``?``) reads them as missing, said in one warning line. :func:`write_csv` writes a frame in a
dialect (no thousands separators: every reader takes plain numbers).
"""
from __future__ import annotations

import codecs
import csv
import io as _io
import re
import warnings
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from ..errors import InputError
from ..store import io

__all__ = ["Dialect", "DELIMITERS", "STRAY_SHARE", "sniff", "read_csv", "write_csv"]

DELIMITERS = {",": ",", ";": ";", "tab": "\t", "\t": "\t", "\\t": "\t", "|": "|"}
THOUSANDS = (",", ".", " ", "\u00a0", "\u202f", "'")
FALLBACK_ENCODINGS = ("cp1252", "latin-1")
STRAY_SHARE = 0.01
FIELD_LIMIT = 2**31 - 1  # the csv module stops at 131,072 characters a field by default
SAMPLE_CHARS = 1 << 20
SAMPLE_ROWS = 2000
EXACT_FLOAT = 2**53  # integers from here on are not all floats: read them as Int64


@dataclass(frozen=True)
class Dialect:
    """How a CSV file is written; saved with a table run (its schema's ``dialect``)."""

    delimiter: str = ","
    decimal: str = "."
    thousands: str = ""
    encoding: str = "utf-8"
    line_terminator: str = "\n"
    quoting: str = "minimal"  # or "all": every field quoted

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> "Dialect":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def number(self, cell: str) -> bool:
        """Whether ``cell`` is a number in this dialect (``1.234,5`` with a decimal comma)."""
        return _number_pattern(self.thousands, self.decimal).fullmatch(cell.strip()) is not None


def _shown(delimiter: str) -> str:
    return "tab" if delimiter == "\t" else delimiter


def sniff(path: Path, delimiter: str = "auto", decimal: str = "auto", thousands: str = "auto",
          encoding: str = "auto") -> Dialect:
    """The dialect of the CSV file ``path``; each part ``"auto"`` is sniffed, any other value is
    taken as given (``thousands=""``: none)."""
    csv.field_size_limit(max(csv.field_size_limit(), FIELD_LIMIT))
    path = Path(path)
    encoding = _encoding(path) if encoding == "auto" else _given_encoding(encoding)
    text, truncated = _sample(path, encoding)
    if not text.strip():
        raise InputError(f"{path.name} is empty")
    delimiter = _delimiter(text, truncated) if delimiter == "auto" else _given_delimiter(delimiter)
    cells = [c.strip() for row in _rows(text, delimiter, truncated) for c in row if c.strip()]
    if decimal == "auto":
        decimal = _decimal(cells, delimiter)
    elif decimal not in (".", ","):
        raise InputError(f"dataset.decimal must be '.' or ',', not {decimal!r}")
    if decimal == delimiter:
        raise InputError(f"dataset.decimal={decimal} needs another delimiter than {decimal!r}")
    if thousands == "auto":
        thousands = _thousands(cells, decimal)
    elif thousands in ("none", "\"\""):
        thousands = ""
    if thousands and (len(thousands) != 1 or thousands == decimal):
        raise InputError(f"dataset.thousands must be one character other than the decimal mark, not {thousands!r}")
    first = text.split("\n", 1)[0]
    return Dialect(delimiter, decimal, thousands, encoding, "\r\n" if first.endswith("\r") else "\n",
                   _quoting(first.rstrip("\r"), delimiter))


def _quoting(first: str, delimiter: str) -> str:
    """``all`` when every field of the first line is quoted, else ``minimal``."""
    if len(first) < 2 or not (first.startswith('"') and first.endswith('"')):
        return "minimal"
    return "all" if first.count('"') >= 2 * len(_rows(first, delimiter, False)[0]) else "minimal"


def _encoding(path: Path) -> str:
    """``utf-8-sig`` or ``utf-16`` after a BOM, else ``utf-8`` if the whole file decodes, else the
    first of :data:`FALLBACK_ENCODINGS` that does (latin-1 always does), with a warning."""
    with open(path, "rb") as fh:
        head = fh.read(4)
        if head.startswith(codecs.BOM_UTF8):
            return "utf-8-sig"
        if head[:2] in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE):
            return "utf-16"
        fh.seek(0)
        decoder, offset = codecs.getincrementaldecoder("utf-8")(), 0
        try:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                decoder.decode(chunk)
                offset += len(chunk)
            decoder.decode(b"", final=True)
            return "utf-8"
        except UnicodeDecodeError as err:
            at = offset + err.start
    fallback = next(e for e in FALLBACK_ENCODINGS if _decodes(path, e))
    warnings.warn(f"{path.name} is not UTF-8 (byte {at}): read as {fallback}; set dataset.encoding=... if wrong",
                  UserWarning, stacklevel=3)
    return fallback


def _decodes(path: Path, encoding: str) -> bool:
    try:
        with open(path, encoding=encoding, newline="") as fh:
            while fh.read(1 << 20):
                pass
    except UnicodeDecodeError:
        return False
    return True


def _given_encoding(encoding: str) -> str:
    try:
        return codecs.lookup(encoding).name
    except LookupError:
        raise InputError(f"dataset.encoding: unknown encoding {encoding!r}") from None


def _given_delimiter(delimiter: str) -> str:
    if delimiter in DELIMITERS:
        return DELIMITERS[delimiter]
    if len(delimiter) != 1 or delimiter in "\"\r\n":
        raise InputError(f"dataset.delimiter must be one character (or auto, tab), not {delimiter!r}")
    return delimiter


def _sample(path: Path, encoding: str) -> tuple[str, bool]:
    """The file's first :data:`SAMPLE_CHARS` characters, and whether there is more."""
    try:
        with open(path, encoding=encoding, newline="") as fh:
            text = fh.read(SAMPLE_CHARS)
            return text, fh.read(1) != ""
    except UnicodeDecodeError as err:
        raise InputError(f"{path.name} is not {encoding} (byte {err.start}): set dataset.encoding=... "
                         f"(utf-8, cp1252, latin-1...)") from None


def _rows(text: str, delimiter: str, truncated: bool) -> list[list[str]]:
    """The sample's first rows split on ``delimiter`` (a last row the sample cut is dropped)."""
    rows = [row for _, row in zip(range(SAMPLE_ROWS + 1), csv.reader(_io.StringIO(text), delimiter=delimiter)) if row]
    return rows[:-1] if truncated and len(rows) > 1 else rows


def _delimiter(text: str, truncated: bool) -> str:
    """The candidate that splits the header in two or more and the most rows into as many
    fields; more cells that are numbers (``1,5`` in ``1;2,5``), csv.Sniffer's pick, then more
    fields break ties; with one column, the first that splits no row."""
    try:
        preferred = csv.Sniffer().sniff(text[:1 << 16], delimiters=",;\t|").delimiter
    except csv.Error:
        preferred = None
    best = None
    for order, candidate in enumerate(",;\t|"):
        rows = _rows(text, candidate, truncated)
        width = len(rows[0])
        if width < 2:
            continue
        even = sum(len(r) == width for r in rows[1:]) / max(len(rows) - 1, 1)
        cells = [c.strip() for r in rows for c in r]
        numbers = sum(_PLAIN_NUMBER.fullmatch(c) is not None for c in cells) / len(cells)
        key = (even, numbers, candidate == preferred, width, -order)
        if best is None or key > best[0]:
            best = (key, candidate)
    if best is not None:
        return best[1]
    # one column: a delimiter that splits no row either (";" for "1,5" with a decimal comma)
    return next((c for c in ",;\t|" if all(len(r) == 1 for r in _rows(text, c, truncated))), ",")


_COMMA_DECIMAL = re.compile(r"[+-]?(?:\d{1,3}(?:[. \u00a0\u202f']\d{3})+|\d+),\d+")
_DOT_DECIMAL = re.compile(r"[+-]?\d*\.\d+(?:[eE][+-]?\d+)?")
_DOT_GROUPED = re.compile(r"[+-]?\d{1,3}(?:\.\d{3})+")
_PLAIN_NUMBER = re.compile(r"[+-]?\d+(?:[.,]\d+)?")
_COMMA_GROUPED = re.compile(r"[+-]?\d{1,3}(?:,\d{3}){2,}(?:\.\d+)?|[+-]?\d{1,3}(?:,\d{3})+\.\d+")


def _decimal(cells: list[str], delimiter: str) -> str:
    """``,`` when the delimiter is not a comma and numbers like ``1,5`` outnumber ``1.5``, unless
    some number is grouped by commas (``1,234,567``, ``1,234.5``)."""
    if delimiter == ",":
        return "."
    comma = sum(_COMMA_DECIMAL.fullmatch(c) is not None for c in cells)
    if not comma or any(_COMMA_GROUPED.fullmatch(c) for c in cells):
        return "."
    dot = sum(_DOT_DECIMAL.fullmatch(c) is not None and _DOT_GROUPED.fullmatch(c) is None for c in cells)
    return "," if comma > dot else "."


def _thousands(cells: list[str], decimal: str) -> str:
    """The separator that groups the most numbers in threes (``1,234``, ``1.234,5``, ``1 234``);
    ``""`` for none."""
    best, count = "", 0
    for sep in THOUSANDS:  # the delimiter too: "1,234" quoted in a comma file
        if sep == decimal:
            continue
        pattern = re.compile(rf"[+-]?\d{{1,3}}(?:{re.escape(sep)}\d{{3}})+(?:{re.escape(decimal)}\d+)?")
        n = sum(pattern.fullmatch(c) is not None for c in cells)
        if n > count:
            best, count = sep, n
    return best


def _number_pattern(thousands: str, decimal: str) -> re.Pattern:
    grouped = rf"\d{{1,3}}(?:{re.escape(thousands)}\d{{3}})+|" if thousands else ""
    dec = re.escape(decimal)
    return re.compile(rf"[+-]?(?:(?:{grouped}\d+)(?:{dec}\d*)?|{dec}\d+)(?:[eE][+-]?\d+)?")


def check_rectangular(path: Path, dialect: Dialect, sniffed: bool) -> list[str]:
    """pandas pads short rows with missing values silently; a ragged row is a broken file,
    named by its line with a hint at the delimiter. Returns the first line's cells."""
    with open(path, encoding=dialect.encoding, newline="") as fh:
        reader = csv.reader(fh, delimiter=dialect.delimiter)
        header = next(reader, None)
        if header is None:
            raise InputError(f"{path.name} is empty")
        for row in reader:
            if row and len(row) != len(header):
                raise InputError(f"{path.name} line {reader.line_num}: {len(row)} fields, the header has "
                                 f"{len(header)} ({_delimiter_hint(path, dialect, sniffed)})")
    return header


def _delimiter_hint(path: Path, dialect: Dialect, sniffed: bool) -> str:
    shown = _shown(dialect.delimiter)
    if sniffed:
        return f"delimiter {shown!r} sniffed; set dataset.delimiter=... (, ; tab |) if wrong"
    other = _delimiter(*_sample(path, dialect.encoding))
    even = f"; the first lines split evenly on {_shown(other)!r}" if other != dialect.delimiter else ""
    return f"delimiter {shown!r} from dataset.delimiter{even}"


def read_csv(path: Path, dialect: Dialect, sniffed: bool = True):
    """The rows of the CSV file ``path`` in ``dialect`` as a DataFrame (a first line of numbers
    is data: its columns are named ``0``, ``1``, ...), numbers fixed as the module doc says;
    ``sniffed``: whether the delimiter was sniffed (for the hint of a ragged row's error)."""
    import pandas as pd

    path = Path(path)
    header = check_rectangular(path, dialect, sniffed)
    numbers = all(dialect.number(cell) for cell in header)  # a first line of numbers is data, not a header
    names = [str(i) for i in range(len(header))] if numbers else None

    def read(**options):
        try:
            return pd.read_csv(path, sep=dialect.delimiter, decimal=dialect.decimal, encoding=dialect.encoding,
                               skipinitialspace=True, header=None if numbers else "infer", names=names, **options)
        except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as err:
            raise InputError(f"{path.name}: not a readable CSV ({str(err).strip().splitlines()[0]})") from None

    frame = read()
    frame.columns = [str(c) for c in frame.columns]
    wide = [c for c in frame.columns if _wide_integers(frame[c])]
    if wide:  # read again as text: float64 rounded these ids
        texts = read(usecols=wide, dtype={c: str for c in wide})
        for col in wide:
            frame[col] = _exact_integers(texts[col].to_numpy(), frame[col])
    for col in frame.columns:
        if frame[col].dtype == object:
            frame[col] = _as_numbers(frame[col], dialect, f"{path.name}: column {col!r}")
    return frame


def _wide_integers(values) -> bool:
    """A float column (one with missing cells) of integers too large for a float64."""
    import numpy as np

    if values.dtype != np.float64 or not values.isna().any():
        return False
    present = values.dropna().to_numpy()
    return bool(len(present) and np.abs(present).max() >= EXACT_FLOAT and np.all(present == np.round(present)))


def _exact_integers(texts, values):
    """``values`` (floats) as ``Int64`` from their text when every present cell is an integer
    written out in digits within int64; else unchanged (``1e20`` is what the file says)."""
    import pandas as pd

    present = [t.strip() for t in texts if isinstance(t, str)]
    if not all(re.fullmatch(r"[+-]?\d+", t) and -2**63 <= int(t) < 2**63 for t in present):
        return values
    return pd.Series(pd.array([int(t) if isinstance(t, str) else None for t in texts], dtype="Int64"),
                     index=values.index)


def _as_numbers(values, dialect: Dialect, what: str):
    """``values`` (text) as numbers when every present cell is a number in ``dialect`` (grouped
    thousands, a decimal comma) or all but a few stray strings, read as missing and warned of;
    else unchanged. Integers become int64, exactly; with missing cells float64 as pandas reads
    them, or ``Int64`` beyond 2**53."""
    import numpy as np
    import pandas as pd

    present = values.dropna()
    if len(present) == 0:
        return values
    pattern = _number_pattern(dialect.thousands, dialect.decimal)
    head = present.iloc[:1000].astype(str).str.strip()
    if head.str.fullmatch(pattern).mean() < 0.5:  # text: not worth matching every cell
        return values
    text = present.astype(str).str.strip()
    ok = text.str.fullmatch(pattern).to_numpy(dtype=bool)
    stray = int((~ok).sum())
    if stray > STRAY_SHARE * len(values):
        return values
    if stray:
        examples = sorted(set(text[~ok]))
        warnings.warn(f"{what}: {stray} of {len(values)} cells are not numbers (e.g. {examples[0]!r}): read as missing",
                      UserWarning, stacklevel=4)
    clean = text[ok]
    if dialect.thousands:
        clean = clean.str.replace(dialect.thousands, "", regex=False)
    clean = clean.str.replace(dialect.decimal, ".", regex=False).tolist()
    whole = not any(("." in c or "e" in c or "E" in c) for c in clean)
    numbers = [int(c) for c in clean] if whole else [float(c) for c in clean]
    missing = np.ones(len(values), dtype=bool)
    missing[np.flatnonzero(values.notna().to_numpy())[ok]] = False
    out = np.empty(len(values), dtype=object)
    out[~missing] = numbers
    fits = whole and all(-2**63 <= v < 2**63 for v in numbers)
    if fits and (not missing.any() or any(abs(v) >= EXACT_FLOAT for v in numbers)):  # else float64, as pandas reads
        return pd.Series(pd.array([None if m else v for v, m in zip(out, missing)],
                                  dtype="Int64" if missing.any() else "int64"), index=values.index)
    return pd.Series(np.where(missing, np.nan, out).astype(np.float64), index=values.index)


def write_csv(frame, path: Path, dialect: Dialect | None = None) -> None:
    """``frame`` as the CSV file ``path`` (the header, no index) in ``dialect`` (default: comma,
    UTF-8), atomically; numbers are written without thousands separators."""
    d = dialect or Dialect()
    quoting = csv.QUOTE_ALL if d.quoting == "all" else csv.QUOTE_MINIMAL
    io.atomic_write(Path(path), lambda tmp: frame.to_csv(tmp, index=False, sep=d.delimiter, decimal=d.decimal,
                                                         encoding=d.encoding, lineterminator=d.line_terminator,
                                                         quoting=quoting))
