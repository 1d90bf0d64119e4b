"""Pictures of a run: ``samples.png`` (an image grid, or a scatter of 2-D samples over the data)
and ``metrics.png`` (the logged curves that vary)."""
from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

DATA_COLOUR = "0.55"  # the data: faint grey, drawn first
SAMPLE_COLOUR = "tab:orange"  # the samples: above the data, in a colour that stands out from it
MAX_POINTS = 5000  # per layer of a scatter: more only hides the density
MAX_BARS = 20  # per panel of a table column: a many-level column's bars past that are one
OTHERS = "(others)"


PER_CLASS = 8  # images per row of a conditional model's grid (a row per class)


def draw_samples(samples: torch.Tensor, path: Path | None = None, *, ax=None, data=None, title: str = "",
                 row_labels: list[str] | None = None, annotate=None) -> None:
    """The picture of a model's samples, decided here once for ``samples.png``, ``aigc-engine
    sample -o FILE.png`` and each panel of ``compare.png``: images (``N x C x H x W``) as a grid
    (``row_labels``: a row of :data:`PER_CLASS` per class), points as a scatter over ``data`` (a
    Dataset, or rows; its first two coordinates) with ``annotate(ax)`` on top. Saved to ``path``,
    or drawn into the matplotlib axes ``ax`` (a panel of a larger figure)."""
    images = samples.dim() == 4
    if ax is None:
        if images:
            image_grid(samples, path, ncols=PER_CLASS if row_labels else None, title=title, row_labels=row_labels)
        else:
            total = len(data) if data is not None else None
            rows = data if data is None or isinstance(data, torch.Tensor) else data.subsample(MAX_POINTS)
            scatter(samples, rows, path, title=title, annotate=annotate, data_total=total)
        return
    if images:
        _image_axes(ax, image_canvas(samples, PER_CLASS if row_labels else 8), row_labels=None)
    else:
        _panel_scatter(ax, samples, data if data is None or isinstance(data, torch.Tensor) else data.subsample(2000))
    if title:
        ax.set_title(title, fontsize=11)


def image_canvas(images: torch.Tensor, ncols: int | None = None, gap: int | None = None) -> np.ndarray:
    """Images ``N x C x H x W`` in [-1, 1] as one array ``H' x W' (x C)`` in [0, 1], ``ncols``
    tiles a row, ``gap`` white pixels apart (default a quarter of a tile)."""
    images = images.detach().float().cpu().clamp(-1, 1)
    n, c, h, w = images.shape
    ncols = ncols or max(1, int(math.ceil(math.sqrt(n))))
    nrows = int(math.ceil(n / ncols))
    gap = max(2, min(h, w) // 4) if gap is None else gap
    grid = np.ones((nrows * (h + gap) + gap, ncols * (w + gap) + gap, c), dtype=np.float32)
    for i in range(n):
        r, col = divmod(i, ncols)
        top, left = gap + r * (h + gap), gap + col * (w + gap)
        grid[top:top + h, left:left + w] = (images[i].permute(1, 2, 0).numpy() + 1) / 2
    return grid[..., 0] if c == 1 else grid


def _image_axes(ax, grid: np.ndarray, row_labels: list[str] | None = None, row_height: float = 0.0,
                top: float = 0.0) -> None:
    ax.imshow(grid, cmap="gray" if grid.ndim == 2 else None, vmin=0, vmax=1, interpolation="nearest")
    ax.set_xticks([])
    if row_labels:
        ax.set_yticks([top + r * row_height for r in range(len(row_labels))], [str(s) for s in row_labels])
        ax.tick_params(length=0)
    else:
        ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)


