"""Plugin manager: finds plugins through the ``aigc_engine`` entry-point group and collects what
their hooks register. A plugin that fails to import, or whose hook raises, is recorded with its
error and skipped; the others keep working (``AIGC_ENGINE_STRICT_PLUGINS=1`` raises instead).

A plugin may say which engines it works with: ``AIGC_ENGINE_API = ">=1.0"`` in its entry-point
module (checked against :data:`aigc_engine.hookspecs.API_VERSION`), or ``Requires-Dist:
aigc-engine>=X`` in its distribution's metadata (checked against the installed engine's
version). A plugin that needs another engine is skipped with one line on stderr and listed as
"incompatible".
"""
from __future__ import annotations

import dataclasses
import inspect
import os
import sys
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any, Callable

import pluggy

from . import hookspecs
from .errors import PluginError

if TYPE_CHECKING:  # pragma: no cover
    from .data import Dataset, Reader

ENTRY_POINT_GROUP = "aigc_engine"
CORE_PLUGIN = "aigc_engine.core"


@dataclasses.dataclass
class PluginRecord:
    """What ``aigc-engine plugins`` shows for one plugin."""

    name: str
    module: str = ""
    version: str = ""
    status: str = "loaded"  # loaded | failed | incompatible | blocked
    error: str = ""
    hooks: list[str] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class ModelEntry:
    cls: type
    plugin: str


@dataclasses.dataclass
class DatasetEntry:
    name: str
    factory: Callable[..., Dataset]
    description: str
    plugin: str

    def options(self) -> dict[str, Any]:
        """The factory's keyword options and their defaults."""
        params = inspect.signature(self.factory).parameters.values()
        return {p.name: p.default for p in params
                if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}


class _CorePlugin:
    """The core registers its built-in datasets and file readers through the same hooks as any
    plugin."""

    @hookspecs.hookimpl
    def aigc_engine_register_datasets(self, register):
        from .data import BUILTIN_DATASETS  # torch: only when datasets are asked for

        for name, factory in BUILTIN_DATASETS.items():
            register(name, factory, (factory.__doc__ or "").strip().split("\n")[0])

    @hookspecs.hookimpl
    def aigc_engine_register_readers(self, register):
        from .data import BUILTIN_READERS

        for suffix, reader in BUILTIN_READERS.items():
            register(suffix, reader.read, reader.description)


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


