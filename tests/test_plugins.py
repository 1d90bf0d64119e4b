"""Plugin discovery and isolation: good, broken, blocked and strict plugins."""
import dataclasses
import os
import subprocess
import sys

import pytest

from aigc_engine import Engine, hookimpl
from aigc_engine.errors import InputError, PluginError
from aigc_engine.plugins import PluginManager
from conftest import PROBE_PLUGIN, make_entry_point_plugin

AIGC_ENGINE = os.path.join(os.path.dirname(sys.executable), "aigc-engine")  # the console script


def test_core_registers_builtin_datasets_and_readers_through_the_hooks():
    pm = PluginManager(load_entry_points=False)
    assert {"ring8", "grid25", "moons", "blobs", "digits"} <= set(pm.datasets())
    assert list(pm.readers()) == [".npy", ".npz", ".csv", ".parquet", "folder"]
    assert {r.plugin for r in pm.readers().values()} == {"aigc_engine.core"}
    assert pm.records["aigc_engine.core"].hooks == ["aigc_engine_register_datasets", "aigc_engine_register_readers"]


def test_in_process_plugin_registers_model_dataset_and_command():
    import click

    from aigc_engine.data import ring8

    class Plugin:
        @hookimpl
        def aigc_engine_register_datasets(self, register):
            register("tiny", lambda n=5: ring8(n=n), "a tiny ring")

        @hookimpl
        def aigc_engine_register_commands(self, cli):
            cli.add_command(click.Command("hello", callback=lambda: click.echo("hi")))

    pm = PluginManager(load_entry_points=False)
    rec = pm.register(Plugin(), "mine")
    assert rec.status == "loaded"
    assert set(rec.hooks) == {"aigc_engine_register_datasets", "aigc_engine_register_commands"}
    assert len(Engine(pm).load_dataset("tiny", {"n": "7"})) == 7
    group = click.Group()
    pm.add_commands(group)
    assert "hello" in group.commands
    pm.unregister("mine")
    assert "tiny" not in pm.datasets()


def test_entry_point_plugin_is_found(plugin_dir):
    make_entry_point_plugin(plugin_dir, "aigc-test-probe", "probe", "aigc_test_probe", PROBE_PLUGIN)
    pm = PluginManager()
    assert pm.records["probe"].status == "loaded"
    assert pm.records["probe"].version == "0.1"
    assert "probe" in pm.models()


def test_broken_import_is_isolated_and_reported(plugin_dir, capsys):
    make_entry_point_plugin(plugin_dir, "aigc-test-broken", "broken", "aigc_test_broken",
                            "raise RuntimeError('boom at import')\n")
    make_entry_point_plugin(plugin_dir, "aigc-test-probe", "probe", "aigc_test_probe", PROBE_PLUGIN)
    pm = PluginManager()
    rec = pm.records["broken"]
    assert rec.status == "failed" and "boom at import" in rec.error
    assert "probe" in pm.models(), pm.records  # the others still work
    assert "plugin 'broken' skipped" in capsys.readouterr().err


def test_strict_mode_raises_with_the_plugin_name(plugin_dir, monkeypatch):
    make_entry_point_plugin(plugin_dir, "aigc-test-broken", "broken", "aigc_test_broken",
                            "raise RuntimeError('boom')\n")
    monkeypatch.setenv("AIGC_ENGINE_STRICT_PLUGINS", "1")
    with pytest.raises(PluginError, match="'broken'.*boom"):
        PluginManager()


def test_disabled_plugin_is_blocked(plugin_dir, monkeypatch):
    make_entry_point_plugin(plugin_dir, "aigc-test-probe", "probe", "aigc_test_probe", PROBE_PLUGIN)
    monkeypatch.setenv("AIGC_ENGINE_DISABLE_PLUGINS", "other, probe")
    pm = PluginManager()
    assert pm.records["probe"].status == "blocked"
    assert "probe" not in pm.models()


def test_raising_hook_is_isolated():
    from aigc_engine.data import ring8

    class Bad:
        @hookimpl
        def aigc_engine_register_datasets(self, register):
            register("half", ring8)
            raise KeyError("oops")

    class Good:
        @hookimpl
        def aigc_engine_register_datasets(self, register):
            register("fine", ring8)

    pm = PluginManager(load_entry_points=False)
    pm.register(Bad(), "bad")
    pm.register(Good(), "good")
    assert "fine" in pm.datasets() and "ring8" in pm.datasets()
    assert pm.records["bad"].status == "failed" and "oops" in pm.records["bad"].error


def test_misspelt_hook_is_rejected():
    class Typo:
        @hookimpl
        def aigc_engine_register_model(self, register):  # missing "s"
            pass

    pm = PluginManager(load_entry_points=False)
    rec = pm.register(Typo(), "typo")
    assert rec.status == "failed" and "aigc_engine_register_model" in rec.error


