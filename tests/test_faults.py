"""Faults in damaged, raced and hostile run directories, weights, data and options: each group of
the fault-injection trial of issue 30 as parametrized cases. Every case ends as docs/reliability.md
promises: one line and exit status 2 for bad input (3 for a machine that refuses a write), nothing
lost, no half-made directory, the refused run still resumable."""
import fcntl
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from aigc_engine.cli import cli
from aigc_engine.errors import EnvironmentFault
from aigc_engine.store import checkpoint, io, rundir

GAN = ["run", "gan", "--set", "dataset.n=200", "--set", "batch_size=64", "--set", "steps=20", "--no-progress"]
GMM = ["run", "gmm", "--set", "dataset.n=200", "--set", "n_components=2", "--no-progress"]


def _run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def _one_line_error(result, code=2, *words):
    """The result failed with ``code`` and one ``Error:`` line (no traceback) holding ``words``."""
    assert result.exit_code == code, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1 and "Traceback" not in result.output and "unexpected" not in result.output, result.output
    for word in words:
        assert word in errors[0], errors[0]
    return errors[0]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A finished GAN run (20 steps, with its checkpoint), a GMM run, and a GMM run on a table."""
    root = tmp_path_factory.mktemp("runs")
    table = root / "table.csv"
    rng = np.random.default_rng(0)
    table.write_text("x,y,kind\n" + "".join(f"{a:.4f},{b:.4f},{'ab'[i % 2]}\n"
                                            for i, (a, b) in enumerate(rng.normal(size=(200, 2)))))
    for name, args in (("gan", GAN), ("gmm", GMM), ("table", [*GMM[:2], "--dataset", table, *GMM[6:]])):
        result = _run(*args, "--out", root / name)
        assert result.exit_code == 0, result.output
    return root


@pytest.fixture
def copy_of(runs, tmp_path):
    def copy(name):
        shutil.copytree(runs / name, tmp_path / name)
        return tmp_path / name
    return copy


def _map_tensors(state, change):
    if isinstance(state, dict):
        return {k: _map_tensors(v, change) for k, v in state.items()}
    if isinstance(state, (list, tuple)):
        return type(state)(_map_tensors(v, change) for v in state)
    return change(state) if isinstance(state, torch.Tensor) and state.is_floating_point() else state


# -- cause 1: a refused --resume leaves the run as it was ---------------------------------------------------
@pytest.mark.parametrize("change", ["width=64", "batch_size=128"])
def test_a_refused_resume_leaves_config_json_and_stays_resumable(copy_of, change):
    run = copy_of("gan")
    before = (run / "config.json").read_bytes()
    _one_line_error(_run("run", "--resume", run, "--set", change, "--set", "steps=30", "--no-progress"))
    assert (run / "config.json").read_bytes() == before
    ok = _run("run", "--resume", run, "--set", "steps=30", "--no-progress")
    assert ok.exit_code == 0, ok.output
    assert json.loads((run / "config.json").read_text())["config"]["steps"] == 30


# -- causes 2 and 3: one loader checks dtype, shape and finiteness -----------------------------------------
def _wrong_shape(t):
    return t[..., :-1] if t.ndim else t


@pytest.mark.parametrize("change, words", [(_wrong_shape, "has shape"),
                                           (lambda t: t.to(torch.int32), "int32"),
                                           (lambda t: torch.full_like(t, float("nan")), "NaN")],
                         ids=["wrong-shape", "int32", "nan"])
def test_a_checkpoint_not_of_this_model_is_refused_on_resume(copy_of, change, words):
    run = copy_of("gan")
    path = run / "checkpoint.safetensors"
    checkpoint.save(path, _map_tensors(checkpoint.load(path), change), step=checkpoint.last_step(path))
    _one_line_error(_run("run", "--resume", run, "--set", "steps=30", "--no-progress"), 2, str(path), words)


@pytest.mark.parametrize("command", ["sample", "eval"])
@pytest.mark.parametrize("change, words", [(lambda t: t.to(torch.int32), "int32"),
                                           (lambda t: torch.full_like(t, float("nan")), "NaN"),
                                           (lambda t: t.double().fill_(float("inf")), "infinite")],
                         ids=["int32", "nan", "inf"])
def test_weights_not_what_they_claim_are_refused(copy_of, tmp_path, command, change, words):
    run = copy_of("gan")
    path = run / "model.safetensors"
    checkpoint.save(path, _map_tensors(checkpoint.load(path), change))
    args = ["sample", run, "-n", "10", "-o", tmp_path / "s.npy"] if command == "sample" else ["eval", run]
    _one_line_error(_run(*args), 2, str(path), words)
    assert not (tmp_path / "s.npy").exists()


def test_a_nan_encoding_is_refused_before_any_csv(copy_of, tmp_path):
    run = copy_of("table")
    path = run / "encoding.safetensors"
    checkpoint.save(path, _map_tensors(checkpoint.load(path), lambda t: torch.full_like(t, float("nan"))))
    _one_line_error(_run("sample", run, "-n", "10", "-o", tmp_path / "s.csv"), 2, str(path), "NaN")
    assert not (tmp_path / "s.csv").exists()


@pytest.mark.parametrize("kind, name", [("table", "model.safetensors"), ("gan", "checkpoint.safetensors"),
                                        ("table", "encoding.safetensors")])
def test_a_bit_flip_in_tensor_data_fails_the_checksum(copy_of, tmp_path, kind, name):
    run = copy_of(kind)
    data = bytearray((run / name).read_bytes())
    data[-3] ^= 0x10  # inside the last tensor's bytes, past the header
    (run / name).write_bytes(bytes(data))
    args = (["run", "--resume", run, "--no-progress"] if name.startswith("checkpoint")
            else ["sample", run, "-n", "10", "-o", tmp_path / "s.csv"])
    _one_line_error(_run(*args), 2, str(run / name), "checksum")


def test_state_files_without_a_checksum_still_load():
    fixture = os.path.join(os.path.dirname(__file__), "fixtures", "run-gmm-v0", "model.safetensors")
    assert "aigc_engine.sha256" not in io.read_metadata(fixture)
    assert checkpoint.load(fixture)


# -- cause 4: a dead claim's leftover does not block ---------------------------------------------------------
@pytest.mark.parametrize("leftover", ["empty config.json", "no config.json"])
def test_a_killed_claim_does_not_block_the_directory(tmp_path, leftover):
    out = tmp_path / "run"
    out.mkdir()
    if leftover == "empty config.json":
        (out / "config.json").write_bytes(b"")
        _one_line_error(_run("run", "--resume", out, "--no-progress"), 2, "is empty", f"--out {out}")
    ok = _run(*GMM, "--out", out)
    assert ok.exit_code == 0, ok.output
    assert json.loads((out / "config.json").read_text())["model"] == "gmm"


# -- cause 5: a killed compare can be run again -------------------------------------------------------------
@pytest.mark.slow
def test_compare_runs_again_after_a_kill_and_refuses_a_finished_one(tmp_path):
    out = tmp_path / "cmp"
    out.mkdir()
    (out / "compare.json").write_bytes(b"")  # what a SIGKILL right after the claim leaves
    args = ["compare", "gmm", "--dataset", "ring8", "--set", "dataset.n=300", "--set", "gmm.n_components=2",
            "--seeds", "0", "--samples", "50", "--out", out, "--no-progress"]
    first = _run(*args)
    assert first.exit_code == 0, first.output
    assert json.loads((out / "compare.json").read_text())["rows"]
    err = _one_line_error(_run(*args), 2, "already holds a run")
    assert "--resume" not in err  # compare has none


# -- cause 6: one process at a time in a run directory ------------------------------------------------------
@pytest.fixture
def locked(tmp_path):
    """Hold a directory's lock from another process, as a running ``aigc-engine run`` does."""
    procs = []

    def lock(directory):
        code = ("import fcntl, os, sys, time; fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT); "
                "fcntl.flock(fd, fcntl.LOCK_EX); print('locked', flush=True); time.sleep(120)")
        proc = subprocess.Popen([sys.executable, "-c", code, str(directory / rundir.LOCK_FILE)], stdout=subprocess.PIPE,
                                text=True)
        assert proc.stdout.readline().strip() == "locked"
        procs.append(proc)
    yield lock
    for proc in procs:
        proc.kill()
        proc.wait()


