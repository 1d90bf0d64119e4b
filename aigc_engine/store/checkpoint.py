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
    """The state of a file written by :func:`save` (or before the header), checked for its format,
    its checksum (files written with one) and finite values: a tensor or array of NaN or infinity
    is an InputError naming the file and the entry. The one loader of weights, checkpoints and
    encodings."""
    format_of(path)
    state = io.load_state(path, device=device)
    for where, value in _state_leaves(state, ""):
        if _is_float_tensor(value) and not bool(torch.isfinite(torch.as_tensor(value)).all()):
            raise InputError(f"{path} is damaged: {where or 'a tensor'} holds NaN or infinite values")
    return state


def restore(obj: Any, state: dict[str, Any], path: Path) -> None:
    """``obj.load_state_dict(state)`` (``state``: what :func:`load` read from ``path``), checked
    against what ``obj`` expects: each tensor's shape and kind of dtype (floating, integer, bool)
    as ``obj`` holds it before and after. A state of other shapes (another width) or of integers
    where the model holds floats is an InputError naming the file, not a failure inside the
    model or a model of garbage."""
    try:
        before = obj.state_dict()
    except Exception:  # noqa: BLE001  (an unfitted model may have no state to compare yet)
        before = None
    check_like(state, before, path)
    try:
        obj.load_state_dict(state)
    except (RuntimeError, KeyError, TypeError, IndexError) as err:
        text = str(err).strip().splitlines()
        raise InputError(f"{path} does not fit this model ({type(err).__name__}: "
                         f"{' '.join(line.strip() for line in text[:2])})") from None
    check_like(state, obj.state_dict(), path)


def check_like(saved: Any, expected: Any, path: Path, where: str = "") -> None:
    """Raise an InputError naming ``path`` and the entry where a tensor of ``saved`` differs from
    the one of ``expected`` at the same place in shape or kind of dtype; places only one holds
    are not compared (an optimizer has no state before its first step), except the parameters of
    a module (a dict of tensors), which must match one for one."""
    if _is_tensor_like(expected):
        if not _is_tensor_like(saved):
            raise InputError(f"{path} does not fit this model: {where} is not a tensor")
        got, want = np.asarray(saved.shape if hasattr(saved, "shape") else ()), np.asarray(expected.shape)
        if got.tolist() != want.tolist():
            raise InputError(f"{path} does not fit this model: {where} has shape {got.tolist()}, the model's "
                             f"{want.tolist()} (was it written with other settings?)")
        if _value_kind(saved) != _value_kind(expected):
            raise InputError(f"{path} does not fit this model: {where} holds {_dtype_text(saved)} values where the "
                             f"model holds {_dtype_text(expected)}")
    elif isinstance(expected, dict) and isinstance(saved, dict):
        if expected and all(_is_tensor_like(v) for v in expected.values()) and set(saved) != set(expected):
            odd = sorted(set(saved) ^ set(expected), key=str)[0]
            raise InputError(f"{path} does not fit this model: {'/'.join(filter(None, (where, str(odd))))} "
                             f"is {'missing' if odd in expected else 'not one of its parameters'}")
        for key in set(saved) & set(expected):
            check_like(saved[key], expected[key], path, "/".join(filter(None, (where, str(key)))))
    elif isinstance(expected, (list, tuple)) and isinstance(saved, (list, tuple)) and len(saved) == len(expected):
        for i, (s, e) in enumerate(zip(saved, expected)):
            check_like(s, e, path, "/".join(filter(None, (where, str(i)))))


def _state_leaves(node: Any, where: str):
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _state_leaves(value, f"{where}/{key}" if where else str(key))
    elif isinstance(node, (list, tuple)):
        for i, value in enumerate(node):
            yield from _state_leaves(value, f"{where}/{i}" if where else str(i))
    else:
        yield where, node


def _is_tensor_like(value: Any) -> bool:
    return isinstance(value, (torch.Tensor, np.ndarray))


def _is_float_tensor(value: Any) -> bool:
    return (isinstance(value, torch.Tensor) and value.is_floating_point()) or (
        isinstance(value, np.ndarray) and value.dtype.kind == "f")


def _dtype_text(value: Any) -> str:
    return str(value.dtype).replace("torch.", "")


def _value_kind(value: Any) -> str:
    """``f`` (floating), ``i`` (integer), ``b`` (bool), ``c`` (complex), as NumPy's dtype kinds."""
    if isinstance(value, torch.Tensor):
        if value.dtype == torch.bool:
            return "b"
        return "c" if value.is_complex() else "f" if value.is_floating_point() else "i"
    return "i" if value.dtype.kind == "u" else value.dtype.kind


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
