"""Conditions on any column of a table run (``--condition``, ``Engine.sample(condition=...)``):
every kind honoured on every returned row, the one-line errors, the rejection fallback's budget,
and the gmm's exact conditioning (its closed form against a 2-D Gaussian; a category as the
region its slot wins, on a mixture where that region's mass and the density at the one-hot
vector disagree)."""
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


def test_a_slow_model_stops_at_the_time_limit_not_after_one_long_batch(run, fallback, monkeypatch):
    import time

    from aigc_engine import sampling
    from aigc_gmm.model import GMMModel

    slow = GMMModel.sample

    def sample(self, n, condition=None):
        time.sleep(2e-5 * n)  # 20 s per million rows
        return slow(self, n, condition)

    monkeypatch.setattr(GMMModel, "sample", sample)
    model, saved = Engine().load_model(run)
    from aigc_engine.engine import load_encoding
    from aigc_engine.conditions import parse_conditions

    encoding = load_encoding(run)
    with pytest.raises(InputError, match=r"the time limit \(0.5 s\) ran out") as err:
        sampling.draw_where(model, 5000, encoding, parse_conditions(["body_mass_g>=6299"], encoding.schema),
                            quiet=True, seconds=0.5)
    drawn = int(str(err.value).split(" of ")[1].split(" draws")[0])
    assert drawn < 100_000  # the budget in draws (500,000) is far; the batches were sized to the time left


def test_the_gmm_conditions_exactly_and_fast(run):
    """A condition 1% of the rows meet (body_mass_g >= 6000: 4 of 344): 1,000 rows from the
    mixture's closed-form conditional, no rejection, far under 2 s."""
    import time

    from aigc_engine.engine import load_encoding
    from aigc_engine.sampling import sample

    model, _ = Engine().load_model(run)
    encoding = load_encoding(run)
    start = time.perf_counter()
    rows = sample(model, 1000, ["body_mass_g>=6000"], encoding)
    assert time.perf_counter() - start < 2.0
    assert rows.attrs["conditions"] == {"exact": True, "draws": 1208, "accepted": 1208} and (rows["body_mass_g"] >= 6000).all()
    assert (rows["species"] == "Gentoo").mean() > 0.9  # the classes weighted by how likely the condition is
    rows = Engine().sample(run, 300, condition="flipper_length_mm=200")  # an integer's one value: 1% of draws
    assert (rows["flipper_length_mm"] == 200).all() and rows.attrs["conditions"]["exact"]
    start = time.perf_counter()  # a rare category (11 of 344 rows) and a range: the region's mass by Monte Carlo
    rows = sample(model, 1000, ["sex=NA", "body_mass_g>=4500"], encoding)
    assert time.perf_counter() - start < 2.0 and rows.attrs["conditions"]["accepted"] == 1208
    assert rows["sex"].isna().all() and (rows["body_mass_g"] >= 4500).all()


def _state(weights, means, covariances):
    import torch

    return {"weights": torch.tensor(weights, dtype=torch.float64), "means": torch.tensor(means, dtype=torch.float64),
            "covariances": torch.tensor(covariances, dtype=torch.float64), "covariance_type": "full"}


def test_the_gmm_conditional_matches_the_closed_form_of_a_2d_gaussian():
    import torch
    from scipy.stats import norm

    from aigc_engine.conditions import Encoded
    from aigc_gmm._conditional import draw_conditioned

    torch.manual_seed(0)
    state = _state([1.0], [[1.0, -2.0]], [[[1.0, 0.8], [0.8, 1.0]]])
    x, labels = draw_conditioned([state], 20000, Encoded(ranges={0: (2.0, 2.0)}))
    assert labels is None and (x[:, 0] == 2.0).all()
    assert abs(float(x[:, 1].mean()) - (-2.0 + 0.8 * 1.0)) < 0.02  # mu_2 + s12 / s11 (x1 - mu_1)
    assert abs(float(x[:, 1].var()) - (1.0 - 0.64)) < 0.02
    x, _ = draw_conditioned([state], 20000, Encoded(ranges={0: (2.0, np.inf)}))
    tail = norm.pdf(1.0) / norm.sf(1.0)  # E[x1 - mu_1 | x1 >= 2] of a unit normal truncated at 1
    assert (x[:, 0] >= 2.0).all() and abs(float(x[:, 0].mean()) - (1.0 + tail)) < 0.02
    assert abs(float(x[:, 1].mean()) - (-2.0 + 0.8 * tail)) < 0.03
    # two components: the range reweights them by the mass each gives it
    two = _state([0.5, 0.5], [[0.0, 0.0], [3.0, 5.0]], [np.eye(2).tolist()] * 2)
    x, _ = draw_conditioned([two], 20000, Encoded(ranges={0: (2.0, np.inf)}))
    share = 0.5 * norm.sf(-1.0) / (0.5 * norm.sf(-1.0) + 0.5 * norm.sf(2.0))
    assert abs(float((x[:, 1] > 2.5).float().mean()) - share) < 0.02