def image_grid(images: torch.Tensor, path: Path, ncols: int | None = None, title: str = "",
               row_labels: list[str] | None = None) -> None:
    """Save images ``N x C x H x W`` in [-1, 1] as one grid, tiles apart by a white gap;
    ``row_labels`` names the rows (e.g. a row per class)."""
    n, c, h, w = images.shape
    ncols = ncols or max(1, int(math.ceil(math.sqrt(n))))
    nrows = int(math.ceil(n / ncols))
    gap = max(2, min(h, w) // 4)
    fig, ax = plt.subplots(figsize=(max(3, ncols * 0.6) + (1 if row_labels else 0), max(3, nrows * 0.6)))
    _image_axes(ax, image_canvas(images, ncols, gap), row_labels[:nrows] if row_labels else None,
                row_height=h + gap, top=gap + h / 2)
    if title:
        ax.set_title(title)
    save_figure(fig, path)


def _panel_scatter(ax, samples: torch.Tensor, data: torch.Tensor | None) -> None:
    """Samples over the data in grey on a panel framed on the data (samples far off it fall
    outside, as they should); points of more than two dimensions by their first two."""
    s = _subsample(samples.reshape(len(samples), -1), 2000)
    if data is not None:
        r = _subsample(data.reshape(len(data), -1), 2000)
        ax.scatter(r[:, 0], r[:, 1], s=2, c="0.75", rasterized=True)
        lo, hi = r.min(0), r.max(0)
        pad = 0.25 * (hi - lo)
        ax.set_xlim(lo[0] - pad[0], hi[0] + pad[0]), ax.set_ylim(lo[1] - pad[1], hi[1] + pad[1])
    ax.scatter(s[:, 0], s[:, 1], s=2, c="tab:blue", alpha=0.6, rasterized=True)
    if s.shape[1] == 2:
        ax.set_aspect("equal", adjustable="box")
    ax.set_xticks([]), ax.set_yticks([])


def scatter(samples: torch.Tensor, data: torch.Tensor | None, path: Path, title: str = "",
            annotate=None, max_points: int = MAX_POINTS, data_total: int | None = None) -> None:
    """Samples over the data (first two coordinates): the data faint grey below, the samples
    above in orange, ``annotate(ax)`` (e.g. a mixture's ellipses) on top, the legend outside the
    axes. Layers of more than ``max_points`` are subsampled, and the legend says so
    (``data_total``: the data's row count when ``data`` is already a subsample of it)."""
    fig, ax = plt.subplots(figsize=(8, 6))
    if data is not None:
        d = _subsample(data, max_points)
        total = max(data_total or 0, len(data))
        shown = f" ({len(d):,} of {total:,} rows)" if len(d) < total else ""
        ax.scatter(d[:, 0], d[:, 1], s=3, c=DATA_COLOUR, alpha=0.35, linewidths=0, label="data" + shown,
                   zorder=1, rasterized=True)
    s = _subsample(samples, max_points)
    shown = f" ({len(s):,} of {len(samples):,})" if len(s) < len(samples) else ""
    ax.scatter(s[:, 0], s[:, 1], s=4, c=SAMPLE_COLOUR, alpha=0.6, linewidths=0, label="samples" + shown,
               zorder=2, rasterized=True)
    if annotate is not None:
        annotate(ax)
    dims = samples.shape[1]
    ax.set_xlabel("x[0]")
    ax.set_ylabel("x[1]" if dims > 1 else "")
    ax.set_aspect("equal", adjustable="datalim")
    legend = ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, frameon=False)
    for handle in legend.legend_handles:  # the tiny scatter dots, readable in the legend
        if hasattr(handle, "set_sizes"):
            handle.set_sizes([30])
        if hasattr(handle, "set_alpha"):
            handle.set_alpha(1.0)
    ax.set_title(title + ("" if dims == 2 else f" (first 2 of {dims} dims)"))
    save_figure(fig, path)


