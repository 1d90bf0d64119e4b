"""A torchrun launch with 2 CPU processes: gloo is initialised and one run directory is written."""
import json
import os
import subprocess
import sys

from conftest import PROBE_PLUGIN, make_entry_point_plugin


def test_torchrun_two_processes(plugin_dir, tmp_path):
    make_entry_point_plugin(plugin_dir, "aigc-test-probe", "probe", "aigc_test_probe", PROBE_PLUGIN)
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(plugin_dir), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "aigc_engine", "run", "probe", "--device", "cpu", "--set", "dataset.n=1001", "--out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().splitlines() == [str(out)]  # printed once, by rank 0
    summary = json.loads((out / "summary.json").read_text())
    # each rank saw half the data; the all-reduced mean equals the full-data mean
    assert summary["world_size"] == 2 and summary["distance"] < 1e-5
    assert json.loads((out / "config.json").read_text())["world_size"] == 2
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 3  # rank 0 alone writes
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run", "site"]
