"""``gmm --set missing=marginalize`` on a table: the empty cells of numeric columns are left out of
each row's likelihood (GaussianMixture(missing="marginalize")) instead of modelled by indicator
columns; samples are complete rows; the settings it does not fit are one-line errors."""
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from aigc_engine.cli import cli


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def mar_table(tmp_path_factory):
    """b = a + noise, b missing at random given a (more often where a is large): the observed
    b's mean is biased low, the mixture's marginal is not."""
    rng = np.random.default_rng(0)
    n = 600
    a = rng.normal(0, 1, n)
    frame = pd.DataFrame({"a": a.round(3), "b": (a + rng.normal(0, 0.3, n)).round(3),
                          "c": rng.choice(["x", "y"], n)})
    frame.loc[(a > 0.3) & (rng.random(n) < 0.7), "b"] = np.nan
    path = tmp_path_factory.mktemp("mar") / "mar.csv"
    frame.to_csv(path, index=False)
    return path, frame


def test_marginalize_recovers_what_missing_at_random_hides(mar_table, tmp_path):
    path, frame = mar_table
    assert frame["b"].mean() < -0.2  # what the rows with b show
    runs = {}
    for missing in ("indicator", "marginalize"):
        run = tmp_path / missing
        result = invoke("run", "gmm", "--dataset", path, "--set", f"missing={missing}", "--set", "n_components=1",
                        "--set", "dataset.continuous=standard", "--out", run, "--no-progress")
        assert result.exit_code == 0, result.output
        out = tmp_path / f"{missing}.csv"
        assert invoke("sample", run, "-n", 4000, "-o", out, "--seed", 0).exit_code == 0
        runs[missing] = pd.read_csv(out)
        assert invoke("eval", run).exit_code == 0
    native = runs["marginalize"]
    assert not native[["a", "b"]].isna().any().any()  # complete rows
    assert abs(native["b"].mean() - frame["a"].mean()) < 0.08  # b's mean is a's: the MAR bias undone
    assert np.corrcoef(native["a"], native["b"])[0, 1] > 0.9
    by_indicator = runs["indicator"]
    assert 0.2 < by_indicator["b"].isna().mean() < 0.45  # the other model: missing cells at their rate


@pytest.mark.parametrize("args, message", [
    (["gmm", "--dataset", "ring8"], "missing=marginalize is for tables"),
    (["bgmm", "--dataset", "MAR"], "bgmm models a table's missing values by their indicators only"),
])
def test_marginalize_errors(mar_table, tmp_path, args, message):
    args = [str(mar_table[0]) if a == "MAR" else a for a in args]
    result = invoke("run", *args, "--set", "missing=marginalize", "--out", tmp_path / "run", "--no-progress")
    assert result.exit_code == 2 and message in result.output and len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()
