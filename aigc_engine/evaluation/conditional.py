"""Conditional fidelity (``aigc-engine eval RUN --condition ...``): how well the rows a model
draws under conditions match the real rows that meet them."""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..conditions import all_hold, parse_conditions
from ..errors import InputError
from ..metrics.tables import column_shapes
from ..sampling import draw_where

__all__ = ["conditional_fidelity", "N_CONDITIONED", "MIN_REAL_ROWS"]

N_CONDITIONED = 1000
MIN_REAL_ROWS = 5


def conditional_fidelity(model: Any, rows, condition: Any, *, seed: int = 0, rules: list | None = None,
                         n: int = N_CONDITIONED, class_names: list[str] | None = None, train=None) -> dict[str, float]:
    """``n`` rows of ``model`` drawn under ``condition`` (as ``sample`` takes it) against the real
    rows of ``rows`` (a table Dataset in the run's columns) that meet it:
    ``conditional_column_shapes`` (the column shapes of the columns not conditioned on),
    ``condition_real_rows`` (how many real rows meet it), ``condition_rejected`` (the share of
    the model's draws the sampling path dropped: 0 for exact conditioning). With ``train`` (the
    rows the model fitted, when ``rows`` are held out) also ``conditional_column_shapes_real``:
    the same score of the held-out rows that meet it against the training rows that do, the
    reference a model can reach."""
    encoding = rows.encoding
    conditions = parse_conditions(condition, encoding.schema, class_names, model.num_classes)
    real = _meeting(rows, conditions)
    torch.manual_seed(seed)
    synthetic = draw_where(model, n, encoding, conditions, quiet=True, rules=rules)
    conditioned = {c.column for c in conditions}
    out = {"conditional_column_shapes": _shapes(real, synthetic, encoding.schema, conditioned),
           "condition_real_rows": float(len(real)),
           "condition_rejected": 1.0 - synthetic.attrs["conditions"]["accepted"] / synthetic.attrs["conditions"]["draws"]}
    if train is not None:
        out["conditional_column_shapes_real"] = _shapes(_meeting(train, conditions), real, encoding.schema, conditioned)
    return out


def _meeting(rows, conditions):
    """The decoded rows of a Dataset that meet every condition (enough of them to score)."""
    frame = rows.encoding.decode(rows.x, rows.y)
    frame = frame[all_hold(conditions, frame, rows.encoding.schema)[0]]
    if len(frame) < MIN_REAL_ROWS:
        raise InputError(f"--condition: {len(frame)} of the {len(rows)} real rows of {rows.name} meet it; "
                         f"conditional fidelity needs {MIN_REAL_ROWS} or more")
    return frame


def _shapes(real, synthetic, schema, conditioned: set[str]) -> float:
    """The mean column shape of the columns not conditioned on."""
    scores = column_shapes(real, synthetic, schema)["columns"]
    others = [s for name, s in scores.items() if name not in conditioned]
    return float(np.mean(others)) if others else 1.0
