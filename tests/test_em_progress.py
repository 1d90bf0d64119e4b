"""Progress of EM fits: a bar over EM iterations (a table's gmm, gmm-select) with an ETA on
plain stderr lines, and no effect on the fitted numbers."""
import re

import numpy as np
import torch
from click.testing import CliRunner
from safetensors import safe_open

from aigc_engine import ProgressBar
from aigc_engine.cli import cli


def test_plain_line_shows_rate_and_eta():
    bar = ProgressBar(100, "EM", enabled=False, rich=False)
    bar.done = 25
    assert bar.line(bar._start + 10.0, "K=2") == "EM 25/100 [10.0s, 2.5 it/s, ETA 0:30] K=2"
    bar.done = 100
    assert "ETA" not in bar.line(bar._start + 40.0)  # finished: no time left to show
    slow = ProgressBar(400, "EM", enabled=False, rich=False)
    slow.done = 2
    assert slow.line(slow._start + 30.0) == "EM 2/400 [30.0s, 15 s/it, ETA 1:39:30]"


def test_lowered_total_ends_the_plain_lines(capsys):
    bar = ProgressBar(300, "EM", rich=False)
    for _ in range(12):  # an EM fit converging at iteration 12 of at most 300
        bar.advance()
    assert capsys.readouterr().err == ""  # short: quiet until the end
    bar.set_total(12)
    assert capsys.readouterr().err.startswith("EM 12/12 [")


def _table(path):
    rng = np.random.default_rng(0)
    n = 300
    a, b = rng.normal(size=n), rng.gamma(2.0, size=n)
    kind = np.where(a + rng.normal(size=n) > 0, "x", "y")
    path.write_text("a,b,kind\n" + "".join(f"{u:.4f},{v:.4f},{k}\n" for u, v, k in zip(a, b, kind)))
    return path


def test_table_fit_shows_em_iterations_and_the_same_weights(tmp_path, monkeypatch):
    csv = _table(tmp_path / "t.csv")
    args = ["run", "gmm", "--dataset", str(csv), "--device", "cpu", "--set", "n_components=3"]
    quiet = CliRunner().invoke(cli, [*args, "--out", str(tmp_path / "quiet"), "--no-progress"])
    assert quiet.exit_code == 0, quiet.output
    assert not re.search(r"^EM \d+/\d+", quiet.stderr, re.M)
    monkeypatch.setattr("aigc_engine.progress.PLAIN_EVERY_S", 0.0)  # a line at every iteration
    shown = CliRunner().invoke(cli, [*args, "--out", str(tmp_path / "shown")])
    assert shown.exit_code == 0, shown.output
    lines = re.findall(r"^EM (\d+)/(\d+) \[.*\] K=(\d) lower_bound=\S+$", shown.stderr, re.M)
    assert [int(done) for done, _, _ in lines] == list(range(1, len(lines) + 1))  # one per EM iteration
    assert {k for _, _, k in lines} == {"1", "2", "3"} and "ETA" in shown.stderr
    assert re.search(r"^EM (\d+)/\1 \[", shown.stderr, re.M)  # ends full though EM converged early
    # the same numbers (the bytes of the files differ: safetensors writes its metadata in hash order)
    shown_model, quiet_model = (safe_open(tmp_path / d / "model.safetensors", "pt") for d in ("shown", "quiet"))
    assert shown_model.metadata() == quiet_model.metadata()
    assert sorted(shown_model.keys()) == sorted(quiet_model.keys())
    for key in quiet_model.keys():
        assert torch.equal(shown_model.get_tensor(key), quiet_model.get_tensor(key))


def test_gmm_select_shows_em_iterations_of_all_k(tmp_path, monkeypatch):
    np.save(tmp_path / "p.npy", np.random.default_rng(1).normal(size=(200, 2)))
    monkeypatch.setattr("aigc_engine.progress.PLAIN_EVERY_S", 0.0)
    result = CliRunner().invoke(cli, ["gmm-select", "--dataset", str(tmp_path / "p.npy"), "--components", "1,2",
                                      "--max-iter", "20", "--out", str(tmp_path / "sel"), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    ks = re.findall(r"^EM \d+/\d+ \[.*\] K=(\d) ", result.stderr, re.M)
    assert ks[0] == "1" and ks[-1] == "2"
