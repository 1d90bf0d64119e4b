"""The run directory and the state-file format: claiming, releasing, the versioned header, the
metrics rewind, and run directories written before the header (tests/fixtures) still in use."""
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from safetensors import safe_open
from safetensors.torch import save_file

from aigc_engine.store import checkpoint, io, rundir
from aigc_engine.cli import cli
from aigc_engine.errors import InputError

FIXTURES = Path(__file__).parent / "fixtures"
OLD_RUNS = ["run-gmm-v0", "run-gan-v0"]  # written by the engine before the format header (format 0)


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(params=OLD_RUNS)
def old_run(request, tmp_path):
    path = tmp_path / request.param
    shutil.copytree(FIXTURES / request.param, path)
    return path


def test_old_run_directories_still_sample_and_eval(old_run, tmp_path):
    assert checkpoint.format_of(old_run / rundir.MODEL_FILE) == 0
    out = tmp_path / "s.npy"
    result = invoke("sample", old_run, "-n", 50, "-o", out)
    assert result.exit_code == 0, result.output
    samples = np.load(out)
    assert samples.shape == (50, 2) and np.isfinite(samples).all()
    result = invoke("sample", old_run, "-n", 50, "-o", tmp_path / "s.png")
    assert result.exit_code == 0, result.output
    result = invoke("eval", old_run, "--no-progress")
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.stdout[result.stdout.index("{"):])
    assert metrics["dataset"] == "ring8" and len(metrics) > 1


def test_old_run_directories_still_resume(old_run):
    result = invoke("run", "--resume", old_run, "--device", "cpu", "--no-progress")
    assert result.exit_code == 0, result.output
    assert checkpoint.format_of(old_run / rundir.MODEL_FILE) == checkpoint.FORMAT  # rewritten in the current format


def _rewrite_header(path: Path, **meta: str) -> None:
    with safe_open(str(path), framework="pt") as fh:
        tensors = {k: fh.get_tensor(k) for k in fh.keys()}
        header = {**(fh.metadata() or {}), **meta}
    save_file(tensors, str(path), metadata=header)


def test_a_newer_format_fails_in_one_line(old_run, tmp_path):
    _rewrite_header(old_run / rundir.MODEL_FILE, **{checkpoint.FORMAT_KEY: str(checkpoint.FORMAT + 1)})
    result = invoke("sample", old_run, "-n", 5, "-o", tmp_path / "s.npy")
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "newer than the format" in lines[0] and "upgrade aigc-engine" in lines[0]


def test_an_unreadable_model_file_fails_in_one_line(old_run, tmp_path):
    (old_run / rundir.MODEL_FILE).write_bytes(b"not a safetensors file")
    result = invoke("sample", old_run, "-n", 5, "-o", tmp_path / "s.npy")
    assert result.exit_code == 2
    assert len(result.output.strip().splitlines()) == 1 and "model.safetensors" in result.output


def test_checkpoint_header_round_trip(tmp_path):
    path = tmp_path / rundir.CHECKPOINT_FILE
    state = {"w": torch.arange(4.0), "step": 7, "nested": {"t": (1, 2)}}
    checkpoint.save(path, state, step=7)
    meta = io.read_metadata(path)
    assert meta[checkpoint.FORMAT_KEY] == str(checkpoint.FORMAT) and meta[checkpoint.STEP_KEY] == "7"
    assert checkpoint.format_of(path) == checkpoint.FORMAT and checkpoint.last_step(path) == 7
    back = checkpoint.load(path)
    assert torch.equal(back["w"], state["w"]) and back["nested"]["t"] == (1, 2)
    _rewrite_header(path, **{checkpoint.FORMAT_KEY: "soon"})
    with pytest.raises(InputError, match="unreadable format header"):
        checkpoint.load(path)