def _one_hot_component(x_mean, c0_mean, c0_sd, beta=0.0):
    """Mean and covariance of ``[x, c0, c1]``: a two-slot one-hot block ``c1 = 1 - c0`` (plus a
    little noise) and ``x = x_mean + beta z + e`` where ``c0 = c0_mean + c0_sd z``."""
    a = np.array([[beta, 0.0, 1.0], [c0_sd, 0.0, 0.0], [-c0_sd, 0.01, 0.0]])
    return [x_mean, c0_mean, 1.0 - c0_mean], (a @ a.T).tolist()


def _slot0_mass(c0_mean, c0_sd):
    """P(c0 > c1) of :func:`_one_hot_component`'s block: c0 - c1 = 2 c0_mean - 1 + 2 c0_sd z - 0.01 e."""
    from scipy.stats import norm

    return norm.cdf((2 * c0_mean - 1) / np.hypot(2 * c0_sd, 0.01))


def test_a_category_weights_each_component_by_the_mass_that_decodes_to_it():
    """A category is decoded by the argmax of its block: each component is weighted by the
    probability its slot wins, not by its density at the exact one-hot vector. Component A
    spreads around (0.55, 0.45) (slot 0 wins 60% of its draws; its density at (1, 0) is tiny),
    component B sits at (1, 0) (slot 0 always wins; a huge density there): the rows of slot 0
    are 37% A's (the corner's density would give A none)."""
    import torch
    from scipy.stats import norm

    from aigc_engine.conditions import Encoded
    from aigc_gmm._conditional import draw_conditioned

    (ma, ca), (mb, cb) = _one_hot_component(-3.0, 0.55, 0.2), _one_hot_component(3.0, 1.0, 0.01)
    two = _state([0.5, 0.5], [ma, mb], [ca, cb])
    pa = _slot0_mass(0.55, 0.2)
    torch.manual_seed(0)
    x, _ = draw_conditioned([two], 20000, Encoded(slots=[(1, 3, [0])]))
    assert (x[:, 1:].argmax(1) == 0).all()  # every row decodes to the category
    assert abs(float((x[:, 0] < 0).float().mean()) - pa / (pa + 1)) < 0.02
    # with a range: the mass of both (x independent of the block here)
    x, _ = draw_conditioned([two], 20000, Encoded(slots=[(1, 3, [0])], ranges={0: (-3.0, np.inf)}))
    share = 0.5 * pa / (0.5 * pa + norm.cdf(6.0))
    assert (x[:, 0] >= -3).all() and (x[:, 1:].argmax(1) == 0).all()
    assert abs(float((x[:, 0] < 0).float().mean()) - share) < 0.02
    # a set: the mass of its slots together (here all of them: the weights as fitted)
    x, _ = draw_conditioned([two], 20000, Encoded(slots=[(1, 3, [0, 1])]))
    assert abs(float((x[:, 0] < 0).float().mean()) - 0.5) < 0.02
    # a mixture per class: each class weighted by the probability its mixture gives the category
    one = _state([1.0], [ma], [ca])
    low = _state([1.0], *map(list, zip(_one_hot_component(0.0, 0.4, 0.2))))
    x, labels = draw_conditioned([one, low], 20000, Encoded(slots=[(1, 3, [0])]), torch.tensor([0.5, 0.5]))
    pl = _slot0_mass(0.4, 0.2)
    assert abs(float((labels == 0).float().mean()) - pa / (pa + pl)) < 0.02


