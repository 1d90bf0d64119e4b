"""Declared rules beyond two-column inequalities: a linear equality kept by construction (the
determined column computed at decode), fixed combinations of categories (the training rows'),
inequalities between datetime columns; each checked at fit, kept with conditions, and its
errors one line."""
import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from aigc_engine import Synthesizer
from aigc_engine.cli import cli
from aigc_engine.engine import Engine, load_encoding
from aigc_engine.errors import InputError

RULES = "total = a + 2*b + 1; start < end; combination(c, d)"


def _frame(n: int = 300, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    a, b = rng.integers(0, 50, n), rng.normal(10, 3, n).round(2)
    start = pd.Timestamp("2020-01-01") + pd.to_timedelta(rng.integers(0, 300, n), unit="D")
    end = start + pd.to_timedelta(rng.integers(1, 60, n), unit="D")
    c = rng.choice(["x", "y", "z"], n)
    d = np.where(c == "x", rng.choice(["p", "q"], n), "r")
    return pd.DataFrame({"a": a, "b": b, "total": (a + 2 * b + 1).round(2), "start": start.strftime("%Y-%m-%d"),
                         "end": end.strftime("%Y-%m-%d"), "c": c, "d": d})


@pytest.fixture(scope="module")
def fitted():
    return Synthesizer("gmm", max_iter=20, seed=0).fit(_frame(), constraints=RULES)


def _keeps_every_rule(rows: pd.DataFrame) -> None:
    assert np.allclose(rows["total"], rows["a"] + 2 * rows["b"] + 1, atol=0.006)
    assert (pd.to_datetime(rows["start"]) < pd.to_datetime(rows["end"])).all()
    seen = set(zip(_frame()["c"], _frame()["d"]))
    assert set(zip(rows["c"], rows["d"])) <= seen


def test_every_row_keeps_every_rule(fitted):
    rows = fitted.sample(1000)
    _keeps_every_rule(rows)
    assert list(rows.columns) == list(_frame().columns)


def test_rules_and_conditions_together(fitted):
    rows = fitted.sample(300, ["c=x", "a>=40"])
    _keeps_every_rule(rows)
    assert (rows["c"] == "x").all() and (rows["a"] >= 40).all() and set(rows["d"]) <= {"p", "q"}
    rows = fitted.sample(200, ["total>=60"])  # a condition on the determined column: by rejection
    _keeps_every_rule(rows)
    assert (rows["total"] >= 60).all()


def test_the_equality_leaves_its_column_out_of_the_model(tmp_path):
    frame = _frame()
    frame.to_csv(tmp_path / "t.csv", index=False)
    out = tmp_path / "run"
    result = CliRunner().invoke(cli, ["run", "gmm", "--dataset", str(tmp_path / "t.csv"), "--set", "max_iter=10",
                                      "--set", f"dataset.constraints={RULES}", "--out", str(out), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert json.loads((out / "config.json").read_text())["dataset"]["options"]["constraints"] == RULES
    encoding = load_encoding(out)
    assert "total" not in [s.name for s in encoding.schema.features]  # computed at decode, not modelled
    assert encoding.schema.derived_spec("total").kind == "continuous"
    rows = Engine().sample(out, 500)
    _keeps_every_rule(rows)


@pytest.mark.parametrize("rules, message", [
    ("total = a + b", "'total = a + b' is broken by "),
    ("end < start", "'end < start' is broken by 300 of the 300 rows"),
    ("combination(c, a)", "'a' is integer (a combination takes categorical columns)"),
    ("combination(c)", "a combination names two or more different columns"),
    ("total = a + 2*q", "'q' is neither a number nor a column"),
    ("a = 3", "fixes 'a' to a number"),
    ("start < a", "compares a datetime column with a numeric one"),
    ("total = a + b + 1; a = b", "is determined by another equality"),
    ("c = a + b", "one side of an equality is one numeric column"),
])
def test_rule_errors_are_one_line(rules, message):
    with pytest.raises(InputError) as err:
        Synthesizer("gmm", max_iter=5).fit(_frame(), constraints=rules)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_a_condition_contradicting_a_rule_is_refused(fitted):
    with pytest.raises(InputError, match="contradicts the rule 'combination\\(c, d\\)'"):
        fitted.sample(10, ["c=y", "d=p"])
    with pytest.raises(InputError, match="contradicts the rule 'total = a \\+ 2\\*b \\+ 1'"):
        fitted.sample(10, ["a<=1", "b<=3", "total>=60"])


def test_a_datetime_rule_takes_a_date():
    rows = Synthesizer("gmm", max_iter=10).fit(_frame(), constraints="start >= 2020-01-01").sample(300)
    assert (pd.to_datetime(rows["start"]) >= pd.Timestamp("2020-01-01")).all()


def test_rules_take_coded_numbers_and_rounded_sums():
    rng = np.random.default_rng(1)
    age = rng.choice([17.5, 22.0, 27.0, 32.0, 37.0, 42.0], 300)  # a categorical column of numbers
    years = np.minimum(rng.choice([0.5, 2.5, 6.0, 9.0, 13.0], 300), age)
    parts = rng.uniform(0, 100, (300, 2)).round(2)
    total = (parts[:, 0] + parts[:, 1] + rng.uniform(-0.009, 0.009, 300)).round(2)  # each value rounded apart
    frame = pd.DataFrame({"age": age, "years": years, "p": parts[:, 0], "q": parts[:, 1], "total": total})
    rows = Synthesizer("gmm", max_iter=10).fit(frame, constraints="years <= age; total = p + q").sample(500)
    assert (rows["years"] <= rows["age"]).all() and np.allclose(rows["total"], rows["p"] + rows["q"], atol=0.011)
    with pytest.raises(InputError, match="'total = p' is broken by"):
        Synthesizer("gmm", max_iter=5).fit(frame, constraints="total = p")