def test_rewind_metrics_keeps_the_steps_the_checkpoint_holds(tmp_path):
    metrics, ckpt = tmp_path / rundir.METRICS_FILE, tmp_path / rundir.CHECKPOINT_FILE
    metrics.write_text("".join(json.dumps({"step": s, "loss": s / 10}) + "\n" for s in (1, 2, 3, 4)) + '{"step": 5, "lo')
    checkpoint.save(ckpt, {"w": torch.zeros(1)}, step=2)
    rows = checkpoint.rewind_metrics(metrics, ckpt, write=False)
    assert [r["step"] for r in rows] == [1, 2] and len(metrics.read_text().splitlines()) == 5  # not written
    checkpoint.rewind_metrics(metrics, ckpt, write=True)
    assert [json.loads(line)["step"] for line in metrics.read_text().splitlines()] == [1, 2]
    assert checkpoint.rewind_metrics(metrics, tmp_path / "none.safetensors", write=False) == []


def test_claim_is_exclusive_and_release_leaves_nothing(tmp_path, monkeypatch):
    out = tmp_path / "run"
    path, created = rundir.claim(out, "gmm", "ring8")
    assert path == out and created and (out / rundir.CONFIG_FILE).exists()
    with pytest.raises(InputError, match="already holds a run"):
        rundir.claim(out, "gmm", "ring8")
    rundir.release(out, created)
    assert not out.exists()
    kept = tmp_path / "kept"
    kept.mkdir()
    (kept / "notes.txt").write_text("mine")
    path, created = rundir.claim(kept, "gmm", "ring8")
    (kept / rundir.SUMMARY_FILE).write_text("{}")
    rundir.release(kept, created)  # a directory it did not make: only the run's files go
    assert not created and sorted(p.name for p in kept.iterdir()) == ["notes.txt"]
    monkeypatch.chdir(tmp_path)
    first, _ = rundir.claim(None, "gmm", "data/points.npy")
    second, _ = rundir.claim(None, "gmm", "data/points.npy")
    assert first.parent.name == "runs" and first.name.startswith("gmm-points-") and second != first


def test_read_config_errors(tmp_path):
    with pytest.raises(InputError, match="not a run directory"):
        rundir.read_config(tmp_path)
    (tmp_path / rundir.CONFIG_FILE).write_text("{")
    with pytest.raises(InputError, match="not a readable run config"):
        rundir.read_config(tmp_path)
    (tmp_path / rundir.CONFIG_FILE).write_text("[]")
    with pytest.raises(InputError, match="not an aigc-engine run config"):
        rundir.read_config(tmp_path)


def test_new_runs_write_the_current_format(tmp_path):
    out = tmp_path / "run"
    result = invoke("run", "gmm", "--dataset", "ring8", "--set", "n_components=2", "--set", "dataset.n=200",
                    "--device", "cpu", "--no-progress", "--out", out)
    assert result.exit_code == 0, result.output
    for name in (rundir.MODEL_FILE, rundir.CHECKPOINT_FILE):
        assert checkpoint.format_of(out / name) == checkpoint.FORMAT
    assert set(rundir.RUN_FILES) - {rundir.ENCODING_FILE} <= {p.name for p in out.iterdir()}  # tables only


def test_the_encoding_is_kept_as_a_state(tmp_path):
    assert rundir.load_encoding(tmp_path) is None  # a run on points or images
    state = {"columns": ["a", "b"], "means": torch.tensor([1.0, 2.0]), "levels": {"b": ("x", "y")}}
    rundir.save_encoding(tmp_path, state)
    assert checkpoint.format_of(tmp_path / rundir.ENCODING_FILE) == checkpoint.FORMAT
    back = rundir.load_encoding(tmp_path)
    assert back["columns"] == ["a", "b"] and torch.equal(back["means"], state["means"])
    assert back["levels"] == {"b": ("x", "y")}


@pytest.mark.parametrize("old, new", [("io", "store.io"), ("rundir", "store.rundir"),
                                      ("checkpoint", "store.checkpoint")])
def test_the_old_module_names_warn_once_and_are_the_new_modules(old, new, monkeypatch):
    import importlib
    import sys

    monkeypatch.delitem(sys.modules, f"aigc_engine.{old}", raising=False)
    with pytest.warns(DeprecationWarning, match=f"aigc_engine.{old} is deprecated: use aigc_engine.{new}$"):
        module = importlib.import_module(f"aigc_engine.{old}")
    assert module is importlib.import_module(f"aigc_engine.{new}")
