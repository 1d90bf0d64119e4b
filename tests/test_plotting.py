"""The pictures: which curves metrics.png shows, the data layer of large files, tile gaps."""
import dataclasses

import numpy as np
import torch
from matplotlib.image import imread

from aigc_engine import data, plotting
from aigc_engine.engine import Engine
from aigc_engine.model import as_model_class
from aigc_engine.plugins import PluginManager


def test_metric_curves_leave_out_counters_and_constants(tmp_path, monkeypatch):
    shown = {}
    monkeypatch.setattr(plotting, "save_figure", lambda fig, path: shown.update(
        labels=[ax.get_ylabel() for ax in fig.axes], offset=[ax.yaxis.get_major_formatter().get_useOffset()
                                                            for ax in fig.axes]))
    history = [{"step": i, "loss": 1000 + 1 / (i + 1), "n_iter": i + 1, "lr": 0.1, "time": 5.0 + i}
               for i in range(10)]
    assert plotting.metric_curves(history, tmp_path / "m.png")
    assert shown["labels"] == ["loss"] and shown["offset"] == [False]
    flat = [{"step": i, "lower_bound": 4.3, "n_iter": i} for i in range(1, 3)]
    assert plotting.metric_curves(flat, tmp_path / "m.png")  # converged at once: the value still shows
    assert shown["labels"] == ["lower_bound"]
    assert not plotting.metric_curves([{"step": 0, "loss": 1.0}], tmp_path / "m.png")


def test_large_memmapped_data_is_subsampled_not_dropped(tmp_path, monkeypatch):
    arr = np.random.default_rng(0).normal(size=(30_000, 2)).astype(np.float32)
    np.save(tmp_path / "big.npy", arr)
    ds = data.from_file(tmp_path / "big.npy")
    rows = ds.subsample(1000, seed=3)
    assert rows.shape == (1000, 2) and not ds.in_memory  # read row by row, never loaded whole
    assert torch.equal(rows, ds.subsample(1000, seed=3))
    assert {tuple(r) for r in rows.numpy()} <= {tuple(a) for a in arr}  # rows of the file, as they are
    calls = {}
    monkeypatch.setattr(plotting, "scatter", lambda samples, d, path, **kw: calls.update(data=d, **kw))
    monkeypatch.setattr(plotting, "metric_curves", lambda *a, **k: False)

    class Zeros:  # a registered class need not subclass Model: the engine wraps it
        name = "m"

        @dataclasses.dataclass
        class Config:
            pass

        def __init__(self, config=None):
            self.config = config

        def fit(self, dataset, run):
            pass

        def sample(self, n, condition=None):
            return torch.zeros(n, 2)

        def state_dict(self):
            return {}

        def load_state_dict(self, state):
            pass
    Engine(PluginManager(load_entry_points=False)).draw(as_model_class(Zeros)(), ds, tmp_path, [])
    assert calls["data"].shape == (plotting.MAX_POINTS, 2) and calls["data_total"] == 30_000


def test_scatter_legend_counts_the_subsample(tmp_path):
    import matplotlib.pyplot as plt

    labels = {}
    original = plt.Axes.legend

    def legend(ax, *a, **k):
        out = original(ax, *a, **k)
        labels["texts"] = [t.get_text() for t in out.get_texts()]
        labels["outside"] = k.get("bbox_to_anchor", (0, 0))[0] > 1
        return out
    plt.Axes.legend = legend
    try:
        plotting.scatter(torch.randn(100, 2), torch.randn(8000, 2), tmp_path / "s.png", data_total=2_000_000)
    finally:
        plt.Axes.legend = original
    assert labels["texts"] == ["data (5,000 of 2,000,000 rows)", "samples"] and labels["outside"]


def test_image_grid_has_gaps_between_tiles(tmp_path):
    images = -torch.ones(4, 1, 8, 8)  # black tiles
    plotting.image_grid(images, tmp_path / "g.png", ncols=2)
    img = imread(tmp_path / "g.png")[..., :3].mean(-1)
    dark = img < 0.5
    cols = np.where(dark.any(0))[0]
    gaps = np.diff(cols)
    assert gaps.max() > 5  # a white gap of several pixels between the two columns of tiles


def test_draw_samples_decides_grid_or_scatter_once(tmp_path, monkeypatch):
    """samples.png, `sample -o x.png` and compare's panels all go through draw_samples: images as
    a grid, points as a scatter; into a file or into a panel of a larger figure."""
    import matplotlib.pyplot as plt

    drawn = []
    monkeypatch.setattr(plotting, "image_grid", lambda images, path, **kw: drawn.append(("grid", kw["ncols"])))
    monkeypatch.setattr(plotting, "scatter", lambda samples, d, path, **kw: drawn.append(("scatter", kw["data_total"])))
    plotting.draw_samples(torch.zeros(16, 1, 8, 8), tmp_path / "a.png", row_labels=["0", "1"])
    plotting.draw_samples(torch.zeros(50, 2), tmp_path / "b.png", data=data.ring8(n=300))
    assert drawn == [("grid", plotting.PER_CLASS), ("scatter", 300)]
    fig, (left, right) = plt.subplots(1, 2)
    plotting.draw_samples(torch.rand(16, 3, 8, 8) * 2 - 1, ax=left, title="images")
    plotting.draw_samples(torch.randn(50, 2), ax=right, data=torch.randn(80, 2), title="points")
    assert left.get_images() and not left.collections  # an image grid
    assert len(right.collections) == 2 and not right.get_images()  # data and samples
    assert (left.get_title(), right.get_title()) == ("images", "points")
    plt.close(fig)


def test_numeric_panel_of_one_value_or_a_tiny_range(tmp_path):
    """A column the real rows hold one value of, samples on a range too narrow for numpy's own bins
    (a private encoding can decode a column so): drawn, not a ValueError."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    from aigc_engine.tables.kinds import kind_class

    kind = kind_class("continuous")
    for real, samples in (([1e17] * 5, [1e17] * 5), ([0.1] * 5, [0.1, 0.1 + 1e-17, 0.1]), ([0.1, 0.2], [0.1, 0.1 + 1e-17])):
        fig, ax = plt.subplots()
        plotting._column_panel(ax, pd.Series(real), pd.Series(samples), kind)
        plt.close(fig)
