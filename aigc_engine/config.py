"""Model configs from TOML files and ``--set key=value`` overrides, checked against the
model's ``Config`` dataclass field types. Keys ``dataset.KEY`` set dataset options."""
from __future__ import annotations

import dataclasses
import tomllib
import types
import typing
from pathlib import Path
from typing import Any

from .errors import InputError

DATASET_PREFIX = "dataset."


def field_types(config_cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(config_cls)
    return {f.name: hints.get(f.name, type(f.default)) for f in dataclasses.fields(config_cls)}


def type_name(tp: Any) -> str:
    if typing.get_origin(tp) is typing.Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def coerce(tp: Any, value: Any, key: str) -> Any:
    """Convert ``value`` (a string from the command line, or a TOML value) to type ``tp``."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            if type(None) in args:
                return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return coerce(arg, value, key)
            except InputError:
                pass
        raise InputError(f"{key} must be {type_name(tp)}, got {value!r}")
    if origin is typing.Literal:
        for choice in args:
            if value == choice or (isinstance(value, str) and str(choice) == value):
                return choice
        raise InputError(f"{key} must be one of {', '.join(repr(a) for a in args)}, got {value!r}")
    if origin in (tuple, list):
        items = value
        if isinstance(value, str):
            items = [v for v in value.replace(" ", "").split(",") if v] if value.strip() else []
        if not isinstance(items, (list, tuple)):
            raise InputError(f"{key} must be a comma-separated list, got {value!r}")
        inner = args[0] if args else str
        out = [coerce(inner, v, key) for v in items]
        return tuple(out) if origin is tuple else out
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("1", "true", "yes", "on"):
            return True
        if isinstance(value, str) and value.lower() in ("0", "false", "no", "off"):
            return False
        raise InputError(f"{key} must be a bool (true/false), got {value!r}")
    if tp is int:
        if isinstance(value, bool):
            raise InputError(f"{key} must be an int, got {value!r}")
        try:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            return int(value) if not isinstance(value, str) else int(value, 0)
        except (TypeError, ValueError):
            raise InputError(f"{key} must be an int, got {value!r}") from None
    if tp is float:
        if isinstance(value, bool):
            raise InputError(f"{key} must be a float, got {value!r}")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise InputError(f"{key} must be a float, got {value!r}") from None
    if tp is str:
        if not isinstance(value, str):
            raise InputError(f"{key} must be a string, got {value!r}")
        return value
    return value


def parse_sets(sets: list[str]) -> dict[str, str]:
    out = {}
    for item in sets:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise InputError(f"--set expects key=value, got {item!r}")
        out[key.strip()] = value.strip()
    return out


def read_toml(path: str | Path) -> dict[str, Any]:
    """A config file: top-level keys are model Config fields; an optional ``[dataset]`` table
    holds ``name`` and dataset options."""
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise InputError(f"config file {str(path)!r} does not exist") from None
    except tomllib.TOMLDecodeError as err:
        raise InputError(f"config file {str(path)!r} is not valid TOML: {err}") from None


def build_config(config_cls: type, values: dict[str, Any], model_name: str = "model") -> Any:
    """``config_cls(**values)`` with each value checked and converted to its field's type."""
    types_ = field_types(config_cls)
    unknown = sorted(set(values) - set(types_))
    if unknown:
        raise InputError(f"unknown config key {unknown[0]!r} for {model_name}; valid keys: "
                         + ", ".join(f"{k} ({type_name(t)})" for k, t in types_.items()))
    kwargs = {k: coerce(types_[k], v, k) for k, v in values.items()}
    try:
        return config_cls(**kwargs)
    except (TypeError, ValueError) as err:
        raise InputError(f"invalid {model_name} config: {err}") from None


def split_dataset_keys(values: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Separate ``dataset.KEY`` entries from model config entries."""
    model, dataset = {}, {}
    for key, value in values.items():
        if key.startswith(DATASET_PREFIX):
            dataset[key[len(DATASET_PREFIX):]] = value
        else:
            model[key] = value
    return model, dataset


def coerce_options(defaults: dict[str, Any], values: dict[str, Any], dataset: str,
                   types: dict[str, Any] | None = None) -> dict[str, Any]:
    """Dataset options: typed by ``types[key]`` where given, else by the factory's defaults;
    unknown names list the valid ones."""
    unknown = sorted(set(values) - set(defaults))
    if unknown:
        valid = ", ".join(f"{k} (default {v!r})" for k, v in defaults.items()) or "none"
        raise InputError(f"unknown option {unknown[0]!r} for dataset {dataset}; valid options: {valid}")
    out = {}
    for key, value in values.items():
        if types and types.get(key) is not None:
            out[key] = coerce(types[key], value, f"dataset.{key}")
            continue
        default = defaults[key]
        tp = type(default) if default is not None and not isinstance(value, type(default)) else None
        out[key] = coerce(tp, value, f"dataset.{key}") if tp in (int, float, bool, str) else value
    return out
