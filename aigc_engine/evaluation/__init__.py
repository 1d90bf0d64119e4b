"""The evaluation of a fitted model, once: ``aigc-engine eval`` (:meth:`Engine.evaluate`) and
``aigc-engine compare`` both call :func:`evaluate`, so the same run on the same rows gets the
same numbers from either.

- On held-out rows (``train`` given: the rows the model fitted): the held-out metrics of
  :func:`.heldout.measure` (likelihood, modes, image judge, table metrics, DCR, the
  privacy report of tables and points, speed).
- On the model's own training rows (``train`` None): a table's metrics against them.
- Then the model's own metrics (:meth:`Model.evaluate` on the same rows), appended: a metric
  the model reports is never dropped; a name both compute keeps the protocol's value, the one
  every model is measured by.
"""
from __future__ import annotations

from typing import Any

from .heldout import N_SAMPLES, Measured, judge_for, measure, measure_table

__all__ = ["evaluate", "measure", "measure_table", "judge_for", "Measured", "N_SAMPLES"]


def evaluate(model: Any, rows, train=None, *, seed: int = 0, device: str = "cpu", n_samples: int = N_SAMPLES,
             judge=None, progress: bool = False) -> Measured:
    """The metrics of a fitted ``model`` on the Dataset ``rows``: held-out rows when ``train``
    (the rows it fitted) is given, else its training rows. ``seed`` seeds the model's own
    evaluation and, again, the protocol's draws; ``judge``: the image judge of the data set
    (:func:`judge_for`), for labelled images."""
    from ..fabric import Fabric

    own = model.evaluate(rows, Fabric(device, seed, progress=progress, distributed=False)) or {}
    if train is not None:
        found = measure(model, train, rows, seed, n_samples, judge)
    else:
        found = Measured(measure_table(model, rows, None, seed) if rows.encoding is not None else {})
    found.metrics.update({k: v for k, v in own.items() if k not in found.metrics})
    return found
