"""``Run``: what the engine gives a model while it fits: a :class:`~aigc_engine.Fabric` (device,
seed, processes, progress bars) with a run directory (``metrics.jsonl``, atomic checkpoints,
resume) and the training loop built on them."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch

from .fabric import Fabric
from .loop import Batches, TrainLoop
from .store import checkpoint, io, rundir
from .store.rundir import CHECKPOINT_FILE, METRICS_FILE


class Run(Fabric):
    """One training run: a :class:`~aigc_engine.Fabric` and its directory ``dir`` (None: none,
    metrics kept in :attr:`history` only). Only the main process (rank 0) writes to ``dir``.
    ``resume``: continue the run in ``dir`` (its metrics log cut back to its checkpoint)."""

    def __init__(self, dir: str | Path | None = None, device: str | torch.device = "auto", seed: int = 0,
                 *, progress: bool = True, distributed: bool = True, resume: bool = False):
        super().__init__(device, seed, progress=progress, distributed=distributed)
        dir = self.broadcast_text(str(dir) if dir is not None else None)
        self.dir = Path(dir) if dir is not None else None
        if self.dir is not None and self.is_main_process:
            self.dir.mkdir(parents=True, exist_ok=True)
        self.resuming = bool(resume) and self.dir is not None
        self.history: list[dict[str, Any]] = []
        # the fit's share of a private run's budget (a privacy.PrivacyBudget, delta resolved), set by
        # the engine; None: not private (Model.supports_privacy, docs/privacy.md)
        self.privacy = None
        self._metrics_text = ""
        self._on_restored: list = []
        if self.resuming:
            if self.is_main_process:  # a kill during a checkpoint write leaves its temporary file
                io.remove_stale_temporaries(self.dir)
            self.history = checkpoint.rewind_metrics(self.dir / METRICS_FILE, self.dir / CHECKPOINT_FILE,
                                                     write=self.is_main_process)
            self.barrier()

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
            rundir.append_metrics(self.dir, row)

    @property
    def metrics_text(self) -> str:
        """The last logged metrics as ``key=value`` text (what the progress bar shows)."""
        return self._metrics_text

    # -- checkpoints ---------------------------------------------------------------------------
    def save_checkpoint(self, state: dict[str, Any], step: int | None = None) -> None:
        """Write ``checkpoint.safetensors`` atomically (tensors + JSON metadata, no pickle; the
        format is :mod:`aigc_engine.store.checkpoint`'s).

        ``step``: the last logged step the checkpoint includes; on ``--resume`` the metrics log is
        cut back to it, so that each step appears once."""
        if self.dir is not None and self.is_main_process:
            checkpoint.save(self.dir / CHECKPOINT_FILE, state, step=step)

    def load_checkpoint(self) -> dict[str, Any] | None:
        """The last checkpoint of this run directory (for ``--resume``), or None."""
        if self.dir is None or not (self.dir / CHECKPOINT_FILE).exists():
            return None
        return checkpoint.load(self.dir / CHECKPOINT_FILE)

    def when_restored(self, action) -> None:
        """Call ``action()`` once the checkpoint of a resumed run is restored (at once when there
        is none; see :meth:`restored`): what must not change before the restore succeeded."""
        self._on_restored.append(action)

    def restored(self) -> None:
        """The checkpoint is restored, or there was none to restore: run the :meth:`when_restored`
        actions (once)."""
        actions, self._on_restored = self._on_restored, []
        for action in actions:
            action()

    # -- minibatch training (see aigc_engine.loop) ----------------------------------------------
    def batches(self, dataset, batch_size: int, *, shuffle: bool = True, drop_last: bool = False,
                seed: int | None = None) -> Batches:
        """Minibatches ``(x, y)`` of ``dataset`` on this run's device, this process's share of each
        global batch of ``batch_size`` rows, shuffled per epoch from ``(seed, epoch)``."""
        return Batches(dataset, batch_size, device=self.device, seed=self.seed if seed is None else seed,
                       shuffle=shuffle, drop_last=drop_last, rank=self.rank, world_size=self.world_size)

    def loop(self, steps: int, state: dict[str, Any], **options: Any) -> TrainLoop:
        """The resumable step loop over ``state`` (see :class:`aigc_engine.loop.TrainLoop`)."""
        return TrainLoop(self, steps, state, **options)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