@pytest.mark.parametrize("problem", ["no_name", "no_default", "duplicate"])
def test_invalid_model_classes_are_reported(problem):
    @dataclasses.dataclass
    class Cfg:
        a: int = 1

    @dataclasses.dataclass
    class NoDefault:
        a: int

    def make(name, config):
        return type("M", (), {"name": name, "Config": config})

    classes = {"no_name": [make("", Cfg)], "no_default": [make("m", NoDefault)],
               "duplicate": [make("m", Cfg), make("m", Cfg)]}[problem]

    class Plugin:
        @hookimpl
        def aigc_engine_register_models(self, register):
            for cls in classes:
                register(cls)

    pm = PluginManager(load_entry_points=False)
    pm.register(Plugin(), "p")
    pm.models()
    assert pm.records["p"].status == "failed"


def test_unknown_model_lists_available():
    engine = Engine(PluginManager(load_entry_points=False))
    with pytest.raises(InputError, match="unknown model 'nope'"):
        engine.model_class("nope")


def test_every_hook_is_documented_and_tested():
    """Each hook has a docstring, a row in the README or the docs and a test that implements it."""
    from pathlib import Path

    from aigc_engine import hookspecs

    root = Path(__file__).resolve().parents[1]
    docs = "".join(p.read_text() for p in [root / "README.md", *sorted((root / "docs").glob("*.md"))])
    tests = "".join(p.read_text() for p in (root / "tests").glob("*.py"))
    hooks = [name for name in dir(hookspecs) if name.startswith("aigc_engine_")]
    assert len(hooks) == 4
    for name in hooks:
        assert getattr(hookspecs, name).__doc__.strip()
        assert f"`{name}(" in docs
        assert f"def {name}(" in tests


def test_clashing_dataset_name_keeps_the_builtin_and_the_rest():
    from aigc_engine.data import moons, ring8

    class Clash:
        @hookimpl
        def aigc_engine_register_datasets(self, register):
            register("ring8", moons)  # taken by the core
            register("mine", ring8)

    pm = PluginManager(load_entry_points=False)
    pm.register(Clash(), "clash")
    datasets = pm.datasets()
    assert datasets["ring8"].plugin == "aigc_engine.core" and datasets["mine"].plugin == "clash"
    assert {"grid25", "moons", "blobs", "digits"} <= set(datasets)
    assert pm.records["clash"].status == "failed" and "already registered" in pm.records["clash"].error


# -- readers --------------------------------------------------------------------------------------
def _reader_plugin(*registrations):
    class Plugin:
        @hookimpl
        def aigc_engine_register_readers(self, register):
            for args, kwargs in registrations:
                register(*args, **kwargs)
    return Plugin()


def read_any(path, scale: float = 1.0):
    """A test reader."""
    from aigc_engine.data import ring8

    return ring8(n=10)


def test_reader_clash_is_reported_and_the_core_reader_is_replaced_only_on_override():
    pm = PluginManager(load_entry_points=False)
    pm.register(_reader_plugin(((".csv", read_any), {}), ((".pts", read_any, "points"), {})), "clash")
    readers = pm.readers()
    assert readers[".csv"].plugin == "aigc_engine.core" and readers[".pts"].plugin == "clash"
    assert pm.records["clash"].status == "failed" and "reader '.csv' is already registered" in pm.records["clash"].error
    pm.register(_reader_plugin(((".csv", read_any, "tables"), {"override": True})), "tables")
    pm.register(_reader_plugin(((".csv", read_any), {"override": True}), ((".pts", read_any), {"override": True})), "late")
    readers = pm.readers()
    assert readers[".csv"].plugin == "tables" and readers[".csv"].description == "tables"
    assert readers[".pts"].plugin == "clash"  # override replaces the core's readers, not a plugin's
    assert pm.records["tables"].status == "loaded" and pm.records["late"].status == "failed"
    assert list(readers) == [".npy", ".npz", ".csv", ".parquet", "folder", ".pts"] and readers[".csv"].options() == {"scale": 1.0}


@pytest.mark.parametrize("args, message", [
    (("csv", read_any), "reader suffix must look like '.ext'"),
    ((".CSV", read_any), "lower case"),
    ((".x", lambda path, k: None), "reader '.x': option 'k' has no default"),
    ((".x", "not callable"), "reader must be callable"),
])
def test_bad_reader_registrations_fail_the_plugin(args, message):
    pm = PluginManager(load_entry_points=False)
    pm.register(_reader_plugin((args, {})), "bad")
    assert ".x" not in pm.readers() and ".npy" in pm.readers()
    assert pm.records["bad"].status == "failed" and message in pm.records["bad"].error


def test_datasets_command_lists_readers_and_their_options():
    from click.testing import CliRunner

    from aigc_engine.cli import cli

    pm = PluginManager(load_entry_points=False)
    pm.register(_reader_plugin(((".pts", read_any, "whitespace points"), {})), "points")
    out = CliRunner().invoke(cli, ["datasets"], obj=Engine(pm), catch_exceptions=False).output
    assert "FILE.pts  [points]  whitespace points\n    options: scale=1.0" in out
    assert "FILE.csv  [aigc_engine.core]" in out and "options: label_column=None, datetime='', key=''" in out
    assert "FOLDER/  [aigc_engine.core]" in out and "options: size=None, channels='auto'" in out


