"""Artifacts on disk without pickle: tensors in safetensors, everything else in JSON, each file
written to a temporary name in the same directory and renamed into place (atomic on POSIX)."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

_EXTRA_KEY = "aigc_engine.extra"
_UMASK = os.umask(0)
os.umask(_UMASK)


def atomic_write(path: Path, write) -> None:
    """Call ``write(tmp_path)``, then rename the temporary file onto ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the file the usual permissions
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_json(path: Path, obj: Any) -> None:
    def write(tmp):
        with open(tmp, "w") as fh:
            json.dump(obj, fh, indent=2, sort_keys=False, default=jsonable)
            fh.write("\n")
    atomic_write(path, write)


def read_json(path: Path) -> Any:
    with open(path) as fh:
        return json.load(fh)


def jsonable(value):
    """JSON form of tensors, NumPy values and paths (``default=`` of ``json.dump``)."""
    if isinstance(value, torch.Tensor) or hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _flatten(state: dict, prefix: str = "") -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Tensors under their ``a/b`` paths for safetensors; every other leaf for the JSON part."""
    tensors, extra = {}, {}
    for key, value in state.items():
        full = f"{prefix}{key}"
        if isinstance(value, torch.Tensor):
            tensors[full] = value.detach().to("cpu").contiguous()
        elif isinstance(value, dict) and value:
            sub_t, sub_e = _flatten(value, full + "/")
            tensors.update(sub_t)
            extra.update(sub_e)
        else:
            extra[full] = value
    return tensors, extra


def _unflatten(flat: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in flat.items():
        node = out
        *parents, leaf = key.split("/")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return out


def save_state(path: Path, state: dict[str, Any]) -> None:
    """Save a (possibly nested) dict of tensors and JSON-able values as one safetensors file
    (dict keys come back as strings)."""
    tensors, extra = _flatten(state)
    metadata = {_EXTRA_KEY: json.dumps(extra, default=jsonable)}
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=metadata))


def load_state(path: Path, device: str | torch.device = "cpu") -> dict[str, Any]:
    """Inverse of :func:`save_state` (no pickle involved)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt", device=str(device)) as fh:
        metadata = fh.metadata() or {}
        flat: dict[str, Any] = {key: fh.get_tensor(key) for key in fh.keys()}
    flat.update(json.loads(metadata.get(_EXTRA_KEY, "{}")))
    return _unflatten(flat)
