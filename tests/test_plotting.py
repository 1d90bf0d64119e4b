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