# -- engine API version, failed plugins -----------------------------------------------------------
class _Declares:
    def __init__(self, api):
        self.AIGC_ENGINE_API = api

    @hookimpl
    def aigc_engine_register_datasets(self, register):
        from aigc_engine.data import ring8

        register("declared", ring8)


def test_a_plugin_needing_another_api_is_skipped_with_one_line(capsys):
    from aigc_engine.hookspecs import API_VERSION

    pm = PluginManager(load_entry_points=False)
    assert pm.register(_Declares(">=1.0,<2"), "fits").status == "loaded"
    rec = pm.register(_Declares(">=2.0"), "future")
    assert rec.status == "incompatible" and rec.error == f"needs aigc-engine API >=2.0 (this is {API_VERSION})"
    assert capsys.readouterr().err.strip() == (f"aigc-engine: plugin 'future' skipped: needs aigc-engine API >=2.0 "
                                               f"(this is {API_VERSION})")
    assert "future" not in pm.pm.list_name_plugin()[0] and pm.datasets()["declared"].plugin == "fits"
    bad = pm.register(_Declares("banana"), "bad")
    assert bad.status == "failed" and "AIGC_ENGINE_API = 'banana' is not a version specifier" in bad.error
    with pytest.raises(PluginError, match=r"plugin 'future': needs aigc-engine API >=2.0"):
        PluginManager(load_entry_points=False, strict=True).register(_Declares(">=2.0"), "future")


def test_requires_dist_on_aigc_engine_is_checked(plugin_dir, capsys):
    from aigc_engine import __version__

    for dist, ep, module, line in (("aigc-test-new", "new", "aigc_test_new", "aigc-engine>=99"),
                                   ("aigc-test-extra", "extra", "aigc_test_extra", 'aigc-engine>=99; extra == "dev"'),
                                   ("aigc-test-ok", "ok", "aigc_test_ok", "aigc_engine>=0.0.1")):
        make_entry_point_plugin(plugin_dir, dist, ep, module, "x = 1\n")
        info = plugin_dir / f"{dist.replace('-', '_')}-0.1.dist-info" / "METADATA"
        info.write_text(info.read_text() + f"Requires-Dist: numpy\nRequires-Dist: {line}\n")
    pm = PluginManager()
    assert pm.records["new"].status == "incompatible"
    assert pm.records["extra"].status == "loaded" and pm.records["ok"].status == "loaded"
    assert f"aigc-engine: plugin 'new' skipped: needs aigc-engine >=99 (this is {__version__})" in capsys.readouterr().err


def test_a_model_or_dataset_of_a_failed_plugin_says_why(plugin_dir):
    make_entry_point_plugin(plugin_dir, "aigc-test-flow", "flow", "aigc_test_flow", "import zuko_not_installed\n")
    engine = Engine(PluginManager())
    with pytest.raises(InputError, match=r"^model 'flow' is not available: plugin 'flow' failed to load: import "
                                         r"failed: ModuleNotFoundError: No module named 'zuko_not_installed'$"):
        engine.model_class("flow")
    with pytest.raises(InputError, match=r"unknown model 'other'; available: .*; plugins not loaded: flow \(failed\); "
                                         r"see 'aigc-engine plugins'"):
        engine.model_class("other")
    with pytest.raises(InputError, match="dataset 'flow' is not available: plugin 'flow' failed to load"):
        engine.load_dataset("flow")


def test_cli_strict_mode_is_exit_2_with_the_plugin_error_on_one_line(plugin_dir, monkeypatch):
    from click.testing import CliRunner

    from aigc_engine.cli import cli

    make_entry_point_plugin(plugin_dir, "aigc-test-broken", "broken", "aigc_test_broken", "raise RuntimeError('boom')\n")
    monkeypatch.setenv("AIGC_ENGINE_STRICT_PLUGINS", "1")
    line = "Error: plugin 'broken': import failed: RuntimeError: boom"
    for args in (["models"], ["run", "gmm", "--dataset", "ring8"]):
        result = CliRunner().invoke(cli, args, catch_exceptions=False)
        assert result.exit_code == 2, (args, result.output)
        assert result.stderr.strip() == line and result.stdout == "", args
    env = {**os.environ, "PYTHONPATH": str(plugin_dir), "AIGC_ENGINE_STRICT_PLUGINS": "1"}
    proc = subprocess.run([AIGC_ENGINE, "--help"], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2 and proc.stderr.strip() == line and proc.stdout == ""  # the plugins' commands fail it


def test_cli_run_of_a_failed_plugins_model_says_why(plugin_dir):
    from click.testing import CliRunner

    from aigc_engine.cli import cli

    make_entry_point_plugin(plugin_dir, "aigc-test-flow", "flow", "aigc_test_flow", "import zuko_not_installed\n")
    result = CliRunner().invoke(cli, ["run", "flow", "--dataset", "ring8"], catch_exceptions=False)
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines()[-1] == ("Error: model 'flow' is not available: plugin 'flow' failed to load: import failed: "
                                     "ModuleNotFoundError: No module named 'zuko_not_installed'")
    assert "plugin 'flow' skipped" in result.stderr and "flow 0.1  failed" in CliRunner().invoke(cli, ["plugins"]).output
