"""What every column kind shares: the kept description of a column (:class:`ColumnSpec`), the
typed blocks of the encoded matrix (:class:`Block`, :class:`BlockRole`) and the interface of a
kind (:class:`ColumnKind`), after RDT's transformers: one class per kind that detects its
columns, fits its statistics on the training rows, encodes a column into its blocks and decodes
them back; :class:`~aigc_engine.tables.TableEncoding` only orchestrates them."""
from __future__ import annotations

import enum
from dataclasses import asdict, dataclass, field

import numpy as np

__all__ = ["BlockRole", "Block", "ColumnSpec", "Profile", "ColumnKind", "Spend", "plain", "private_numbers",
           "private_categories", "value_hash"]


class BlockRole(str, enum.Enum):
    """What a block of the encoded matrix holds, hence the output a model gives it: ``VALUE`` a
    real number (identity), ``ONE_HOT`` one slot of several set (a softmax), ``MISSING`` a 0/1
    indicator that the column's value is missing (a sigmoid). A ``str`` enum: it is its JSON."""

    VALUE = "value"
    ONE_HOT = "one_hot"
    MISSING = "missing"


@dataclass
class Block:
    """Columns ``start:stop`` of the matrix that encode part of ``column``: its ``role``, the
    ``kind`` of block (the column kind's own word: ``continuous``, ``integer``, ``categorical``,
    ``mode``, ``missing``) and, for one-hot blocks, the value of each slot (``categories``;
    None is the missing slot). Models read ``role``, ``start``, ``stop`` and ``column`` only."""

    column: str
    kind: str
    start: int
    stop: int
    categories: list | None = None
    role: BlockRole = BlockRole.VALUE

    @property
    def slice(self) -> slice:
        return slice(self.start, self.stop)

    @property
    def width(self) -> int:
        return self.stop - self.start

    @property
    def one_hot(self) -> bool:
        return self.role is BlockRole.ONE_HOT

    def to_json(self) -> dict:
        return {"column": self.column, "kind": self.kind, "role": self.role.value, "start": int(self.start),
                "stop": int(self.stop), "categories": self.categories}


@dataclass
class ColumnSpec:
    """One kept column as detected: ``kind`` (a registry name), ``dtype`` the pandas dtype it was
    read with; ``categories`` the sorted observed values of a categorical column; ``low``/``high``
    the observed range of a numeric one; ``decimals`` the most decimal places a continuous
    column's values are written with (None past ``MAX_DECIMALS``: computed values, kept at full
    precision); ``details`` whatever else a kind detects (JSON values: a date format, a key's
    pattern), saved only when not empty. Kept across refits: what a kind detects, not what it
    fits."""

    name: str
    kind: str
    dtype: str
    has_missing: bool = False
    categories: list = field(default_factory=list)
    low: float | None = None
    high: float | None = None
    decimals: int | None = None
    details: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        out = asdict(self)
        if not out["details"]:
            del out["details"]  # the saved schema of the first kinds, as it always was
        return out


@dataclass
class Profile:
    """What detection needs of one column, computed once: its present values (a pandas Series),
    whether they are numbers (booleans are not), those numbers (float64) and whether all are
    whole, how many distinct values there are, the column's ``name`` and how many ``rows`` it
    has (missing ones included)."""

    present: object
    numeric: bool
    numbers: np.ndarray | None
    integral: bool
    distinct: int
    name: str = ""
    rows: int = 0


