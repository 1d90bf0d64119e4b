"""The run directory: the names of its files, claiming one exclusively and releasing it after a
failed start, reading its ``config.json``, appending to ``metrics.jsonl`` and keeping a table's
encoding. Every other module names these files through the constants here, so a change of
layout is a change of this file.

Only the standard library at import (the CLI imports this without torch); the functions that
read or write tensors import :mod:`.checkpoint` when called.
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import fcntl
import itertools
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

from ..errors import InputError

CONFIG_FILE = "config.json"  # the resolved config, model, dataset, seed, versions; the claim marker
METRICS_FILE = "metrics.jsonl"  # one JSON object per logged step
CHECKPOINT_FILE = "checkpoint.safetensors"  # the training state (see aigc_engine.store.checkpoint)
MODEL_FILE = "model.safetensors"  # the fitted weights
SUMMARY_FILE = "summary.json"  # the final metrics
ENCODING_FILE = "encoding.safetensors"  # a table's column encoding (tables only; see save_encoding)
SAMPLES_PNG = "samples.png"
METRICS_PNG = "metrics.png"
SAMPLES_NPY = "samples.npy"  # where ``aigc-engine sample`` writes without -o (not part of the run itself)
SAMPLES_CSV = "samples.csv"  # the same for a table run
LOCK_FILE = ".aigc-engine.lock"  # flock()ed by the process that runs in the directory, for the whole run
RUN_FILES = (CONFIG_FILE, METRICS_FILE, CHECKPOINT_FILE, MODEL_FILE, ENCODING_FILE, SUMMARY_FILE, SAMPLES_PNG,
             METRICS_PNG)
DEFAULT_PARENT = Path("runs")
_HELD: dict[Path, int] = {}  # the run directories this process holds the lock of: their lock file's descriptor


def default_name(*parts: str) -> str:
    """The name of a default run directory, ``<parts>-<time>``, for ``parts`` such as (model,
    dataset): the last part (a dataset's file path) reduced to its stem, characters a file name
    should not hold replaced."""
    stem = "-".join([*parts[:-1], Path(parts[-1]).stem]) if parts else "run"
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", stem) + f"-{stamp}"


def claim(out: Path | None, *name_parts: str, marker: str = CONFIG_FILE,
          reclaim=None) -> tuple[Path, bool]:
    """Make the directory this run alone owns: ``out``, or ``runs/<name_parts>-<time>`` (``-2``,
    ``-3``, ... when taken), and hold its lock (:func:`lock`) until :func:`unlock`. The claim is
    the exclusive creation of ``marker`` (``config.json``; another file for a directory of another
    kind, such as ``compare.json``), so of several runs started at once on one ``out`` exactly one
    wins and the others get an InputError. An empty marker under a free lock is the leftover of a
    process killed between its claim and its first write: it is taken over, as is a marker for
    which ``reclaim(path)`` is true. Returns the path and whether this call created the directory."""
    if out is None:
        base = DEFAULT_PARENT / default_name(*name_parts)
        with _writing(base.parent):
            base.parent.mkdir(parents=True, exist_ok=True)
        for i in itertools.count(1):
            path = base if i == 1 else Path(f"{base}-{i}")
            try:
                with _writing(path):
                    path.mkdir()
            except FileExistsError:
                continue
            lock(path)
            _create_marker(path / marker, path, reclaim)
            return path, True
    out = Path(out)
    created = not out.exists()
    try:
        with _writing(out):
            out.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise InputError(f"--out {out} exists and is not a directory") from None
    if out.resolve() in _HELD:  # this process runs there already: its empty marker is no leftover
        raise InputError(f"{out} already holds a run; choose another --out")
    lock(out)
    try:
        _create_marker(out / marker, out, reclaim)
    except BaseException:
        unlock(out)
        raise
    return out, created


def _create_marker(path: Path, run_dir: Path, reclaim) -> None:
    """Create the claim's marker (the caller holds the lock of ``run_dir``)."""
    _refuse_links(run_dir)
    try:
        with _writing(path):
            os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW, 0o666))
    except FileExistsError:
        if path.stat().st_size == 0 or (reclaim is not None and reclaim(path)):
            return  # a dead claim's leftover: nobody holds the lock, so nobody writes here
        hint = " or --resume it" if path.name == CONFIG_FILE else ""
        raise InputError(f"{run_dir} already holds a run; choose another --out{hint}") from None