def metric_curves(history: list[dict], path: Path, title: str = "") -> bool:
    """One panel per logged metric that varies, against step (integer ticks, plain numbers).
    Counters (an integer metric that grows by the same amount every step, such as an iteration
    number) are left out, and so are constants unless nothing varies (a fit that converged at
    once still shows its value). Returns False when nothing is left to plot."""
    if len(history) < 2:
        return False
    keys = [k for k in dict.fromkeys(k for row in history for k in row)
            if k not in ("step", "time") and all(isinstance(r.get(k, 0.0), (int, float)) for r in history)]
    series = {key: (np.array([r["step"] for r in history if key in r], dtype=np.float64),
                    np.array([r[key] for r in history if key in r], dtype=np.float64)) for key in keys}
    kinds = {key: _kind(values) for key, (_, values) in series.items()}
    shown = [k for k in keys if kinds[k] == "varies"] or [k for k in keys if kinds[k] == "constant"]
    curves = {k: series[k] for k in shown}
    if not curves:
        return False
    fig, axes = plt.subplots(len(curves), 1, figsize=(7, 0.6 + 2.0 * len(curves)), sharex=True, squeeze=False)
    for ax, (key, (steps, values)) in zip(axes[:, 0], curves.items()):
        ax.plot(steps, values, lw=1.2, marker="o" if len(steps) <= 30 else None, ms=3)
        ax.set_ylabel(key)
        ax.ticklabel_format(axis="y", useOffset=False)
        ax.grid(alpha=0.3)
    axes[-1, 0].set_xlabel("step")
    axes[-1, 0].xaxis.set_major_locator(MaxNLocator(integer=True))
    if title:
        axes[0, 0].set_title(title)
    save_figure(fig, path)
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
        fig, axes = plt.subplots(nrows, cols, figsize=(3 * cols, 3 * nrows), squeeze=False)
        d = _subsample(data, 2000) if data is not None else None
        ref = d if d is not None else _subsample(snapshots[-1], 2000)
        lo, hi = ref.min(0), ref.max(0)
        pad = 0.15 * (hi - lo).max()
        lims = [(lo[i] - pad, hi[i] + pad) for i in range(2)]  # one frame for every panel: the data's
        for ax in axes.flat[n:]:
            ax.set_axis_off()
        for ax, step, s in zip(axes.flat, steps, snapshots):
            if d is not None:
                ax.scatter(d[:, 0], d[:, 1], s=2, c="0.75", zorder=1, rasterized=True)
            p = _subsample(s, 2000)
            ax.scatter(p[:, 0], p[:, 1], s=3, c="tab:red", alpha=0.6, zorder=2, rasterized=True)
            ax.set_title(f"step {step}", fontsize=9)
            ax.set_xlim(*lims[0])
            ax.set_ylim(*lims[1])
            ax.set_aspect("equal", adjustable="box")
        fig.suptitle(title + (" (grey: data)" if d is not None else ""), fontsize=10)
    save_figure(fig, path)


def latent_scatter(z: torch.Tensor, labels: torch.Tensor | None, path: Path, title: str = "") -> None:
    """A 2-D latent space: one point per encoded row, coloured by label when there are labels."""
    z = z.detach().float().cpu().numpy()
    fig, ax = plt.subplots(figsize=(6, 5))
    if labels is not None:
        lab = labels.cpu().numpy()
        classes = np.unique(lab)
        cmap = plt.get_cmap("tab10" if len(classes) <= 10 else "tab20")
        for i, c in enumerate(classes):
            m = lab == c
            ax.scatter(z[m, 0], z[m, 1], s=6, color=cmap(i % cmap.N), label=str(c), rasterized=True)
        ax.legend(title="label", loc="center left", bbox_to_anchor=(1.01, 0.5), markerscale=2, fontsize=8)
    else:
        ax.scatter(z[:, 0], z[:, 1], s=4, c="tab:blue", rasterized=True)
    ax.set_xlabel("z[0]")
    ax.set_ylabel("z[1]")
    if title:
        ax.set_title(title)
    save_figure(fig, path)


def _kind(values: np.ndarray) -> str:
    """``varies``, ``constant``, ``counter`` (the step again) or ``empty`` (under two finite values)."""
    finite = values[np.isfinite(values)]
    if len(finite) < 2:
        return "empty"
    if np.ptp(finite) == 0:
        return "constant"
    if np.all(values == np.round(values)) and len(np.unique(np.diff(values))) == 1:
        return "counter"
    return "varies"


def _subsample(t: torch.Tensor, k: int) -> np.ndarray:
    t = t.detach().float().cpu()
    if len(t) > k:
        t = t[torch.randperm(len(t), generator=torch.Generator().manual_seed(0))[:k]]
    a = t.numpy()
    return a if a.shape[1] > 1 else np.concatenate([a, np.zeros_like(a)], 1)


def save_figure(fig, path: Path) -> None:
    """Save a matplotlib figure as a PNG atomically, and close it."""
    from .store.io import atomic_write

    atomic_write(Path(path), lambda tmp: fig.savefig(tmp, dpi=110, format="png", bbox_inches="tight"))
    plt.close(fig)


