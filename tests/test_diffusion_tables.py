"""The diffusion model on tables: defaults fitted to a small table's rows (no refusal of a few
hundred rows), a validation split held out for early stopping on its denoising loss, and the
points' defaults left as they were."""
import pytest
import torch

from aigc_engine import InputError, Run, data
from aigc_engine.data.tablefile import read_table
from aigc_diffusion import Diffusion, DiffusionConfig
from aigc_diffusion.config import resolved


@pytest.fixture(scope="module")
def penguins(tmp_path_factory):
    from palmerpenguins import load_penguins

    path = tmp_path_factory.mktemp("tables") / "penguins.csv"
    load_penguins().to_csv(path, index=False)
    return read_table(path, label_column="species")


def test_small_table_defaults(penguins):
    small = penguins.subset(slice(0, 124))
    Diffusion().validate(small)  # the points' batch of 256 refused this; the table's fits its rows
    c = resolved(DiffusionConfig(), small)
    train = len(small) - 2 * round(0.1 * len(small))  # validation and test held out
    assert c.validation == 0.1 and c.batch_size <= train and 1000 <= c.steps <= 6000
    assert resolved(DiffusionConfig(), penguins).steps >= c.steps
    assert c.width == 64  # 17 encoded columns; a wider table gets at least its width, a power of 2
    wide = data.Dataset(torch.zeros(300, 191), name="wide")
    wide.encoding = small.encoding
    assert resolved(DiffusionConfig(), wide).width == 256 and resolved(DiffusionConfig(width=32), wide).width == 32
    assert resolved(DiffusionConfig(steps=77, batch_size=8), small).steps == 77  # what the user sets is kept
    with pytest.raises(InputError, match="batch_size=256"):
        Diffusion(DiffusionConfig(batch_size=256)).validate(small)
    points = resolved(DiffusionConfig(), data.ring8(n=500))  # the points' defaults are untouched
    assert (points.validation, points.batch_size, points.steps) == (0.0, 256, 6000)


def test_early_stopping_on_the_validation_rows(penguins):
    """A learning rate too small to move the weights: the held-out loss never falls below the
    first evaluation's, so training stops after ``patience`` evaluations, keeping the first's weights."""
    small = penguins.subset(slice(0, 124))
    model = Diffusion(DiffusionConfig(steps=500, lr=1e-30, eval_every=5, patience=2, width=16, depth=1,
                                      snapshots=0, log_every=1))
    run = Run(None, device="cpu", seed=0, progress=False)
    model.fit(small, run)
    assert model.best_step == 5 and run.history[-1]["step"] == 15
    assert [r["step"] for r in run.history if "val_loss" in r] == [5, 10, 15]
    x = model.sample(50)
    assert x.shape == (50, small.x.shape[1]) and torch.isfinite(x).all()
    trained = Diffusion(DiffusionConfig(steps=60, eval_every=20, width=16, depth=1, snapshots=0, log_every=1))
    trained_run = Run(None, device="cpu", seed=0, progress=False)
    trained.fit(small, trained_run)
    losses = [r["val_loss"] for r in trained_run.history if "val_loss" in r]
    assert len(losses) == 3 and losses[-1] < losses[0]  # a learning model's held-out loss falls


def test_held_out_fractions_are_checked(penguins):
    with pytest.raises(InputError, match="validation \\+ test must be below 1"):
        Diffusion(DiffusionConfig(validation=0.5, test=0.5))
    with pytest.raises(InputError, match="holds out no row"):
        Diffusion(DiffusionConfig(validation=0.001)).validate(penguins.subset(slice(0, 124)))
