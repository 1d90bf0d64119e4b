"""The core's minibatch training: batches, the resumable step loop, checkpoints of optimizers,
EMA, signals, SIGKILL + resume, and a 2-process torchrun run equal to one process."""
import json
import os
import random
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from aigc_engine import EMA, Batches, Run, data
from aigc_engine.store import io
from aigc_engine.store.checkpoint import rng_state, set_rng_state
from conftest import NEURAL_PLUGIN, make_entry_point_plugin


def _points(n, d=3, labels=True):
    x = torch.arange(n * d, dtype=torch.float32).view(n, d)
    y = torch.arange(n) % 7 if labels else None
    return data.Dataset(x, y, name="pts")


# -- batches -----------------------------------------------------------------------------------
@pytest.mark.parametrize("n,batch,drop_last", [(103, 10, False), (103, 10, True), (1, 1, False), (64, 64, True)])
def test_batches_cover_each_row_once_per_epoch(n, batch, drop_last):
    b = Batches(_points(n), batch, seed=3, drop_last=drop_last)
    for epoch in range(2):
        rows = torch.cat([next(b)[0][:, 0] for _ in range(len(b))]) / 3
        assert b.epoch == epoch
        expected = n - n % batch if drop_last else n
        assert len(rows) == expected and len(set(rows.tolist())) == expected
    x, y = next(b)
    assert b.epoch == 2 and torch.equal(y, (x[:, 0] / 3).long() % 7)  # labels travel with their rows


def test_batches_differ_by_epoch_and_seed_and_repeat_for_the_same_seed():
    def epoch_rows(seed, epoch):
        return Batches(_points(50), 50, seed=seed).indices(epoch, 0)

    assert torch.equal(epoch_rows(0, 0), epoch_rows(0, 0))
    assert not torch.equal(epoch_rows(0, 0), epoch_rows(0, 1))
    assert not torch.equal(epoch_rows(0, 0), epoch_rows(1, 0))
    assert torch.equal(Batches(_points(50), 50, shuffle=False).indices(0, 0), torch.arange(50))


@pytest.mark.parametrize("n,batch", [(100, 10), (101, 10), (11, 4)])
def test_ranks_get_disjoint_shares_of_each_global_batch(n, batch):
    whole = Batches(_points(n), batch, seed=5)
    parts = [Batches(_points(n), batch, seed=5, rank=r, world_size=2) for r in range(2)]
    assert len(parts[0]) == len(parts[1]) == len(whole)
    for i in range(len(whole)):
        a, b = parts[0].indices(0, i), parts[1].indices(0, i)
        if i < len(whole) - 1 or n % batch == 0:
            assert not set(a.tolist()) & set(b.tolist())
            assert sorted(torch.cat([a, b]).tolist()) == sorted(whole.indices(0, i).tolist())
        assert len(a) >= 1 and len(b) >= 1


def test_batch_size_errors():
    with pytest.raises(ValueError, match="multiple of the 2 processes"):
        Batches(_points(10), 5, world_size=2)
    with pytest.raises(ValueError, match="more than the 10 rows"):
        Batches(_points(10), 20, drop_last=True)
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        Batches(_points(10), 0)


def test_memory_mapped_batches_are_shuffled_by_block_and_cover_every_row(tmp_path):
    arr = np.arange(10_000 * 2, dtype=np.float32).reshape(-1, 2)
    np.save(tmp_path / "p.npy", arr)
    ds = data.from_file(tmp_path / "p.npy")
    assert not ds.in_memory
    b = Batches(ds, 256, seed=0)
    b.block_rows = 1000
    got = torch.cat([next(b)[0] for _ in range(len(b))])
    assert not ds.in_memory  # never materialised
    ids = (got[:, 0] / 2).long()
    assert sorted(ids.tolist()) == list(range(10_000))
    assert not torch.equal(ids, torch.arange(10_000))
    assert torch.equal(got[:, 1], got[:, 0] + 1)  # rows stay whole


