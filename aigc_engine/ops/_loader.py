"""Loads the compiled extension once and remembers why it could not be loaded.

Policy (as xformers' ``_cpp_lib`` and Liger-Kernel): ``AIGC_ENGINE_BACKEND=auto`` (default) uses
the extension when it loads and silently falls back to the pure-PyTorch reference otherwise;
``ext`` makes a failed load an error at the first kernel call (with the reason); ``torch``
forces the reference.
"""
from __future__ import annotations

import os

import torch

BACKENDS = ("auto", "ext", "torch")

_loaded: bool | None = None
_load_error: str = ""
_requested: str | None = None


def _load() -> bool:
    global _loaded, _load_error
    if _loaded is None:
        try:
            from .. import _C  # noqa: F401  (runs the TORCH_LIBRARY registrations)
            from . import _registrations  # noqa: F401  (fake and autograd kernels)
            _loaded = True
        except Exception as exc:  # ImportError, or an OSError from a missing symbol
            _loaded = False
            _load_error = f"{type(exc).__name__}: {exc}"
    return _loaded


def requested() -> str:
    """The backend asked for: ``set_backend`` if called, else ``$AIGC_ENGINE_BACKEND``, else auto."""
    if _requested is not None:
        return _requested
    raw = os.environ.get("AIGC_ENGINE_BACKEND", "auto")
    name = raw.strip().lower() or "auto"
    if name not in BACKENDS:
        raise ValueError(f"AIGC_ENGINE_BACKEND must be one of {BACKENDS}, got {raw!r}")
    return name


def set_backend(name: str | None) -> None:
    """Override ``$AIGC_ENGINE_BACKEND`` in-process (``None`` goes back to the variable)."""
    global _requested
    if name is not None and name not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {name!r}")
    _requested = name


def use_extension() -> bool:
    """Whether the kernels should run in the extension; raises when ``ext`` cannot be honoured."""
    want = requested()
    if want == "torch":
        return False
    ok = _load()
    if not ok and want == "ext":
        raise RuntimeError("AIGC_ENGINE_BACKEND=ext but the compiled extension aigc_engine._C "
                           f"could not be loaded: {_load_error}. Rebuild it with "
                           "`pip install --no-build-isolation -e .`, or use AIGC_ENGINE_BACKEND=auto.")
    return ok


def cuda_compiled() -> bool:
    if not _load():
        return False
    try:
        return bool(torch._C._dispatch_has_kernel_for_dispatch_key("aigc_engine::gan_d_loss", "CUDA"))
    except Exception:
        return False


def info() -> dict:
    want = requested()
    ok = _load() if want != "torch" else (_loaded is True)
    if want == "torch":
        backend, reason = "torch", "forced by AIGC_ENGINE_BACKEND=torch"
    elif ok:
        backend, reason = "ext", "compiled extension aigc_engine._C loaded"
    elif want == "ext":
        backend, reason = "ext", f"requested but unavailable (kernel calls will raise): {_load_error}"
    else:
        backend, reason = "torch", f"fallback, extension not loaded: {_load_error}"
    return {"backend": backend, "reason": reason, "cuda": cuda_compiled() if ok else False,
            "requested": want, "extension_loaded": bool(ok)}
