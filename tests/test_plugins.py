"""Plugin discovery and isolation: good, broken, blocked and strict plugins."""
import dataclasses

import pytest

from aigc_engine import Engine, hookimpl
from aigc_engine.errors import InputError, PluginError
from aigc_engine.plugins import PluginManager
from conftest import PROBE_PLUGIN, make_entry_point_plugin


def test_core_registers_builtin_datasets_through_the_hook():
    pm = PluginManager(load_entry_points=False)
    assert {"ring8", "grid25", "moons", "blobs", "digits"} <= set(pm.datasets())
    assert pm.records["aigc_engine.core"].hooks == ["aigc_engine_register_datasets"]


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
    """Each hook has a docstring, a row in the README and a test that implements it."""
    from pathlib import Path

    from aigc_engine import hookspecs

    root = Path(__file__).resolve().parents[1]
    readme = (root / "README.md").read_text()
    tests = "".join(p.read_text() for p in (root / "tests").glob("*.py"))
    hooks = [name for name in dir(hookspecs) if name.startswith("aigc_engine_")]
    assert len(hooks) == 3
    for name in hooks:
        assert getattr(hookspecs, name).__doc__.strip()
        assert f"`{name}(" in readme
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