class ColumnKind:
    """One column kind. Class members: ``name`` (its registry key and ``ColumnSpec.kind``),
    ``option`` (the ``dataset.<option>=a,b`` list that forces it, or None), :meth:`detects` and
    :meth:`check` (detection and a forced kind's check), :meth:`describe` (the ColumnSpec of a
    column), ``distribution`` and :meth:`numbers` (what metrics and plots read of decoded rows).
    An instance is one fitted column: ``spec``, ``encoding`` (the numeric encoding the table
    uses) and ``params`` (its fitted statistics: JSON values and lists of floats, saved as
    tensors; None for a kind with none), with :meth:`fit`, :meth:`blocks`, :meth:`encode`,
    :meth:`decode` and :meth:`typed`."""

    name: str = ""
    option: str | None = None
    # how metrics compare it and plots draw it: "numeric", "categorical" or None (neither scored
    # nor compared: a key's values are made up, their distribution is no one's)
    distribution: str | None = "numeric"

    def __init__(self, spec: ColumnSpec, encoding: str = "quantile", params: dict | None = None):
        self.spec, self.encoding, self.params = spec, encoding, params

    # -- detection (class level) --------------------------------------------------------------
    @classmethod
    def detects(cls, profile: Profile) -> bool:
        """Whether an unforced column with this profile is of this kind (kinds are asked in
        registry order; the first that says yes takes it)."""
        raise NotImplementedError

    @classmethod
    def check(cls, profile: Profile, name: str, table: str, option: str) -> None:
        """Raise InputError when a column forced to this kind (by ``option``) cannot be of it."""

    @classmethod
    def describe(cls, values, profile: Profile, name: str) -> ColumnSpec:
        """The ColumnSpec of ``values`` (a pandas Series) as a column of this kind."""
        raise NotImplementedError

    @classmethod
    def numbers(cls, values) -> np.ndarray:
        """A decoded column (a Series) of a ``numeric`` distribution as float64, NaN where missing."""
        return values.to_numpy(dtype=np.float64, na_value=np.nan)

    @classmethod
    def tick_labels(cls, numbers: np.ndarray) -> list[str] | None:
        """Labels of plot ticks at ``numbers`` (of :meth:`numbers`), or None: the numbers themselves."""
        return None

    #: A private encoding (docs/privacy.md): the ``(Gaussian, thresholded)`` mechanisms that
    #: :meth:`fit_private` runs on a column of this kind (each a histogram of sensitivity 1;
    #: thresholded ones release categories and spend a delta each); None: no private fit (the
    #: column must be declared public).
    private_mechanisms: tuple[int, int] | None = None

    @classmethod
    def mechanisms(cls, spec: "ColumnSpec") -> tuple[int, int] | None:
        """:attr:`private_mechanisms` of a column (a kind may count per column)."""
        return cls.private_mechanisms

    # -- one fitted column --------------------------------------------------------------------
    def fit_private(self, values, seed: int, spend: "Spend") -> dict | None:
        """The statistics of the training ``values`` by the DP mechanisms of ``spend`` only: a
        new ``spec`` (its categories, range and missing block released privately: every private
        column has a missing block, whether or not the rows have missing values) and ``params``.
        Sets both; returns ``params``."""
        raise NotImplementedError

    def fit(self, values, seed: int = 0, fallback: dict | None = None) -> dict | None:
        """The statistics of the training ``values`` (a Series); ``fallback`` where they hold
        none. Sets and returns ``params``."""
        return self.params

    def blocks(self, start: int) -> list[Block]:
        """The column's blocks, from matrix column ``start`` on."""
        raise NotImplementedError

    def encode(self, values, absent: np.ndarray, out: np.ndarray, blocks: list[Block]) -> None:
        """Write ``values`` (a Series; ``absent`` its missing cells) into ``out``'s ``blocks``."""
        raise NotImplementedError

    def decode(self, m: np.ndarray, blocks: list[Block]):
        """The column (a pandas array in the dtype it was read with) of matrix rows ``m``."""
        raise NotImplementedError

    def typed(self, values: np.ndarray, absent: np.ndarray):
        """Decoded values as a column of the dtype it was read with, missing where ``absent``."""
        raise NotImplementedError

    def start_sampling(self, seed: int) -> None:
        """Called before the rows of one ``sample`` call of ``seed`` are decoded (nothing here)."""

    def missing_block(self, start: int) -> list[Block]:
        """The 0/1 indicator block of a column with missing values (none without)."""
        return [Block(self.spec.name, "missing", start, start + 1, role=BlockRole.MISSING)] \
            if self.spec.has_missing else []

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.spec.name!r})"