def test_a_category_conditions_the_other_columns_on_its_region():
    """x rises with c0: given slot 0 wins (c0 > c1), x's mean is that of the truncated region,
    E[x | c0 - c1 > 0], not x given the corner c0 = 1 (which would be 4.5)."""
    import torch
    from scipy.stats import norm

    from aigc_engine.conditions import Encoded
    from aigc_gmm._conditional import draw_conditioned

    mean, cov = _one_hot_component(0.0, 0.55, 0.2, beta=2.0)
    torch.manual_seed(0)
    x, _ = draw_conditioned([_state([1.0], [mean], [cov])], 20000, Encoded(slots=[(1, 3, [0])]))
    sd = np.hypot(0.4, 0.01)  # of c0 - c1 = 0.1 + 0.4 z - 0.01 e
    expected = 2.0 * (0.4 / sd) * norm.pdf(0.1 / sd) / norm.cdf(0.1 / sd)  # beta E[z | c0 - c1 > 0]
    assert (x[:, 1:].argmax(1) == 0).all() and abs(float(x[:, 0].mean()) - expected) < 0.04


def test_a_category_no_component_reaches_is_observed_at_its_one_hot_vector():
    """Where no component's draws decode to the category, its block is observed at the exact
    one-hot vector (a row still meets the condition)."""
    import torch

    from aigc_engine.conditions import Encoded
    from aigc_gmm._conditional import draw_conditioned

    mean, cov = _one_hot_component(0.0, 1.0, 0.01)  # slot 1 wins with probability ~1e-300
    torch.manual_seed(0)
    x, _ = draw_conditioned([_state([1.0], [mean], [cov])], 500, Encoded(slots=[(1, 3, [1])]))
    assert (x[:, 1] == 0).all() and (x[:, 2] == 1).all()


def test_two_ranges_and_a_category_together(run):
    rows = Engine().sample(run, 400, condition=["bill_length_mm>45", "bill_depth_mm<16", "sex=female"])
    assert rows.attrs["conditions"]["exact"] and (rows["bill_length_mm"] > 45).all()
    assert (rows["bill_depth_mm"] < 16).all() and (rows["sex"] == "female").all()


@pytest.fixture(scope="module")
def ordered(tmp_path_factory) -> Path:
    """b is never below a (a close call: a model of the two breaks it now and then)."""
    rng = np.random.default_rng(0)
    a = rng.normal(size=300)
    frame = pd.DataFrame({"a": a.round(3), "b": (a + np.abs(rng.normal(scale=0.2, size=300))).round(3),
                          "c": rng.choice(["u", "v"], 300)})
    path = tmp_path_factory.mktemp("ordered") / "ordered.csv"
    frame.to_csv(path, index=False)
    return path


def test_rules_are_checked_at_fit_saved_and_kept(ordered, tmp_path):
    import json

    out = tmp_path / "run"
    result = invoke("run", "gmm", "--dataset", ordered, "--set", "n_components=2", "--set", "max_iter=20",
                    "--set", "dataset.constraints=a <= b; -10 < a", "--out", out, "--no-progress")
    assert result.exit_code == 0, result.output
    assert json.loads((out / "config.json").read_text())["dataset"]["options"]["constraints"] == "a <= b; -10 < a"
    raw = Engine().sample(out, 2000, condition=[])  # the rules alone
    assert (raw["a"] <= raw["b"]).all() and raw.attrs["conditions"]["draws"] > 2000  # some draws broke it
    rows = Engine().sample(out, 300, condition=["c=u", "a>0.5"])
    assert (rows["a"] <= rows["b"]).all() and (rows["c"] == "u").all() and (rows["a"] > 0.5).all()
    for condition, rule in ((["a>1", "b<0.5"], "'a <= b'"), (["a>=1.5", "b<=1"], "'a <= b'")):
        result = invoke("sample", out, "-n", 5, *[x for c in condition for x in ("--condition", c)],
                        "-o", tmp_path / "s.csv")
        assert result.exit_code == 2 and f"contradicts the rule {rule}: no row can meet both" in result.output
    validity = Engine().evaluate(out)["rule_validity"]  # of the model's own draws, before rejection
    assert 0.5 < validity < 1.0


