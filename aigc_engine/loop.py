"""The training loop of neural model plugins: the core owns the bookkeeping, the plugin owns the
maths (the balance of Lightning Fabric).

A plugin's ``fit`` builds its networks and optimizers, then drives its own step through
:meth:`Run.loop <aigc_engine.Run.loop>`::

    netG, netD = run.wrap(Generator()), run.wrap(Discriminator())
    optG, optD = Adam(netG.parameters()), Adam(netD.parameters())
    batches = run.batches(dataset, batch_size=256)
    loop = run.loop(steps, state={"netG": netG, "netD": netD, "optG": optG, "optD": optD,
                                  "data": batches})
    for step in loop:           # starts after the checkpoint's step on --resume
        x, y = next(batches)
        ...                     # the plugin's own step
        loop.log(loss_d=loss_d, loss_g=loss_g)

:class:`Batches` gives shuffled minibatches of ``(x, y)`` on the run's device, each process its
share of every global batch under torchrun. :class:`TrainLoop` shows progress, logs averaged
metrics, checkpoints every registered object with the RNG states atomically, resumes exactly,
and turns SIGINT/SIGTERM into a checkpoint and :class:`Interrupted`. :class:`EMA` is an
exponential moving average of a module's weights built on ``torch.optim.swa_utils``.
"""
from __future__ import annotations

import math
import signal
import sys
import threading
import time
from typing import TYPE_CHECKING, Any, Callable, Iterator

import numpy as np
import torch

from .errors import InputError, Interrupted
from .fabric import rank_share, unwrap
from .store.checkpoint import restore, rng_state, set_rng_state
from .store.rundir import CHECKPOINT_FILE

if TYPE_CHECKING:  # pragma: no cover
    from .data import Dataset

__all__ = ["Batches", "TrainLoop", "EMA"]


def _epoch_seed(seed: int, epoch: int) -> int:
    """A 63-bit seed for one epoch's permutation, a pure function of ``(seed, epoch)``."""
    return int(np.random.SeedSequence([int(seed) % 2**63, int(epoch)]).generate_state(1, np.uint64)[0] >> 1)


