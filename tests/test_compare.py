"""``aigc-engine compare`` and ``aigc_engine.compare.compare``: rows and columns, a failing model's
row, the same table from the same seeds, and a held-out split that training never sees (a KDE
with a tiny bandwidth copies its training rows: its samples' distance to the training set is far
below the held-out rows' own)."""
import importlib
import json
from importlib.metadata import entry_points
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from aigc_engine.cli import cli
from aigc_engine.compare import COMPARE_JSON, compare
from aigc_engine.engine import Engine
from aigc_engine.errors import InputError
from conftest import make_entry_point_plugin

ROOT = Path(__file__).resolve().parents[1]
TINY = {"dataset.n": 400, "gmm.max_iter": 20}

BROKEN_PLUGIN = '''
import dataclasses
from aigc_engine import hookimpl, Model


@dataclasses.dataclass
class BrokenConfig:
    steps: int = 1


class Broken(Model):
    """Fails in fit (for the compare tests)."""
    name = "broken"
    Config = BrokenConfig

    def fit(self, dataset, run):
        raise RuntimeError("the broken model always fails\\nsecond line")

    def sample(self, n, condition=None):
        raise AssertionError

    def state_dict(self):
        return {}

    def load_state_dict(self, state):
        pass


@hookimpl
def aigc_engine_register_models(register):
    register(Broken)
'''

KDE_SHIM = '''
from aigc_kde.plugin import aigc_engine_register_models
'''


@pytest.fixture
def plugins(plugin_dir, monkeypatch):
    """The broken model, and the examples/aigc-kde template when it is not pip-installed."""
    make_entry_point_plugin(plugin_dir, "aigc-test-broken", "broken", "aigc_test_broken", BROKEN_PLUGIN)
    def kde_found():
        importlib.invalidate_caches()
        return "kde" in {ep.name for ep in entry_points(group="aigc_engine")}

    if not kde_found():
        monkeypatch.syspath_prepend(str(ROOT / "examples" / "aigc-kde"))  # its egg-info, after a local pip install
        if not kde_found():
            make_entry_point_plugin(plugin_dir, "aigc-test-kde", "kde", "aigc_test_kde", KDE_SHIM)
    return plugin_dir


def run_compare(models, out, **kwargs):
    kwargs.setdefault("sets", TINY)
    return compare(models, "ring8", out=out, n_samples=400, progress=False, engine=Engine(), **kwargs)


