"""Files on disk without pickle: tensors in safetensors, everything else in JSON, each file
written to a temporary name in the same directory and renamed into place (atomic on POSIX).

The lowest floor of the store: every file the engine writes goes through :func:`atomic_write`
(so its mode, its temporary name and its clean-up are decided here once), every JSON file
through :func:`write_json` / :func:`read_json`, every tensor tree through :func:`save_state` /
:func:`load_state`.
"""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save_file

from ..errors import InputError

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


def remove_stale_temporaries(directory: Path) -> list[Path]:
    """Delete the temporary files of :func:`atomic_write` calls that a kill (SIGKILL, power loss)
    interrupted in ``directory``; the files they were replacing are intact. Only call it when
    nothing else writes there (resuming a run). Returns the paths removed."""
    removed = []
    for tmp in Path(directory).glob(".*.tmp"):
        if tmp.is_file():
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


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


_TREE_KEY = "aigc_engine.tree"


def _encode(value: Any, path: str, tensors: dict[str, torch.Tensor], arrays: set[str]) -> Any:
    """JSON form of a state tree: tensors (and NumPy arrays) are stored in ``tensors`` under their
    path and referenced as ``{"$tensor": path}``; tuples and dicts with non-string keys keep their
    types (``{"$tuple": [...]}``, ``{"$dict": [[key, value], ...]}``), so an optimizer's integer
    parameter ids come back as integers."""
    if isinstance(value, torch.Tensor) or (isinstance(value, np.ndarray) and value.ndim > 0):
        is_array = isinstance(value, np.ndarray)
        t = torch.from_numpy(np.ascontiguousarray(value)) if is_array else value.detach().to("cpu")
        if any(t.untyped_storage().data_ptr() == o.untyped_storage().data_ptr() and t.numel()
               for o in tensors.values()):
            t = t.clone()  # safetensors refuses tensors that share memory
        while path in tensors:  # {"a/b": x} beside {"a": {"b": y}}
            path += "'"
        tensors[path] = t.contiguous()
        if is_array:
            arrays.add(path)
        return {"$tensor": path}
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        if all(isinstance(k, str) and not k.startswith("$") for k in value):
            return {k: _encode(v, f"{path}/{k}" if path else k, tensors, arrays) for k, v in value.items()}
        return {"$dict": [[_encode(k, f"{path}/#k{i}", tensors, arrays),
                           _encode(v, f"{path}/{k}" if path else str(k), tensors, arrays)]
                          for i, (k, v) in enumerate(value.items())]}
    if isinstance(value, (list, tuple)):
        items = [_encode(v, f"{path}/{i}" if path else str(i), tensors, arrays) for i, v in enumerate(value)]
        return {"$tuple": items} if isinstance(value, tuple) else items
    if isinstance(value, Path):
        return str(value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"{type(value).__name__} at {path!r} cannot be saved in a state file "
                    "(tensors, arrays, numbers, strings, lists, tuples and dicts can)")


def _decode(node: Any, tensors: dict[str, torch.Tensor], arrays: set[str]) -> Any:
    if isinstance(node, list):
        return [_decode(v, tensors, arrays) for v in node]
    if isinstance(node, dict):
        if "$tensor" in node:
            t = tensors[node["$tensor"]]
            return t.numpy() if node["$tensor"] in arrays else t
        if "$tuple" in node:
            return tuple(_decode(v, tensors, arrays) for v in node["$tuple"])
        if "$dict" in node:
            return {_hashable(_decode(k, tensors, arrays)): _decode(v, tensors, arrays) for k, v in node["$dict"]}
        return {k: _decode(v, tensors, arrays) for k, v in node.items()}
    return node


def _hashable(key: Any) -> Any:
    return tuple(_hashable(k) for k in key) if isinstance(key, list) else key


def _unflatten(flat: dict[str, Any]) -> dict[str, Any]:
    """Files written before the tree format: ``a/b`` paths, dict keys as strings."""
    out: dict[str, Any] = {}
    for key, value in flat.items():
        node = out
        *parents, leaf = key.split("/")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return out


def save_state(path: Path, state: dict[str, Any], metadata: dict[str, str] | None = None) -> None:
    """Save a nested state (dicts, lists, tuples of tensors, NumPy arrays and JSON-able values)
    as one safetensors file: tensors as tensors, the structure as JSON metadata. Key and
    container types survive the round trip (an optimizer's ``state_dict()`` loads back
    attached to its parameters). ``metadata``: extra strings for the header (see
    :func:`read_metadata`)."""
    tensors: dict[str, torch.Tensor] = {}
    arrays: set[str] = set()
    tree = _encode(state, "", tensors, arrays)
    meta = {**(metadata or {}), _TREE_KEY: json.dumps({"tree": tree, "arrays": sorted(arrays)})}
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=meta))


def read_metadata(path: Path) -> dict[str, str]:
    """The string metadata of a safetensors file (its header only; no tensor is read)."""
    from safetensors import safe_open

    with _readable(Path(path)):
        with safe_open(str(path), framework="pt") as fh:
            return dict(fh.metadata() or {})


@contextlib.contextmanager
def _readable(path: Path):
    """Turns the ways a state file can be unreadable (missing, truncated, foreign, a pickle)
    into an InputError naming it."""
    try:
        yield
    except FileNotFoundError:
        raise InputError(f"{path} does not exist") from None
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise InputError(f"{path} is not a readable aigc-engine state file "
                         f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else 'corrupt'})") from None
    except Exception as err:  # safetensors' own SafetensorError derives from Exception
        if type(err).__name__ != "SafetensorError":
            raise
        raise InputError(f"{path} is not a readable safetensors file ({err})") from None


def load_state(path: Path, device: str | torch.device = "cpu") -> dict[str, Any]:
    """Inverse of :func:`save_state` (no pickle involved). A file that is not a state file
    written by :func:`save_state` (missing, truncated, foreign, a pickle) is an InputError
    naming it."""
    from safetensors import safe_open

    path = Path(path)
    with _readable(path):
        with safe_open(str(path), framework="pt", device=str(device)) as fh:
            metadata = fh.metadata() or {}
            tensors: dict[str, Any] = {key: fh.get_tensor(key) for key in fh.keys()}
        if _TREE_KEY in metadata:
            info = json.loads(metadata[_TREE_KEY])
            return _decode(info["tree"], tensors, set(info.get("arrays", ())))
        tensors.update(json.loads(metadata.get(_EXTRA_KEY, "{}")))
        return _unflatten(tensors)
