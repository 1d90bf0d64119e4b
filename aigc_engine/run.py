"""``Run``: what the engine gives a model while it fits: device, seed, run directory, metric
logging, progress bars, atomic checkpoints and ``torch.distributed`` state."""
from __future__ import annotations

import atexit
import json
import os
import random
import sys
import time
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np
import torch

from . import checkpoint, io
from .errors import InputError
from .rundir import CHECKPOINT_FILE, METRICS_FILE
from .training import Batches, TrainLoop, rank_share


# below this many parameters a network trains on one CPU thread (see Run.limit_threads)
SMALL_MODEL_PARAMETERS = 1_000_000


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``auto`` is CUDA when available, else CPU; asking for an absent CUDA is an InputError."""
    if str(device) == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(device)
    except RuntimeError:
        raise InputError(f"unknown device {str(device)!r}: use auto, cpu or cuda") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda was asked for, but no CUDA device is available "
                         "(this torch build: " + torch.__version__ + ")")
    return device


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def init_distributed(device_type: str) -> bool:
    """Initialise torch.distributed from torchrun's environment (WORLD_SIZE set): gloo on CPU,
    nccl on CUDA. Returns whether a process group is active."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return True
    if "WORLD_SIZE" not in os.environ or not dist.is_available():
        return False
    if device_type == "cuda":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    dist.init_process_group(backend="nccl" if device_type == "cuda" else "gloo")
    atexit.register(_destroy_process_group)
    return True


def _destroy_process_group() -> None:
    """Tear the process group down before the interpreter does: a gloo group left to
    interpreter shutdown can abort the process ('terminate called without an active
    exception') after the run has finished."""
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()


