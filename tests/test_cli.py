"""Every CLI command through click's runner, errors and exit codes, and one real subprocess."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from aigc_engine.cli import cli
from conftest import PROBE_PLUGIN, make_entry_point_plugin

AIGC_ENGINE = os.path.join(os.path.dirname(sys.executable), "aigc-engine")  # the console script
RUN_FILES = {"config.json", "metrics.jsonl", "model.safetensors", "summary.json", "samples.png"}


@pytest.fixture
def probe(plugin_dir):
    make_entry_point_plugin(plugin_dir, "aigc-test-probe", "probe", "aigc_test_probe", PROBE_PLUGIN)
    return plugin_dir


def invoke(*args, env=None):
    result = CliRunner().invoke(cli, [str(a) for a in args], env=env, catch_exceptions=False)
    return result


def test_help_lists_commands():
    out = invoke("--help").output
    for command in ("run", "sample", "eval", "compare", "models", "datasets", "plugins", "info", "install"):
        assert command in out


def test_listing_commands(probe):
    assert "probe" in invoke("models").output
    assert "    steps: int  (default 3)" in invoke("models").output
    out = invoke("datasets").output
    assert "ring8" in out and "digits" in out and "options: n=10000" in out
    out = invoke("plugins").output
    assert "probe 0.1  loaded" in out and "aigc_engine_register_models" in out
    out = invoke("info").output
    assert "torch:" in out and "kernel backend:" in out


def test_run_sample_eval_round_trip(probe, tmp_path):
    out = tmp_path / "run"
    result = invoke("run", "probe", "--dataset", "blobs", "--set", "steps=4", "--set", "dataset.n=300",
                    "--set", "dataset.dim=3", "--out", out, "--seed", 3)
    assert result.exit_code == 0, result.output
    assert result.stdout.strip().splitlines()[-1] == str(out)  # the run directory is printed last
    assert RUN_FILES | {"metrics.png", "checkpoint.safetensors"} <= {p.name for p in out.iterdir()}
    config = json.loads((out / "config.json").read_text())
    assert config["config"]["steps"] == 4 and config["seed"] == 3
    assert config["dataset"] == {"name": "blobs", "options": {"n": 300, "centers": 5, "dim": 3, "std": 1.0, "seed": 0},
                                 "shape": [3]}
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [0, 1, 2, 3]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["distance"] < 1e-5 and summary["world_size"] == 1

    result = invoke("sample", out, "-n", 7, "-o", tmp_path / "s.npy")
    assert result.exit_code == 0, result.output
    assert np.load(tmp_path / "s.npy").shape == (7, 3)
    assert invoke("sample", out, "-n", 7, "-o", tmp_path / "s.png").exit_code == 0
    assert (tmp_path / "s.png").read_bytes()[:4] == b"\x89PNG"

    result = invoke("eval", out)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["distance"] < 1e-5
    result = invoke("eval", out, "--set", "dataset.seed=1")
    assert json.loads(result.stdout)["distance"] > 1e-3


def test_config_file_and_resume(probe, tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('steps = 2\ntag = "b"\nhidden = [8, 16]\n[dataset]\nname = "moons"\nn = 200\n')
    out = tmp_path / "run"
    assert invoke("run", "probe", "--config", cfg, "--out", out).exit_code == 0
    config = json.loads((out / "config.json").read_text())
    assert config["config"]["hidden"] == [8, 16] and config["dataset"]["name"] == "moons"
    # a second run into the same directory is refused, never overwritten
    result = invoke("run", "probe", "--out", out)
    assert result.exit_code == 2 and "already holds a run" in result.output
    result = invoke("run", "--resume", out, "--set", "steps=5")
    assert result.exit_code == 0, result.output
    assert json.loads((out / "config.json").read_text())["config"]["steps"] == 5


@pytest.mark.parametrize("args, message", [
    (["run", "nope"], "unknown model 'nope'"),
    (["run", "probe", "--set", "stepz=1"], "unknown config key 'stepz' for probe; valid keys: steps (int)"),
    (["run", "probe", "--set", "steps=many"], "steps must be an int, got 'many'"),
    (["run", "probe", "--set", "bias=maybe"], "bias must be a bool"),
    (["run", "probe", "--set", "steps"], "--set expects key=value"),
    (["run", "probe", "--set", "dataset.size=3"], "unknown option 'size' for dataset ring8; valid options: n"),
    (["run", "probe", "--set", "dataset.n=0"], "dataset option n must be > 0"),
    (["run", "probe", "--dataset", "nowhere"], "unknown dataset 'nowhere'"),
    (["run", "probe", "--dataset", "missing.npy"], "does not exist"),
    (["run", "probe", "--device", "cuda:0"], "no CUDA device is available"),
    (["run", "probe", "--config", "missing.toml"], "config file 'missing.toml' does not exist"),
    (["run"], "give a MODEL"),
])
def test_bad_input_is_one_line_and_status_2(probe, tmp_path, args, message):
    result = invoke(*args, "--out", tmp_path / "r") if args[0] == "run" and len(args) > 1 else invoke(*args)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output


def test_bad_data_files(probe, tmp_path):
    bad = tmp_path / "nan.npy"
    np.save(bad, np.array([[0.0, 1.0], [np.nan, 2.0]]))
    result = invoke("run", "probe", "--dataset", bad, "--out", tmp_path / "r")
    assert result.exit_code == 2 and "NaN or inf values (first in row 1)" in result.output
    empty = tmp_path / "empty.csv"
    empty.write_text("a,b\n")
    result = invoke("run", "probe", "--dataset", empty, "--out", tmp_path / "r2")
    assert result.exit_code == 2 and "has a header but no rows" in result.output
    bad_toml = tmp_path / "bad.toml"
    bad_toml.write_text("steps = [\n")
    result = invoke("run", "probe", "--config", bad_toml, "--out", tmp_path / "r3")
    assert result.exit_code == 2 and "not valid TOML" in result.output
    assert not (tmp_path / "r").exists()


def test_sample_and_eval_errors(probe, tmp_path):
    assert invoke("sample", tmp_path).exit_code == 2  # not a run directory
    out = tmp_path / "run"
    invoke("run", "probe", "--set", "dataset.n=100", "--out", out)
    result = invoke("sample", out, "--condition", 1)
    assert result.exit_code == 2 and "not conditional" in result.output
    result = invoke("sample", out, "-o", tmp_path / "x.txt")
    assert result.exit_code == 2 and ".npy or .png" in result.output


def test_unexpected_failure_is_status_1_and_debug_shows_traceback(plugin_dir, tmp_path):
    source = PROBE_PLUGIN.replace("        shard = dataset.shard", "        raise RuntimeError('kaput')\n        shard = dataset.shard")
    make_entry_point_plugin(plugin_dir, "aigc-test-probe", "probe", "aigc_test_probe", source)
    result = invoke("run", "probe", "--out", tmp_path / "r")
    assert result.exit_code == 1
    assert "unexpected RuntimeError: kaput" in result.output and "Traceback" not in result.output
    with pytest.raises(RuntimeError, match="kaput"):
        invoke("run", "probe", "--out", tmp_path / "r2", env={"AIGC_ENGINE_DEBUG": "1"})


def test_broken_plugin_leaves_every_command_working(plugin_dir, tmp_path):
    make_entry_point_plugin(plugin_dir, "aigc-test-broken", "broken", "aigc_test_broken", "import nonexistent_xyz\n")
    make_entry_point_plugin(plugin_dir, "aigc-test-probe", "probe", "aigc_test_probe", PROBE_PLUGIN)
    for args in (["models"], ["datasets"], ["info"], ["--help"]):
        assert invoke(*args).exit_code == 0
    out = invoke("plugins").output
    assert "broken 0.1  failed" in out and "nonexistent_xyz" in out
    assert invoke("run", "probe", "--set", "dataset.n=50", "--out", tmp_path / "r").exit_code == 0


def test_install_runs_pip_in_this_environment(monkeypatch):
    calls = []
    monkeypatch.setattr("subprocess.call", lambda cmd: calls.append(cmd) or 0)
    assert invoke("install", "some-plugin").exit_code == 0
    assert calls == [[sys.executable, "-m", "pip", "install", "some-plugin"]]


def test_real_subprocess(probe, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(probe)}
    out = tmp_path / "run"
    proc = subprocess.run([AIGC_ENGINE, "run", "probe", "--set", "dataset.n=200", "--out", str(out)],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(out)
    assert "probe 3/3" in proc.stderr  # plain progress lines when not on a terminal
    assert RUN_FILES <= {p.name for p in out.iterdir()}
    proc = subprocess.run([AIGC_ENGINE, "run", "probe", "--set", "steps=x"], capture_output=True,
                          text=True, env=env, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == "Error: steps must be an int, got 'x'"


def test_plugins_lists_a_failing_hook(plugin_dir):
    source = PROBE_PLUGIN + "\n\n@hookimpl\ndef aigc_engine_register_datasets(register):\n    raise RuntimeError('no data today')\n"
    make_entry_point_plugin(plugin_dir, "aigc-test-probe", "probe", "aigc_test_probe", source)
    out = invoke("plugins").output
    assert "probe 0.1  failed" in out and "no data today" in out


def test_resume_a_run_on_a_file_and_dataset_flag_beats_config(probe, tmp_path):
    np.save(tmp_path / "pts.npy", np.random.default_rng(0).normal(size=(64, 3)))
    out = tmp_path / "run"
    assert invoke("run", "probe", "--dataset", tmp_path / "pts.npy", "--out", out).exit_code == 0
    assert json.loads((out / "config.json").read_text())["dataset"]["name"] == str(tmp_path / "pts.npy")
    result = invoke("run", "--resume", out)
    assert result.exit_code == 0, result.output
    cfg = tmp_path / "c.toml"
    cfg.write_text('[dataset]\nname = "moons"\nn = 100\n')
    result = invoke("run", "probe", "--config", cfg, "--dataset", "blobs", "--out", tmp_path / "r2")
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "r2" / "config.json").read_text())["dataset"]["options"]["n"] == 100


def test_run_ends_with_a_summary_line_on_stderr(probe, tmp_path):
    out = tmp_path / "run"
    result = invoke("run", "probe", "--set", "dataset.n=100", "--out", out, "--no-progress")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == str(out)  # stdout stays the run directory alone
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("aigc-engine: probe on ring8: distance=") and "world_size=1" in last
    assert last.endswith(" s") and " in " in last


def test_library_warnings_are_one_clean_line(plugin_dir, tmp_path):
    source = PROBE_PLUGIN.replace("        shard = dataset.shard", "        import warnings\n"
                                  "        warnings.warn('EM did not\\n  converge', RuntimeWarning)\n"
                                  "        warnings.warn('plain note')\n        shard = dataset.shard")
    make_entry_point_plugin(plugin_dir, "aigc-test-probe", "probe", "aigc_test_probe", source)
    result = invoke("run", "probe", "--set", "dataset.n=100", "--out", tmp_path / "r", "--no-progress")
    assert result.exit_code == 0, result.output
    lines = result.stderr.splitlines()
    assert "warning: EM did not converge (RuntimeWarning)" in lines and "warning: plain note" in lines
    assert "aigc_test_probe.py" not in result.stderr  # no source path, no source line
    assert not any("warnings.warn" in line for line in lines)


def test_models_lists_the_choices_of_literal_options(probe):
    out = invoke("models").output
    assert "covariance_type: full | tied | diag | spherical  " in out
    assert "init_params: kmeans | k-means++ | random | random_from_data  " in out
    assert "dtype: float32 | float64  " in out
    assert "steps: int  training steps (points: 24000, images: 1500, tables: 6000)" in out  # per data kind
    assert "lr_schedule: constant | cosine  " in out


@pytest.mark.parametrize("key, value, choices", [
    ("covariance_type", "ful", "'full', 'tied', 'diag', 'spherical'"),
    ("init_params", "kmeans+", "'kmeans', 'k-means++', 'random', 'random_from_data'"),
    ("dtype", "float16", "'float32', 'float64'"),
])
def test_set_checks_enumerated_options_before_the_run(tmp_path, key, value, choices):
    out = tmp_path / "r"
    result = invoke("run", "gmm", "--set", f"{key}={value}", "--out", out)
    assert result.exit_code == 2
    assert f"{key} must be one of {choices}, got '{value}'" in result.output
    assert "fitting" not in result.stderr and not out.exists()  # refused before the run started


CONDITIONAL_PROBE = PROBE_PLUGIN.replace('''    def sample(self, n, condition=None):
        return self.mean.expand(n, -1) + self.config.scale * torch.randn(n, self.mean.numel())''', '''    num_classes = 0

    def sample(self, n, condition=None):
        if condition is not None:  # the label itself, to see which one was asked for
            return condition.double()[:, None].expand(n, self.mean.numel())
        return self.mean.expand(n, -1) + self.config.scale * torch.randn(n, self.mean.numel())''').replace(
    '''        self.mean = stats[0] / stats[1]''', '''        self.mean = stats[0] / stats[1]
        self.num_classes = dataset.num_classes''').replace(
    '''        return {"mean": self.mean, "world_size": self.world_size}''',
    '''        return {"mean": self.mean, "world_size": self.world_size, "num_classes": self.num_classes}''').replace(
    '''        self.mean, self.world_size = state["mean"], state["world_size"]''',
    '''        self.mean, self.world_size, self.num_classes = state["mean"], state["world_size"], state["num_classes"]''')


def test_csv_class_names_reach_sample_condition(plugin_dir, tmp_path):
    import pandas as pd

    make_entry_point_plugin(plugin_dir, "aigc-test-probe", "probe", "aigc_test_probe", CONDITIONAL_PROBE)
    csv = tmp_path / "pets.csv"
    csv.write_text("w,h,species\n" + "".join(f"{i},{i % 3},{['dog', 'cat', 'emu'][i % 3]}\n" for i in range(30)))
    out = tmp_path / "run"
    result = invoke("run", "probe", "--dataset", csv, "--set", "dataset.label_column=species", "--out", out)
    assert result.exit_code == 0, result.output
    assert json.loads((out / "config.json").read_text())["dataset"]["class_names"] == ["cat", "dog", "emu"]
    for condition, name in (("dog", "dog"), ("species=emu", "emu"), ("0", "cat")):
        result = invoke("sample", out, "-n", 2, "--condition", condition, "-o", tmp_path / "s.csv")
        assert result.exit_code == 0, result.output
        assert pd.read_csv(tmp_path / "s.csv")["species"].tolist() == [name, name]
    result = invoke("sample", out, "--condition", "cow")
    assert result.exit_code == 2 and "--condition must be one of cat, dog, emu or an id in [0, 2], got 'cow'" in result.output
    result = invoke("sample", out, "--condition", "3")
    assert result.exit_code == 2 and "--condition must be in [0, 2], got 3" in result.output


def test_csv_label_like_column_is_one_warning_line(probe, tmp_path):
    csv = tmp_path / "d.csv"
    csv.write_text("a,b,target\n" + "".join(f"{i},{i * 2.5},{i % 2}\n" for i in range(20)))
    result = invoke("run", "probe", "--dataset", csv, "--out", tmp_path / "r", "--no-progress")
    assert result.exit_code == 0, result.output
    assert ("warning: column 'target' of d.csv is modelled as a feature; to condition on it, pass "
            "--set dataset.label_column=target") in result.stderr.splitlines()
    words = tmp_path / "words.csv"
    words.write_text("a,b\n1,2\n3,dog\n")  # a word makes b a categorical column, not an error
    result = invoke("run", "probe", "--dataset", words, "--out", tmp_path / "r2", "--no-progress")
    assert result.exit_code == 0, result.output