@dataclass
class Spend:
    """What a private encoding gives each column: the noise std of every histogram
    (``noise_multiplier``, sensitivity 1 each), the release ``threshold`` of thresholded ones (and
    the ``release_delta`` each may spend), the rows of the table (public) and the noise ``generator``."""
    noise_multiplier: float
    threshold: float | None
    rows: int
    generator: object = None
    release_delta: float = 0.0


MISSING_Z = 3.09  # Phi^-1(0.999)


def private_numbers(x: np.ndarray, spend: Spend, missing: int = 0) -> tuple[float, float, np.ndarray, bool]:
    """``(low, high, values, has_missing)`` of a numeric column's present values ``x`` (and its
    ``missing`` cells), by two histograms of sensitivity 1: a range on public power-of-two bins
    (``magnitude_range``) with one more bin for the missing cells (a row is in one bin:
    ``has_missing`` when that bin's noisy count passes the release threshold and
    ``MISSING_Z`` noise stds), then the quantiles
    at ``min(1000, rows)`` levels of a histogram on that range (bins: ``rows / (3 z)`` within
    [8, 256], so a bin holds about three noise stds of rows; the noisy counts projected onto the
    present rows: the public row count less the missing bin's noisy count),
    whose first and last (past which fewer rows lie than one noise std, at most 2%) are the
    range. ``values`` stand in for the rows where a numeric encoding
    fits its parameters: post-processing."""
    import torch

    from ...privacy import histogram_quantiles, magnitude_range

    z, t = spend.noise_multiplier, torch.from_numpy(np.asarray(x, dtype=np.float64))
    noisy_missing = missing + float(torch.randn(1, generator=spend.generator, dtype=torch.float64)) * z
    lo, hi = magnitude_range(t, z, spend.generator)
    bins = int(np.clip(spend.rows / (3 * z), 8, 256))
    present = float(np.clip(spend.rows - noisy_missing, 1.0, spend.rows))  # the rows are public, not their missing cells
    # the range ends at the quantiles past which fewer rows lie than the noise's std (at most 2%):
    # thinner tails are below what the histogram can tell from noise, and read as noise they stretch
    # the range to empty bins
    trim = min(z / present, 0.02)
    levels = np.clip(np.linspace(0.0, 1.0, max(2, min(1000, spend.rows))), max(trim, 1e-9), 1 - max(trim, 1e-9))
    q = histogram_quantiles(t, levels.tolist(), lo, hi, z, bins, spend.generator, total=present).numpy()
    low, high = float(q[0]), float(q[-1])
    if not high > low:
        high = low + max(abs(low) * 1e-6, 1e-6)
    # a missing block for a column without missing cells only with probability 0.1% (a flat 5 rows
    # let the noise of a large multiplier through half the time: 30% of a wide table's columns)
    threshold = max(spend.threshold or 0.0, 5.0, z * MISSING_Z)
    return low, high, q, noisy_missing > threshold


def private_categories(values, spend: Spend) -> dict:
    """``{category: noisy count}`` of the present ``values`` whose noisy count passes the
    release threshold (``thresholded_histogram``): a category held by a handful of rows is never
    among them."""
    from ...privacy import thresholded_histogram

    cells = [plain(v) for v in values.dropna().tolist()]
    return thresholded_histogram(cells, spend.noise_multiplier, spend.threshold, spend.generator)


def plain(value):
    """A JSON-able Python value of a cell (NumPy scalars to int / float / bool / str; whole
    floats to int)."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and value == round(value):
        return int(value)
    return value


def value_hash(value: str) -> int:
    """52 bits of a string's BLAKE2 hash: exact in the float64 tensors an encoding's state saves
    (the training values a kind must never release, kept without the values themselves)."""
    import hashlib

    return int.from_bytes(hashlib.blake2b(value.encode(), digest_size=8).digest(), "big") >> 12
