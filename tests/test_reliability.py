"""Run directories: nothing half-written is left by a rejected run, concurrent runs never share a
directory, and planted pickles are never unpickled."""
import json
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from aigc_engine.store import io
from aigc_engine.cli import cli

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def _run(*args):
    return CliRunner().invoke(cli, list(args))


@pytest.mark.parametrize("sets", [["n_components=-3"], ["covariance_type=banana"], ["n_components=5000"],
                                  ["max_iter=-1"]])
def test_a_rejected_run_leaves_no_directory(tmp_path, sets):
    out = tmp_path / "run"
    args = ["run", "gmm", "--set", "dataset.n=200", "--out", str(out), "--no-progress"]
    for s in sets:
        args += ["--set", s]
    result = _run(*args)
    assert result.exit_code == 2, result.output
    assert result.output.strip().splitlines() == [result.output.strip()] and result.output.startswith("Error: ")
    assert not out.exists()
    # the same --out is free for the next, correct run
    ok = _run("run", "gmm", "--set", "dataset.n=200", "--set", "n_components=2", "--out", str(out), "--no-progress")
    assert ok.exit_code == 0, ok.output
    assert (out / "model.safetensors").exists()


def test_a_rejected_run_in_an_existing_directory_keeps_the_users_files(tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    result = _run("run", "gmm", "--set", "n_components=-1", "--out", str(out), "--no-progress")
    assert result.exit_code == 2
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]


def _spawn(args, cwd):
    return subprocess.Popen([sys.executable, "-m", "aigc_engine", *args], cwd=cwd, env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_concurrent_runs_get_their_own_directories_and_one_out_has_one_winner(tmp_path):
    common = ["run", "gmm", "--set", "dataset.n=300", "--set", "n_components=2", "--no-progress"]
    procs = [_spawn(common, tmp_path) for _ in range(3)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-500:] for o in outs]
    dirs = {o[0].strip().splitlines()[-1] for o in outs}
    assert len(dirs) == 3 and all((tmp_path / d / "model.safetensors").exists() for d in dirs)

    shared = tmp_path / "shared"
    procs = [_spawn([*common, "--out", str(shared)], tmp_path) for _ in range(3)]
    for p in procs:
        p.communicate(timeout=300)
    codes = sorted(p.returncode for p in procs)
    assert codes == [0, 2, 2]
    assert json.loads((shared / "config.json").read_text())["model"] == "gmm"
    io.load_state(shared / "model.safetensors")
    assert len((shared / "metrics.jsonl").read_text().splitlines()) >= 1


class _Payload:
    """Unpickling this creates a file: the proof that a loader ran pickle."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


@pytest.mark.parametrize("target", ["model.safetensors", "checkpoint.safetensors", "config.json"])
def test_planted_pickles_in_a_run_directory_never_run(tmp_path, target):
    out = tmp_path / "run"
    assert _run("run", "gmm", "--set", "dataset.n=200", "--set", "n_components=2", "--out", str(out),
                "--no-progress").exit_code == 0
    marker = tmp_path / "pwned"
    (out / target).write_bytes(pickle.dumps(_Payload(str(marker))))
    for args in (["sample", str(out), "-n", "5", "-o", str(tmp_path / "s.npy")], ["eval", str(out)],
                 ["run", "--resume", str(out), "--no-progress"]):
        result = _run(*args)
        if (target == "checkpoint.safetensors") != (args[0] == "run") and target != "config.json":
            continue  # sample and eval never read the checkpoint; --resume rewrites the weights
        assert result.exit_code == 2, (args, result.output)
        last = result.output.strip().splitlines()[-1]
        assert last.startswith("Error: ") and target in last and "Traceback" not in result.output
    assert not marker.exists()


def test_a_pickled_npy_dataset_is_refused_unread(tmp_path):
    marker = tmp_path / "pwned"
    bad = tmp_path / "data.npy"
    np.save(bad, np.array([_Payload(str(marker))], dtype=object), allow_pickle=True)
    result = _run("run", "gmm", "--dataset", str(bad), "--out", str(tmp_path / "r"), "--no-progress")
    assert result.exit_code == 2 and not marker.exists() and not (tmp_path / "r").exists()
