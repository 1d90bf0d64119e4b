"""Files on disk without pickle: tensors in safetensors, everything else in JSON, each file
written to a temporary name in the same directory and renamed into place (atomic on POSIX).

The lowest floor of the store: every file the engine writes goes through :func:`atomic_write`
(so its mode, its temporary name and its clean-up are decided here once), every JSON file
through :func:`write_json` / :func:`read_json`, every tensor tree through :func:`save_state` /
:func:`load_state`.
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import math
import os
import re
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save_file

from ..errors import EnvironmentFault, InputError

_EXTRA_KEY = "aigc_engine.extra"
_SHA_KEY = "aigc_engine.sha256"
_UMASK = os.umask(0)
os.umask(_UMASK)
FILE_MODE = 0o666 & ~_UMASK  # the mode of every file the engine writes: what open() would give
# what the machine, not the input, is short of: each with what to do about it
_ENVIRONMENT = {errno.ENOSPC: "the disk is full: free space there or write elsewhere (--out)",
                errno.EDQUOT: "the disk quota is exhausted: free space there or write elsewhere (--out)",
                errno.EROFS: "the file system is read-only: write elsewhere (--out)",
                errno.EACCES: "permission denied: write where you may (--out)",
                errno.EPERM: "permission denied: write where you may (--out)"}


def environment_fault(err: BaseException, path: Path | str | None = None) -> EnvironmentFault | None:
    """The one-line :class:`~aigc_engine.errors.EnvironmentFault` of an OSError that says the
    machine refused a write (full disk, quota, read-only file system, permissions), else None."""
    if isinstance(err, EnvironmentFault):
        return err
    code = err.errno if isinstance(err, OSError) else None
    if code is None:  # writers in Rust (safetensors) report the system's error in their message
        found = re.search(r"\(os error (\d+)\)", str(err))
        code = int(found.group(1)) if found else None
    if code not in _ENVIRONMENT:
        return None
    where = path if path is not None else (getattr(err, "filename", None) or "a file")
    return EnvironmentFault(code, f"cannot write {where}: {_ENVIRONMENT[code]}")


@contextlib.contextmanager
def writing(path: Path | str):
    """Turns an environment's refusal of a write to ``path`` into an EnvironmentFault."""
    try:
        yield
    except Exception as err:  # noqa: BLE001  (OSError, or a writer's own error quoting one)
        fault = environment_fault(err, path)
        if fault is None or fault is err:
            raise
        raise fault from None


def atomic_write(path: Path, write) -> None:
    """Call ``write(tmp_path)``, then rename the temporary file onto ``path`` (mode
    :data:`FILE_MODE`). A full disk or a read-only directory is an EnvironmentFault naming
    ``path``; ``path`` is then as it was."""
    path = Path(path)
    with writing(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        try:
            write(tmp)
            # after the write: writers that re-create the path (safetensors' save_file) reset its mode
            os.chmod(tmp, FILE_MODE)
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
    """``obj`` as strict JSON (see :func:`finite`: NaN and infinities become null, with a warning)."""
    obj = finite(obj, Path(path).name)

    def write(tmp):
        with open(tmp, "w") as fh:
            json.dump(obj, fh, indent=2, sort_keys=False, default=jsonable, allow_nan=False)
            fh.write("\n")
    atomic_write(path, write)


def finite(obj: Any, where: str, warn: bool = True) -> Any:
    """``obj`` with each NaN or infinite float (also in tensors and NumPy values) replaced by None,
    so that it is strict JSON (``NaN`` and ``Infinity`` are not, and strict readers refuse them);
    with ``warn``, a warning names the entries replaced (``where``: the file or output)."""
    replaced: list[str] = []
    out = _finite(json.loads(json.dumps(obj, default=jsonable)), "", replaced)
    if replaced and warn:
        import warnings

        warnings.warn(f"{where}: {', '.join(replaced)} not finite, written as null (JSON has no NaN or "
                      "infinity)", UserWarning, stacklevel=3)
    return out


def _finite(value: Any, key: str, replaced: list[str]) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        replaced.append(f"{key or 'a value'}={value}")
        return None
    if isinstance(value, dict):
        return {k: _finite(v, f"{key}.{k}" if key else str(k), replaced) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v, f"{key}[{i}]", replaced) for i, v in enumerate(value)]
    return value


def read_json(path: Path) -> Any:
    with open(path, encoding="utf-8") as fh:
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
    meta[_SHA_KEY] = checksum(tensors, meta)
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=meta))


def checksum(tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> str:
    """The sha256 of a state file's content: every tensor (name, dtype, shape, bytes, in name
    order) and every metadata entry but the checksum itself. It lives in the file's own header,
    so that file and checksum are replaced by one rename: a manifest beside the file would
    disagree with it after a kill between the two writes."""
    digest = hashlib.sha256()
    for key in sorted(metadata):
        if key != _SHA_KEY:
            digest.update(f"{key}={metadata[key]}\0".encode())
    for name in sorted(tensors):
        t = tensors[name].detach().to("cpu").contiguous()
        digest.update(f"{name}:{t.dtype}:{list(t.shape)}\0".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


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
    if _SHA_KEY in metadata and checksum(tensors, metadata) != metadata[_SHA_KEY]:
        raise InputError(f"{path} is damaged: its content does not match the sha256 checksum it was "
                         "written with (a changed byte, or a cut copy)")
    with _readable(path):
        if _TREE_KEY in metadata:
            info = json.loads(metadata[_TREE_KEY])
            return _decode(info["tree"], tensors, set(info.get("arrays", ())))
        tensors.update(json.loads(metadata.get(_EXTRA_KEY, "{}")))
        return _unflatten(tensors)
