"""The Python API (aigc_engine.Synthesizer): a DataFrame in, the same columns, order and dtypes
out, through the engine; saved runs that the CLI reads; the tensor form; one-line errors."""
import json
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner

import aigc_engine
from aigc_engine.cli import cli

FAST = dict(n_components=3, max_iter=20, progress=False)


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def penguins():
    import palmerpenguins

    df = palmerpenguins.load_penguins()
    held = df.sample(frac=0.2, random_state=0)
    return df.drop(held.index), held


@pytest.fixture(scope="module")
def fitted(penguins):
    train, _ = penguins
    return aigc_engine.Synthesizer("gmm", **FAST).fit(train, label="species")


def temporary_runs():
    return set(Path(tempfile.gettempdir()).glob("aigc-engine-*"))


def test_the_six_lines_round_trip_on_penguins(penguins, tmp_path):
    train, held = penguins
    before = temporary_runs()
    syn = aigc_engine.Synthesizer("gmm", **FAST)
    syn.fit(train, label="species")
    assert syn.run_dir_.parent in temporary_runs() - before  # under the system's temporary directory
    rows = syn.sample(1000)
    assert list(rows.columns) == list(train.columns) and rows.dtypes.equals(train.dtypes) and len(rows) == 1000
    assert set(rows["species"]) <= set(train["species"]) and rows["sex"].isna().any()
    scores = syn.evaluate(held)
    assert {"column_shapes", "pair_trends", "ml_efficacy", "dcr_ratio"} <= set(scores)
    assert 0.8 < scores["column_shapes"] <= 1
    temp = syn.run_dir_.parent
    syn.save(tmp_path / "runs" / "penguins")
    assert not temp.exists() and syn.run_dir_ == tmp_path / "runs" / "penguins"  # moved, the temporary removed
    loaded = aigc_engine.Synthesizer.load(tmp_path / "runs" / "penguins")
    assert loaded.model == "gmm" and loaded.config["n_components"] == 3
    # the same seed gives the same rows before and after save / load; a loaded one starts its draws again
    again = loaded.sample(1000)
    pd.testing.assert_frame_equal(again, rows)
    pd.testing.assert_frame_equal(loaded.sample(50, seed=7), syn.sample(50, seed=7))
    assert not loaded.sample(50).equals(loaded.sample(50))  # successive calls draw new rows


def test_a_saved_run_is_read_by_the_cli(fitted, penguins, tmp_path):
    _, held = penguins
    run = fitted.save(tmp_path / "run")
    out = tmp_path / "x.csv"
    result = invoke("sample", run, "-n", 5, "-o", out)
    assert result.exit_code == 0, result.output
    assert list(pd.read_csv(out).columns) == list(held.columns) and len(pd.read_csv(out)) == 5
    config = json.loads((run / "config.json").read_text())
    assert config["dataset"]["in_memory"] == "DataFrame" and config["dataset"]["name"] is None
    result = invoke("eval", run)
    assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1
    assert "held in memory: pass --dataset FILE" in result.output
    held.to_csv(tmp_path / "held.csv", index=False)
    result = invoke("eval", run, "--dataset", tmp_path / "held.csv")
    assert result.exit_code == 0, result.output
    assert 0 < json.loads(result.output)["column_shapes"] <= 1
    loaded = aigc_engine.Synthesizer.load(run)
    with pytest.raises(aigc_engine.InputError, match=r"no longer has: pass real rows, evaluate\(data\)"):
        loaded.evaluate()
    scores = loaded.evaluate(held)  # scored as eval --dataset scores them: no training rows to hold them out from
    assert "column_shapes" in scores and "dcr_ratio" not in scores
    # resuming a run whose rows were in memory needs them
    result = invoke("run", "--resume", run)
    assert result.exit_code == 2 and "pass --dataset FILE" in result.output


def test_save_refuses_an_existing_run_and_copies_a_saved_one(fitted, tmp_path):
    first = fitted.save(tmp_path / "a")
    with pytest.raises(aigc_engine.InputError, match="already holds a run"):
        fitted.save(first)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(aigc_engine.InputError, match="not an empty directory"):
        fitted.save(tmp_path / "busy")
    second = fitted.save(tmp_path / "b")  # a saved run is copied, not moved away from where it was saved
    assert (first / "model.safetensors").exists() and (second / "model.safetensors").exists()
    assert not list(tmp_path.glob(".b-*"))