def table_columns(real, synthetic, path: Path, schema, title: str = "") -> None:
    """``samples.png`` of a table: one panel per column (every one; six a row past 24), the real
    rows' distribution in grey and the samples' over it, as each column's kind in ``schema`` (a
    :class:`~aigc_engine.tables.TableSchema`) says: histograms of numeric columns on the real
    range (a datetime's seconds, a text's lengths: its kind's numbers), bars of category
    frequencies (the missing share as its own bar; past ``MAX_BARS`` categories, the real rows'
    most frequent and one bar for the others), and a key's count of distinct values."""
    columns = [c for c in synthetic.columns if c not in schema.ignored]
    ncols = min(4 if len(columns) <= 24 else 6, len(columns))
    nrows = math.ceil(len(columns) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.2 * ncols, 2.4 * nrows), squeeze=False)
    for ax, name in zip(axes.flat, columns):
        _column_panel(ax, real[name], synthetic[name], schema.kind(name))
        ax.set_title(name, fontsize=9)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(columns):]:
        ax.axis("off")
    handles = [plt.Rectangle((0, 0), 1, 1, color=DATA_COLOUR, alpha=0.6),
               plt.Rectangle((0, 0), 1, 1, color=SAMPLE_COLOUR, alpha=0.6)]
    fig.legend(handles, [f"real ({len(real)} rows)", f"samples ({len(synthetic)})"], loc="upper right", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout(rect=(0, 0, 1, 0.93 if title else 0.97))
    save_figure(fig, path)


def _column_panel(ax, real, synthetic, kind) -> None:
    if kind.distribution is None:  # a key: made-up values, nothing to compare
        ax.text(0.5, 0.5, f"{kind.name}: {synthetic.nunique()} distinct\nof {len(synthetic)} rows",
                ha="center", va="center", fontsize=9, transform=ax.transAxes)
        ax.set_xticks([])
        ax.set_yticks([])
        return
    if kind.distribution == "numeric":
        r, s = (v[~np.isnan(v)] for v in (kind.numbers(real), kind.numbers(synthetic)))
        # edges of the real range, widened around a single value: numpy's own bins (bins=10) fail on a value
        # whose magnitude leaves no room for them (a private encoding can decode a column to one value)
        lo, hi = (float(r.min()), float(r.max())) if len(r) else (float(s.min()), float(s.max())) if len(s) else (0.0, 1.0)
        if not hi - lo > 1e-9 * max(1.0, abs(lo), abs(hi)):  # one value, or a range too narrow for 25 bins
            pad = max(abs(lo) * 1e-3, 0.5)
            lo, hi = lo - pad, hi + pad
        bins = np.linspace(lo, hi, 25)
        ax.hist(r, bins=bins, density=True, color=DATA_COLOUR, alpha=0.6)
        ax.hist(s, bins=bins, density=True, color=SAMPLE_COLOUR, alpha=0.6)
        ax.set_yticks([])
        ticks = np.linspace(r.min(), r.max(), 4) if len(r) else []
        labels = kind.tick_labels(ticks) if len(ticks) else None
        if labels is not None:
            ax.set_xticks(ticks, labels, rotation=30, ha="right")
        return
    keys = lambda v: v.astype(object).where(v.notna(), "(missing)").astype(str)  # noqa: E731
    r, s = keys(real).value_counts(normalize=True), keys(synthetic).value_counts(normalize=True)
    cats = list(r.index) + [c for c in s.index if c not in r.index]
    if len(cats) > MAX_BARS:
        import pandas as pd

        cats = cats[:MAX_BARS - 1]
        r, s = (pd.concat([v.reindex(cats, fill_value=0.0), pd.Series({OTHERS: 1.0 - v.reindex(cats).sum()})])
                for v in (r, s))
        cats.append(OTHERS)
    at = np.arange(len(cats))
    ax.bar(at - 0.2, [r.get(c, 0.0) for c in cats], 0.4, color=DATA_COLOUR, alpha=0.8)
    ax.bar(at + 0.2, [s.get(c, 0.0) for c in cats], 0.4, color=SAMPLE_COLOUR, alpha=0.8)
    ax.set_xticks(at, [c[:10] for c in cats], rotation=45 if len(cats) > 3 else 0, ha="right" if len(cats) > 3 else "center")