@pytest.mark.parametrize("how", ["resume", "out"])
def test_a_locked_run_directory_is_refused(copy_of, locked, how):
    run = copy_of("gmm")
    if how == "out":
        (run / "config.json").write_bytes(b"")  # even an empty claim is not taken while its lock is held
    stale = run / ".checkpoint.safetensors.abc.tmp"  # the running process's write in flight
    stale.write_bytes(b"x")
    metrics = (run / "metrics.jsonl").read_bytes()
    locked(run)
    args = ["run", "--resume", run, "--no-progress"] if how == "resume" else [*GMM, "--out", run]
    _one_line_error(_run(*args), 2, str(run), "in use")
    assert stale.exists() and (run / "metrics.jsonl").read_bytes() == metrics


def test_the_lock_is_held_for_the_whole_run_and_released_after(tmp_path, monkeypatch):
    out = tmp_path / "run"
    seen = []
    fit = checkpoint.save

    def save(path, state, step=None):  # inside the run: another opener of the lock file is refused
        fd = os.open(out / rundir.LOCK_FILE, os.O_RDWR)
        try:
            with pytest.raises(BlockingIOError):
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            seen.append(path.name)
        finally:
            os.close(fd)
        fit(path, state, step)

    monkeypatch.setattr(checkpoint, "save", save)
    assert _run(*GMM, "--out", out).exit_code == 0
    assert "checkpoint.safetensors" in seen
    fd = os.open(out / rundir.LOCK_FILE, os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # released at the end
    os.close(fd)


# -- cause 7: bad data is bad input -------------------------------------------------------------------------
def _write_data(path):
    name = path.name
    if name == "huge.csv":
        path.write_text("a,b\n" + "".join(f"{s}1e308,{i}\n" for i, s in enumerate(["", "-"] * 50)))
    elif name == "field.csv":
        path.write_text("a,b\n1,\"" + "x" * 200_000 + "\"\n" + "".join(f"{i},y\n" for i in range(2, 40)))
    elif name == "latin1.csv":
        path.write_bytes(("a,b\n" + "".join(f"{i},caf\xe9\n{i + 1},x\n" for i in range(20))).encode("latin-1"))
    elif name == "twice.csv":
        path.write_text("a,a,b\n" + "".join(f"{i},{i + 1},{i % 3}\n" for i in range(50)))
    elif name == "no-columns.npy":
        np.save(path, np.zeros((200, 0)))


@pytest.mark.parametrize("name, words", [("huge.csv", "1e+308"), ("twice.csv", "'a' twice"),
                                         ("no-columns.npy", "(200, 0)")])
def test_bad_data_is_one_line_exit_2_and_no_directory(tmp_path, name, words):
    _write_data(tmp_path / name)
    out = tmp_path / "run"
    _one_line_error(_run("run", "gmm", "--dataset", tmp_path / name, "--out", out, "--no-progress"), 2, name, words)
    assert not out.exists()


@pytest.mark.parametrize("name", ["field.csv", "latin1.csv"])
def test_hostile_but_readable_tables_are_read(tmp_path, name):
    """A field past the csv module's default limit, a cp1252/latin-1 file: read (the table
    reader's dialect sniffing), never an unexpected failure."""
    _write_data(tmp_path / name)
    result = _run("run", "gmm", "--dataset", tmp_path / name, "--set", "n_components=2", "--out", tmp_path / "run",
                  "--no-progress")
    assert result.exit_code == 0, result.output


# -- cause 8 (the engine's part): sizes that no machine allocates -------------------------------------------
@pytest.mark.parametrize("args, words", [(["-n", "10000000000"], "-n"),
                                         (["--seed", "100000000000000000000000"], "--seed")])
def test_sample_options_out_of_range_are_refused(runs, tmp_path, args, words):
    _one_line_error(_run("sample", runs / "gmm", *args, "-o", tmp_path / "s.npy"), 2, words)


# -- cause 9: a typed reader of config.json -----------------------------------------------------------------
@pytest.mark.parametrize("command", ["eval", "resume", "sample"])
@pytest.mark.parametrize("edit, key", [({"dataset": "ring8"}, "dataset"), ({"config": [1, 2]}, "config"),
                                       ({"seed": "7"}, "seed"), ({"seed": 10**30}, "seed"), ({"model": 3}, "model"),
                                       ({"dataset": {"name": "ring8", "options": [], "shape": [2]}}, "dataset.options"),
                                       ({"dataset": {"name": 5, "options": {}}}, "dataset.name")],
                         ids=["dataset-str", "config-list", "seed-str", "seed-huge", "model-int", "options-list",
                              "name-int"])
def test_a_hand_edited_config_of_wrong_types_names_the_key(copy_of, tmp_path, command, edit, key):
    run = copy_of("gmm")
    config = {**json.loads((run / "config.json").read_text()), **edit}
    (run / "config.json").write_text(json.dumps(config))
    args = {"eval": ["eval", run], "resume": ["run", "--resume", run, "--no-progress"],
            "sample": ["sample", run, "-n", "5", "-o", tmp_path / "s.npy"]}[command]
    _one_line_error(_run(*args), 2, "config.json", f"{key} must be")


# -- cause 10: no symlink followed out of a run directory ---------------------------------------------------
@pytest.mark.parametrize("how", ["out", "resume"])
def test_a_planted_metrics_link_is_refused_and_its_target_untouched(copy_of, tmp_path, how):
    target = tmp_path / "users-file.txt"
    target.write_text("mine\n")
    if how == "out":
        run = tmp_path / "run"
        run.mkdir()
    else:
        run = copy_of("gmm")
        (run / "metrics.jsonl").unlink()
    (run / "metrics.jsonl").symlink_to(target)
    args = [*GMM, "--out", run] if how == "out" else ["run", "--resume", run, "--set", "max_iter=200", "--no-progress"]
    _one_line_error(_run(*args), 2, "symbolic link")
    assert target.read_text() == "mine\n" and (run / "metrics.jsonl").is_symlink()


def test_append_metrics_does_not_follow_a_link(tmp_path):
    target = tmp_path / "users-file.txt"
    target.write_text("mine\n")
    (tmp_path / "metrics.jsonl").symlink_to(target)
    with pytest.raises(ValueError, match="symbolic link"):
        rundir.append_metrics(tmp_path, {"step": 1})
    assert target.read_text() == "mine\n"


# -- cause 11: one file mode for every run file -------------------------------------------------------------
@pytest.mark.parametrize("name", ["gan", "table"])
def test_every_run_file_has_one_mode(runs, name):
    modes = {p.name: oct(p.stat().st_mode & 0o777) for p in (runs / name).iterdir()}
    assert set(modes.values()) == {oct(io.FILE_MODE)}, modes


# -- also seen: strict JSON ----------------------------------------------------------------------------------
def test_json_files_are_strict_non_finite_values_become_null_with_a_warning(tmp_path):
    with pytest.warns(UserWarning, match=r"summary.json: reverse_kl=inf, curve\[1\]=nan not finite"):
        io.write_json(tmp_path / "summary.json", {"reverse_kl": float("inf"), "curve": [1.0, float("nan")],
                                                  "x": np.float32(2.5)})
    strict = json.loads((tmp_path / "summary.json").read_text(), parse_constant=_refuse)
    assert strict == {"reverse_kl": None, "curve": [1.0, None], "x": 2.5}


def _refuse(name):
    raise AssertionError(f"{name} in a JSON file")


@pytest.mark.parametrize("name", ["gan", "gmm", "table"])
def test_summary_and_eval_output_are_strict_json(runs, name):
    json.loads((runs / name / "summary.json").read_text(), parse_constant=_refuse)
    result = _run("eval", runs / name)
    assert result.exit_code == 0, result.output
    text = result.output[result.output.index("{"):]
    json.loads(text[:text.rindex("}") + 1], parse_constant=_refuse)


# -- also seen: a full disk or a read-only directory is the machine's fault: exit 3 -------------------------
@pytest.fixture
def tmpfs(tmp_path):
    """Mount a small tmpfs (root only; skipped where the sandbox does not allow it)."""
    mounted = []

    def mount(size="1m", options=""):
        point = tmp_path / f"fs{len(mounted)}"
        point.mkdir()
        opts = f"size={size}" + (f",{options}" if options else "")
        proc = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(point)], capture_output=True, text=True)
        if proc.returncode:
            pytest.skip(f"cannot mount a tmpfs here (mount: {proc.stderr.strip() or proc.returncode})")
        mounted.append(point)
        return point
    if os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("mounting a small tmpfs for the disk-full cases needs root and mount(8)")
    yield mount
    for point in mounted:
        subprocess.run(["umount", "-l", str(point)], capture_output=True)