def test_dtypes_out_are_the_dtypes_in(tmp_path):
    rng = np.random.default_rng(0)
    n = 200
    df = pd.DataFrame({
        "i64": rng.integers(0, 1000, n),
        "I64": pd.array([None if k % 7 == 0 else int(v) for k, v in enumerate(rng.integers(0, 500, n))],
                        dtype="Int64"),
        "f64": rng.normal(size=n),
        "whole_with_gaps": np.where(np.arange(n) % 9 == 0, np.nan, rng.integers(3000, 6000, n)).astype(float),
        "flag": rng.random(n) < 0.3,
        "obj": rng.choice(["a", "b", "c"], n).astype(object),
        "cat": pd.Categorical(rng.choice(["x", "y", "z"], n), categories=["z", "y", "x", "w"], ordered=True),
        "s": pd.array(rng.choice(["p", "q", None], n), dtype="string"),
        "f32": rng.normal(size=n).astype(np.float32),
    })
    syn = aigc_engine.Synthesizer("gmm", n_components=2, max_iter=10, progress=False).fit(df, out=tmp_path / "run")
    assert syn.run_dir_ == tmp_path / "run"
    rows = syn.sample(100)
    assert list(rows.columns) == list(df.columns) and rows.dtypes.equals(df.dtypes), rows.dtypes
    assert rows["I64"].isna().any() and rows["s"].isna().any() and set(rows["cat"].dropna()) <= {"x", "y", "z"}
    loaded = aigc_engine.Synthesizer.load(tmp_path / "run")
    assert loaded.sample(100).dtypes.equals(df.dtypes)
    # options as Python values: lists and dicts as --set writes them; ignored columns keep their place
    syn = aigc_engine.Synthesizer("gmm", n_components=2, max_iter=10, progress=False)
    syn.fit(df, ignore=["f32"], kinds={"i64": "categorical"}, categorical=["flag"])
    config = json.loads((syn.run_dir_ / "config.json").read_text())
    assert config["dataset"]["options"]["kinds"] == "i64:categorical"
    assert config["dataset"]["options"]["ignore"] == "f32"
    rows = syn.sample(20)
    assert list(rows.columns) == list(df.columns) and rows["f32"].isna().all()


def test_points_in_a_tensor_out(tmp_path):
    ring = aigc_engine.data.ring8(n=800)
    syn = aigc_engine.Synthesizer("gmm", n_components=8, max_iter=30, conditional="true", progress=False)
    syn.fit(ring.x.numpy(), y=ring.y)
    points = syn.sample(400, seed=1)
    assert isinstance(points, torch.Tensor) and points.shape == (400, 2)
    assert syn.sample(10, conditions=3).shape == (10, 2)
    radius = points.norm(dim=1)
    assert (radius - 1).abs().median() < 0.1  # on the ring
    scores = syn.evaluate(aigc_engine.data.ring8(n=200, seed=5).x)
    assert "dcr_ratio" in scores and "log_likelihood_per_dim" in scores
    run = syn.save(tmp_path / "ring")
    torch.testing.assert_close(aigc_engine.Synthesizer.load(run).sample(400, seed=1), points)
    assert json.loads((run / "config.json").read_text())["dataset"]["in_memory"] == "Dataset"
    # a tensor with gradients, unlabelled
    x = torch.randn(300, 3, requires_grad=True)
    assert aigc_engine.Synthesizer("gmm", **FAST).fit(x).sample(5).shape == (5, 3)


def test_a_short_neural_run_keeps_the_frame(penguins):
    train, held = penguins
    syn = aigc_engine.Synthesizer("cvae", steps=60, width=32, kl_warmup=20, eval_every=20, progress=False)
    rows = syn.fit(train, label="species").sample(200)
    assert list(rows.columns) == list(train.columns) and rows.dtypes.equals(train.dtypes)
    assert "column_shapes" in syn.evaluate(held)


def test_a_path_is_read_as_the_cli_reads_it(penguins, tmp_path):
    train, held = penguins
    train.to_csv(tmp_path / "train.csv", index=False)
    syn = aigc_engine.Synthesizer("gmm", **FAST).fit(tmp_path / "train.csv", label="species")
    rows = syn.sample(20)
    assert syn.dtypes_ is None and list(rows.columns) == list(train.columns)
    assert str(rows["body_mass_g"].dtype) == "Int64"  # whole numbers with empty cells, as `sample -o` writes them
    config = json.loads((syn.run_dir_ / "config.json").read_text())
    assert config["dataset"]["name"] == str(tmp_path / "train.csv") and "in_memory" not in config["dataset"]
    assert "dcr_ratio" in syn.evaluate(held)  # the run reopens its own rows: the frame is held out


def test_holdout_rows_are_scored_as_held_out(penguins):
    train, _ = penguins
    syn = aigc_engine.Synthesizer("gmm", **FAST).fit(train, label="species", holdout=0.25)
    own, held = syn.evaluate(), syn.evaluate(part="holdout")
    assert "dcr_ratio" not in own and "dcr_ratio" in held and "ml_efficacy" in held


