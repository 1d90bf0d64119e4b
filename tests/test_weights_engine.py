"""Row weights through the engine: an ``.npz`` key ``w`` and a table's ``dataset.weight_column``
reach the gmm's EM (and the label rates of a table), bad weights are one-line errors with exit
status 2, and a model that would ignore weights refuses them."""
import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner

from aigc_engine.cli import cli
from aigc_engine.data import Dataset, check_weights
from aigc_engine.errors import InputError


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def two_clusters(n=150, seed=0):
    rng = np.random.default_rng(seed)
    x = np.concatenate([rng.normal(0, 0.3, (n, 2)), rng.normal(5, 0.3, (n, 2))]).astype(np.float32)
    return x, np.repeat([3.0, 1.0], n)


def near_origin(samples: np.ndarray) -> float:
    return float((np.linalg.norm(samples, axis=1) < 2.5).mean())


@pytest.mark.parametrize("weighted", [True, False])
def test_npz_weights_move_the_mixture(tmp_path, weighted):
    x, w = two_clusters()
    path = tmp_path / "d.npz"
    np.savez(path, x=x, **({"w": w} if weighted else {}))
    run = tmp_path / "run"
    result = invoke("run", "gmm", "--dataset", path, "--set", "n_components=2", "--out", run, "--no-progress")
    assert result.exit_code == 0, result.output
    assert invoke("sample", run, "-n", 4000, "-o", tmp_path / "s.npy", "--seed", 0).exit_code == 0
    share = near_origin(np.load(tmp_path / "s.npy"))
    assert share == pytest.approx(0.75 if weighted else 0.5, abs=0.03)


def test_weight_column_weights_a_tables_rows_and_label_rates(tmp_path):
    x, w = two_clusters(100)
    frame = pd.DataFrame({"kind": np.repeat(["a", "b"], 100), "u": x[:, 0].round(3), "v": x[:, 1].round(3), "w": w})
    frame.to_csv(tmp_path / "t.csv", index=False)
    run = tmp_path / "run"
    result = invoke("run", "gmm", "--dataset", tmp_path / "t.csv", "--set", "dataset.label_column=kind",
                    "--set", "dataset.weight_column=w", "--out", run, "--no-progress")
    assert result.exit_code == 0, result.output
    assert invoke("sample", run, "-n", 4000, "-o", tmp_path / "s.csv", "--seed", 0).exit_code == 0
    synth = pd.read_csv(tmp_path / "s.csv")
    assert list(synth.columns) == ["kind", "u", "v"]  # the weights are not a column of the data
    assert (synth["kind"] == "a").mean() == pytest.approx(0.75, abs=0.03)


@pytest.mark.parametrize("cells, message", [
    (["1", "-2", "1", "1"], "weight column 'w' row 2: -2.0 is negative"),
    (["1", "", "1", "1"], "weight column 'w' row 2: a missing weight"),
    (["1", "x", "1", "1"], "weight column 'w' row 2: 'x' is not a number"),
    (["0", "0", "0", "0"], "weight column 'w': all weights are 0"),
])
def test_bad_weight_columns_exit_2_with_one_line(tmp_path, cells, message):
    frame = pd.DataFrame({"a": [0.1, 0.5, 0.9, 1.3], "b": [1.0, 0.2, 0.4, 0.8], "w": cells})
    frame.to_csv(tmp_path / "t.csv", index=False)
    result = invoke("run", "gmm", "--dataset", tmp_path / "t.csv", "--set", "dataset.weight_column=w",
                    "--out", tmp_path / "run", "--no-progress")
    assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output
    assert not (tmp_path / "run").exists()


def test_bad_npz_weights_and_unknown_weight_column(tmp_path):
    x, w = two_clusters(10)
    np.savez(tmp_path / "short.npz", x=x, w=w[:-1])
    np.savez(tmp_path / "nan.npz", x=x, w=np.where(np.arange(20) == 4, np.nan, 1.0))
    for name, message in (("short.npz", "short.npz: array w: 19 weights for 20 rows"),
                          ("nan.npz", "nan.npz: array w row 5: nan is not a finite number")):
        result = invoke("run", "gmm", "--dataset", tmp_path / name, "--out", tmp_path / "run", "--no-progress")
        assert result.exit_code == 2 and message in result.output, result.output
    pd.DataFrame({"a": [1.0, 2.0], "b": [3.0, 4.5]}).to_csv(tmp_path / "t.csv", index=False)
    result = invoke("run", "gmm", "--dataset", tmp_path / "t.csv", "--set", "dataset.weight_column=w",
                    "--out", tmp_path / "run", "--no-progress")
    assert result.exit_code == 2 and "weight_column: no column 'w' in the table (columns: a, b)" in result.output


def test_a_model_that_ignores_weights_refuses_them(tmp_path):
    x, w = two_clusters(10)
    np.savez(tmp_path / "d.npz", x=x, w=w)
    result = invoke("run", "gan", "--dataset", tmp_path / "d.npz", "--out", tmp_path / "run", "--no-progress")
    assert result.exit_code == 2 and "model 'gan' does not take row weights" in result.output
    assert "models that do: bgmm, gmm" in result.output and not (tmp_path / "run").exists()


def test_subsets_splits_and_shards_carry_the_weights():
    ds = Dataset(torch.randn(10, 2), weights=check_weights(np.arange(10.0), 10, "w"))
    train, held = ds.holdout_split(0.3, seed=0)
    assert sorted(train.weights.tolist() + held.weights.tolist()) == list(range(10))
    assert ds.shard(1, 2).weights.tolist() == [5.0, 6.0, 7.0, 8.0, 9.0]
    assert ds.split(0.2, 0.2, seed=1)["train"].weights.dtype == torch.float64
    with pytest.raises(InputError, match="w: 3 weights for 10 rows"):
        check_weights([1, 2, 3], 10, "w")
