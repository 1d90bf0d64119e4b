"""Conditions on any column of a table run (``--condition``, ``Engine.sample(condition=...)``):
every kind honoured on every returned row, the one-line errors, the rejection fallback's budget,
and the gmm's exact conditioning (its closed form against a 2-D Gaussian)."""
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from aigc_engine.cli import cli
from aigc_engine.engine import Engine, RunSpec
from aigc_engine.errors import InputError
from aigc_engine.model import Model

palmerpenguins = pytest.importorskip("palmerpenguins")


@pytest.fixture(scope="module")
def penguins(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("penguins") / "penguins.csv"
    palmerpenguins.load_penguins().to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def run(penguins, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "gmm"
    return Engine().train(RunSpec("gmm", {"n_components": 3, "max_iter": 30}, str(penguins),
                                  {"label_column": "species"}, out=out, progress=False))


@pytest.fixture
def fallback(monkeypatch):
    """The gmm as a model that declares no conditioning: the engine's rejection only."""
    from aigc_gmm.model import GMMModel

    monkeypatch.setattr(GMMModel, "sample_conditioned", Model.sample_conditioned)


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


CASES = [
    (["island=Biscoe"], lambda d: d["island"] == "Biscoe"),
    (["island!=Biscoe"], lambda d: d["island"] != "Biscoe"),
    (["island in Dream,Torgersen"], lambda d: d["island"].isin(["Dream", "Torgersen"])),
    (["body_mass_g>=5000"], lambda d: d["body_mass_g"] >= 5000),
    (["body_mass_g<3500"], lambda d: d["body_mass_g"] < 3500),
    (["bill_length_mm>50.1"], lambda d: d["bill_length_mm"] > 50.1),
    (["bill_depth_mm<=15"], lambda d: d["bill_depth_mm"] <= 15),
    (["flipper_length_mm<=190"], lambda d: d["flipper_length_mm"] <= 190),
    (["year>2008"], lambda d: d["year"] == 2009),
    (["sex=NA"], lambda d: d["sex"].isna()),
    (["sex!=NA", "sex!=male"], lambda d: d["sex"] == "female"),
    (["bill_length_mm!=NA"], lambda d: d["bill_length_mm"].notna()),
    (["Gentoo"], lambda d: d["species"] == "Gentoo"),
    (["species in Adelie,Chinstrap", "island=Dream"], lambda d: d["species"].isin(["Adelie", "Chinstrap"])
     & (d["island"] == "Dream")),
    (["island=Biscoe", "body_mass_g>=5000", "sex=female"],
     lambda d: (d["island"] == "Biscoe") & (d["body_mass_g"] >= 5000) & (d["sex"] == "female")),
    ({"island": "Dream", "year": [2007, 2009]}, lambda d: (d["island"] == "Dream") & d["year"].isin([2007, 2009])),
    ({"sex": None}, lambda d: d["sex"].isna()),
]


@pytest.mark.parametrize("exact", [True, False], ids=["model", "rejection"])
@pytest.mark.parametrize("condition, check", CASES, ids=[str(c) for c, _ in CASES])
def test_every_returned_row_meets_every_condition(run, condition, check, exact, request):
    if not exact:
        request.getfixturevalue("fallback")
    rows = Engine().sample(run, 200, condition=condition)
    assert len(rows) == 200 and check(rows).all()


def test_repeated_conditions_through_the_cli(run, tmp_path):
    out = tmp_path / "s.csv"
    result = invoke("sample", run, "-n", 300, "--condition", "island=Biscoe", "--condition", "body_mass_g>=5000",
                    "-o", out)
    assert result.exit_code == 0, result.output
    rows = pd.read_csv(out)
    assert len(rows) == 300 and (rows["island"] == "Biscoe").all() and (rows["body_mass_g"] >= 5000).all()


@pytest.mark.parametrize("condition, message", [
    ("price>=3", "'price' is not a column of this run"),
    ("island=Mars", "'island' never had the value 'Mars' (values: Biscoe, Dream, Torgersen)"),
    ("body_mass_g>=1e9", "no row can meet it ('body_mass_g' is in [2700, 6300]"),
    ("body_mass_g<2700", "no row can meet it"),
    ("island>3", "'island' is categorical with values that are not numbers"),
    ("body_mass_g>=heavy", "'heavy' is not a number"),
    ("island=", "a value is missing after '='"),
    ("species=Emperor", "must be one of Adelie, Chinstrap, Gentoo"),
    ("body_mass_g<NA", "NA takes = or != only"),
])
def test_bad_conditions_are_one_line_and_exit_2(run, tmp_path, condition, message):
    result = invoke("sample", run, "-n", 5, "--condition", condition, "-o", tmp_path / "s.csv")
    assert result.exit_code == 2 and message in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_conditions_that_cannot_hold_together(run):
    with pytest.raises(InputError, match="no row can meet 'body_mass_g>5000' and 'body_mass_g<4000' together"):
        Engine().sample(run, 5, condition=["body_mass_g>5000", "body_mass_g<4000"])
    with pytest.raises(InputError, match="together"):
        Engine().sample(run, 5, condition=["island=Dream", "island=Biscoe"])


def test_the_budget_error_names_the_condition_and_its_rate(run, fallback):
    with pytest.raises(InputError) as err:
        Engine().sample(run, 50, condition=["island=Biscoe", "body_mass_g>=6299"])
    message = str(err.value)
    assert message.startswith("--condition 'body_mass_g>=6299': met by ") and "% of " in message
    assert "budget of 5000 draws" in message and "\n" not in message
