"""torchrun launches with 2 CPU processes: gloo is initialised, one run directory is written, and
the neural models fit what they fit in one process."""
import json
import os
import socket
import subprocess
import sys

import pytest
import torch

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


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# Tiny nets and a few steps: what is checked is that the per-step noise and the initial weights
# do not depend on the number of processes, so any difference beyond float rounding shows at once.
GAN_SETS = ["--set", "steps=4", "--set", "batch_size=32", "--set", "width=16", "--set", "depth=1",
            "--set", "fourier=0", "--set", "dataset.n=256"]
NEURAL_RUNS = {
    "gan": ("gan", GAN_SETS),
    "gan-wgan": ("gan", [*GAN_SETS, "--set", "loss=wgan"]),  # the gradient penalty's interpolation noise too
    "cvae": ("cvae", ["--set", "steps=4", "--set", "batch_size=32", "--set", "width=16", "--set", "depth=1",
                      "--set", "train_k=4", "--set", "eval_every=2", "--set", "dataset.n=300"]),
    "diffusion": ("diffusion", ["--set", "steps=4", "--set", "batch_size=32", "--set", "width=16", "--set", "depth=1",
                                "--set", "ode_steps=8", "--set", "dataset.n=300"]),
}
# the learned schedule's parameters (a submodule of the network) get the gradient of the squared loss
NEURAL_RUNS["diffusion-learned"] = ("diffusion", [*NEURAL_RUNS["diffusion"][1], "--set", "schedule=learned"])


@pytest.mark.parametrize("case", sorted(NEURAL_RUNS))
def test_two_processes_fit_what_one_process_fits(case, tmp_path):
    """The GAN, the CVAE and the diffusion model trained on 2 processes (torchrun, gloo, CPU) end with the weights of the
    1-process run, to float rounding (the all-reduced gradient is a sum of two halves)."""
    from aigc_engine import RunSpec
    from aigc_engine.engine import Engine
    from aigc_engine.store import io

    model, sets = NEURAL_RUNS[case]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    two = tmp_path / "two"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", str(_free_port()),
           "-m", "aigc_engine", "run", model, "--dataset", "ring8", "--device", "cpu", "--no-progress", *sets,
           "--out", str(two)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads((two / "config.json").read_text())["world_size"] == 2
    values = dict(s.split("=", 1) for s in sets[1::2])
    options = {k.removeprefix("dataset."): v for k, v in values.items() if k.startswith("dataset.")}
    config = {k: v for k, v in values.items() if not k.startswith("dataset.")}
    one = Engine().train(RunSpec(model, config, "ring8", options, device="cpu", out=tmp_path / "one", progress=False))
    a, b = io.load_state(one / "model.safetensors"), io.load_state(two / "model.safetensors")
    flat_a, flat_b = _tensors(a), _tensors(b)
    assert flat_a.keys() == flat_b.keys() and flat_a
    for key, value in flat_a.items():
        torch.testing.assert_close(flat_b[key], value, rtol=1e-4, atol=1e-5, msg=lambda m, key=key: f"{key}: {m}")


def _tensors(tree, prefix=""):
    """The floating tensors of a state tree, by path."""
    out = {}
    if isinstance(tree, dict):
        for k, v in tree.items():
            out.update(_tensors(v, f"{prefix}/{k}"))
    elif isinstance(tree, (list, tuple)):
        for i, v in enumerate(tree):
            out.update(_tensors(v, f"{prefix}/{i}"))
    elif isinstance(tree, torch.Tensor) and tree.is_floating_point():
        out[prefix] = tree
    return out
