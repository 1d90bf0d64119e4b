"""``Fabric``: the process a model runs in, without a run directory (the part of Lightning
Fabric the engine needs): the device, the seed, ``torch.distributed`` under torchrun, modules
wrapped for DDP, sums and broadcasts over processes, noise that does not depend on the number of
processes, the CPU thread policy, bf16 autocast and progress bars on the main process.

:class:`aigc_engine.Run` is a Fabric with a run directory; ``eval`` and ``gmm-select`` use a
Fabric alone.
"""
from __future__ import annotations

import atexit
import contextlib
import os
import random
from typing import Any, Iterable, Iterator

import numpy as np
import torch

from .errors import InputError
from .progress import ProgressBar, track

__all__ = ["Fabric", "resolve_device", "seed_everything", "init_distributed", "rank_share", "unwrap", "no_sync",
           "SMALL_MODEL_PARAMETERS"]

# below this many parameters a network trains on one CPU thread (see Fabric.limit_threads)
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


def rank_share(batch: torch.Tensor, rank: int, world_size: int) -> torch.Tensor:
    """This process's rows of a global batch: the ``rank``-th of ``world_size`` consecutive
    parts (:class:`aigc_engine.Batches` splits the rows of each global batch the same way)."""
    return torch.tensor_split(batch, world_size)[rank] if world_size > 1 else batch


def unwrap(module: torch.nn.Module) -> torch.nn.Module:
    """The module inside a ``DistributedDataParallel`` wrapper (or the module itself)."""
    return getattr(module, "module", module) if type(module).__name__ == "DistributedDataParallel" else module


def no_sync(module: torch.nn.Module):
    """``module.no_sync()`` under DDP (a backward whose gradients for ``module`` are not wanted, like
    a GAN's generator step through the discriminator), else a no-op context."""
    return module.no_sync() if type(module).__name__ == "DistributedDataParallel" else contextlib.nullcontext()


class Fabric:
    """The device, seed and processes of a fit or an evaluation (no run directory). Building one
    resolves the device, joins torchrun's process group when ``distributed`` and torchrun set
    ``WORLD_SIZE``, and seeds Python, NumPy and torch with ``seed``. Progress bars show on the
    main process only, and not at all with ``progress=False``."""

    def __init__(self, device: str | torch.device = "auto", seed: int = 0, *, progress: bool = True,
                 distributed: bool = True):
        self.device = resolve_device(device)
        self.seed = int(seed)
        self.show_progress = progress
        self.distributed = distributed and init_distributed(self.device.type)
        if self.distributed:
            import torch.distributed as dist

            self.rank, self.world_size = dist.get_rank(), dist.get_world_size()
            if self.device.type == "cuda":
                self.device = torch.device("cuda", torch.cuda.current_device())
        else:
            self.rank, self.world_size = 0, 1
        seed_everything(self.seed)

    @property
    def is_main_process(self) -> bool:
        return self.rank == 0

    # -- progress ------------------------------------------------------------------------------
    @property
    def metrics_text(self) -> str:
        """What the bars show after each step: the last logged metrics (a :class:`Run` logs;
        a Fabric alone shows none)."""
        return ""

    def progress(self, iterable_or_total: Iterable | int, desc: str = "") -> Iterator:
        """Iterate with a progress bar (rich on a terminal, plain lines otherwise, on stderr)."""
        return track(iterable_or_total, desc, enabled=self.show_progress and self.is_main_process,
                     text=lambda: self.metrics_text)

    def progress_bar(self, total: int | None, desc: str = "", initial: int = 0) -> ProgressBar:
        """A bar to ``advance(metrics_text)`` by hand (what :meth:`progress` and the step loop use);
        silent with ``progress=False`` and on processes other than the main one."""
        return ProgressBar(total, desc, initial, enabled=self.show_progress and self.is_main_process)

    # -- noise and modules ---------------------------------------------------------------------
    def randn(self, rows: int, *shape: int) -> torch.Tensor:
        """This process's share of standard normal noise for a global batch of ``rows`` (``[rows,
        *shape]`` drawn from the global generator, split across processes as
        :class:`aigc_engine.Batches` splits the rows): per-step noise that does not depend on the
        number of processes, and consumes the generator alike on each of them."""
        return rank_share(torch.randn(rows, *shape, device=self.device), self.rank, self.world_size)

    def rand(self, rows: int, *shape: int) -> torch.Tensor:
        """As :meth:`randn`, uniform on [0, 1)."""
        return rank_share(torch.rand(rows, *shape, device=self.device), self.rank, self.world_size)

    def wrap(self, module: torch.nn.Module) -> torch.nn.Module:
        """``module`` on this device; under torchrun its parameters and buffers are rank 0's on
        every process (initial weights do not depend on the number of processes), and a module
        with trainable parameters is wrapped in ``DistributedDataParallel`` (gradients averaged
        over processes in ``backward``)."""
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
        if enabled and self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    # -- processes -----------------------------------------------------------------------------
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

    def broadcast_text(self, text: str | None) -> str | None:
        """Rank 0's ``text`` on every process (such as a run directory's name: timestamps can
        differ between processes)."""
        if self.distributed:
            import torch.distributed as dist

            box: list[Any] = [text]
            dist.broadcast_object_list(box, src=0)
            text = box[0]
        return text

    def barrier(self) -> None:
        if self.distributed and self.world_size > 1:
            import torch.distributed as dist

            dist.barrier()
