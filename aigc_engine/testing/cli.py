"""The rule that drives the real ``aigc-engine`` CLI in subprocesses (``world_size``, under
torchrun), and the helpers a plugin's own tests use for the same
(:func:`interrupted_and_resumed_runs`: a run interrupted by a signal and resumed)."""
from __future__ import annotations

import os
import signal as _signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..store import io
from ..engine import Engine
from ..errors import InputError
from .subject import RuleBroken, Subject

def check_world_size(subject: Subject) -> None:
    one = subject.model()
    if not subject.used_loop:
        return
    args = cli_run_args(subject, "world_size")
    two = subject.workdir / "world-size"
    run_or_fail([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                 "-m", "aigc_engine", "run", *args, "--out", str(two)], plugin_env(), "world_size")
    compare_states(one.state_dict(), io.load_state(two / "model.safetensors"), "world_size",
                   "2 processes end differently from 1", exact=False)


def plugin_env(**extra: str) -> dict[str, str]:
    """The environment for ``aigc-engine`` subprocesses: this one, with this interpreter's
    ``sys.path`` (so plugins found here are found there) and one thread unless set."""
    env = {**os.environ, **extra}
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


def cli_run_args(subject: Subject, rule: str) -> list[str]:
    """``aigc-engine run`` arguments for the model under check on its dataset (written to an .npz)."""
    try:
        registered = Engine().model_class(subject.name)
    except InputError:
        registered = None
    if registered is None or (registered.__module__, registered.__qualname__) != \
            (subject.cls.__module__, subject.cls.__qualname__):
        raise RuleBroken(rule, f"model {subject.name!r} is not this class in the installed plugins (aigc-engine "
                               f"run drives it): install the plugin (pip install -e .) or skip={(rule,)!r}")
    data = subject.dataset
    path = subject.workdir / f"{rule}-data.npz"
    if not path.exists():
        arrays = {"x": data.x.numpy()}
        if data.conditional_classes:
            arrays["y"] = data.y.numpy()
        np.savez(path, **arrays)
    sets = [a for k, v in subject.overrides.items() for a in ("--set", f"{k}={_cli_value(v)}")]
    return [subject.name, "--dataset", str(path), "--device", "cpu", "--seed", str(subject.seed), *sets,
            "--no-progress"]


def _cli_value(value: Any) -> str:
    if isinstance(value, (tuple, list)):
        return ",".join(map(str, value))
    if isinstance(value, bool):
        return "true" if value else "false"
    return "none" if value is None else str(value)


def run_or_fail(cmd: list[str], env: dict[str, str], rule: str, timeout: float = 600) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuleBroken(rule, f"{' '.join(cmd[2:])} exited {proc.returncode}: {proc.stderr.strip()[-2000:]}")
    return proc


def _tensors(tree: Any, prefix: str = "") -> dict[str, torch.Tensor]:
    """The tensors of a state tree by path (JSON values, such as wall-clock times, left out)."""
    if isinstance(tree, torch.Tensor):
        return {prefix: tree}
    items = tree.items() if isinstance(tree, dict) else enumerate(tree) if isinstance(tree, (list, tuple)) else ()
    out: dict[str, torch.Tensor] = {}
    for key, value in items:
        out.update(_tensors(value, f"{prefix}/{key}"))
    return out


def compare_states(a_state: Any, b_state: Any, rule: str, what: str, *, exact: bool) -> None:
    """The tensors of two state trees equal (``exact``) or within float rounding, else ``what``."""
    a, b = _tensors(a_state), _tensors(b_state)
    if set(a) != set(b):
        raise RuleBroken(rule, f"{what}: the state holds {sorted(set(a) ^ set(b))[:3]} in one only")
    for key in a:
        same = torch.equal(a[key], b[key]) if exact else (a[key].shape == b[key].shape and torch.allclose(
            a[key].double(), b[key].double(), rtol=1e-4, atol=1e-5))
        if not same:
            raise RuleBroken(rule, f"{what}: tensor {key} of the state differs")


_INTERRUPT_AT_STEP = """
import os, sys
from aigc_engine import TrainLoop
from aigc_engine.cli import main

at, signum = int(sys.argv[1]), int(sys.argv[2])
steps = TrainLoop.__iter__

def interrupted(loop):
    for step in steps(loop):
        yield step
        if step == at:  # as if Ctrl-C came while this step ran
            os.kill(os.getpid(), signum)

TrainLoop.__iter__ = interrupted
main(sys.argv[3:])
"""


def interrupted_and_resumed_runs(run_args: list[str], root: Path, env: dict[str, str] | None = None, *,
                                 signal: int = _signal.SIGINT, at_step: int = 2, timeout: float = 600,
                                 rule: str = "resume") -> tuple[Path, Path]:
    """``aigc-engine run *run_args`` twice: uninterrupted (``root/ref``), and interrupted then
    finished with ``--resume`` (``root/interrupted``); returns both run directories.

    SIGINT / SIGTERM arrive during step ``at_step`` (the loop writes its checkpoint and the CLI
    exits 128 + signal); SIGKILL, which no process can handle, as soon as the first checkpoint
    exists (give the run a small ``checkpoint_every``)."""
    env = env if env is not None else plugin_env()
    cli = [sys.executable, "-m", "aigc_engine"]
    ref, out = Path(root) / "ref", Path(root) / "interrupted"
    # the two runs side by side: each is mostly interpreter start-up
    reference = subprocess.Popen([*cli, "run", *run_args, "--out", str(ref)], env=env, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.PIPE, text=True)
    try:
        if signal == _signal.SIGKILL:
            _kill_after_first_checkpoint([*cli, "run", *run_args, "--out", str(out)], out, env, timeout)
        else:
            _interrupt_at_step(run_args, out, env, signal, at_step, timeout, rule)
        _, err = reference.communicate(timeout=timeout)
    finally:
        if reference.poll() is None:
            reference.kill()
    if reference.returncode != 0:
        raise RuleBroken(rule, f"aigc-engine run {' '.join(run_args)} exited {reference.returncode}: {err.strip()[-2000:]}")
    if (out / "model.safetensors").exists():
        raise RuleBroken(rule, "the run finished before it was interrupted: make it longer")
    run_or_fail([*cli, "run", "--resume", str(out), "--no-progress"], env, rule, timeout)
    return ref, out


def _interrupt_at_step(run_args: list[str], out: Path, env: dict[str, str], signal: int, at_step: int,
                       timeout: float, rule: str) -> None:
    proc = subprocess.run([sys.executable, "-c", _INTERRUPT_AT_STEP, str(at_step), str(int(signal)), "run",
                           *run_args, "--out", str(out)], env=env, capture_output=True, text=True, timeout=timeout)
    if proc.returncode == 0:
        raise RuleBroken(rule, f"the run ended before step {at_step}, where it was to be interrupted: give it more steps")
    if proc.returncode != 128 + int(signal) or not (out / "checkpoint.safetensors").exists():
        raise RuleBroken(rule, f"interrupted by {_signal.Signals(signal).name}, the run exited {proc.returncode} "
                               f"(not {128 + int(signal)}, with a checkpoint): {proc.stderr.strip()[-2000:]}")


def _kill_after_first_checkpoint(cmd: list[str], out: Path, env: dict[str, str], timeout: float) -> None:
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + timeout
    while not (out / "checkpoint.safetensors").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    proc.send_signal(_signal.SIGKILL)
    proc.wait()
