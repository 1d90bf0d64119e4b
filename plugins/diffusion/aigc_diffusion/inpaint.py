"""Conditions on a table's columns by inpainting (RePaint-style, Lugmayr et al. 2022): the
coordinates of the encoded row that a condition fixes are known in advance; the sampler replaces
them at every step by their forward-noised values (``samplers.sample_loop(known=...)``), so the
free coordinates are denoised in agreement with them.

What is known (``where``: the core's ``aigc_engine.conditions.Encoded``): a category (one allowed
slot of a one-hot block: the whole block, 1 there and 0 elsewhere); a set of categories (the
disallowed slots, at 0; the model picks among the allowed ones, and :func:`project_sets` makes
the pick one of them); a point value (``where.points``:
an ``=`` on a numeric column, the middle of the interval of encoded values that decode to it; a
missing indicator set or unset). Ranges are left to the engine's rejection."""
from __future__ import annotations

import math

import torch

__all__ = ["known_coordinates", "project_sets"]

#: the value a point takes when its interval is open on one side (the end of the quantiles)
_OPEN_END = 0.05


def known_coordinates(where, width: int) -> tuple[torch.Tensor, torch.Tensor] | None:
    """``(mask, x0)``: the coordinates (bool ``[width]``) the conditions fix and their values
    (float ``[width]``, in the encoded matrix), or None when they fix none."""
    mask, x0 = torch.zeros(width, dtype=torch.bool), torch.zeros(width)
    for start, stop, allowed in where.slots:
        if len(allowed) == 1:
            mask[start:stop] = True
            x0[start + allowed[0]] = 1.0
        else:
            for offset in range(stop - start):
                mask[start + offset] = offset not in allowed
    for at in where.points:
        lo, hi = where.ranges[at]
        if math.isfinite(lo) and math.isfinite(hi):
            value = 0.5 * (lo + hi)
        elif math.isfinite(lo) or math.isfinite(hi):
            value = lo + _OPEN_END if math.isfinite(lo) else hi - _OPEN_END
            value = 1.0 if lo == 0.5 else 0.0 if hi == 0.5 else value  # a missing indicator
        else:
            continue
        mask[at], x0[at] = True, value
    return (mask, x0) if mask.any() else None


def project_sets(x: torch.Tensor, where) -> torch.Tensor:
    """``x`` (encoded rows) with each block of a set condition one-hot at the allowed slot the
    model rated highest."""
    for start, stop, allowed in where.slots:
        if len(allowed) > 1:
            index = torch.tensor(allowed)
            pick = index[x[:, start + index].argmax(1)]
            x[:, start:stop] = 0.0
            x[torch.arange(len(x)), start + pick] = 1.0
    return x
