"""Checkpoints and artifacts: safetensors + JSON, no pickle, atomic writes."""
import os

import pytest
import torch

from aigc_engine import Run
from aigc_engine.store import io


def test_checkpoint_round_trip(tmp_path):
    run = Run(tmp_path / "r", device="cpu", seed=0, progress=False)
    state = {"w": torch.randn(3, 4), "opt": {"m": torch.zeros(2, dtype=torch.float64)}, "step": 7,
             "name": "x", "losses": [1.0, 0.5]}
    run.save_checkpoint(state)
    loaded = run.load_checkpoint()
    assert torch.equal(loaded["w"], state["w"]) and loaded["opt"]["m"].dtype == torch.float64
    assert loaded["step"] == 7 and loaded["name"] == "x" and loaded["losses"] == [1.0, 0.5]
    assert not any(p.name.endswith(".tmp") for p in (tmp_path / "r").iterdir())


def test_no_checkpoint_is_none(tmp_path):
    assert Run(tmp_path, device="cpu", progress=False).load_checkpoint() is None


def test_failed_write_keeps_the_old_file(tmp_path):
    path = tmp_path / "model.safetensors"
    io.save_state(path, {"a": torch.ones(2)})
    with pytest.raises(TypeError):
        io.save_state(path, {"a": torch.zeros(2), "bad": object()})
    assert torch.equal(io.load_state(path)["a"], torch.ones(2))
    assert os.listdir(tmp_path) == ["model.safetensors"]


def test_log_writes_jsonl_and_seed_is_applied(tmp_path):
    run = Run(tmp_path, device="cpu", seed=5, progress=False)
    a = torch.rand(3)
    run.log(1, loss=torch.tensor(0.5), acc=1)
    assert (tmp_path / "metrics.jsonl").read_text().startswith('{"step": 1, "loss": 0.5, "acc": 1')
    Run(tmp_path / "b", device="cpu", seed=5, progress=False)
    assert torch.equal(torch.rand(3), a)


def test_nested_mixed_state_and_numpy_metrics(tmp_path):
    import numpy as np

    opt = {"state": {"0": {"step": torch.tensor(3.0), "exp_avg": torch.ones(2)}},
           "param_groups": [{"lr": 2e-4, "betas": [0.5, 0.999], "params": [0]}]}
    io.save_state(tmp_path / "c.safetensors", {"optimizer": opt, "epoch": np.int64(4)})
    loaded = io.load_state(tmp_path / "c.safetensors")
    assert torch.equal(loaded["optimizer"]["state"]["0"]["exp_avg"], torch.ones(2))
    assert loaded["optimizer"]["param_groups"][0]["betas"] == [0.5, 0.999] and loaded["epoch"] == 4
    run = Run(tmp_path / "r", device="cpu", progress=False)
    run.log(0, loss=np.float32(0.25), grads=torch.ones(2))
    assert '"loss": 0.25, "grads": [1.0, 1.0]' in (tmp_path / "r" / "metrics.jsonl").read_text()
