"""Model configs from TOML files and ``--set key=value`` overrides, checked against the
model's ``Config`` dataclass: field types, and the ranges and help a field declares with
:func:`option`. Keys ``dataset.KEY`` set dataset options. Per-data-kind defaults: a field left at
None takes the value for the data's kind (:func:`data_kind`, :func:`resolve_defaults`), on a
table with the batch and the steps fitted to its rows (:func:`fit_to_table`)."""
from __future__ import annotations

import dataclasses
import math
import tomllib
import types
import typing
from pathlib import Path
from typing import Any

from .errors import InputError

DATASET_PREFIX = "dataset."
OPTION_KEY = "aigc_engine"  # the dataclasses.field metadata key of an option's declaration


@dataclasses.dataclass(frozen=True)
class OptionSpec:
    """What :func:`option` declares of a Config field: its help and the values it allows."""
    help: str = ""
    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    choices: tuple | None = None

    def requirement(self) -> str:
        """The allowed values in words: ``>= 1``, ``in [0, 1)``, ``one of a, b``."""
        if self.choices is not None:
            return "one of " + ", ".join(map(str, self.choices))
        lo = (f"[{self.ge:g}" if self.ge is not None else f"({self.gt:g}") if (self.ge, self.gt) != (None, None) else None
        hi = (f"{self.le:g}]" if self.le is not None else f"{self.lt:g})") if (self.le, self.lt) != (None, None) else None
        if lo and hi:
            return f"in {lo}, {hi}"
        if lo:
            return (">= " if self.ge is not None else "> ") + lo[1:]
        if hi:
            return ("<= " if self.le is not None else "< ") + hi[:-1]
        return ""

    def allows(self, value: Any) -> bool:
        if self.choices is not None:
            return value in self.choices
        try:
            return ((self.ge is None or value >= self.ge) and (self.gt is None or value > self.gt)
                    and (self.le is None or value <= self.le) and (self.lt is None or value < self.lt))
        except TypeError:  # not a number
            return False


def option(default: Any, *, help: str = "", ge: float | None = None, gt: float | None = None,
           le: float | None = None, lt: float | None = None, choices: typing.Iterable | None = None):
    """A Config field with its help (``aigc-engine models`` shows it) and the values it allows,
    checked by :func:`check_config` (so ``--set`` and ``Model(config)`` refuse others with one
    error format). Bounds apply to each element of a tuple field; None (the default for the
    data's kind, see :func:`resolve_defaults`) is never range-checked. Use it as the field's
    default: ``steps: int | None = option(None, help="training steps", ge=1)``."""
    spec = OptionSpec(help, ge, gt, le, lt, tuple(choices) if choices is not None else None)
    metadata = {OPTION_KEY: spec}
    if isinstance(default, (list, dict, set)):  # a mutable default: a fresh copy per config
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def option_spec(field: dataclasses.Field) -> OptionSpec:
    """The declaration of a Config field (an empty one for a plain field)."""
    return field.metadata.get(OPTION_KEY) or OptionSpec()


def _shown(value: Any) -> str:
    return repr(value) if isinstance(value, str) else str(value)


def check_config(config: Any, model_name: str = "model") -> None:
    """Raise one :class:`InputError`, ``MODEL: KEY must be REQUIREMENT, got VALUE``, for the first
    field whose value its :func:`option` (or its ``Literal`` type) does not allow, a float field
    that is NaN or infinite, or a fixed-length tuple field of the wrong length. None values are not
    checked: they mean the default for the data."""
    hints = field_types(type(config))
    for field in dataclasses.fields(config):
        value, spec = getattr(config, field.name), option_spec(field)
        if value is None:
            continue
        tp = _without_none(hints[field.name])
        args = typing.get_args(tp)
        if typing.get_origin(tp) is typing.Literal and spec.choices is None:
            spec = dataclasses.replace(spec, choices=args)
        if typing.get_origin(tp) is tuple and args and Ellipsis not in args and len(value) != len(args):
            raise InputError(f"{model_name}: {field.name} must have {len(args)} values, got {_shown(value)}")
        values = value if isinstance(value, (tuple, list)) and spec.choices is None else (value,)
        if any(isinstance(v, float) and not math.isfinite(v) for v in values):
            # NaN passes no comparison and inf every one-sided bound: neither is a setting
            raise InputError(f"{model_name}: {field.name} must be a finite number, got {_shown(value)}")
        if isinstance(value, (tuple, list)) and spec.choices is None:
            if not all(spec.allows(v) for v in value):
                raise InputError(f"{model_name}: {field.name} must be {spec.requirement()} (each value), "
                                 f"got {_shown(value)}")
        elif not spec.allows(value):
            raise InputError(f"{model_name}: {field.name} must be {spec.requirement()}, got {_shown(value)}")


