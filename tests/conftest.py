import importlib
import os
import shutil
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest


def pytest_configure(config):
    """Everything the suite caches (the image judges) goes to a temporary XDG_CACHE_HOME, also for
    the CLI subprocesses the tests start, never to the user's ~/.cache."""
    config._aigc_cache = tempfile.mkdtemp(prefix="aigc-test-cache-")
    os.environ["XDG_CACHE_HOME"] = config._aigc_cache


def pytest_unconfigure(config):
    if getattr(config, "_aigc_cache", None):
        shutil.rmtree(config._aigc_cache, ignore_errors=True)


def make_entry_point_plugin(root: Path, dist: str, ep_name: str, module: str, source: str) -> Path:
    """Write a module and a ``*.dist-info`` declaring it under the ``aigc_engine`` entry-point
    group into ``root``: on sys.path (or PYTHONPATH) it is found like a pip-installed plugin."""
    root.mkdir(parents=True, exist_ok=True)
    (root / f"{module}.py").write_text(textwrap.dedent(source))
    info = root / f"{dist.replace('-', '_')}-0.1.dist-info"  # a dash would end the name
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    with open(info / "entry_points.txt", "a") as fh:
        fh.write(f"[aigc_engine]\n{ep_name} = {module}\n")
    importlib.invalidate_caches()
    return root


@pytest.fixture
def plugin_dir(tmp_path, monkeypatch):
    """A folder on sys.path where tests drop entry-point plugins."""
    root = tmp_path / "site"
    root.mkdir()
    monkeypatch.syspath_prepend(str(root))
    yield root
    importlib.invalidate_caches()
    for name in [m for m in sys.modules if m.startswith("aigc_test_")]:
        del sys.modules[name]


PROBE_PLUGIN = '''
import dataclasses
import torch
from aigc_engine import hookimpl, Model


@dataclasses.dataclass
class ProbeConfig:
    steps: int = 3
    scale: float = 1.0
    tag: str = "a"
    hidden: tuple[int, ...] = (4, 4)
    bias: bool = True


class Probe(Model):
    """A tiny model that fits the data mean (for engine tests)."""
    name = "probe"
    Config = ProbeConfig
    default_dataset = "ring8"

    def fit(self, dataset, run):
        shard = dataset.shard(run.rank, run.world_size)
        stats = torch.stack([shard.x.sum(0), torch.full_like(shard.x[0], len(shard))])
        run.all_reduce(stats)
        self.mean = stats[0] / stats[1]
        self.world_size = run.world_size
        for step in run.progress(self.config.steps, "probe"):
            run.log(step, loss=1.0 / (step + 1))
        run.save_checkpoint({"mean": self.mean, "step": self.config.steps})

    def sample(self, n, condition=None):
        return self.mean.expand(n, -1) + self.config.scale * torch.randn(n, self.mean.numel())

    def evaluate(self, dataset, run):
        return {"distance": float((dataset.x.mean(0) - self.mean).norm()), "world_size": self.world_size}

    def state_dict(self):
        return {"mean": self.mean, "world_size": self.world_size}

    def load_state_dict(self, state):
        self.mean, self.world_size = state["mean"], state["world_size"]


@hookimpl
def aigc_engine_register_models(register):
    register(Probe)
'''


NEURAL_PLUGIN = '''
import dataclasses
import torch
from torch import nn
from aigc_engine import EMA, Model, hookimpl


@dataclasses.dataclass
class DAEConfig:
    steps: int = 200
    batch_size: int = 64
    lr: float = 1e-2
    noise: float = 0.1
    ema_decay: float = 0.9
    log_every: int = 10
    checkpoint_every: int = 20
    step_sleep: float = 0.0


class DAE(Model):
    """A tiny denoising autoencoder trained through the core loop (for engine tests)."""
    name = "dae"
    Config = DAEConfig
    default_dataset = "ring8"

    def build(self, dim):
        torch.manual_seed(1234)  # the same initial weights on every process
        self.net = nn.Sequential(nn.Linear(dim, 16), nn.Tanh(), nn.Linear(16, 2), nn.Tanh(), nn.Linear(2, 16),
                                 nn.Tanh(), nn.Linear(16, dim))
        self.ema = EMA(self.net, self.config.ema_decay)

    def fit(self, dataset, run):
        import time
        c = self.config
        self.build(dataset.x.shape[1])
        torch.manual_seed(run.seed)
        net = run.wrap(self.net)
        opt = torch.optim.Adam(net.parameters(), lr=c.lr)
        sched = torch.optim.lr_scheduler.StepLR(opt, 50, 0.5)
        batches = run.batches(dataset, c.batch_size, drop_last=True)
        loop = run.loop(c.steps, {"net": net, "opt": opt, "sched": sched, "ema": self.ema, "data": batches},
                        log_every=c.log_every, checkpoint_every=c.checkpoint_every)
        for step in loop:
            x, _ = next(batches)
            noisy = x + c.noise * torch.randn_like(x)
            loss = ((net(noisy) - x) ** 2).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            self.ema.update(net)
            loop.log(loss=loss)
            if c.step_sleep:
                time.sleep(c.step_sleep)

    def sample(self, n, condition=None):
        with torch.no_grad():
            return self.ema.module[4:](torch.randn(n, 2) * 0.5)

    def state_dict(self):
        return {"dim": self.net[0].in_features, "net": self.net.state_dict(), "ema": self.ema.state_dict()}

    def load_state_dict(self, state):
        self.build(state["dim"])
        self.net.load_state_dict(state["net"])
        self.ema.load_state_dict(state["ema"])


@hookimpl
def aigc_engine_register_models(register):
    register(DAE)
'''


def reference_and_resumed_runs(run_args, tmp_path, env, timeout=600):
    """``aigc-engine run *run_args`` uninterrupted (``tmp_path/ref``) and SIGKILLed as soon as its
    first checkpoint exists, then finished with ``--resume``: both run directories, for a test to
    compare (:func:`aigc_engine.testing.interrupted_and_resumed_runs`)."""
    import signal

    from aigc_engine.testing import interrupted_and_resumed_runs

    return interrupted_and_resumed_runs(run_args, tmp_path, env, signal=signal.SIGKILL, timeout=timeout)
