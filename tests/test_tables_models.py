"""The GAN and the CVAE on tables read with ``read_table``: per-block outputs (exact one-hots, 0/1
missing indicators), decoding, conditional sampling by class id, finite training with the
default config, small-table defaults, and no within-class collapse."""
import math

import numpy as np
import pandas as pd
import pytest
import torch

from aigc_engine import InputError, Run
from aigc_engine.config import data_kind, resolve_defaults
from aigc_engine.data.tablefile import read_table
from aigc_engine.tables import BlockRole
from aigc_cvae import CVAE, CVAEConfig
from aigc_gan import GAN, GANConfig

TINY = {"gan": dict(steps=150, width=64), "cvae": dict(steps=150, width=64, kl_warmup=50, eval_every=25)}


def make(kind: str, **values):
    return GAN(GANConfig(**values)) if kind == "gan" else CVAE(CVAEConfig(**values))


@pytest.fixture(scope="module")
def penguins(tmp_path_factory):
    from palmerpenguins import load_penguins

    path = tmp_path_factory.mktemp("tables") / "penguins.csv"
    load_penguins().to_csv(path, index=False)
    return read_table(path, label_column="species")


@pytest.fixture(scope="module")
def wine(tmp_path_factory):
    from sklearn.datasets import load_wine

    bunch = load_wine(as_frame=True)
    frame = bunch.frame.drop(columns="target")
    frame["cultivar"] = np.asarray(bunch.target_names)[bunch.target]
    path = tmp_path_factory.mktemp("tables") / "wine.csv"
    frame.to_csv(path, index=False)
    return read_table(path, label_column="cultivar")


def fit(kind: str, dataset, seed: int = 0, **values):
    torch.manual_seed(seed)
    model = make(kind, **values)
    model.fit(dataset, Run(None, device="cpu", seed=seed, progress=False))
    return model


def check_encoded(x: torch.Tensor, encoding) -> None:
    """Finite rows whose one-hot blocks are exact one-hots and whose missing indicators are 0/1."""
    assert torch.isfinite(x).all()
    for block in encoding.blocks:
        part = x[:, block.slice]
        if block.one_hot:
            assert ((part == 0) | (part == 1)).all() and (part.sum(1) == 1).all(), block.column
        elif block.role is BlockRole.MISSING:
            assert ((part == 0) | (part == 1)).all(), block.column


def within_class_spread(x, y, xs, ys, encoding) -> float:
    """Median over classes and value columns of the samples' within-class std over the data's."""
    cols = [b.start for b in encoding.blocks if b.role is BlockRole.VALUE]
    return float(np.median([float(xs[ys == c][:, j].std() / x[y == c][:, j].std())
                            for c in torch.unique(y).tolist() for j in cols]))


def test_tables_are_their_own_kind_of_data(penguins):
    assert data_kind(penguins) == "tables"
    assert any(b.role is BlockRole.MISSING for b in penguins.encoding.blocks)  # penguins has missing values
    # a model with no table defaults (a third party's) takes its points defaults on a table
    resolved = resolve_defaults(GANConfig(), {"points": {"steps": 5}, "images": {"steps": 7}}, penguins)
    assert resolved.steps == 5
    with pytest.raises(InputError, match="not tables"):
        resolve_defaults(GANConfig(), {"images": {"steps": 7}}, penguins)
    # the table clamp: epochs x rows / batch steps, at least table_min_steps (1000 unless given)
    defaults = {"tables": {"steps": 6000, "batch_size": 256}}
    assert resolve_defaults(GANConfig(), defaults, penguins, table_epochs=10).steps == 1000
    assert resolve_defaults(GANConfig(), defaults, penguins, table_epochs=10, table_min_steps=3).steps == 10 * len(penguins) // 256


