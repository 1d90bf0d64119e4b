"""Tables through the CLI as a user meets them: palmerpenguins as shipped (strings, integers,
empty cells) in, `sample -o x.csv` out with the original header, dtypes and categories,
conditional sampling by label name, eval's table metrics, and the failures that must be loud."""
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from aigc_engine.cli import cli
from conftest import make_entry_point_plugin

PENGUINS = Path(pytest.importorskip("palmerpenguins").__file__).parent / "data" / "penguins.csv"


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def penguins_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("tables") / "gmm-penguins"
    result = invoke("run", "gmm", "--dataset", PENGUINS, "--set", "dataset.label_column=species", "--out", out,
                    "--no-progress")
    assert result.exit_code == 0, result.output
    return out


def test_a_sampled_csv_has_the_header_dtypes_and_categories(penguins_run, tmp_path):
    assert {"encoding.safetensors", "samples.png", "model.safetensors"} <= {p.name for p in penguins_run.iterdir()}
    out = tmp_path / "synth.csv"
    result = invoke("sample", penguins_run, "-n", 400, "-o", out)
    assert result.exit_code == 0, result.output
    real, synth = pd.read_csv(PENGUINS), pd.read_csv(out)
    assert list(synth.columns) == list(real.columns) and len(synth) == 400
    for column in ("species", "island", "sex"):
        assert set(synth[column].dropna()) <= set(real[column].dropna())
    assert set(synth["species"]) == set(real["species"])  # every class is drawn
    assert synth["year"].dtype == np.int64 and set(synth["year"]) <= {2007, 2008, 2009}
    assert pd.api.types.is_integer_dtype(synth["flipper_length_mm"].dropna())
    lo, hi = real["body_mass_g"].min(), real["body_mass_g"].max()
    assert synth["body_mass_g"].between(lo, hi).all()
    assert synth["sex"].isna().any() or real["sex"].isna().mean() < 0.05  # missing cells come back as missing


def test_conditional_sampling_by_label_name(penguins_run, tmp_path):
    out = tmp_path / "gentoo.csv"
    assert invoke("sample", penguins_run, "-n", 50, "--condition", "species=Gentoo", "-o", out).exit_code == 0
    synth = pd.read_csv(out)
    assert set(synth["species"]) == {"Gentoo"} and synth["island"].value_counts().idxmax() == "Biscoe"
    assert invoke("sample", penguins_run, "-n", 5, "--condition", "Adelie", "-o", out).exit_code == 0
    for condition, message in (("species=Emperor", "must be one of Adelie, Chinstrap, Gentoo"),
                               ("island=Mars", "'island' never had the value 'Mars'")):
        result = invoke("sample", penguins_run, "--condition", condition, "-o", out)
        assert result.exit_code == 2 and message in result.output
    result = invoke("sample", penguins_run, "-o", tmp_path / "x.npy")
    assert result.exit_code == 2 and "must end in .csv or .parquet" in result.output


def test_eval_reports_the_table_metrics(penguins_run, tmp_path):
    result = invoke("eval", penguins_run, "--no-progress")
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.output)
    assert 0.85 < metrics["column_shapes"] <= 1 and 0.75 < metrics["pair_trends"] <= 1
    other = tmp_path / "half.csv"
    pd.read_csv(PENGUINS).iloc[::2].to_csv(other, index=False)  # a table in the same columns
    result = invoke("eval", penguins_run, "--dataset", other, "--set", "dataset.label_column=species", "--no-progress")
    assert result.exit_code == 0, result.output
    found = json.loads(result.output)
    assert {"ml_efficacy", "dcr_ratio"} <= set(found)
    assert all(0 <= found[k] <= 1 for k in ("exact_copies", "mia_distance_auc", "mia_domias_auc"))


@pytest.mark.parametrize("content, message", [
    ("a,b\n1,2\n3\n", "line 3: 1 fields, the header has 2"),
    ("a,b\n", "has a header but no rows"),
    ("a,b\n1,\n2,\n", "column 'b' holds only missing values"),
    ("a,b\n1,2\n3,inf\n", "is not a finite number"),
])
def test_each_bad_table_is_one_line(tmp_path, content, message):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    result = invoke("run", "gmm", "--dataset", path, "--out", tmp_path / "r")
    assert result.exit_code == 2 and message in result.output and len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()


DIVERGING = '''
import dataclasses
import torch
from aigc_engine import hookimpl, Model


@dataclasses.dataclass
class DivergeConfig:
    steps: int = 40
    nan_at: int = 7


class Diverge(Model):
    """A loop whose loss becomes NaN at step ``nan_at``."""
    name = "diverge"
    Config = DivergeConfig

    def fit(self, dataset, run):
        self.w = torch.zeros(dataset.shape[1])
        loop = run.loop(self.config.steps, {"w": {"w": self.w}}, log_every=5)
        for step in loop:
            loop.log(loss=float("nan") if step >= self.config.nan_at else 1.0)

    def sample(self, n, condition=None):
        return torch.zeros(n, len(self.w))

    def state_dict(self):
        return {"w": self.w}

    def load_state_dict(self, state):
        self.w = state["w"]


@hookimpl
def aigc_engine_register_models(register):
    register(Diverge)
'''


def test_a_nan_loss_ends_the_run_naming_its_step(plugin_dir, tmp_path):
    make_entry_point_plugin(plugin_dir, "aigc-test-diverge", "diverge", "aigc_test_diverge", DIVERGING)
    result = invoke("run", "diverge", "--dataset", PENGUINS, "--out", tmp_path / "r")
    assert result.exit_code == 2
    assert "Error: training diverged at step 10: loss is nan" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "r" / "model.safetensors").exists()


OLD_TABLE_RUN = Path(__file__).parent / "fixtures" / "run-cvae-table-v0"


def test_a_table_run_saved_before_typed_blocks_samples_the_same_rows(tmp_path):
    """A cvae table run (continuous=modes, missing cells) written when models saved their blocks
    as [role, start, stop] rows: it samples exactly the rows it sampled then, and evaluates."""
    out = tmp_path / "s.csv"
    result = invoke("sample", OLD_TABLE_RUN, "-n", 30, "--seed", 3, "-o", out)
    assert result.exit_code == 0, result.output
    assert out.read_text() == (OLD_TABLE_RUN / "samples-n30-seed3.csv").read_text()
    run = tmp_path / "run"  # the run's training file, where it was fitted, is the copy's rows.csv
    shutil.copytree(OLD_TABLE_RUN, run)
    config = json.loads((run / "config.json").read_text())
    config["dataset"]["name"] = str(run / "rows.csv")
    (run / "config.json").write_text(json.dumps(config))
    result = invoke("eval", run, "--dataset", run / "rows.csv", "--no-progress")
    assert result.exit_code == 0, result.output


def test_old_block_rows_name_their_columns():
    from aigc_engine import checkpoint
    from aigc_engine.tables import BlockRole, layout_from_json

    rows = checkpoint.load(OLD_TABLE_RUN / "model.safetensors")["blocks"]
    assert all(len(r) == 3 for r in rows)  # written before the column was saved
    blocks = layout_from_json(rows)
    missing = [b for b in blocks if b.role is BlockRole.MISSING]
    assert missing and all(any(v.column == m.column and v.role is BlockRole.VALUE for v in blocks) for m in missing)
    mode = blocks[[b.start for b in blocks].index(missing[0].start) - 1]
    assert mode.role is BlockRole.ONE_HOT and mode.column == missing[0].column  # the mode block of a modes column
