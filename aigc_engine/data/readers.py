"""File readers, keyed by suffix, and the resolution of a path to the reader that opens it.

A reader is ``reader(path, **options) -> Dataset``: ``path`` a :class:`pathlib.Path`, and each
keyword parameter (all with defaults) an option users set with ``--set dataset.KEY=VALUE``,
converted to the parameter's annotation (``int | None``, ``Literal[...]``, ...) before the call,
exactly as for dataset factories. A reader raises :class:`~aigc_engine.InputError` for bad
input; the dataset it returns is validated (finite values, one label per row) by the caller.

The core's readers (``.npy``, ``.npz``, ``.csv`` and ``"folder"``: directories) are registered
through the ``aigc_engine_register_readers`` hook like any plugin's; :func:`from_file` uses them
alone, the engine uses the registry of every loaded plugin.
"""
from __future__ import annotations

import dataclasses
import inspect
import typing
from pathlib import Path
from typing import Any, Callable

from ..config import coerce_options
from ..errors import InputError
from .arrays import read_npy, read_npz
from .dataset import Dataset
from .images import read_folder
from .tablefile import read_table

__all__ = ["FOLDER", "Reader", "BUILTIN_READERS", "reader_for", "open_file", "open_in_memory", "from_file",
           "file_kind"]

FOLDER = "folder"  # the registry key of the reader of directories
CORE = "aigc_engine.core"


@dataclasses.dataclass
class Reader:
    """One entry of the reader registry: ``read`` opens paths whose name ends in ``suffix``
    (``".npy"``, ``".tar.gz"``; lower case), or directories for the key ``"folder"``."""

    suffix: str
    read: Callable[..., Dataset]
    description: str = ""
    plugin: str = CORE

    def options(self) -> dict[str, Any]:
        """The reader's options (its keyword parameters after the path) and their defaults."""
        params = list(inspect.signature(self.read).parameters.values())[1:]
        return {p.name: p.default for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}

    def types(self) -> dict[str, Any]:
        """Each option's annotation (None where there is none: then typed by its default)."""
        try:
            hints = typing.get_type_hints(self.read)
        except (NameError, TypeError):  # an annotation that does not resolve: type by defaults
            hints = {}
        return {name: hints.get(name) for name in self.options()}

    @property
    def kind(self) -> str:
        """What it reads, in words: ``".csv files"``, ``"image folders"``."""
        return "image folders" if self.suffix == FOLDER else f"{self.suffix} files"

    def check(self) -> "Reader":
        """Raise TypeError unless the key is a suffix or ``"folder"`` and every option has a default."""
        if self.suffix != FOLDER and (not self.suffix.startswith(".") or len(self.suffix) < 2
                                      or self.suffix != self.suffix.lower()):
            raise TypeError(f"reader suffix must look like '.ext' (lower case) or be {FOLDER!r}, got {self.suffix!r}")
        if not callable(self.read):
            raise TypeError(f"reader {self.suffix!r}: reader must be callable")
        missing = [k for k, v in self.options().items() if v is inspect.Parameter.empty]
        if missing:
            raise TypeError(f"reader {self.suffix!r}: option {missing[0]!r} has no default")
        return self


def _core_reader(suffix: str, read: Callable[..., Dataset]) -> Reader:
    return Reader(suffix, read, (read.__doc__ or "").strip().split("\n")[0])


BUILTIN_READERS: dict[str, Reader] = {r.suffix: r for r in (
    _core_reader(".npy", read_npy), _core_reader(".npz", read_npz), _core_reader(".csv", read_table),
    _core_reader(".parquet", read_table), _core_reader(FOLDER, read_folder))}


def reader_for(path: str | Path, readers: dict[str, Reader] | None = None) -> Reader | None:
    """The reader of ``path``: the longest registered suffix its name ends with (any case), else
    the ``"folder"`` reader for an existing directory, else None."""
    readers = BUILTIN_READERS if readers is None else readers
    path = Path(path)
    name = path.name.lower()
    for suffix in sorted((s for s in readers if s != FOLDER), key=len, reverse=True):
        if name.endswith(suffix) and len(name) > len(suffix):
            return readers[suffix]
    return readers.get(FOLDER) if path.is_dir() else None


def file_kind(spec: str | Path, readers: dict[str, Reader] | None = None) -> str | None:
    """The registry key of the reader of ``spec`` (``".npy"``, ``"folder"``, ...), or None."""
    reader = reader_for(spec, readers)
    return reader.suffix if reader is not None else None