@pytest.mark.parametrize("kind", ["gan", "cvae"])
@pytest.mark.parametrize("table", ["penguins", "wine"])
def test_fits_a_table_and_samples_decodable_rows(kind, table, request, tmp_path):
    dataset = request.getfixturevalue(table)
    model = fit(kind, dataset, **TINY[kind])
    x = model.sample(300)
    assert x.shape == (300, dataset.x.shape[1])
    check_encoded(x, dataset.encoding)
    # conditional on the label column by default: a class id picks the class
    assert model.num_classes == dataset.num_classes == 3
    xc = model.sample(50, condition=torch.full((50,), 2))
    check_encoded(xc, dataset.encoding)
    rows = dataset.encoding.decode(xc, torch.full((50,), 2))
    label = dataset.options["label_column"]
    assert list(rows.columns) == list(dataset.encoding.schema.columns)
    assert set(rows[label]) == {dataset.class_names[2]}
    # the state round-trips: the same generator (GAN) or decoder (CVAE) from the saved state
    clone = make(kind)
    clone.load_state_dict(model.state_dict())
    torch.manual_seed(5)
    a = model.sample(20, condition=torch.zeros(20, dtype=torch.int64))
    torch.manual_seed(5)
    torch.testing.assert_close(clone.sample(20, condition=torch.zeros(20, dtype=torch.int64)), a)


def test_penguins_missing_values_come_back(penguins):
    model = fit("cvae", penguins, **TINY["cvae"])
    y = torch.multinomial(torch.ones(3), 2000, replacement=True)
    rows = penguins.encoding.decode(model.sample(2000, condition=y), y)
    rate = rows["sex"].isna().mean()  # 11 of 344 real rows (3%)
    assert 0.0 < rate < 0.15


@pytest.mark.parametrize("kind", ["gan", "cvae"])
def test_small_table_defaults(kind, penguins):
    small = penguins.subset(slice(0, 124))
    model = make(kind)
    model.validate(small)  # a default batch of 256 is not refused on 124 rows
    c = model.resolve(small)
    fewest = 400 if kind == "gan" else 700  # 1000 steps memorise a few hundred rows (issue 27)
    assert c.batch_size <= 124 and fewest <= c.steps <= 6000
    if kind == "gan":
        assert c.pack == 1 and model._conditional(small) == 3  # conditional, no pack clash
        assert c.steps == max(400, 30 * len(small.encoding.blocks))  # 250 passes are fewer
    else:
        assert c.train_k == 1  # the ELBO on tables
    big = make(kind).resolve(penguins)
    assert big.steps >= c.steps
    # a value the user sets is kept, and a batch larger than the table is still refused
    assert make(kind, steps=77).resolve(small).steps == 77
    if kind == "gan":
        with pytest.raises(Exception, match="batch_size=256"):
            GAN(GANConfig(batch_size=256)).validate(small)


@pytest.mark.parametrize("kind", ["gan", "cvae"])
def test_default_config_stays_finite_on_breast_cancer(kind, tmp_path):
    """The default config (shortened) on z-scored breast_cancer, 30 columns: the IWAE bound went
    NaN there; the losses, the held-out bound and the samples stay finite."""
    from sklearn.datasets import load_breast_cancer

    bunch = load_breast_cancer(as_frame=True)
    frame = bunch.frame.drop(columns="target")
    frame["diagnosis"] = np.asarray(bunch.target_names)[bunch.target]
    path = tmp_path / "breast_cancer.csv"
    frame.to_csv(path, index=False)
    dataset = read_table(path, label_column="diagnosis")
    run = Run(tmp_path / "run", device="cpu", seed=0, progress=False)
    model = make(kind, steps=300, log_every=10)
    torch.manual_seed(0)
    model.fit(dataset, run)
    check_encoded(model.sample(500), dataset.encoding)
    if kind == "cvae":
        assert math.isfinite(model.best_val_elbo)
    logged = pd.read_json(tmp_path / "run" / "metrics.jsonl", lines=True)
    losses = logged[[c for c in logged.columns if c in ("loss_d", "loss_g", "recon", "kl", "elbo")]]
    assert len(losses) and np.isfinite(losses.to_numpy(dtype=float)).all()


@pytest.mark.parametrize("kind", ["gan", "cvae"])
def test_no_within_class_collapse(kind, wine):
    """The conditional GAN collapsed on wine (within-class spread 0.1% of the real one): each
    class's samples spread at least half as much as its rows."""
    model = fit(kind, wine, steps=400)
    y = torch.arange(3).repeat_interleave(300)
    xs = model.sample(len(y), condition=y)
    assert within_class_spread(wine.x, wine.y, xs, y, wine.encoding) > 0.5
