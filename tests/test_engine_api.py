"""Using a finished run from Python: ``Engine.sample`` (the samples returned, the file written in
the format its suffix names) and ``Engine.evaluate`` (the metrics of ``eval``), on a points run
and a table run; ``eval`` and ``compare`` give the same held-out numbers for the same run and
rows."""
import numpy as np
import pandas as pd
import pytest
import torch

from aigc_engine.compare import compare
from aigc_engine.engine import Engine, RunSpec
from aigc_engine.errors import InputError

TIMINGS = ("samples_per_second", "fit_seconds")


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    """A small table: a float, an integer and a category column, and a label column."""
    rng = np.random.default_rng(0)
    n = 240
    label = rng.choice(["a", "b"], n)
    frame = pd.DataFrame({"x": rng.normal(size=n) + (label == "b") * 3, "k": rng.integers(0, 6, n),
                          "c": rng.choice(["u", "v", "w"], n), "species": label})
    path = tmp_path_factory.mktemp("table") / "t.csv"
    frame.to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def points_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("points") / "run"
    return Engine().train(RunSpec("gmm", {"n_components": 8, "max_iter": 20}, "ring8", {"n": 400, "holdout": 0.2},
                                  out=out, progress=False))


@pytest.fixture(scope="module")
def table_run(table, tmp_path_factory):
    out = tmp_path_factory.mktemp("tables") / "run"
    return Engine().train(RunSpec("gmm", {"n_components": 2, "max_iter": 20}, str(table),
                                  {"label_column": "species", "holdout": 0.25}, out=out, progress=False))


def test_sample_a_points_run_returns_a_tensor_and_writes_its_file(points_run, tmp_path):
    engine = Engine()
    samples = engine.sample(points_run, 7, out=tmp_path / "s.npy", seed=3)
    assert isinstance(samples, torch.Tensor) and samples.shape == (7, 2) and torch.isfinite(samples).all()
    assert np.array_equal(np.load(tmp_path / "s.npy"), samples.numpy())
    assert torch.equal(engine.sample(points_run, 7, seed=3), samples)  # the same seed, the same samples
    assert not torch.equal(engine.sample(points_run, 7, seed=4), samples)
    engine.sample(points_run, 50, out=tmp_path / "s.png")
    assert (tmp_path / "s.png").read_bytes()[:4] == b"\x89PNG"
    assert engine.samples_path(points_run) == points_run / "samples.npy"
    with pytest.raises(InputError, match=r"must end in \.npy or \.png"):
        engine.sample(points_run, 5, out=tmp_path / "s.csv")
    with pytest.raises(InputError, match="not conditional"):
        engine.sample(points_run, 5, condition=1)
    with pytest.raises(InputError, match="n must be >= 1"):
        engine.sample(points_run, 0)


def test_sample_a_table_run_returns_its_columns_and_writes_the_csv(table_run, table, tmp_path):
    engine = Engine()
    rows = engine.sample(table_run, 30, condition="species=b", out=tmp_path / "s.csv")
    assert isinstance(rows, pd.DataFrame) and list(rows.columns) == list(pd.read_csv(table).columns)
    assert len(rows) == 30 and (rows["species"] == "b").all()
    written = pd.read_csv(tmp_path / "s.csv")
    assert list(written.columns) == list(rows.columns) and (written["c"] == rows["c"]).all()
    assert np.allclose(written["x"], rows["x"]) and (written["k"] == rows["k"]).all()
    assert engine.samples_path(table_run) == table_run / "samples.csv"
    assert (engine.sample(table_run, 5, condition=0)["species"] == "a").all()  # a class id works too
    with pytest.raises(InputError, match="must be one of a, b"):
        engine.sample(table_run, 5, condition="z")
    with pytest.raises(InputError, match=r"must end in \.csv or \.parquet"):
        engine.sample(table_run, 5, out=tmp_path / "s.npy")


def test_evaluate_on_the_runs_own_rows(points_run, table_run):
    engine = Engine()
    points = engine.evaluate(points_run)
    assert points["dataset"] == "ring8" and "mean_log_likelihood" in points and "dcr_ratio" not in points
    tables = engine.evaluate(table_run)
    assert 0.5 < tables["column_shapes"] <= 1 and "mean_log_likelihood" in tables and "ml_efficacy" not in tables


@pytest.mark.parametrize("which", ["points", "table"])
def test_eval_and_compare_give_the_same_held_out_numbers(which, table, tmp_path):
    """compare's row for a run and eval of that run on the rows compare held out: one protocol."""
    dataset, sets, holdout = ("ring8", {"dataset.n": 400, "gmm.n_components": 8}, 0.2) if which == "points" else \
        (str(table), {"dataset.label_column": "species", "gmm.n_components": 2}, 0.25)
    result = compare(["gmm"], dataset, sets={**sets, "gmm.max_iter": 20}, seeds=[1], holdout=holdout,
                     out=tmp_path / "cmp", device="cpu", n_samples=300, progress=False, engine=Engine())
    row = result.row("gmm")
    assert row["status"] == "ok", row["reason"]
    compared = {k: v["values"][0] for k, v in row["metrics"].items() if k not in TIMINGS}
    evaluated = Engine().evaluate(tmp_path / "cmp" / "gmm-seed1", options={"part": "holdout"}, n_samples=300)
    assert evaluated["dataset"] == result.dataset
    evaluated = {k: v for k, v in evaluated.items() if k not in (*TIMINGS, "dataset")}
    assert set(evaluated) == set(compared) and "mean_log_likelihood" in compared  # the model's own, kept
    assert {"dcr_ratio", "log_likelihood_per_dim"} <= set(compared)
    if which == "table":
        assert {"column_shapes", "ml_efficacy", "ml_efficacy_real", "detection_auc"} <= set(compared)
    for key, value in compared.items():
        assert float(evaluated[key]) == pytest.approx(value, rel=1e-9, abs=1e-12, nan_ok=True), key
