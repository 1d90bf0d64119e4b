"""``Run``: what the engine gives a model while it fits: device, seed, run directory, metric
logging, progress bars, atomic checkpoints and ``torch.distributed`` state."""
from __future__ import annotations

import json
import os
import random
import sys
import time
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np
import torch

from . import io
from .errors import InputError

CHECKPOINT_FILE = "checkpoint.safetensors"
METRICS_FILE = "metrics.jsonl"


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
    return True


class Run:
    """One training run. Only the main process (rank 0) writes to ``dir``."""

    def __init__(self, dir: str | Path | None = None, device: str | torch.device = "auto", seed: int = 0,
                 *, progress: bool = True, distributed: bool = True):
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
        self.history: list[dict[str, Any]] = []
        self._last_metrics = ""
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
        self._last_metrics = " ".join(f"{k}={_fmt(v)}" for k, v in row.items() if k not in ("step", "time"))
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
        if not self.show_progress or not self.is_main_process:
            return iter(iterable)
        if sys.stderr.isatty():
            return self._rich_progress(iterable, total, desc)
        return self._plain_progress(iterable, total, desc)

    def _rich_progress(self, iterable, total, desc) -> Iterator:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[metrics]}"))
        with Progress(*columns, console=Console(stderr=True), transient=False) as bar:
            task = bar.add_task(desc, total=total, metrics="")
            for item in iterable:
                yield item
                bar.update(task, advance=1, metrics=self._last_metrics)

    def _plain_progress(self, iterable, total, desc) -> Iterator:
        start = time.perf_counter()
        every = max(1, (total or 100) // 10)
        done = 0
        for item in iterable:
            yield item
            done += 1
            if done % every == 0 or done == total:
                of = f"/{total}" if total else ""
                print(f"{desc} {done}{of} [{time.perf_counter() - start:.1f}s] {self._last_metrics}".rstrip(),
                      file=sys.stderr, flush=True)

    # -- checkpoints ---------------------------------------------------------------------------
    def save_checkpoint(self, state: dict[str, Any]) -> None:
        """Write ``checkpoint.safetensors`` atomically (tensors + JSON metadata, no pickle)."""
        if self.dir is not None and self.is_main_process:
            io.save_state(self.dir / CHECKPOINT_FILE, state)

    def load_checkpoint(self) -> dict[str, Any] | None:
        """The last checkpoint of this run directory (for ``--resume``), or None."""
        if self.dir is None or not (self.dir / CHECKPOINT_FILE).exists():
            return None
        return io.load_state(self.dir / CHECKPOINT_FILE)

    # -- distributed ---------------------------------------------------------------------------
    def all_reduce(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum ``tensor`` over all processes in place (a no-op in a single process)."""
        if self.distributed and self.world_size > 1:
            import torch.distributed as dist

            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def barrier(self) -> None:
        if self.distributed and self.world_size > 1:
            import torch.distributed as dist

            dist.barrier()


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