def kinds_text(readers: dict[str, Reader]) -> str:
    """``".npy, .npz, .csv file or a folder of images"``: what these readers open, for messages."""
    suffixes = "/".join(s for s in readers if s != FOLDER)  # registration order: the core's first
    text = f"a {suffixes} file" if suffixes else ""
    if FOLDER in readers:
        text = f"{text} or a folder of images" if text else "a folder of images"
    return text or "no file (no reader is registered)"


def open_file(path: str | Path, options: dict[str, Any] | None = None,
              readers: dict[str, Reader] | None = None, spec: str | None = None) -> Dataset:
    """The validated dataset that the registered reader of ``path`` returns, its ``options``
    (strings from ``--set``, TOML values or Python values) converted to the reader's annotations.
    Every problem is a one-line InputError naming the path (``spec``: as the user wrote it)."""
    readers = BUILTIN_READERS if readers is None else readers
    path = Path(path)
    spec = spec if spec is not None else str(path)
    if not path.exists():
        raise InputError(f"dataset path {spec!r} does not exist")
    reader = reader_for(path, readers)
    if reader is None:
        raise InputError(f"unsupported dataset file {path.name or spec!r}: use {kinds_text(readers)}")
    dataset = reader.read(path, **_reader_options(reader, dict(options or {}), readers, spec))
    if not isinstance(dataset, Dataset):
        raise InputError(f"the {reader.suffix} reader (plugin {reader.plugin}) did not return a Dataset")
    dataset.name = dataset.name or path.name
    return dataset.validate()


def open_in_memory(data: Any, options: dict[str, Any] | None = None) -> Dataset:
    """The validated dataset of data held in memory: a :class:`Dataset` as it is (it takes no
    options; :func:`~aigc_engine.data.arrays.from_arrays` builds one of arrays), or a pandas
    DataFrame read by the table reader with ``options`` (those of a ``.csv`` file). What
    :meth:`aigc_engine.Engine.load_dataset` opens when it is given data instead of a name."""
    options = dict(options or {})
    if isinstance(data, Dataset):
        if options:
            raise InputError(f"unknown option {sorted(options)[0]!r} for a dataset held in memory (it takes none)")
        return data.validate()
    if not hasattr(data, "columns"):
        raise InputError(f"cannot read a {type(data).__name__} as a dataset: give a DataFrame, a Dataset or a path")
    reader = BUILTIN_READERS[".csv"]
    return reader.read(data, **_reader_options(reader, options, BUILTIN_READERS, "DataFrame")).validate()


def _reader_options(reader: Reader, options: dict[str, Any], readers: dict[str, Reader], spec: str) -> dict:
    """The options typed for ``reader``; an option of another reader says which reader takes it."""
    try:
        return coerce_options(reader.options(), options, spec, reader.types())
    except InputError as err:
        unknown = sorted(set(options) - set(reader.options()))
        takers = [r.kind for r in readers.values() if unknown and unknown[0] in r.options()]
        if not takers:
            raise
        raise InputError(f"{err} ({unknown[0]} applies to {' and '.join(takers)} only)") from None


def from_file(path: str | Path, **options: Any) -> Dataset:
    """A dataset read from a file or folder with the core's readers; bad input raises a one-line
    InputError naming it.

    - ``.npy`` (:func:`~aigc_engine.data.arrays.read_npy`): ``N x D`` points, or images
      ``N x H x W``, ``N x C x H x W`` or ``N x H x W x C`` (C in 1, 3), memory-mapped.
    - ``.npz`` (:func:`~aigc_engine.data.arrays.read_npz`): array ``x``, optional labels ``y``
      and optional row weights ``w``.
    - ``.csv`` and ``.parquet`` (:func:`~aigc_engine.data.tablefile.read_table`): a table of
      continuous, integer and categorical columns with missing values, encoded as a float matrix
      (``dataset.encoding`` decodes it); options ``label_column``, ``weight_column``,
      ``categorical``, ``integer``, ``ignore``, the CSV dialect (``delimiter``, ``decimal``,
      ``thousands``, ``encoding``; sniffed by default) and ``continuous``.
    - a folder of PNG/JPEG images (:func:`~aigc_engine.data.images.read_folder`), one sub-folder
      per class or none; options ``size`` and ``channels``.

    Images become floats in [-1, 1]. Pickled or object arrays are refused without being unpickled.
    """
    return open_file(path, options, BUILTIN_READERS)