def test_rows_and_columns_for_two_fast_models(plugins, tmp_path):
    result = run_compare(["gmm", "kde"], tmp_path / "cmp", seeds=[0, 1])
    assert [r["model"] for r in result.rows] == ["gmm", "kde"]
    assert all(r["status"] == "ok" and r["reason"] is None for r in result.rows)
    keys = [c.key for c in result.columns]
    assert keys[:10] == ["log_likelihood_per_dim", "modes", "high_quality", "reverse_kl", "dcr_ratio", "exact_copies",
                         "mia_distance_auc", "mia_domias_auc", "fit_seconds", "samples_per_second"]  # no image metrics
    assert {"mean_log_likelihood", "bic", "kernel_points"} <= set(keys[10:])  # the models' own, appended
    gmm = result.row("gmm")
    assert gmm["likelihood"] == "exact" and len(gmm["metrics"]["modes"]["values"]) == 2
    assert gmm["metrics"]["modes"]["mean"] == 8 and gmm["metrics"]["modes"]["std"] is not None
    assert (result.train_rows, result.holdout_rows) == (320, 80)
    # the files: each run directory is an ordinary run, the table in markdown and JSON, the picture
    out = tmp_path / "cmp"
    for name in ("gmm-seed0", "gmm-seed1", "kde-seed0", "kde-seed1"):
        assert (out / name / "model.safetensors").is_file() and (out / name / "config.json").is_file()
    saved = json.loads((out / COMPARE_JSON).read_text())
    assert [r["model"] for r in saved["rows"]] == ["gmm", "kde"] and saved["holdout_rows"] == 80
    md = (out / "compare.md").read_text()
    assert "| gmm | exact |" in md and "held-out LL/dim ↑" in md and "**8 ± 0**" in md
    assert "exact copies ↓" in md and "MIA AUC →0.5" in md and "DOMIAS AUC →0.5" in md
    assert (out / "compare.png").stat().st_size > 0
    # the runs remember their training rows: eval on the held-out part works from the run directory
    config = json.loads((out / "gmm-seed0" / "config.json").read_text())
    assert config["dataset"]["options"]["holdout"] == 0.2 and config["dataset"]["options"]["part"] == "train"
    res = CliRunner().invoke(cli, ["eval", str(out / "gmm-seed0"), "--set", "dataset.part=holdout"],
                             catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["mean_log_likelihood"] == pytest.approx(
        2 * gmm["metrics"]["log_likelihood_per_dim"]["values"][0], rel=1e-4)


def test_a_failing_model_gets_its_reason_and_the_command_exits_0(plugins, tmp_path):
    out = tmp_path / "cmp"
    res = CliRunner().invoke(cli, ["compare", "gmm", "broken", "--dataset", "ring8", "--set", "dataset.n=400",
                                   "--set", "gmm.max_iter=20", "--seeds", "0", "--samples", "300",
                                   "--out", str(out), "--no-progress"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert res.stdout.strip().splitlines()[-1] == str(out)
    rows = {r["model"]: r for r in json.loads((out / COMPARE_JSON).read_text())["rows"]}
    assert rows["gmm"]["status"] == "ok"
    assert rows["broken"]["status"] == "failed"
    assert rows["broken"]["reason"] == "RuntimeError: the broken model always fails"
    assert "the broken model always fails" in (out / "compare.md").read_text()
    assert not (out / "broken-seed0").exists()  # a failed run leaves no directory behind
    # a compare directory is claimed once
    again = CliRunner().invoke(cli, ["compare", "gmm", "--dataset", "ring8", "--out", str(out)])
    assert again.exit_code == 2 and "already holds" in again.output


def test_bad_usage_is_an_error_before_any_directory(plugins, tmp_path):
    for sets in (["--set", "n_components=3"], ["--set", "gan.steps=3"], ["--set", "dataset.holdout=0.5"],
                 ["--set", "gmm.nosuch=1"], ["--set", "dataset.nosuch=1"], ["--seeds", "a,b"]):
        res = CliRunner().invoke(cli, ["compare", "gmm", "kde", "--dataset", "ring8", *sets,
                                       "--out", str(tmp_path / "x")])
        assert res.exit_code == 2 and res.output.startswith("Error:"), res.output
    res = CliRunner().invoke(cli, ["compare", "--dataset", "ring8", "--set", "gmm.nosuch=1", "--out", str(tmp_path / "x")])
    assert res.exit_code == 2 and "nosuch" in res.output, res.output  # no model named: still bad usage
    res = CliRunner().invoke(cli, ["compare", "nosuch", "--dataset", "ring8", "--out", str(tmp_path / "x")])
    assert res.exit_code == 2 and "unknown model 'nosuch'" in res.output
    assert not (tmp_path / "x").exists()


def test_the_same_seeds_give_the_same_table(plugins, tmp_path):
    a = run_compare(["gmm", "kde"], tmp_path / "a", seeds=[3])
    b = run_compare(["gmm", "kde"], tmp_path / "b", seeds=[3])
    assert a.table(timings=False) == b.table(timings=False)
    c = run_compare(["gmm", "kde"], tmp_path / "c", seeds=[4])
    assert a.table(timings=False) != c.table(timings=False)


def test_the_holdout_is_never_trained_on(plugins, tmp_path):
    """A KDE with a tiny bandwidth samples (almost) its training rows: their distance to the
    training set is far below that of the held-out rows, which it never saw. Were the held-out
    rows in training, their own distance would be 0 and the ratio not small."""
    result = run_compare(["kde"], tmp_path / "cmp", sets={"dataset.n": 400, "kde.bandwidth": 1e-4})
    dcr = result.row("kde")["metrics"]["dcr_ratio"]["mean"]
    assert dcr < 0.05
    run = json.loads((tmp_path / "cmp" / "kde-seed0" / "summary.json").read_text())
    assert run["kernel_points"] == result.train_rows == 320


def test_no_model_named_compares_every_model_that_can_take_the_data(plugins, tmp_path, monkeypatch):
    monkeypatch.setenv("AIGC_ENGINE_DISABLE_PLUGINS", "gan,cvae,diffusion")  # neural defaults train for minutes
    result = run_compare(None, tmp_path / "cmp", sets={"dataset.n": 400, "gmm.n_components": 500})
    names = [r["model"] for r in result.rows]
    assert "kde" in names and "broken" in names and "gmm" not in names  # 500 components > 320 rows
    assert "n_components=500" in result.skipped["gmm"]
    assert "Skipped (cannot take the data): gmm" in result.to_markdown()


def test_dataset_holdout_option_splits_the_rows_once():
    engine = Engine()
    full = engine.load_dataset("ring8", {"n": 100})
    train = engine.load_dataset("ring8", {"n": 100, "holdout": "0.2"})
    held = engine.load_dataset("ring8", {"n": 100, "holdout": "0.2", "part": "holdout"})
    assert (len(train), len(held)) == (80, 20)
    rows = {tuple(r) for r in full.x.tolist()}
    assert {tuple(r) for r in train.x.tolist()} | {tuple(r) for r in held.x.tolist()} == rows
    assert not {tuple(r) for r in train.x.tolist()} & {tuple(r) for r in held.x.tolist()}
    assert train.options["holdout"] == 0.2 and train.options["n"] == 100
    digits = engine.load_dataset("digits", {"holdout": "0.2", "part": "holdout"})
    assert len(digits) == 447 and torch.equal(digits.x, engine.load_dataset("digits").x[1350:])
    with pytest.raises(InputError, match="dataset.part=holdout needs dataset.holdout"):
        engine.load_dataset("ring8", {"part": "holdout"})
    with pytest.raises(InputError, match="holdout must be in"):
        engine.load_dataset("ring8", {"holdout": "1.5"})


def test_an_interrupted_comparison_keeps_the_models_done(plugins, tmp_path, monkeypatch):
    import aigc_engine.compare as compare_module

    measured = compare_module.evaluate

    def measure_then_stop(model, *args, **kwargs):
        if model.name == "kde":
            raise KeyboardInterrupt
        return measured(model, *args, **kwargs)

    monkeypatch.setattr(compare_module, "evaluate", measure_then_stop)
    with pytest.raises(KeyboardInterrupt):
        run_compare(["gmm", "kde"], tmp_path / "cmp")
    saved = json.loads((tmp_path / "cmp" / COMPARE_JSON).read_text())
    assert saved["interrupted"] is True and [r["model"] for r in saved["rows"]] == ["gmm"]
    assert "interrupted" in (tmp_path / "cmp" / "compare.md").read_text()