@pytest.mark.parametrize("rules, message", [
    ("b <= a", "'b <= a' is broken by "),
    ("a <= c", "column 'c' is not numeric"),
    ("a <= z", "'z' is neither a number nor a column"),
    ("a <=", "is not a rule"),
    ("1 < 2", "compares two numbers"),
])
def test_rule_errors_are_one_line(ordered, tmp_path, rules, message):
    result = invoke("run", "gmm", "--dataset", ordered, "--set", f"dataset.constraints={rules}", "--out",
                    tmp_path / "run", "--no-progress")
    assert result.exit_code == 2 and message in result.output and len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()


def test_eval_reports_conditional_fidelity(penguins, tmp_path):
    out = tmp_path / "run"
    Engine().train(RunSpec("gmm", {"n_components": 3, "max_iter": 30}, str(penguins),
                           {"label_column": "species", "holdout": 0.3}, out=out, progress=False))
    result = invoke("eval", out, "--set", "dataset.part=holdout", "--condition", "island=Biscoe", "--no-progress")
    assert result.exit_code == 0, result.output
    import json

    found = json.loads(result.output)
    assert found["condition_rejected"] == 0.0 and found["condition_real_rows"] >= 30  # exact: nothing dropped
    assert 0.5 < found["conditional_column_shapes"] <= 1 and 0.5 < found["conditional_column_shapes_real"] <= 1
    result = invoke("eval", out, "--condition", "body_mass_g>=6200", "--no-progress")
    assert result.exit_code == 2 and "real rows of" in result.output and "needs 5 or more" in result.output


@pytest.mark.parametrize("config", [{"covariance_type": "diag"}, {"covariance_type": "tied"}, {"missing": "marginalize"}])
def test_other_gmm_settings_keep_every_condition(penguins, tmp_path, config):
    out = Engine().train(RunSpec("gmm", {"n_components": 2, "max_iter": 20, **config}, str(penguins),
                                 {"label_column": "species"}, out=tmp_path / "run", progress=False))
    rows = Engine().sample(out, 200, condition=["island=Dream", "bill_length_mm>45"])
    assert (rows["island"] == "Dream").all() and (rows["bill_length_mm"] > 45).all()
    assert rows.attrs["conditions"]["exact"] == (config.get("missing") != "marginalize")


def test_conditions_on_columns_need_a_table(tmp_path):
    out = Engine().train(RunSpec("gmm", {"n_components": 2, "max_iter": 5}, "ring8", {"n": 100}, out=tmp_path / "r",
                                 progress=False))
    result = invoke("sample", out, "--condition", "x>0", "--condition", "y>0")
    assert result.exit_code == 2 and "are for a run on a table" in result.output


def test_the_synthesizer_samples_through_the_same_conditions():
    from aigc_engine import Synthesizer

    frame = palmerpenguins.load_penguins()
    syn = Synthesizer("gmm", max_iter=20).fit(frame, label="species", constraints="bill_depth_mm <= bill_length_mm")
    rows = syn.sample(200, {"island": "Biscoe", "sex": "female"})
    assert (rows["island"] == "Biscoe").all() and (rows["sex"] == "female").all()
    rows = syn.sample(200, ["body_mass_g>=6000"])
    assert (rows["body_mass_g"] >= 6000).all() and (rows["bill_depth_mm"] <= rows["bill_length_mm"]).all()
    with pytest.raises(InputError, match="'bill_depth_mm >= bill_length_mm' is broken by 342 of the 344 rows"):
        Synthesizer("gmm").fit(frame, constraints="bill_depth_mm >= bill_length_mm")


def test_diffusion_inpaints_categories_and_point_values(penguins, tmp_path):
    out = Engine().train(RunSpec("diffusion", {"steps": 60, "sample_steps": 8}, str(penguins), {},
                                 out=tmp_path / "run", progress=False))
    rows = Engine().sample(out, 300, condition=["island=Dream", "sex=NA", "flipper_length_mm=200",
                                                "year in 2007,2009"])
    assert (rows["island"] == "Dream").all() and rows["sex"].isna().all() and (rows["flipper_length_mm"] == 200).all()
    assert rows["year"].isin([2007, 2009]).all()
    assert rows.attrs["conditions"]["exact"] and rows.attrs["conditions"]["draws"] == rows.attrs["conditions"]["accepted"]
    rows = Engine().sample(out, 50, condition=["island=Dream", "body_mass_g>=4000"])  # a range: rejection on top
    assert (rows["island"] == "Dream").all() and (rows["body_mass_g"] >= 4000).all()