def _refuse_links(run_dir: Path) -> None:
    """A run file that is a symbolic link would send the run's writes (an append to the metrics
    log) out of the directory, into whatever it points at."""
    for name in (*RUN_FILES, LOCK_FILE):
        if (Path(run_dir) / name).is_symlink():
            raise InputError(f"{Path(run_dir) / name} is a symbolic link; a run directory's files must be "
                             "its own (remove the link)")


def lock(run_dir: Path) -> None:
    """Hold the lock of ``run_dir`` (``flock`` on its :data:`LOCK_FILE`) for this process until
    :func:`unlock` or its end (the system drops the lock of a killed process). Another process
    holding it is an InputError naming the directory: two processes never run in one."""
    run_dir = Path(run_dir)
    key = run_dir.resolve()
    if key in _HELD:
        return
    _refuse_links(run_dir)
    with _writing(run_dir / LOCK_FILE):
        fd = os.open(run_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise InputError(f"{run_dir} is in use by another aigc-engine process (a run or --resume of it "
                         "is going on); wait for it to end") from None
    _HELD[key] = fd


def unlock(run_dir: Path | None) -> None:
    """Give up the lock :func:`lock` took (nothing when this process does not hold it)."""
    fd = _HELD.pop(Path(run_dir).resolve(), None) if run_dir is not None else None
    if fd is not None:
        os.close(fd)


def _writing(path: Path):
    """What :func:`aigc_engine.store.io.writing` is, imported when used (it needs torch)."""
    from .io import writing

    return writing(path)


def release(run_dir: Path | None, created: bool, files: tuple[str, ...] = RUN_FILES) -> None:
    """After a run failed before it wrote anything worth keeping (no checkpoint): remove what it
    wrote (``files``, and temporaries of interrupted atomic writes), and the directory itself when
    it made it, so that no half-written run is left behind."""
    if run_dir is None or (run_dir / CHECKPOINT_FILE).exists():
        unlock(run_dir)
        return
    if created:
        unlock(run_dir)
        shutil.rmtree(run_dir, ignore_errors=True)
        if run_dir.parent.name == DEFAULT_PARENT.name:  # the default parent, when this made it and it is empty
            with contextlib.suppress(OSError):
                run_dir.parent.rmdir()
        return
    for name in files:
        (run_dir / name).unlink(missing_ok=True)
    for tmp in run_dir.glob(".*.tmp"):
        tmp.unlink(missing_ok=True)
    (run_dir / LOCK_FILE).unlink(missing_ok=True)
    unlock(run_dir)


def read_config(run_dir: Path) -> dict[str, Any]:
    """The ``config.json`` of a run directory; an InputError naming the file when there is none or
    it is not a run config."""
    path = Path(run_dir) / CONFIG_FILE
    if not path.is_file():
        raise InputError(f"{run_dir} is not a run directory (no {CONFIG_FILE})")
    if path.stat().st_size == 0:  # the claim's empty marker: its process was killed before writing it
        raise InputError(f"{path} is empty: the run that claimed {run_dir} was killed before it started; "
                         f"start it again with --out {run_dir}")
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, OSError) as err:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise InputError(f"{path} is not a readable run config ({type(err).__name__}: "
                         f"{str(err).splitlines()[0] if str(err) else 'unreadable'})") from None
    if not isinstance(saved, dict) or "model" not in saved:
        raise InputError(f"{path} is not an aigc-engine run config")
    return saved


def append_metrics(run_dir: Path, row: dict[str, Any]) -> None:
    """One logged step as a line of ``metrics.jsonl`` (tensors and NumPy values as JSON)."""
    from .io import jsonable

    path = Path(run_dir) / METRICS_FILE
    try:  # O_NOFOLLOW: a link planted in the directory is refused, not followed out of it
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666)
    except OSError as err:
        if Path(path).is_symlink():
            raise InputError(f"{path} is a symbolic link; a run directory's files must be its own") from None
        raise _fault(err, path) from None
    with _writing(path), os.fdopen(fd, "a") as fh:
        fh.write(json.dumps(row, default=jsonable) + "\n")


def _fault(err: OSError, path: Path) -> OSError:
    from .io import environment_fault

    return environment_fault(err, path) or err


def save_encoding(run_dir: Path, state: dict[str, Any]) -> None:
    """A table's encoding (its ``state_dict()``) as ``encoding.safetensors``, atomically."""
    from . import checkpoint

    checkpoint.save(Path(run_dir) / ENCODING_FILE, state)


def load_encoding(run_dir: Path) -> dict[str, Any] | None:
    """The state of a table run's encoding, or None for a run on points or images."""
    from . import checkpoint

    path = Path(run_dir) / ENCODING_FILE
    return checkpoint.load(path) if path.exists() else None