class PluginManager:
    """One manager per engine (no global state): build one, or one per test.

    ``load_entry_points=False`` gives a manager with the core alone, to which tests
    ``register`` plugin objects in-process.
    """

    def __init__(self, load_entry_points: bool = True, disabled: set[str] | None = None,
                 strict: bool | None = None):
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        if disabled is None:
            disabled = {s.strip() for s in os.environ.get("AIGC_ENGINE_DISABLE_PLUGINS", "").split(",") if s.strip()}
        self.disabled = disabled
        self.strict = _env_flag("AIGC_ENGINE_STRICT_PLUGINS") if strict is None else strict
        self.records: dict[str, PluginRecord] = {}
        self._models: dict[str, ModelEntry] | None = None
        self._datasets: dict[str, DatasetEntry] | None = None
        self._readers: dict[str, Reader] | None = None
        self.register(_CorePlugin(), CORE_PLUGIN)
        if load_entry_points:
            self._load_entry_points()

    # -- loading -------------------------------------------------------------------------------
    def _load_entry_points(self) -> None:
        for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
            version = ep.dist.version if ep.dist is not None else ""
            if ep.name in self.disabled:
                self.records[ep.name] = PluginRecord(ep.name, ep.value, version, "blocked",
                                                     "disabled by AIGC_ENGINE_DISABLE_PLUGINS")
                continue
            try:
                plugin = ep.load()
            except Exception as err:  # noqa: BLE001 - any import failure is isolated
                self._fail(PluginRecord(ep.name, ep.value, version), f"import failed: {_one_line(err)}", err)
                continue
            requires = (ep.dist.requires or []) if ep.dist is not None else []
            self.register(plugin, ep.name, module=ep.value, version=version, requires=requires)

    def register(self, plugin: Any, name: str, module: str = "", version: str = "",
                 requires: list[str] | None = None) -> PluginRecord:
        """Register a plugin object (a module or an instance with hook implementations).
        ``requires``: its distribution's ``Requires-Dist`` lines, checked for ``aigc-engine``
        like the plugin's ``AIGC_ENGINE_API``."""
        record = PluginRecord(name, module or getattr(plugin, "__name__", type(plugin).__name__), version)
        try:
            needs = _incompatibility(plugin, requires or [])
        except ValueError as err:  # an unreadable declaration
            return self._fail(record, f"invalid plugin: {_one_line(err)}", err)
        if needs:
            return self._fail(record, needs, None, status="incompatible")
        try:
            self.pm.register(plugin, name=name)
            self.pm.check_pending()  # a misspelt hook name fails loudly
        except Exception as err:  # noqa: BLE001
            if self.pm.is_registered(plugin):
                self.pm.unregister(plugin)
            return self._fail(record, f"invalid plugin: {_one_line(err)}", err)
        record.hooks = sorted(caller.name for caller in self.pm.get_hookcallers(plugin) or [])
        self.records[name] = record
        self._models = self._datasets = self._readers = None
        return record

    def unregister(self, name: str) -> None:
        self.pm.unregister(name=name)
        self.records.pop(name, None)
        self._models = self._datasets = self._readers = None

    def _fail(self, record: PluginRecord, message: str, err: BaseException | None,
              status: str = "failed") -> PluginRecord:
        record.status = status
        new = message not in record.error.split("; ")  # hooks run again after a registration: said once
        if new:
            record.error = f"{record.error}; {message}" if record.error else message
        self.records[record.name] = record
        if self.strict:
            raise PluginError(f"plugin {record.name!r}: {message}") from err
        if new:
            print(f"aigc-engine: plugin {record.name!r} skipped: {message}", file=sys.stderr)
        return record

    def _call_each(self, hook_name: str, make_kwargs: Callable[[str], dict]) -> None:
        """Call every implementation of a hook on its own, in registration order, so that one
        failing plugin is recorded and skipped instead of breaking the others."""
        caller = getattr(self.pm.hook, hook_name)
        for impl in caller.get_hookimpls():  # in registration order: the core first
            kwargs = make_kwargs(impl.plugin_name)
            try:
                impl.function(**{k: kwargs[k] for k in impl.argnames})
            except Exception as err:  # noqa: BLE001
                self._fail(self._record(impl.plugin_name), f"{hook_name} raised {_one_line(err)}", err)

    def _record(self, name: str) -> PluginRecord:
        return self.records.get(name) or PluginRecord(name)

    # -- registries ----------------------------------------------------------------------------
    def models(self) -> dict[str, ModelEntry]:
        if self._models is None:
            models: dict[str, ModelEntry] = {}
            self._models = models

            def adder(plugin):
                def register(cls):
                    self._add(models, "model", _check_model(cls), ModelEntry(cls, plugin))
                return register

            self._call_each("aigc_engine_register_models", lambda plugin: {"register": adder(plugin)})
        return self._models

    def datasets(self) -> dict[str, DatasetEntry]:
        if self._datasets is None:
            datasets: dict[str, DatasetEntry] = {}
            self._datasets = datasets

            def adder(plugin):
                def register(name, factory, description=""):
                    if not callable(factory):
                        raise TypeError(f"dataset {name!r}: factory must be callable")
                    self._add(datasets, "dataset", name, DatasetEntry(name, factory, description, plugin))
                return register

            self._call_each("aigc_engine_register_datasets", lambda plugin: {"register": adder(plugin)})
        return self._datasets

    def readers(self) -> dict[str, Reader]:
        """File readers by suffix (``"folder"``: directories), the core's first; a plugin's
        ``override=True`` registration replaces the core's reader of that suffix."""
        if self._readers is None:
            from .data import Reader  # torch: only when files are read or listed

            readers: dict[str, Reader] = {}
            self._readers = readers

            def adder(plugin):
                def register(suffix, reader, description="", override=False):
                    entry = Reader(str(suffix), reader, description, plugin).check()
                    if override and readers.get(entry.suffix, entry).plugin == CORE_PLUGIN:
                        readers[entry.suffix] = entry  # in the core's place: listings keep their order
                    else:
                        self._add(readers, "reader", entry.suffix, entry)
                return register

            self._call_each("aigc_engine_register_readers", lambda plugin: {"register": adder(plugin)})
        return self._readers

    def failure(self, name: str) -> str:
        """Why plugin ``name`` is not loaded (``"plugin 'flow' failed to load: ..."``), or "" when
        it is loaded or unknown: the reason a model or dataset of that name is missing."""
        record = self.records.get(name)
        if record is None or record.status not in ("failed", "incompatible"):
            return ""
        what = "was skipped" if record.status == "incompatible" else "failed to load"
        return f"plugin {name!r} {what}: {record.error}"

    def not_loaded_note(self) -> str:
        """``"; plugins not loaded: flow (failed), old (incompatible); see 'aigc-engine plugins'"``,
        or "" when every plugin loaded: the end of an unknown-name message."""
        names = [f"{r.name} ({r.status})" for r in self.records.values() if r.status in ("failed", "incompatible")]
        return f"; plugins not loaded: {', '.join(names)}; see 'aigc-engine plugins'" if names else ""

    def _add(self, registry: dict, kind: str, name: str, entry) -> None:
        """The first registration of a name wins; a clash is reported against the later plugin."""
        if name in registry:
            self._fail(self._record(entry.plugin), f"{kind} {name!r} is already registered by "
                       f"{registry[name].plugin!r}", None)
        else:
            registry[name] = entry

    def add_commands(self, cli) -> None:
        self._call_each("aigc_engine_register_commands", lambda plugin: {"cli": cli})


