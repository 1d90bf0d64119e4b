"""The engine's privacy contract: ``--set privacy.epsilon`` / ``Synthesizer(privacy=...)`` for
any run, the budget split between a private table encoding and the fit (``run.privacy``), the
spend checked against dp-accounting's own composition, rare categories never released, and a
model without ``supports_privacy`` refused before any run directory exists."""
import json

import numpy as np
import pandas as pd
import pytest

dpa = pytest.importorskip("dp_accounting")

from aigc_engine import InputError  # noqa: E402
from aigc_engine.cli import cli  # noqa: E402
from aigc_engine.privacy import PrivacyPlan, PrivacyRequest, privacy_request  # noqa: E402
from aigc_engine.tables.private import private_encoding  # noqa: E402


def main(args) -> int:
    from click.testing import CliRunner

    result = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    main.stderr = result.stderr
    return result.exit_code


def table(n: int = 600, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    species = rng.choice(["Adelie", "Gentoo"], size=n)
    frame = pd.DataFrame({
        "species": species,
        "island": rng.choice(["Biscoe", "Dream"], size=n),
        "mass": rng.normal(4000, 300, size=n).round(0) + 800 * (species == "Gentoo"),
        "bill": rng.normal(40, 3, size=n).round(1),
        "when": pd.to_datetime(rng.integers(16000, 17000, size=n), unit="D").strftime("%Y-%m-%d"),
    })
    frame.loc[:1, "island"] = "Torgersen"  # a category two rows hold
    frame.loc[2:3, "species"] = "Chinstrap"  # a class two rows hold
    return frame


def read(frame, plan, **options):
    from aigc_engine.data.tablefile import read_table

    with private_encoding(plan):
        return read_table(frame, **options)


def test_a_category_held_by_two_rows_is_never_released():
    frame = table()
    for _ in range(10):
        ds = read(frame, PrivacyPlan(PrivacyRequest(1.0)), label_column="species")
        island = next(s for s in ds.encoding.schema.features if s.name == "island")
        assert "Torgersen" not in island.categories
        assert "Torgersen" not in ds.encoding.decode(ds.x, ds.y)["island"].tolist()
        # nor a class: the dataset's classes are the released ones, each with its rows
        assert ds.class_names == ["Adelie", "Gentoo"] == ds.encoding.schema.class_names
        assert ds.y.bincount(minlength=2).min() > 0
    public = read(frame, PrivacyPlan(PrivacyRequest(1.0)), label_column="species", public="island")
    assert "Torgersen" in next(s for s in public.encoding.schema.features if s.name == "island").categories


def test_private_ranges_and_quantiles_are_noisy_and_public_ones_are_not():
    frame = table()
    plain = read(frame, None, label_column="species")
    private = read(frame, PrivacyPlan(PrivacyRequest(1.0)), label_column="species")
    spec = {s.name: s for s in private.encoding.schema.features}
    exact = {s.name: s for s in plain.encoding.schema.features}
    assert (spec["mass"].low, spec["mass"].high) != (exact["mass"].low, exact["mass"].high)
    assert private.encoding.params["mass"] != plain.encoding.params["mass"]
    public = read(frame, PrivacyPlan(PrivacyRequest(1.0)), label_column="species", public="mass,bill")
    assert public.encoding.params["mass"] == plain.encoding.params["mass"]
    assert private.encoding.private["epsilon"] <= 0.5 * 1.0 + 1e-9


@pytest.mark.slow  # a CLI run: about 3 s warm, 8 s as the first test of a process
def test_the_spend_of_encoding_and_fit_is_within_the_budget_by_dp_accountings_composition(tmp_path):
    """The encoding's histograms and the fit's DP-EM iterations, composed in a fresh dp-accounting
    PLD accountant (one event each, the thresholded releases' deltas taken off first), spend at
    most the run's epsilon at its delta; the basic-composition figure in summary.json too."""
    csv = tmp_path / "t.csv"
    table().to_csv(csv, index=False)
    out = tmp_path / "run"
    assert main(["run", "gmm", "--dataset", str(csv), "--set", "dataset.label_column=species", "--set",
                 "privacy.epsilon=1", "--set", "n_components=2", "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    privacy = json.loads((out / "config.json").read_text())["privacy"]
    assert summary["privacy_epsilon"] <= 1.0 + 1e-9 and summary["privacy_delta"] <= privacy["delta"] * (1 + 1e-12)
    enc = privacy["encoding_spent"]
    accountant = dpa.pld.PLDAccountant()
    # every histogram at the encoding's multiplier but the label's, at half of it (counted as four)
    assert enc["label_noise_multiplier"] == pytest.approx(enc["noise_multiplier"] / 2)
    assert enc["label_release_threshold"] < enc["release_threshold"]
    accountant.compose(dpa.GaussianDpEvent(enc["noise_multiplier"]), enc["histograms"] - 4)
    accountant.compose(dpa.GaussianDpEvent(enc["label_noise_multiplier"]))
    accountant.compose(dpa.GaussianDpEvent(summary["privacy_fit_noise_multiplier"]),
                       summary["privacy_fit_iterations"] + 1)  # + the class rates
    threshold_delta = sum(e["delta"] for e in enc["events"] if e["mechanism"] == "threshold")
    assert accountant.get_epsilon(privacy["delta"] - threshold_delta) <= 1.0
    assert summary["privacy_encoding_epsilon"] + summary["privacy_fit_epsilon"] == pytest.approx(
        summary["privacy_epsilon"])


def test_a_private_run_on_penguins_writes_its_figures(tmp_path):
    palmerpenguins = pytest.importorskip("palmerpenguins")
    csv = tmp_path / "penguins.csv"
    palmerpenguins.load_penguins().to_csv(csv, index=False)
    out = tmp_path / "run"
    assert main(["run", "gmm", "--dataset", str(csv), "--set", "dataset.label_column=species", "--set",
                 "dataset.public=species", "--set", "privacy.epsilon=1", "--set", "n_components=2",
                 "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    for key in ("privacy_epsilon", "privacy_delta", "privacy_accountant", "privacy_encoding_epsilon",
                "privacy_fit_epsilon"):
        assert key in summary
    assert 0 < summary["privacy_epsilon"] <= 1.0
    assert summary["privacy_delta"] < 1 / 344
    config = json.loads((out / "config.json").read_text())
    assert config["privacy"]["epsilon"] == 1.0 and config["privacy"]["spent"]["privacy_epsilon"] <= 1.0
    assert "dp_accounting" in summary["privacy_accountant"]


def test_a_model_without_privacy_support_exits_2_before_any_run_directory(tmp_path):
    out = tmp_path / "run"
    assert main(["run", "bgmm", "--dataset", "blobs", "--set", "privacy.epsilon=1", "--out", str(out)]) == 2
    err = main.stderr.strip().splitlines()
    assert len(err) == 1 and "cannot fit under a privacy budget" in err[0] and "gmm" in err[0]
    assert not out.exists()
    with pytest.raises(InputError, match="cannot fit under a privacy budget"):
        import aigc_engine

        aigc_engine.Synthesizer("bgmm", privacy={"epsilon": 1})


def test_run_privacy_is_the_fits_share_and_none_when_not_private(tmp_path):
    """``run.privacy`` is a PrivacyBudget, delta resolved, less what the encoding spent; on points
    the fit gets the whole budget; None without one (and with epsilon = inf)."""
    from aigc_engine import Engine
    from aigc_engine.engine import RunSpec

    engine = Engine()
    ready = engine.prepare(RunSpec("gmm", {"n_components": 2}, "blobs", privacy={"epsilon": 2, "delta": 1e-6}))
    assert ready.privacy.epsilon == pytest.approx(2.0) and ready.privacy.delta == pytest.approx(1e-6)
    assert engine.prepare(RunSpec("gmm", {}, "blobs")).privacy is None
    assert engine.prepare(RunSpec("gmm", {}, "blobs", privacy={"epsilon": "inf"})).privacy is None
    csv = tmp_path / "t.csv"
    table().to_csv(csv, index=False)
    ready = engine.prepare(RunSpec("gmm", {}, str(csv), {"label_column": "species"}, privacy={"epsilon": 1}))
    spent = ready.plan.encoding
    assert ready.privacy.epsilon == pytest.approx(1 - spent["epsilon"]) and 0 < spent["epsilon"] <= 0.5
    assert ready.privacy.delta == pytest.approx(ready.plan.total.delta - spent["delta"])


def test_privacy_options_are_checked():
    assert privacy_request({"epsilon": "1", "delta": "1e-6", "accountant": "rdp"}).accountant == "rdp"
    with pytest.raises(InputError, match="unknown privacy option 'eps'"):
        privacy_request({"eps": 1})
    with pytest.raises(InputError, match="need privacy.epsilon"):
        privacy_request({"delta": 1e-6})
    with pytest.raises(InputError, match="encoding_share"):
        privacy_request({"epsilon": 1, "encoding_share": 1.5})


def test_a_private_model_gets_run_privacy_and_its_report_is_composed(tmp_path):
    """The contract a model codes against: ``supports_privacy = True``; ``run.privacy`` in ``fit``
    is the fit's share (a PrivacyBudget); what ``evaluate`` reports as ``privacy_*`` is the fit's
    part of summary.json's figures."""
    import dataclasses

    import torch

    from aigc_engine import Engine, Model, hookimpl
    from aigc_engine.plugins import PluginManager
    from aigc_engine.privacy import PrivacyBudget

    seen = {}

    @dataclasses.dataclass
    class ToyConfig:
        scale: float = 1.0

    class Private(Model):
        name, Config, supports_privacy = "private_toy", ToyConfig, True

        def fit(self, dataset, run):
            seen["budget"] = run.privacy
            self.d = dataset.x.shape[1]

        def sample(self, n, condition=None):
            return torch.zeros(n, self.d)

        def state_dict(self):
            return {"d": torch.tensor(self.d)}

        def load_state_dict(self, state):
            self.d = int(state["d"])

        def evaluate(self, dataset, run):
            return {"privacy_epsilon": run.privacy.epsilon / 2, "privacy_delta": run.privacy.delta,
                    "privacy_accountant": "toy", "privacy_steps": 3}

    class Plugin:
        @hookimpl
        def aigc_engine_register_models(self, register):
            register(Private)

    pm = PluginManager()
    pm.register(Plugin(), "toy")
    out = tmp_path / "run"
    from aigc_engine.engine import RunSpec

    Engine(pm).train(RunSpec("private_toy", {}, "blobs", privacy={"epsilon": 2, "delta": 1e-7}, out=out,
                             progress=False))
    assert isinstance(seen["budget"], PrivacyBudget)
    assert (seen["budget"].epsilon, seen["budget"].delta) == (pytest.approx(2.0), pytest.approx(1e-7))
    summary = json.loads((out / "summary.json").read_text())
    assert summary["privacy_epsilon"] == pytest.approx(1.0) and summary["privacy_fit_steps"] == 3
    assert "toy" in summary["privacy_accountant"]


def test_text_many_level_and_key_columns_fit_privately():
    rng = np.random.default_rng(1)
    n = 3000
    frame = pd.DataFrame({
        "id": np.arange(1, n + 1),
        "city": rng.choice([f"city{i}" for i in range(150)], size=n),
        "note": [" ".join(rng.choice(["alpha", "beta", "gamma", "delta"], size=rng.integers(2, 9)))
                 for _ in range(n)],
        "x": rng.normal(size=n),
    })
    frame.loc[0, "city"] = "Nowhere"  # one row's level
    with pytest.warns(UserWarning, match="text"):
        ds = read(frame, PrivacyPlan(PrivacyRequest(3.0)), kinds="note:text,city:many_level,id:key")
    spec = {s.name: s for s in ds.encoding.schema.features}
    assert "Nowhere" not in spec["city"].categories + spec["city"].details["pooled"]
    assert spec["id"].details == {"pattern": "integer", "next": 1, "first": 1}
    assert "words" not in spec["note"].details
    rows = ds.encoding.decode(ds.x, None)
    assert rows["id"].tolist() == list(range(1, n + 1)) and "Nowhere" not in set(rows["city"])


def test_rows_a_private_encoding_did_not_see_missing_are_filled_when_reencoded():
    """Two missing cells of an integer column do not pass the release threshold: the private
    encoding has no missing block there, and rows read elsewhere (eval's held-out rows, decoded
    as whole numbers) are filled with its private median, a whole number."""
    frame = table()
    frame["mass"] = frame["mass"].astype("Int64")
    frame.loc[4:5, "mass"] = pd.NA
    private = read(frame, PrivacyPlan(PrivacyRequest(1.0)), label_column="species")
    mass = next(s for s in private.encoding.schema.features if s.name == "mass")
    assert not mass.has_missing and mass.details["fill"] == round(mass.details["fill"])
    again = read(frame, None, label_column="species").reencoded(private.encoding)
    assert private.encoding.decode(again.x, again.y)["mass"].notna().all()


@pytest.mark.slow  # four fits and their evaluation: about 15 s
def test_compare_fits_every_model_under_the_budget(tmp_path):
    """``compare --set privacy.epsilon=E``: the models that can fit privately do, each run's whole
    spend in its row, measured in its own (private) encoding's columns; one that cannot is
    skipped with its reason, or refused when named, before any directory."""
    from aigc_engine.compare import compare

    csv = tmp_path / "t.csv"
    table().to_csv(csv, index=False)
    sets = {"dataset.label_column": "species", "privacy.epsilon": 1}
    with pytest.raises(InputError, match="'bgmm' cannot fit under a privacy budget"):
        compare(["gmm", "bgmm"], str(csv), sets, out=tmp_path / "refused", progress=False)
    assert not (tmp_path / "refused").exists()
    result = compare(["gmm"], str(csv), sets, out=tmp_path / "cmp", progress=False)
    metrics = result.rows[0]["metrics"]
    assert result.rows[0]["status"] == "ok", result.rows[0]["reason"]
    assert 0.9 <= metrics["privacy_epsilon"]["mean"] <= 1.0 + 1e-9
    assert 0 <= metrics["column_shapes"]["mean"] <= 1 and "mia_distance_auc" in metrics