def _remount(point, options):
    subprocess.run(["mount", "-o", f"remount,{options}", str(point)], check=True, capture_output=True)


def _fill(point, leave):
    """Fill the file system at ``point`` up to ``leave`` free bytes."""
    stat = os.statvfs(point)
    free = stat.f_bavail * stat.f_frsize
    (point / "ballast").write_bytes(b"\0" * max(free - leave, 0))


@pytest.mark.parametrize("leave", [0, 40_000])
def test_a_full_disk_is_exit_3_names_the_file_and_loses_nothing(tmpfs, leave):
    disk = tmpfs("1m")
    _fill(disk, leave)
    out = disk / "run"
    err = _one_line_error(_run(*GMM, "--out", out), 3, "the disk is full", str(disk))
    assert "unexpected" not in err
    if (out / "checkpoint.safetensors").exists():  # a run that got that far is kept, and resumable with room
        checkpoint.load(out / "checkpoint.safetensors")
        (disk / "ballast").unlink()
        ok = _run("run", "--resume", out, "--no-progress")
        assert ok.exit_code == 0, ok.output
        checkpoint.load(out / "model.safetensors")
    else:
        assert not out.exists() or not any(p.name in rundir.RUN_FILES for p in out.iterdir())


def test_a_full_disk_never_damages_the_last_checkpoint(tmpfs, runs):
    disk = tmpfs("2m")
    run = disk / "gan"
    shutil.copytree(runs / "gan", run)
    before = (run / "checkpoint.safetensors").read_bytes()
    _fill(disk, 2_000)
    result = _run("run", "--resume", run, "--set", "steps=40", "--no-progress")
    _one_line_error(result, 3, "the disk is full")
    assert (run / "checkpoint.safetensors").read_bytes() == before or checkpoint.load(run / "checkpoint.safetensors")
    assert not list(run.glob(".*.tmp"))


@pytest.mark.parametrize("command", ["run", "sample"])
def test_a_read_only_directory_is_exit_3(tmpfs, runs, command):
    disk = tmpfs("4m")
    shutil.copytree(runs / "gmm", disk / "gmm")
    _remount(disk, "ro")
    args = [*GMM, "--out", disk / "new"] if command == "run" else ["sample", disk / "gmm", "-n", "5"]
    _one_line_error(_run(*args), 3, "read-only", "write elsewhere")


def test_writers_errors_quoting_the_system_are_environment_faults():
    fault = io.environment_fault(Exception("Error while serializing: I/O error: No space left on device (os "
                                           "error 28)"), "run/model.safetensors")
    assert isinstance(fault, EnvironmentFault) and fault.exit_code == 3
    assert str(fault) == "cannot write run/model.safetensors: the disk is full: free space there or write elsewhere (--out)"
    assert io.environment_fault(FileNotFoundError(2, "gone")) is None
