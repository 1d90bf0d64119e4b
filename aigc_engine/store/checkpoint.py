"""The format of a run's state files: ``checkpoint.safetensors`` (the training state, for
``--resume``) and ``model.safetensors`` (the fitted weights).

Both are a tensor tree of :func:`aigc_engine.store.io.save_state` with a versioned header in the
safetensors metadata (``aigc_engine.format``). Files written before the header (format 0) are
read as they are; a file of a newer format than this version reads is refused in one line. The
checkpoint also records the last logged step it includes, so that on ``--resume`` the metrics
log is cut back to it (:func:`rewind_metrics`), and training checkpoints carry the random
generators' states (:func:`rng_state` / :func:`set_rng_state`).
"""
from __future__ import annotations

import json
import math
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import InputError
from . import io

FORMAT = 1  # the format this version writes, and the newest it reads
FORMAT_KEY = "aigc_engine.format"
STEP_KEY = "aigc_engine.step"


def save(path: Path, state: dict[str, Any], step: int | None = None) -> None:
    """Write ``state`` atomically with the format header; ``step``: the last logged step it holds."""
    meta = {FORMAT_KEY: str(FORMAT)}
    if step is not None:
        meta[STEP_KEY] = str(int(step))
    io.save_state(path, state, metadata=meta)


def format_of(path: Path) -> int:
    """The format of a state file (0 for files written before the header); an InputError for one
    this version cannot read."""
    meta = io.read_metadata(path)
    try:
        version = int(meta.get(FORMAT_KEY, "0"))
    except ValueError:
        raise InputError(f"{path} has an unreadable format header {meta[FORMAT_KEY]!r}") from None
    if version > FORMAT:
        from .. import __version__

        raise InputError(f"{path} is in state format {version}, newer than the format {FORMAT} that "
                         f"aigc-engine {__version__} reads: upgrade aigc-engine to use it")
    return version


def load(path: Path, device: str | torch.device = "cpu") -> dict[str, Any]:
    """The state of a file written by :func:`save` (or before the header), checked for its format."""
    format_of(path)
    return io.load_state(path, device=device)


def last_step(path: Path) -> float:
    """The last logged step a checkpoint includes (infinity for files that do not say)."""
    meta = io.read_metadata(path)
    return int(meta[STEP_KEY]) if STEP_KEY in meta else math.inf


def rewind_metrics(metrics_path: Path, checkpoint_path: Path, write: bool) -> list[dict[str, Any]]:
    """On resume: the logged rows the checkpoint covers; with ``write`` (the main process),
    ``metrics_path`` is rewritten to them atomically, so that the steps after the checkpoint,
    logged again, appear once. Without a checkpoint, no rows."""
    last = last_step(checkpoint_path) if checkpoint_path.exists() else None
    rows = []
    if metrics_path.exists():
        for line in metrics_path.read_text().splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:  # a line cut by a kill
                continue
            if last is not None and isinstance(row, dict) and row.get("step", 0) <= last:
                rows.append(row)
        if write:
            text = "".join(json.dumps(r, default=io.jsonable) + "\n" for r in rows)
            io.atomic_write(metrics_path, lambda tmp: Path(tmp).write_text(text))
    return rows


# ---------------------------------------------------------------------------------------------
# random number generators
def rng_state() -> dict[str, Any]:
    """Python, NumPy, torch CPU (and CUDA) generator states, in a form a checkpoint holds."""
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"python": [version, list(internal), gauss], "numpy": [kind, keys, int(pos), int(has_gauss), float(cached)],
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = list(torch.cuda.get_rng_state_all())
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` captured."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), int(pos), int(has_gauss), float(cached)))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(list(state["cuda"]))
