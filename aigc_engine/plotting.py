"""Pictures of a run: ``samples.png`` (an image grid, or a scatter of 2-D samples over the data)
and ``metrics.png`` (the logged curves)."""
from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402


def image_grid(images: torch.Tensor, path: Path, ncols: int | None = None, title: str = "") -> None:
    """Save images ``N x C x H x W`` in [-1, 1] as one grid."""
    images = images.detach().float().cpu().clamp(-1, 1)
    n, c, h, w = images.shape
    ncols = ncols or max(1, int(math.ceil(math.sqrt(n))))
    nrows = int(math.ceil(n / ncols))
    grid = np.ones((nrows * (h + 1) + 1, ncols * (w + 1) + 1, c), dtype=np.float32)
    for i in range(n):
        r, col = divmod(i, ncols)
        grid[1 + r * (h + 1):1 + r * (h + 1) + h, 1 + col * (w + 1):1 + col * (w + 1) + w] = \
            ((images[i].permute(1, 2, 0).numpy() + 1) / 2)
    fig, ax = plt.subplots(figsize=(max(3, ncols * 0.5), max(3, nrows * 0.5)))
    ax.imshow(grid[..., 0] if c == 1 else grid, cmap="gray" if c == 1 else None, vmin=0, vmax=1,
              interpolation="nearest")
    ax.set_axis_off()
    if title:
        ax.set_title(title)
    _save(fig, path)


def scatter(samples: torch.Tensor, data: torch.Tensor | None, path: Path, title: str = "",
            annotate=None, max_points: int = 5000) -> None:
    """Scatter of samples over the data (first two coordinates); ``annotate(ax)`` draws extras."""
    fig, ax = plt.subplots(figsize=(6, 6))
    if data is not None:
        d = _subsample(data, max_points)
        ax.scatter(d[:, 0], d[:, 1], s=2, c="tab:orange", alpha=0.8, label="data", zorder=3, rasterized=True)
    s = _subsample(samples, max_points)
    ax.scatter(s[:, 0], s[:, 1], s=3, c="tab:blue", alpha=0.4, label="samples", zorder=2, rasterized=True)
    if annotate is not None:
        annotate(ax)
    dims = samples.shape[1]
    ax.set_xlabel("x[0]")
    ax.set_ylabel("x[1]" if dims > 1 else "")
    ax.set_aspect("equal", adjustable="datalim")
    legend = ax.legend(loc="best", framealpha=0.9)
    for handle in legend.legend_handles[:2]:  # the tiny scatter dots, readable in the legend
        handle.set_sizes([30])
    ax.set_title(title + ("" if dims == 2 else f" (first 2 of {dims} dims)"))
    _save(fig, path)


def metric_curves(history: list[dict], path: Path, title: str = "") -> bool:
    """One panel per logged metric against step; returns False when there is nothing to plot."""
    if len(history) < 2:
        return False
    keys = [k for k in dict.fromkeys(k for row in history for k in row)
            if k not in ("step", "time") and all(isinstance(r.get(k, 0.0), (int, float)) for r in history)]
    if not keys:
        return False
    fig, axes = plt.subplots(len(keys), 1, figsize=(7, 2.2 * len(keys)), sharex=True, squeeze=False)
    for ax, key in zip(axes[:, 0], keys):
        steps = [r["step"] for r in history if key in r]
        ax.plot(steps, [r[key] for r in history if key in r], lw=1.2)
        ax.set_ylabel(key)
        ax.grid(alpha=0.3)
    axes[-1, 0].set_xlabel("step")
    if title:
        axes[0, 0].set_title(title)
    _save(fig, path)
    return True


def training_progress(steps: list[int], snapshots: list[torch.Tensor], path: Path, data: torch.Tensor | None = None,
                      title: str = "", per_row: int = 16) -> None:
    """Samples from one fixed noise at several points of training: for images a row of
    ``per_row`` images per snapshot, for points one scatter panel per snapshot over the data."""
    if snapshots[0].dim() == 4:
        rows = [s[:per_row].detach().float().cpu().clamp(-1, 1) for s in snapshots]
        n, (c, h, w) = len(rows), rows[0].shape[1:]
        fig, axes = plt.subplots(n, 1, figsize=(max(4, per_row * 0.45), 0.5 * n + 0.8), squeeze=False)
        for ax, step, imgs in zip(axes[:, 0], steps, rows):
            strip = np.ones((h, len(imgs) * (w + 1) - 1, c), dtype=np.float32)
            for i, img in enumerate(imgs):
                strip[:, i * (w + 1):i * (w + 1) + w] = (img.permute(1, 2, 0).numpy() + 1) / 2
            ax.imshow(strip[..., 0] if c == 1 else strip, cmap="gray" if c == 1 else None, vmin=0, vmax=1,
                      interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_ylabel(f"{step}", rotation=0, ha="right", va="center", fontsize=8)
        axes[0, 0].set_title(title + " (step on the left)", fontsize=9)
    else:
        n = len(snapshots)
        cols = min(4, n)
        nrows = int(math.ceil(n / cols))
        fig, axes = plt.subplots(nrows, cols, figsize=(3 * cols, 3 * nrows), squeeze=False, sharex=True, sharey=True)
        d = _subsample(data, 2000) if data is not None else None
        for ax in axes.flat[n:]:
            ax.set_axis_off()
        for ax, step, s in zip(axes.flat, steps, snapshots):
            if d is not None:
                ax.scatter(d[:, 0], d[:, 1], s=2, c="0.75", zorder=1, rasterized=True)
            p = _subsample(s, 2000)
            ax.scatter(p[:, 0], p[:, 1], s=3, c="tab:red", alpha=0.6, zorder=2, rasterized=True)
            ax.set_title(f"step {step}", fontsize=9)
            ax.set_aspect("equal", adjustable="datalim")
        fig.suptitle(title + (" (grey: data)" if d is not None else ""), fontsize=10)
    _save(fig, path)


def _subsample(t: torch.Tensor, k: int) -> np.ndarray:
    t = t.detach().float().cpu()
    if len(t) > k:
        t = t[torch.randperm(len(t), generator=torch.Generator().manual_seed(0))[:k]]
    a = t.numpy()
    return a if a.shape[1] > 1 else np.concatenate([a, np.zeros_like(a)], 1)


def _save(fig, path: Path) -> None:
    from .io import atomic_write

    fig.tight_layout()
    atomic_write(Path(path), lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    plt.close(fig)