class Batches:
    """Minibatches ``(x, y)`` of a dataset on ``device``; ``y`` is None for unlabelled data.

    ``batch_size`` is the *global* batch: under torchrun each of the ``world_size`` processes gets
    its ``batch_size / world_size`` rows of every global batch, so all processes see disjoint rows,
    the same number of batches, and together the batch one process would see. Each epoch is a
    permutation derived from ``(seed, epoch)`` alone (every row once; with ``drop_last`` the
    last incomplete batch is skipped). In-memory data is gathered by index on the device;
    memory-mapped ``.npy`` data is shuffled by blocks of ``block_rows`` rows (block order and the
    rows inside each window of ``window_blocks`` blocks), so reads stay local.

    ``next(batches)`` runs on across epochs; ``epoch`` and ``batch`` say where it is, and
    ``state_dict`` / ``load_state_dict`` make that position part of a checkpoint.
    """

    def __init__(self, dataset: "Dataset", batch_size: int, *, device: torch.device | str = "cpu", seed: int = 0,
                 shuffle: bool = True, drop_last: bool = False, rank: int = 0, world_size: int = 1,
                 block_rows: int = 4096, window_blocks: int = 16):
        if batch_size < 1:
            raise InputError(f"batch_size must be >= 1, got {batch_size}")
        if batch_size % world_size:
            raise InputError(f"batch_size={batch_size} must be a multiple of the {world_size} processes")
        n = len(dataset)
        if drop_last and n < batch_size:
            raise InputError(f"batch_size={batch_size} is more than the {n} rows of dataset {dataset.name!r}")
        self.dataset, self.batch_size, self.device = dataset, int(batch_size), torch.device(device)
        self.seed, self.shuffle, self.drop_last = int(seed), shuffle, drop_last
        self.rank, self.world_size = rank, world_size
        self.block_rows, self.window_blocks = block_rows, window_blocks
        self.n = n
        self.in_memory = dataset.in_memory
        if self.in_memory:
            self._x = dataset.x.to(self.device)
            self._y = dataset.y.to(self.device) if dataset.y is not None else None
        else:  # memory-mapped: rows are read with dataset.take as batches need them
            self._x, self._y = None, dataset.y
        self.epoch, self.batch = 0, 0
        self._order: torch.Tensor | None = None
        self._order_epoch = -1

    def __len__(self) -> int:
        """Batches per epoch."""
        return self.n // self.batch_size if self.drop_last else math.ceil(self.n / self.batch_size)

    def __iter__(self) -> "Batches":
        return self

    def __next__(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self.batch >= len(self):
            self.epoch, self.batch = self.epoch + 1, 0
        rows = self.indices(self.epoch, self.batch)
        self.batch += 1
        return self._gather(rows)

    def indices(self, epoch: int, batch: int) -> torch.Tensor:
        """This process's row indices of global batch ``batch`` of ``epoch``."""
        order = self._epoch_order(epoch)
        lo = batch * self.batch_size
        rows = order[lo:lo + self.batch_size]
        if self.world_size > 1:
            if len(rows) < self.world_size:  # a tiny last batch: pad from the epoch's start
                rows = torch.cat([rows, order[:self.world_size - len(rows)]])
            rows = rank_share(rows, self.rank, self.world_size)
        return rows

    def _epoch_order(self, epoch: int) -> torch.Tensor:
        if self._order_epoch != epoch:
            if not self.shuffle:
                self._order = torch.arange(self.n)
            else:
                g = torch.Generator().manual_seed(_epoch_seed(self.seed, epoch))
                self._order = torch.randperm(self.n, generator=g) if self.in_memory else self._block_order(g)
            self._order_epoch = epoch
        return self._order

    def _block_order(self, g: torch.Generator) -> torch.Tensor:
        """Blocks in random order; rows shuffled within each window of consecutive picked blocks."""
        starts = torch.arange(0, self.n, self.block_rows)[torch.randperm(math.ceil(self.n / self.block_rows), generator=g)]
        out = []
        for w in range(0, len(starts), self.window_blocks):
            rows = torch.cat([torch.arange(s, min(s + self.block_rows, self.n)) for s in starts[w:w + self.window_blocks].tolist()])
            out.append(rows[torch.randperm(len(rows), generator=g)])
        return torch.cat(out)

    def _gather(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self.in_memory:
            idx = rows.to(self.device)
            x = self._x.index_select(0, idx)
            y = self._y.index_select(0, idx) if self._y is not None else None
            return x, y
        x = self.dataset.take(rows).to(self.device, non_blocking=True)
        y = self._y[rows] if self._y is not None else None
        return x, (y.to(self.device) if y is not None else None)

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "batch": self.batch, "seed": self.seed, "n": self.n,
                "batch_size": self.batch_size}

    def load_state_dict(self, state: dict[str, int]) -> None:
        if int(state["n"]) != self.n or int(state["batch_size"]) != self.batch_size:
            raise InputError(f"the checkpoint's data position is for {state['n']} rows in batches of "
                             f"{state['batch_size']}; this run has {self.n} rows in batches of {self.batch_size}")
        self.epoch, self.batch = int(state["epoch"]), int(state["batch"])


class EMA(torch.nn.Module):
    """Exponential moving average of a module's parameters, on ``torch.optim.swa_utils.AveragedModel``:
    after the ``t``-th ``update(model)``, ``w_ema = d * w_ema + (1 - d) * w`` (the first update
    copies) with ``d = decay``, or with ``warmup`` ``d = min(decay, (1 + t) / (10 + t))`` (the
    warm-up of TensorFlow's ``ExponentialMovingAverage``: a short run is not dominated by its
    first weights). Buffers (batch-norm statistics) are copied from the model. ``ema.module`` is
    the averaged copy, for sampling; it is part of the checkpoint."""

    def __init__(self, model: torch.nn.Module, decay: float = 0.999, warmup: bool = False):
        super().__init__()
        from torch.optim.swa_utils import AveragedModel

        if not 0.0 <= decay <= 1.0:
            raise InputError(f"ema decay must be in [0, 1], got {decay}")
        self.decay, self.warmup = decay, warmup
        self.averaged = AveragedModel(unwrap(model), use_buffers=False)
        self.averaged.requires_grad_(False)
        self._lists: tuple | None = None  # (model, its parameters and buffers, the average's)

    @property
    def module(self) -> torch.nn.Module:
        return self.averaged.module

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        """``AveragedModel.update_parameters``'s arithmetic on tensor lists kept from the first
        call (it walks both modules each step: about 0.3 ms a step on a small network)."""
        model = unwrap(model)
        if self._lists is None or self._lists[0] is not model:
            self._lists = (model, list(model.parameters()), list(self.module.parameters()),
                           list(model.buffers()), list(self.module.buffers()))
        _, params, averaged, buffers, averaged_buffers = self._lists
        t = int(self.averaged.n_averaged)  # updates before this one; the first one copies
        if t == 0:
            torch._foreach_copy_(averaged, params)
        else:
            d = min(self.decay, (1 + t) / (10 + t)) if self.warmup else self.decay
            torch._foreach_lerp_(averaged, params, 1 - d)
        for mine, theirs in zip(averaged_buffers, buffers):
            mine.copy_(theirs)
        self.averaged.n_averaged += 1

    def forward(self, *args, **kwargs):
        return self.module(*args, **kwargs)


# ---------------------------------------------------------------------------------------------
class TrainLoop:
    """The step loop of a run: iterate over it to get step numbers ``1..steps`` (after the
    checkpoint's step on ``--resume``); do one optimisation step per number.

    - ``run``: the :class:`aigc_engine.Run` it reports to, through its public methods only
      (``progress_bar``, ``metrics_text``, ``log``, ``save_checkpoint`` / ``load_checkpoint``,
      ``resuming``, ``all_reduce``, ``world_size``): this module sits below ``run`` and does not
      import it.
    - ``state``: name -> object with ``state_dict()`` / ``load_state_dict()`` (modules, optimizers,
      LR schedulers, :class:`EMA`, ``torch.amp.GradScaler``, :class:`Batches`) or a plain dict
      (restored in place). The checkpoint holds all of them, the step and the RNG states.
    - ``log(**metrics)`` each step: means over the last ``log_every`` steps (and over processes)
      go to ``run.log`` and the progress bar.
    - A checkpoint every ``checkpoint_every`` steps or ``checkpoint_seconds``, whichever first, and
      at the end; each is atomic (a kill at any moment leaves the previous one readable).
    - SIGINT / SIGTERM: the current step finishes, a checkpoint is written, one line says how to
      resume, and :class:`Interrupted` is raised (the CLI exits 130 / 143).
    - ``stop()`` ends the loop early (early stopping); the checkpoint remembers it, so a resumed
      run does not train on.
    - ``until``: a function of the registered state, called after the restore and after each
      step; the loop ends when it returns true (a fit that ends on convergence, like EM). It is
      not remembered: a resumed run whose restored state (under its current settings) can go
      on goes on. It must return the same on every process.

    On CPU a resumed run ends bit-identical to an uninterrupted one with the same seed, provided
    the plugin keeps all its state in ``state`` and draws randomness from the global generators
    (or from ones it registers).
    """

    def __init__(self, run, steps: int, state: dict[str, Any], *, log_every: int = 50,
                 checkpoint_every: int = 1000, checkpoint_seconds: float | None = 120.0, desc: str = "train",
                 until: Callable[[], bool] | None = None):
        if steps < 0:
            raise InputError(f"steps must be >= 0, got {steps}")
        if log_every < 1 or checkpoint_every < 1:
            raise InputError("log_every and checkpoint_every must be >= 1")
        for name, obj in state.items():
            if not isinstance(obj, dict) and not (hasattr(obj, "state_dict") and hasattr(obj, "load_state_dict")):
                raise TypeError(f"state[{name!r}] has no state_dict/load_state_dict (a {type(obj).__name__})")
        self.run, self.steps, self.state = run, int(steps), state
        self.log_every, self.checkpoint_every, self.checkpoint_seconds = log_every, checkpoint_every, checkpoint_seconds
        self.desc, self.until = desc, until
        self.step = 0
        self.stopped = False
        self._pending: dict[str, list] = {}
        self._signal: int | None = None
        self._resumed = False

    # -- the plugin's side ---------------------------------------------------------------------
    def log(self, **metrics: Any) -> None:
        """Metrics of this step (tensors or numbers); averaged over the logging window."""
        for key, value in metrics.items():
            self._pending.setdefault(key, []).append(value.detach() if isinstance(value, torch.Tensor) else value)

    def stop(self) -> None:
        """End the loop after this step."""
        self.stopped = True

    @property
    def resumed(self) -> bool:
        """Whether the loop started from a checkpoint."""
        return self._resumed

    # -- iteration -----------------------------------------------------------------------------
    def __iter__(self) -> Iterator[int]:
        run = self.run
        self._restore()
        last_save = time.monotonic()
        saved_at = self.step
        bar = run.progress_bar(self.steps, self.desc, initial=self.step)
        handlers = self._install_handlers()
        try:
            while not self._finished():
                self.step += 1
                yield self.step
                done = self._finished()
                if self.step % self.log_every == 0 or done:
                    self._flush()
                bar.advance(run.metrics_text)
                interrupted = self._agreed_signal()
                due = (self.step % self.checkpoint_every == 0
                       or (self.checkpoint_seconds is not None
                           and time.monotonic() - last_save >= self.checkpoint_seconds))
                if interrupted is not None:
                    if self._pending:
                        self._flush()
                    self.save()
                    bar.close()
                    if run.is_main_process:
                        where = f" --resume {run.dir}" if run.dir is not None else ""
                        print(f"aigc-engine: {signal.Signals(interrupted).name} at step {self.step}/{self.steps}: "
                              f"checkpoint written; continue with: aigc-engine run{where}", file=sys.stderr, flush=True)
                    raise Interrupted(interrupted, self.step)
                if due and not done:
                    self.save()
                    last_save, saved_at = time.monotonic(), self.step
            if self._pending:
                self._flush()
            if saved_at != self.step or not self._resumed or self.stopped:
                self.save()
        finally:
            bar.close()
            self._restore_handlers(handlers)

    def _finished(self) -> bool:
        return self.step >= self.steps or self.stopped or (self.until is not None and bool(self.until()))

    # -- checkpoints ---------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        objects = {name: (dict(obj) if isinstance(obj, dict) else obj.state_dict()) for name, obj in self.state.items()}
        return {"loop": {"step": self.step, "steps": self.steps, "stopped": self.stopped},
                "state": objects, "rng": rng_state()}

    def save(self) -> None:
        """Write the checkpoint now (only the main process writes)."""
        self.run.save_checkpoint(self.state_dict(), step=self.step)

    def _restore(self) -> None:
        ckpt = self.run.load_checkpoint() if self.run.resuming else None
        if not ckpt or "loop" not in ckpt:
            self.run.restored()
            return
        missing = sorted(set(self.state) - set(ckpt["state"]))
        if missing:
            raise InputError(f"the checkpoint in {self.run.dir} has no state for {', '.join(missing)}: "
                             "it was written by another model or version")
        for name, obj in self.state.items():
            saved = ckpt["state"][name]
            if isinstance(obj, dict):
                obj.clear()
                obj.update(saved)
            else:
                restore(obj, saved, self.run.dir / CHECKPOINT_FILE)
        set_rng_state(ckpt["rng"])
        self.step = int(ckpt["loop"]["step"])
        self.stopped = bool(ckpt["loop"].get("stopped"))
        self._resumed = True
        self.run.restored()

    # -- logging -------------------------------------------------------------------------------
    def _flush(self) -> None:
        keys = list(self._pending)
        means = torch.tensor([float(torch.stack([torch.as_tensor(v, dtype=torch.float64) for v in self._pending[k]]).mean())
                              for k in keys], dtype=torch.float64)
        self._pending.clear()
        if self.run.world_size > 1:
            means = self.run.all_reduce(means.to(self.run.device)).cpu() / self.run.world_size
        self.run.log(self.step, **{k: float(v) for k, v in zip(keys, means)})
        bad = [k for k, v in zip(keys, means) if not math.isfinite(float(v))]
        if bad:  # a diverged fit ends here, in a clear line, not in NaN samples written with exit 0
            raise InputError(f"training diverged at step {self.step}: {bad[0]} is {float(means[keys.index(bad[0])])} "
                             "(retrain with a lower lr or another config)")

    # -- signals -------------------------------------------------------------------------------
    def _install_handlers(self):
        if threading.current_thread() is not threading.main_thread():
            return None

        def handler(signum, frame):
            if self._signal is not None:  # a second one: stop now (the last checkpoint stays)
                raise KeyboardInterrupt
            self._signal = signum

        return {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}

    @staticmethod
    def _restore_handlers(handlers) -> None:
        for s, h in (handlers or {}).items():
            signal.signal(s, h)

    def _agreed_signal(self) -> int | None:
        """The signal to stop on, the same on every process (one tiny all-reduce per step)."""
        if self.run.world_size == 1:
            return self._signal
        flag = torch.tensor([self._signal or 0], dtype=torch.int64, device=self.run.device)
        self.run.all_reduce(flag)  # sum: any process's signal stops all of them
        return None if int(flag) == 0 else (self._signal or signal.SIGTERM)