def test_batches_position_round_trips():
    a = Batches(_points(30), 7, seed=1)
    for _ in range(9):
        next(a)
    b = Batches(_points(30), 7, seed=1)
    b.load_state_dict(a.state_dict())
    assert torch.equal(next(a)[0], next(b)[0])
    with pytest.raises(ValueError, match="30 rows in batches of 7"):
        Batches(_points(30), 5).load_state_dict(a.state_dict())


# -- checkpoints of optimizers, RNG states -----------------------------------------------------
def _train(model, opt, steps, seed=0):
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        x = torch.randn(16, 4, generator=g)
        loss = (model(x) - x.sum(1, keepdim=True)).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()


def test_optimizer_round_trip_keeps_state_attached(tmp_path):
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 1)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2, betas=(0.5, 0.999))
    _train(model, opt, 5)
    io.save_state(tmp_path / "c.safetensors", {"model": model.state_dict(), "opt": opt.state_dict()})
    loaded = io.load_state(tmp_path / "c.safetensors")
    assert set(loaded["opt"]["state"]) == {0, 1}  # integer parameter ids, not '0', '1'
    assert loaded["opt"]["param_groups"][0]["betas"] == (0.5, 0.999)
    model2 = torch.nn.Linear(4, 1)
    opt2 = torch.optim.Adam(model2.parameters(), lr=1e-2, betas=(0.5, 0.999))
    model2.load_state_dict(loaded["model"])
    opt2.load_state_dict(loaded["opt"])
    for p in model2.parameters():
        st, ref = opt2.state[p], opt.state[dict(zip(model2.parameters(), model.parameters()))[p]]
        assert torch.equal(st["exp_avg"], ref["exp_avg"]) and torch.equal(st["exp_avg_sq"], ref["exp_avg_sq"])
        assert float(st["step"]) == 5
    _train(model, opt, 5, seed=1)
    _train(model2, opt2, 5, seed=1)
    for p, q in zip(model.parameters(), model2.parameters()):
        assert torch.equal(p, q)


def test_state_file_keeps_container_and_key_types(tmp_path):
    state = {"d": {1: "a", (2, 3): [torch.ones(1), (4, 5)]}, "$odd": {"x": None}, "arr": np.arange(3),
             "nan": float("nan"), "shared": torch.zeros(4)}
    state["view"] = state["shared"][:2]
    io.save_state(tmp_path / "s.safetensors", state)
    back = io.load_state(tmp_path / "s.safetensors")
    assert back["d"][1] == "a" and back["d"][(2, 3)][1] == (4, 5) and torch.equal(back["d"][(2, 3)][0], torch.ones(1))
    assert back["$odd"] == {"x": None} and isinstance(back["arr"], np.ndarray) and back["arr"].tolist() == [0, 1, 2]
    assert back["nan"] != back["nan"] and torch.equal(back["view"], torch.zeros(2))


def test_rng_state_round_trip():
    state = rng_state()
    a = (random.random(), np.random.rand(), torch.rand(1))
    set_rng_state(state)
    assert (random.random(), np.random.rand(), torch.rand(1)) == a


# -- EMA ---------------------------------------------------------------------------------------
def test_ema_matches_a_hand_computed_average():
    net = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2))
    ema = EMA(net, decay=0.9)
    expected = None
    for i in range(4):
        with torch.no_grad():
            for p in net.parameters():
                p.add_(float(i + 1))
        net(torch.randn(8, 2))  # moves the batch-norm statistics
        w = net[0].weight.detach().clone()
        expected = w if expected is None else 0.9 * expected + 0.1 * w
        ema.update(net)
    torch.testing.assert_close(ema.module[0].weight, expected)
    assert torch.equal(ema.module[1].running_mean, net[1].running_mean)  # buffers copied
    assert not any(p.requires_grad for p in ema.parameters())
    with pytest.raises(ValueError, match="decay"):
        EMA(net, decay=1.5)


