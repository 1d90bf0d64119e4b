"""Datasets: points ``N x D`` or images ``N x C x H x W`` in [-1, 1], optionally labelled.

- :mod:`.dataset`: the :class:`Dataset` container and its public row access (``rows``,
  ``take``, ``iter_chunks``), splits, shards, ``levels`` / ``bin_width`` and ``encoding``.
- :mod:`.synthetic`: the built-in sets ``ring8``, ``grid25``, ``moons``, ``blobs``, ``digits``,
  registered by the core through the same hook as any plugin's datasets.
- :mod:`.readers`: file readers keyed by suffix (``.npy``, ``.npz``, ``.csv``; ``"folder"`` for
  directories of PNG/JPEG images), registered through ``aigc_engine_register_readers``, and
  :func:`from_file` / :func:`open_file`, which resolve a path to its reader.
"""
from __future__ import annotations

from .dataset import Dataset, check_weights
from .images import IMAGE_SUFFIXES
from .readers import BUILTIN_READERS, FOLDER, Reader, file_kind, from_file, open_file, reader_for
from .synthetic import BUILTIN_DATASETS, blobs, digits, grid25, moons, ring8

__all__ = ["Dataset", "check_weights", "ring8", "grid25", "moons", "blobs", "digits", "from_file", "open_file", "file_kind",
           "reader_for", "Reader", "FOLDER", "FILE_OPTIONS", "IMAGE_SUFFIXES", "BUILTIN_DATASETS",
           "BUILTIN_READERS"]

# The core readers' options, ``{key: {option: (default, annotation)}}`` (the form of 0.1; the
# readers' signatures are the source).
FILE_OPTIONS: dict[str, dict[str, tuple[object, object]]] = {
    key: {name: (default, reader.types()[name]) for name, default in reader.options().items()}
    for key, reader in BUILTIN_READERS.items()}