class Run:
    """One training run. Only the main process (rank 0) writes to ``dir``."""

    def __init__(self, dir: str | Path | None = None, device: str | torch.device = "auto", seed: int = 0,
                 *, progress: bool = True, distributed: bool = True, resume: bool = False):
        self.device = resolve_device(device)
        self.seed = int(seed)
        self.distributed = distributed and init_distributed(self.device.type)
        if self.distributed:
            import torch.distributed as dist

            self.rank, self.world_size = dist.get_rank(), dist.get_world_size()
            if self.device.type == "cuda":
                self.device = torch.device("cuda", torch.cuda.current_device())
            # every rank uses rank 0's directory name (timestamps could differ)
            box = [str(dir) if dir is not None else None]
            dist.broadcast_object_list(box, src=0)
            dir = box[0]
        else:
            self.rank, self.world_size = 0, 1
        self.dir = Path(dir) if dir is not None else None
        if self.dir is not None and self.is_main_process:
            self.dir.mkdir(parents=True, exist_ok=True)
        self.show_progress = progress
        self.resuming = bool(resume) and self.dir is not None
        self.history: list[dict[str, Any]] = []
        self._metrics_text = ""
        if self.resuming:
            if self.is_main_process:  # a kill during a checkpoint write leaves its temporary file
                io.remove_stale_temporaries(self.dir)
            self.history = checkpoint.rewind_metrics(self.dir / METRICS_FILE, self.dir / CHECKPOINT_FILE,
                                                     write=self.is_main_process)
            self.barrier()
        seed_everything(self.seed)

    @property
    def is_main_process(self) -> bool:
        return self.rank == 0

    # -- logging -------------------------------------------------------------------------------
    def log(self, step: int, **metrics: Any) -> None:
        """Record metrics for a step: appended to ``metrics.jsonl`` and shown on the progress bar."""
        row = {"step": int(step)}
        for key, value in metrics.items():
            row[key] = value.item() if isinstance(value, torch.Tensor) and value.numel() == 1 else value
        row["time"] = round(time.time(), 3)
        self.history.append(row)
        self._metrics_text = " ".join(f"{k}={_fmt(v)}" for k, v in row.items() if k not in ("step", "time"))
        if self.dir is not None and self.is_main_process:
            with open(self.dir / METRICS_FILE, "a") as fh:
                fh.write(json.dumps(row, default=io.jsonable) + "\n")

    def progress(self, iterable_or_total: Iterable | int, desc: str = "") -> Iterator:
        """Iterate with a progress bar (rich on a terminal, plain lines otherwise, on stderr)."""
        if isinstance(iterable_or_total, int):
            iterable, total = range(iterable_or_total), iterable_or_total
        else:
            iterable = iterable_or_total
            total = len(iterable) if hasattr(iterable, "__len__") else None
        bar = self.progress_bar(total, desc)
        try:
            for item in iterable:
                yield item
                bar.advance(self._metrics_text)
        finally:
            bar.close()

    @property
    def metrics_text(self) -> str:
        """The last logged metrics as ``key=value`` text (what the progress bar shows)."""
        return self._metrics_text

    def progress_bar(self, total: int | None, desc: str = "", initial: int = 0) -> "ProgressBar":
        """A bar to ``advance(metrics_text)`` by hand (what :meth:`progress` and the step loop use);
        silent with ``progress=False`` and on processes other than the main one."""
        enabled = self.show_progress and self.is_main_process
        return ProgressBar(total, desc, initial, enabled=enabled, rich=enabled and sys.stderr.isatty())

    # -- checkpoints ---------------------------------------------------------------------------
    def save_checkpoint(self, state: dict[str, Any], step: int | None = None) -> None:
        """Write ``checkpoint.safetensors`` atomically (tensors + JSON metadata, no pickle; the
        format is :mod:`aigc_engine.checkpoint`'s).

        ``step``: the last logged step the checkpoint includes; on ``--resume`` the metrics log is
        cut back to it, so that each step appears once."""
        if self.dir is not None and self.is_main_process:
            checkpoint.save(self.dir / CHECKPOINT_FILE, state, step=step)

    def load_checkpoint(self) -> dict[str, Any] | None:
        """The last checkpoint of this run directory (for ``--resume``), or None."""
        if self.dir is None or not (self.dir / CHECKPOINT_FILE).exists():
            return None
        return checkpoint.load(self.dir / CHECKPOINT_FILE)

    # -- minibatch training (see aigc_engine.training) ------------------------------------------
    def batches(self, dataset, batch_size: int, *, shuffle: bool = True, drop_last: bool = False,
                seed: int | None = None) -> "Batches":
        """Minibatches ``(x, y)`` of ``dataset`` on this run's device, this process's share of each
        global batch of ``batch_size`` rows, shuffled per epoch from ``(seed, epoch)``."""
        return Batches(dataset, batch_size, device=self.device, seed=self.seed if seed is None else seed,
                       shuffle=shuffle, drop_last=drop_last, rank=self.rank, world_size=self.world_size)

    def loop(self, steps: int, state: dict[str, Any], **options: Any) -> "TrainLoop":
        """The resumable step loop over ``state`` (see :class:`aigc_engine.training.TrainLoop`)."""
        return TrainLoop(self, steps, state, **options)

    def randn(self, rows: int, *shape: int) -> torch.Tensor:
        """This process's share of standard normal noise for a global batch of ``rows`` (``[rows,
        *shape]`` drawn from the global generator, split across processes as :meth:`batches`
        splits the rows): per-step noise that does not depend on the number of processes, and
        consumes the generator alike on each of them."""
        return rank_share(torch.randn(rows, *shape, device=self.device), self.rank, self.world_size)

    def rand(self, rows: int, *shape: int) -> torch.Tensor:
        """As :meth:`randn`, uniform on [0, 1)."""
        return rank_share(torch.rand(rows, *shape, device=self.device), self.rank, self.world_size)

    def wrap(self, module: torch.nn.Module) -> torch.nn.Module:
        """``module`` on this run's device; under torchrun its parameters and buffers are rank
        0's on every process (initial weights do not depend on the number of processes), and a
        module with trainable parameters is wrapped in ``DistributedDataParallel`` (gradients
        averaged over processes in ``backward``)."""
        module = module.to(self.device)
        self.limit_threads(module)
        self.broadcast_(module)
        if self.distributed and self.world_size > 1 and any(p.requires_grad for p in module.parameters()):
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            module = DistributedDataParallel(module, device_ids=ids)
        return module

    def limit_threads(self, module: torch.nn.Module) -> None:
        """The CPU thread policy for small networks: a dense module (no convolutions) under
        :data:`SMALL_MODEL_PARAMETERS` trains on one thread (torch's default of one per core
        spends a small MLP's steps spinning its OpenMP threads), unless the user chose:
        ``OMP_NUM_THREADS`` or ``AIGC_ENGINE_THREADS`` set keeps that number. A convolutional
        module keeps torch's threads: its work per parameter is large (the diffusion model's
        digits U-Net, 387k parameters, steps in 83 ms on two threads against 130 ms on one)."""
        if self.device.type != "cpu" or torch.get_num_threads() == 1:
            return
        chosen = os.environ.get("AIGC_ENGINE_THREADS") or os.environ.get("OMP_NUM_THREADS")
        if chosen:
            if os.environ.get("AIGC_ENGINE_THREADS"):
                torch.set_num_threads(max(1, int(chosen)))
            return
        convolutional = any(isinstance(m, torch.nn.modules.conv._ConvNd) for m in module.modules())
        if not convolutional and sum(p.numel() for p in module.parameters()) < SMALL_MODEL_PARAMETERS:
            torch.set_num_threads(1)

    def autocast(self, enabled: bool = True):
        """bf16 autocast on CUDA when ``enabled``; a no-op context on CPU."""
        import contextlib

        if enabled and self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    # -- distributed ---------------------------------------------------------------------------
    def all_reduce(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum ``tensor`` over all processes in place (a no-op in a single process)."""
        if self.distributed and self.world_size > 1:
            import torch.distributed as dist

            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def broadcast_(self, module: torch.nn.Module) -> torch.nn.Module:
        """Copy rank 0's parameters and buffers of ``module`` into it on every process (in place;
        a no-op in a single process)."""
        if self.distributed and self.world_size > 1:
            import torch.distributed as dist

            with torch.no_grad():
                for tensor in [*module.parameters(), *module.buffers()]:
                    dist.broadcast(tensor.data, src=0)
        return module

    def barrier(self) -> None:
        if self.distributed and self.world_size > 1:
            import torch.distributed as dist

            dist.barrier()


class ProgressBar:
    """A progress bar on stderr: rich on a terminal (redrawn at most ~10 times a second), plain
    lines at every tenth of the total otherwise, nothing when disabled."""

    def __init__(self, total: int | None, desc: str, initial: int = 0, *, enabled: bool = True, rich: bool = False):
        self.total, self.desc, self.done, self.enabled = total, desc, initial, enabled
        self._start = time.perf_counter()
        self._every = max(1, (total or 100) // 10)
        self._bar = None
        self._shown = initial
        self._next_draw = 0.0
        if enabled and rich:
            from rich.console import Console
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                                       TimeRemainingColumn)

            columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                       TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[metrics]}"))
            self._bar = Progress(*columns, console=Console(stderr=True), transient=False)
            self._bar.start()
            self._task = self._bar.add_task(desc, total=total, completed=initial, metrics="")

    def advance(self, metrics: str = "") -> None:
        self.done += 1
        if not self.enabled:
            return
        if self._bar is not None:
            now = time.perf_counter()
            if now >= self._next_draw or self.done == self.total:
                self._bar.update(self._task, completed=self.done, metrics=metrics)
                self._next_draw = now + 0.1
        elif self.done % self._every == 0 or self.done == self.total:
            of = f"/{self.total}" if self.total else ""
            print(f"{self.desc} {self.done}{of} [{time.perf_counter() - self._start:.1f}s] {metrics}".rstrip(),
                  file=sys.stderr, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.update(self._task, completed=self.done)
            self._bar.stop()
            self._bar = None


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