@pytest.mark.parametrize("make, message", [
    (lambda df: aigc_engine.Synthesizer("nope"), "unknown model 'nope'"),
    (lambda df: aigc_engine.Synthesizer("gmm", n_componentz=3), "unknown config key 'n_componentz'"),
    (lambda df: aigc_engine.Synthesizer("gmm", max_iter="many"), "max_iter"),
    (lambda df: aigc_engine.Synthesizer("gmm").sample(3), "not fitted: call fit(data) first"),
    (lambda df: aigc_engine.Synthesizer("gmm").evaluate(df), "not fitted"),
    (lambda df: aigc_engine.Synthesizer("gmm").save("x"), "not fitted"),
    (lambda df: aigc_engine.Synthesizer("gmm", **FAST).fit(df, ignroe=["a"]), "unknown option 'ignroe'"),
    (lambda df: aigc_engine.Synthesizer("gmm", **FAST).fit(df, label="zz"), "no column 'zz'"),
    (lambda df: aigc_engine.Synthesizer("gmm", **FAST).fit(df.iloc[:0]), "the DataFrame has no rows"),
    (lambda df: aigc_engine.Synthesizer("gmm", **FAST).fit(df, y=[0, 1]), "name a table's label column"),
    (lambda df: aigc_engine.Synthesizer("gmm", **FAST).fit(np.ones((4, 2)), label="a"), "give the labels"),
    (lambda df: aigc_engine.Synthesizer("gmm", **FAST).fit({"a": 1}), "cannot fit a dict"),
    (lambda df: aigc_engine.Synthesizer.load("no/such/run"), "not a run directory"),
])
def test_bad_input_is_one_line(make, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    df = pd.DataFrame({"a": [1.0, 2.5, 3.0, 4.0] * 10, "b": list("xyzw") * 10})
    before = temporary_runs()
    with pytest.raises(aigc_engine.InputError) as err:
        make(df)
    assert message in str(err.value) and "\n" not in str(err.value)
    assert temporary_runs() == before  # a refused fit leaves no temporary run behind


def test_a_label_class_of_one_row_shares_the_rare_classes_fit():
    """A label with a class of one row (a tweet's rare source) still fits; its rows are drawn from
    the mixture of the rare classes' rows pooled, and every class is sampled under its condition."""
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"x": rng.normal(size=203), "z": rng.normal(size=203),
                          "source": ["web"] * 120 + ["phone"] * 80 + ["ipad"] * 2 + ["fax"]})
    syn = aigc_engine.Synthesizer("gmm").fit(frame, label="source")
    rows = syn.sample(50, conditions={"source": "fax"})
    assert (rows["source"] == "fax").all() and np.isfinite(rows["x"]).all()
    assert set(syn.sample(400)["source"]) >= {"web", "phone"}


def test_a_large_table_searches_k_on_a_subsample_and_fits_the_chosen_k_on_more_rows(tmp_path):
    """select_rows / fit_rows: the BIC search fits a subsample, the chosen mixture a larger one
    (logged as fitted_rows): two well-separated clusters are found from a 60-row search
    subsample of 3,000 rows."""
    rng = np.random.default_rng(0)
    centre = rng.choice([-4.0, 4.0], size=3000)
    frame = pd.DataFrame({"a": centre + rng.normal(size=3000), "b": centre + rng.normal(size=3000)})
    syn = aigc_engine.Synthesizer("gmm", select_rows=60, fit_rows=1000)
    syn.fit(frame, continuous="standard").save(tmp_path / "run")
    logged = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    fit = [m for m in logged if "fitted_rows" in m][-1]
    assert fit["rows"] == 3000 and fit["fitted_rows"] == 1000 and fit["n_components"] >= 2
    rows = syn.sample(2000)
    assert 0.35 < (rows["a"] > 0).mean() < 0.65 and (rows["a"].abs() > 1.5).mean() > 0.8


def test_the_full_table_bic_is_the_subsample_bic_on_all_rows():
    from aigc_gmm import GaussianMixture
    from aigc_gmm.model import _full_bic

    x = torch.randn(500, 3, dtype=torch.float64)
    gm = GaussianMixture(2, random_state=0).fit(x)
    assert _full_bic(gm.criteria(x), 500) == pytest.approx(gm.bic(x), rel=1e-12)


def test_samples_of_other_seeds_share_no_key(tmp_path):
    """An integer id continues past the largest training id; two `sample` calls (seeds 0 and 1)
    and the Synthesizer's successive draws never repeat one."""
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"id": np.arange(1, 121), "x": rng.normal(size=120)})
    syn = aigc_engine.Synthesizer("gmm").fit(frame)
    first, second = syn.sample(50), syn.sample(50)
    assert first["id"].min() > 120 and not set(first["id"]) & set(second["id"])
    syn.save(tmp_path / "run")
    a = aigc_engine.Engine().sample(tmp_path / "run", 30, seed=0)
    b = aigc_engine.Engine().sample(tmp_path / "run", 30, seed=1)
    assert list(a["id"]) == list(range(121, 151)) and not set(a["id"]) & set(b["id"])