# -- the loop ----------------------------------------------------------------------------------
class _Counter(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))


def _run_loop(run, steps, extra=None, stop_at=None):
    net = _Counter()
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    track = {"best": -1.0}
    loop = run.loop(steps, {"net": net, "opt": opt, "track": track}, log_every=3, checkpoint_every=4)
    seen = []
    for step in loop:
        seen.append(step)
        loss = (net.w - torch.rand(1)).pow(2).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
        track["best"] = float(step)
        loop.log(loss=loss, lr=0.1)
        if stop_at == step:
            loop.stop()
    return net, seen, track, loop


def test_loop_logs_window_means_checkpoints_and_resumes(tmp_path):
    run = Run(tmp_path / "a", device="cpu", seed=0, progress=False)
    net, seen, track, _ = _run_loop(run, 10)
    assert seen == list(range(1, 11))
    rows = [json.loads(line) for line in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [3, 6, 9, 10] and rows[0]["lr"] == pytest.approx(0.1)
    assert io.read_metadata(tmp_path / "a" / "checkpoint.safetensors")["aigc_engine.step"] == "10"
    # a longer run resumed from the end of the short one does only the extra steps
    run2 = Run(tmp_path / "a", device="cpu", seed=0, progress=False, resume=True)
    net2, seen2, track2, loop2 = _run_loop(run2, 14)
    assert seen2 == [11, 12, 13, 14] and loop2.resumed
    assert [r["step"] for r in run2.history] == [3, 6, 9, 10, 12, 14]
    # the same as 14 steps in one go
    net3, _, track3, _ = _run_loop(Run(tmp_path / "b", device="cpu", seed=0, progress=False), 14)
    assert torch.equal(net2.w, net3.w) and track2 == track3 == {"best": 14.0}


def test_loop_stop_ends_early_and_resume_keeps_it_stopped(tmp_path):
    _, seen, _, _ = _run_loop(Run(tmp_path, device="cpu", progress=False), 10, stop_at=5)
    assert seen == [1, 2, 3, 4, 5]
    _, seen, _, _ = _run_loop(Run(tmp_path, device="cpu", progress=False, resume=True), 10)
    assert seen == []


def test_loop_until_ends_on_the_state_and_is_not_remembered(tmp_path):
    """``until`` is a function of the restored state: a resumed run whose state is finished does
    nothing; one whose state can go on under a new end condition goes on."""
    def fit(run, target, steps=100):
        track = {"value": 0}
        loop = run.loop(steps, {"track": track}, log_every=1, checkpoint_every=1000,
                        until=lambda: track["value"] >= target)
        seen = []
        for step in loop:
            track["value"] += 1
            seen.append(step)
            loop.log(value=track["value"])
        return seen, track

    assert fit(Run(tmp_path, device="cpu", progress=False), 5) == ([1, 2, 3, 4, 5], {"value": 5})
    assert io.read_metadata(tmp_path / "checkpoint.safetensors")["aigc_engine.step"] == "5"
    assert fit(Run(tmp_path, device="cpu", progress=False, resume=True), 5) == ([], {"value": 5})
    again = Run(tmp_path, device="cpu", progress=False, resume=True)
    assert fit(again, 7) == ([6, 7], {"value": 7})
    assert [r["step"] for r in again.history] == [1, 2, 3, 4, 5, 6, 7]
    assert fit(Run(tmp_path / "b", device="cpu", progress=False), 50, steps=3) == ([1, 2, 3], {"value": 3})


def test_metrics_are_rewound_to_the_checkpoint_on_resume(tmp_path):
    run = Run(tmp_path, device="cpu", progress=False)
    run.save_checkpoint({"w": torch.ones(1)}, step=4)
    for step in (2, 4, 6):
        run.log(step, loss=1.0)
    with open(tmp_path / "metrics.jsonl", "a") as fh:
        fh.write('{"step": 8, "lo')  # a line cut by a kill
    (tmp_path / ".checkpoint.safetensors.abc123.tmp").write_bytes(b"half a checkpoint")  # a kill mid-write
    again = Run(tmp_path, device="cpu", progress=False, resume=True)
    assert [r["step"] for r in again.history] == [2, 4]
    assert (tmp_path / "metrics.jsonl").read_text().count("\n") == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.safetensors", "metrics.jsonl"]


# -- the CLI: SIGKILL + resume, SIGINT, torchrun ------------------------------------------------
def _env(plugin_dir):
    return {**os.environ, "PYTHONPATH": str(plugin_dir), "OMP_NUM_THREADS": "1"}


def _cmd(*args):
    return [sys.executable, "-m", "aigc_engine", *args]


@pytest.fixture
def dae(plugin_dir):
    make_entry_point_plugin(plugin_dir, "aigc-test-dae", "dae", "aigc_test_dae", NEURAL_PLUGIN)
    return _env(plugin_dir)


def _weights(run_dir):
    return io.load_state(run_dir / "model.safetensors")


def _same_weights(a, b):
    return all(torch.equal(a["net"][k], b["net"][k]) for k in a["net"]) and \
        all(torch.equal(a["ema"][k], b["ema"][k]) for k in a["ema"])


@pytest.mark.slow
def test_sigkill_at_random_steps_then_resume_is_bit_identical(dae, tmp_path):
    common = ["--device", "cpu", "--set", "dataset.n=2000", "--set", "step_sleep=0.01", "--no-progress"]
    ref = tmp_path / "ref"
    subprocess.run(_cmd("run", "dae", *common, "--out", str(ref)), env=dae, check=True, capture_output=True,
                   timeout=300)
    rng = random.Random(0)
    for trial in range(3):
        out = tmp_path / f"t{trial}"
        proc = subprocess.Popen(_cmd("run", "dae", *common, "--out", str(out)), env=dae,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.time() + 120
        while not (out / "checkpoint.safetensors").exists() and time.time() < deadline and proc.poll() is None:
            time.sleep(0.05)
        time.sleep(rng.uniform(0.0, 1.2))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        # everything left behind is complete and readable
        io.load_state(out / "checkpoint.safetensors")
        json.loads((out / "config.json").read_text())
        assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]
        done = subprocess.run(_cmd("run", "--resume", str(out), "--no-progress"), env=dae, capture_output=True,
                              text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        assert _same_weights(_weights(out), _weights(ref)), f"trial {trial}"
        steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]
        assert steps == list(range(10, 201, 10))  # each step once


@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_writes_a_checkpoint_and_one_line(dae, tmp_path, sig, code):
    out = tmp_path / "run"
    proc = subprocess.Popen(_cmd("run", "dae", "--device", "cpu", "--set", "step_sleep=0.02", "--set", "steps=100000",
                                 "--set", "checkpoint_every=100000", "--no-progress", "--out", str(out)),
                            env=dae, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (out / "metrics.jsonl").exists() and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == code, stderr
    assert "Traceback" not in stderr
    lines = [line for line in stderr.splitlines() if "checkpoint written" in line]
    assert len(lines) == 1 and f"--resume {out}" in lines[0]
    step = int(io.read_metadata(out / "checkpoint.safetensors")["aigc_engine.step"])
    assert 1 <= step < 100000 and not (out / "model.safetensors").exists()


@pytest.mark.slow
def test_torchrun_two_processes_equal_one_process(dae, tmp_path):
    common = ["--device", "cpu", "--set", "noise=0", "--set", "steps=30", "--set", "dataset.n=512", "--no-progress"]
    one = tmp_path / "one"
    subprocess.run(_cmd("run", "dae", *common, "--out", str(one)), env=dae, check=True, capture_output=True,
                   timeout=300)
    two = tmp_path / "two"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "aigc_engine", "run", "dae", *common, "--out", str(two)]
    proc = subprocess.run(cmd, env=dae, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    a, b = _weights(one), _weights(two)
    for k in a["net"]:
        torch.testing.assert_close(a["net"][k], b["net"][k], rtol=1e-4, atol=1e-5)
    rows = [json.loads(line) for line in (two / "metrics.jsonl").read_text().splitlines()]
    ref = [json.loads(line) for line in (one / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [r["step"] for r in ref]  # rank 0 alone writes
    assert rows[-1]["loss"] == pytest.approx(ref[-1]["loss"], rel=1e-3)  # averaged over ranks


def test_ema_warmup_follows_the_tensorflow_schedule():
    net = torch.nn.Linear(1, 1, bias=False)
    ema = EMA(net, decay=0.999, warmup=True)
    expected = None
    for t in range(5):
        with torch.no_grad():
            net.weight.fill_(float(t))
        d = min(0.999, (1 + t) / (10 + t))  # t updates so far
        expected = 0.0 if expected is None else d * expected + (1 - d) * t
        ema.update(net)
    assert float(ema.module.weight) == pytest.approx(expected)


def test_thread_policy_one_thread_for_small_dense_networks_only(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("AIGC_ENGINE_THREADS", raising=False)
    before = torch.get_num_threads()
    try:
        run = Run(device="cpu", distributed=False)
        torch.set_num_threads(2)
        run.limit_threads(torch.nn.Sequential(torch.nn.Conv2d(1, 8, 3), torch.nn.Flatten(), torch.nn.Linear(288, 2)))
        assert torch.get_num_threads() == 2  # convolutions: torch's threads
        run.limit_threads(torch.nn.Sequential(torch.nn.Linear(2, 64), torch.nn.Linear(64, 2)))
        assert torch.get_num_threads() == 1  # a small MLP: one thread
        torch.set_num_threads(2)
        monkeypatch.setenv("AIGC_ENGINE_THREADS", "2")
        run.limit_threads(torch.nn.Linear(2, 2))
        assert torch.get_num_threads() == 2  # the user's choice wins
    finally:
        torch.set_num_threads(before)


def test_a_fabric_alone_gives_device_seed_noise_and_progress(capsys):
    from aigc_engine import Fabric

    fabric = Fabric("cpu", seed=3, distributed=False)
    a = torch.rand(2)
    assert fabric.device == torch.device("cpu") and (fabric.rank, fabric.world_size) == (0, 1)
    assert fabric.is_main_process and not hasattr(fabric, "dir")
    Fabric("cpu", seed=3, distributed=False)
    assert torch.equal(torch.rand(2), a)  # seeded on construction, as a Run is
    assert fabric.randn(4, 3).shape == (4, 3) and fabric.all_reduce(torch.ones(2)).tolist() == [1.0, 1.0]
    assert list(fabric.progress(3, desc="K")) == [0, 1, 2]
    assert "K 3/3" in capsys.readouterr().err
    assert list(Fabric("cpu", progress=False, distributed=False).progress([5], desc="K")) == [5]
    assert capsys.readouterr().err == ""
    assert isinstance(Run(device="cpu", distributed=False), Fabric)


def test_the_training_module_is_a_deprecated_alias(monkeypatch):
    import importlib

    from aigc_engine import TrainLoop, fabric
    from aigc_engine.store import checkpoint

    monkeypatch.delitem(sys.modules, "aigc_engine.training", raising=False)
    with pytest.warns(DeprecationWarning, match="aigc_engine.training is deprecated: use aigc_engine.loop"):
        training = importlib.import_module("aigc_engine.training")
    assert (training.Batches, training.EMA, training.TrainLoop) == (Batches, EMA, TrainLoop)
    assert (training.no_sync, training.unwrap, training.rank_share) == (fabric.no_sync, fabric.unwrap, fabric.rank_share)
    assert (training.rng_state, training.set_rng_state) == (checkpoint.rng_state, checkpoint.set_rng_state)