def _without_none(tp: Any) -> Any:
    """``X`` for ``X | None``; ``tp`` itself otherwise."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return tp


# -- defaults per kind of data ------------------------------------------------------------------
DATA_KINDS: tuple[str, ...] = ("points", "images", "tables")


def data_kind(dataset: Any) -> str:
    """``"tables"`` (a dataset with a table encoding: encoded rows whose blocks are known),
    ``"points"`` (rows of D values, ``N x D``) or ``"images"`` (``N x C x H x W``); any other
    row shape is an InputError."""
    if getattr(dataset, "encoding", None) is not None:
        return "tables"
    shape = tuple(dataset.shape)
    if len(shape) == 2:
        return "points"
    if len(shape) == 4:
        return "images"
    raise InputError(f"dataset {getattr(dataset, 'name', '')!r} has rows of shape {list(shape[1:])}: "
                     f"neither points (N x D) nor images (N x C x H x W)")


MIN_TABLE_STEPS = 1000  # the fewest default steps on a table, however small


def resolve_defaults(config: Any, defaults: dict[str, dict[str, Any]], dataset: Any,
                     table_epochs: int | None = None, table_rows: int | None = None,
                     table_min_steps: int = MIN_TABLE_STEPS) -> Any:
    """A copy of ``config`` in which each field left at None takes its value for the data's kind,
    ``defaults[data_kind(dataset)]`` (what ``aigc-engine models`` lists per kind); fields given a
    value keep it. ``dataset`` may be the kind itself (a saved model's config, completed on load).
    A kind without defaults is data the model does not take (an InputError); a table's rows are
    points too, so a model without table defaults takes its points ones. With ``table_epochs``, a
    table's default batch and steps are fitted to its rows (:func:`fit_to_table`): ``table_rows``,
    the rows the model trains on (default: all of them), ``table_min_steps`` the fewest steps."""
    kind = dataset if isinstance(dataset, str) else data_kind(dataset)
    kind = "points" if kind == "tables" and kind not in defaults and "points" in defaults else kind
    if kind not in defaults:
        raise InputError(f"this model takes {' or '.join(defaults)}, not {kind} "
                         f"(dataset {getattr(dataset, 'name', '')!r})")
    missing = {k: v for k, v in defaults[kind].items() if getattr(config, k) is None}
    resolved = dataclasses.replace(config, **missing)
    if table_epochs is None or kind != "tables":
        return resolved
    rows = len(dataset) if table_rows is None else table_rows
    return fit_to_table(resolved, config, rows, table_epochs, table_min_steps)


def fit_to_table(resolved: Any, given: Any, rows: int, epochs: int, min_steps: int = MIN_TABLE_STEPS) -> Any:
    """``resolved`` with the ``batch_size`` and ``steps`` that ``given`` left at None fitted to a
    table of ``rows`` training rows: the batch at most ``rows``, the steps ``epochs`` passes over
    them, at least ``min_steps`` and at most the kind's default steps."""
    batch = resolved.batch_size if given.batch_size is not None else max(1, min(resolved.batch_size, rows))
    steps = resolved.steps if given.steps is not None else \
        int(min(resolved.steps, max(min_steps, epochs * rows // batch)))
    return dataclasses.replace(resolved, batch_size=batch, steps=steps)


def describe_fields(config_cls: type, defaults: dict[str, dict[str, Any]] | None = None) -> list[str]:
    """One line per Config field for ``aigc-engine models``: ``name: type  help (default)``, the
    type of a Literal field as its choices, a field resolved per data kind with the default of
    each kind (``steps: int  training steps (points: 24000, images: 1500)``)."""
    defaults = defaults or {}
    types_ = field_types(config_cls)
    lines = []
    for field in dataclasses.fields(config_cls):
        value = field.default if field.default is not dataclasses.MISSING else field.default_factory()
        per_kind = {kind: d[field.name] for kind, d in defaults.items() if field.name in d}
        tp = _without_none(types_[field.name]) if per_kind and value is None else types_[field.name]
        if per_kind and value is None:
            shown = ", ".join(f"{kind}: {_plain(v)}" for kind, v in per_kind.items())
        else:
            shown = f"default {_plain(value)}"
        spec = option_spec(field)
        kind = " | ".join(map(str, spec.choices)) if spec.choices is not None else choices_name(tp)
        lines.append(f"{field.name}: {kind}  {spec.help + ' ' if spec.help else ''}({shown})")
    return lines


def _plain(value: Any) -> str:
    return ",".join(map(str, value)) if isinstance(value, (tuple, list)) else str(value)


def choices_name(tp: Any) -> str:
    """A type as ``aigc-engine models`` shows it: a Literal as its choices ``a | b``."""
    if typing.get_origin(tp) is typing.Literal:
        return " | ".join(map(str, typing.get_args(tp)))
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return " | ".join(choices_name(a) for a in typing.get_args(tp))
    if tp is type(None):
        return "None"
    if typing.get_origin(tp) in (tuple, list):
        return str(tp).replace("typing.", "")
    return type_name(tp)


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
        config = config_cls(**kwargs)
    except (TypeError, ValueError) as err:
        raise InputError(f"invalid {model_name} config: {err}") from None
    check_config(config, model_name)
    return config


# the entries of a run's config.json that sample, eval and --resume read, with their JSON types
RUN_CONFIG_TYPES: dict[str, type] = {"model": str, "config": dict, "dataset": dict, "seed": int}
RUN_DATASET_TYPES: dict[str, type] = {"name": str, "options": dict, "shape": list, "class_names": list}
_JSON_NAMES = {str: "a string", dict: "an object {...}", list: "a list [...]", int: "an integer"}


def read_run_config(run_dir: str | Path) -> dict[str, Any]:
    """The ``config.json`` of a run directory, its entries checked for their types: a hand-edited
    one of the wrong shape (``"dataset": "ring8"``, ``"config": [1, 2]``, a string seed) is a
    one-line InputError naming the file and the key, not a failure where it is used."""
    from .store.rundir import CONFIG_FILE, read_config

    saved = read_config(Path(run_dir))
    path = Path(run_dir) / CONFIG_FILE
    _check_json_types(saved, RUN_CONFIG_TYPES, path, "")
    dataset = saved.get("dataset", {})
    _check_json_types(dataset, RUN_DATASET_TYPES, path, "dataset.")
    if not -(2**63) <= saved.get("seed", 0) < 2**64:
        raise InputError(f"{path}: seed must be an integer in [-2**63, 2**64), got {saved['seed']}")
    for key, item_type in (("shape", int), ("class_names", str)):
        items = dataset.get(key, [])
        if not all(isinstance(v, item_type) and not isinstance(v, bool) for v in items):
            raise InputError(f"{path}: dataset.{key} must be a list of {_JSON_NAMES[item_type][2:]}s, got {items!r}")
    return saved


def _check_json_types(entries: dict[str, Any], types_: dict[str, type], path: Path, prefix: str) -> None:
    for key, expected in types_.items():
        value = entries.get(key)
        if value is None and f"{prefix}{key}" == "dataset.name":  # a run on rows held in memory (Synthesizer)
            continue
        if key in entries and (not isinstance(value, expected) or isinstance(value, bool)):
            raise InputError(f"{path}: {prefix}{key} must be {_JSON_NAMES[expected]}, got "
                             f"{type(value).__name__} {json_text(value)}")


def json_text(value: Any) -> str:
    """A value as JSON, cut to 40 characters (for messages)."""
    import json

    text = json.dumps(value, default=str)
    return text if len(text) <= 40 else text[:37] + "..."


def split_prefixed(values: dict[str, Any], prefix: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(the other entries, the PREFIX.KEY entries without the prefix)``."""
    rest, prefixed = {}, {}
    for key, value in values.items():
        if key.startswith(prefix):
            prefixed[key[len(prefix):]] = value
        else:
            rest[key] = value
    return rest, prefixed


def split_dataset_keys(values: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Separate ``dataset.KEY`` entries from model config entries."""
    return split_prefixed(values, DATASET_PREFIX)


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