def _check_model(cls: type) -> str:
    """The model's registry name, after checking the class has the contract's shape."""
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name:
        raise TypeError(f"{cls!r} has no 'name'")
    config = getattr(cls, "Config", None)
    if config is None or not dataclasses.is_dataclass(config):
        raise TypeError(f"model {name!r}: Config must be a dataclass")
    for f in dataclasses.fields(config):
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise TypeError(f"model {name!r}: Config field {f.name!r} has no default")
    return name


def _incompatibility(plugin: Any, requires: list[str]) -> str:
    """Why this engine cannot host ``plugin`` (``"needs aigc-engine API >=2.0 (this is 1.0)"``),
    or "" when it can. ValueError for a declaration that is not a version specifier."""
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.specifiers import InvalidSpecifier, SpecifierSet
    from packaging.utils import canonicalize_name

    declared = getattr(plugin, "AIGC_ENGINE_API", None)
    if declared is not None:
        try:
            wanted = SpecifierSet(str(declared))
        except InvalidSpecifier:
            raise ValueError(f"AIGC_ENGINE_API = {declared!r} is not a version specifier such as '>=1.0'") from None
        if not wanted.contains(hookspecs.API_VERSION, prereleases=True):
            return f"needs aigc-engine API {wanted} (this is {hookspecs.API_VERSION})"
    for line in requires:
        try:
            req = Requirement(line)
        except InvalidRequirement:
            continue  # pip installed it: a line we cannot parse is not ours to judge
        if canonicalize_name(req.name) != "aigc-engine" or (req.marker and not req.marker.evaluate({"extra": ""})):
            continue
        from . import __version__

        if not req.specifier.contains(__version__, prereleases=True):
            return f"needs aigc-engine {req.specifier} (this is {__version__})"
    return ""


def _one_line(err: BaseException) -> str:
    text = f"{type(err).__name__}: {err}".strip()
    return text.splitlines()[0] if text else type(err).__name__
