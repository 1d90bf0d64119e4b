"""The output head of a model of encoded table rows, block by block of the encoding's typed
layout (:class:`~aigc_engine.tables.kinds.Block`), and the layout as a model saves it.

Models (the GAN, the CVAE, the GMM) read ``block.role`` and never the kinds' own words, so a
new column kind needs nothing of them: its blocks are values, one-hots and missing indicators.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .kinds.base import Block, BlockRole

__all__ = ["table_outputs", "observed_mask", "layout_to_json", "layout_from_json", "DRAWS", "MISSING_DRAWS"]

DRAWS = ("relaxed", "sample", "mean")
MISSING_DRAWS = ("logistic", "bernoulli")


def table_outputs(raw: torch.Tensor, blocks: list[Block], draw: str = "sample", *, tau: float = 0.2,
                  missing: str = "logistic", scale: torch.Tensor | None = None) -> torch.Tensor:
    """A network's raw outputs as encoded table rows. ``draw``:

    - ``relaxed`` (differentiable, a GAN's generator in training): one-hot blocks through a
      Gumbel-softmax of temperature ``tau`` (CTGAN's 0.2: near one-hot), missing indicators
      through its two-way form, a sigmoid of logistic-perturbed logits over ``tau``;
    - ``sample``: exact one-hots drawn from the categorical each block's logits define, 0/1
      indicators from their Bernoulli (``missing="logistic"``: a logistic draw's sign, the GAN's;
      ``"bernoulli"``: ``torch.bernoulli``, the CVAE's; the same law, other random numbers);
    - ``mean``: each categorical's likeliest slot, indicators where their probability > 1/2.

    Value blocks are the outputs as they are, plus ``scale * N(0, 1)`` noise when ``draw`` is
    ``sample`` and a ``scale`` (the matrix's per-entry std) is given. Blocks are drawn in order."""
    if draw not in DRAWS or missing not in MISSING_DRAWS:
        raise ValueError(f"table_outputs: draw in {DRAWS} and missing in {MISSING_DRAWS}, got {draw!r}, {missing!r}")
    parts = []
    for block in blocks:
        logits = raw[:, block.slice]
        if block.role is BlockRole.ONE_HOT:
            parts.append(_one_hot(logits, draw, tau))
        elif block.role is BlockRole.MISSING:
            parts.append(_indicator(logits, draw, tau, missing))
        elif draw == "sample" and scale is not None:
            parts.append(logits + scale[:, block.slice] * torch.randn_like(logits))
        else:
            parts.append(logits)
    return torch.cat(parts, 1)


def _one_hot(logits: torch.Tensor, draw: str, tau: float) -> torch.Tensor:
    if draw == "relaxed":
        return F.gumbel_softmax(logits, tau=tau)
    pick = logits.argmax(1) if draw == "mean" else torch.distributions.Categorical(logits=logits).sample()
    return F.one_hot(pick, logits.shape[1]).to(logits.dtype)


def _indicator(logits: torch.Tensor, draw: str, tau: float, missing: str) -> torch.Tensor:
    if draw == "mean":
        return (logits > 0).to(logits.dtype)
    if draw == "sample" and missing == "bernoulli":
        return torch.bernoulli(torch.sigmoid(logits))
    u = torch.rand_like(logits).clamp(1e-6, 1 - 1e-6)
    noisy = logits + torch.log(u) - torch.log1p(-u)  # a logistic draw: P(noisy > 0) = sigmoid(logits)
    return (noisy > 0).to(logits.dtype) if draw == "sample" else torch.sigmoid(noisy / tau)


def observed_mask(x: torch.Tensor, blocks: list[Block]) -> torch.Tensor:
    """1 where a value is observed, 0 in a value block whose column's missing indicator is 1 in
    ``x`` (the value there is the encoding's placeholder, not data); 1 everywhere else."""
    mask = torch.ones_like(x)
    indicator = {b.column: b.start for b in blocks if b.role is BlockRole.MISSING}
    for block in blocks:
        if block.role is BlockRole.VALUE and block.column in indicator:
            mask[:, block.slice] = 1 - x[:, indicator[block.column]].unsqueeze(1)
    return mask


def layout_to_json(blocks: list[Block]) -> list[list]:
    """The layout as a model saves it: ``[role, start, stop, column]`` rows."""
    return [[b.role.value, int(b.start), int(b.stop), str(b.column)] for b in blocks]


def layout_from_json(rows) -> list[Block]:
    """The blocks of :func:`layout_to_json`'s rows, or of the ``[role, start, stop]`` rows that
    models saved before blocks named their column. There a missing indicator belongs to the last
    value block before it, with the one-hot block between them if any (a mode block: the
    encoding wrote a numeric column's value, its modes, then its indicator, and a categorical
    column has no indicator); every other block is a column of its own."""
    blocks, last_value = [], None
    for i, row in enumerate(rows or []):
        role = BlockRole(row[0])
        column = str(row[3]) if len(row) > 3 else f"#{i}"
        if len(row) <= 3 and role is BlockRole.MISSING and last_value is not None:
            column = last_value
            if blocks[-1].role is BlockRole.ONE_HOT and len(blocks) > 1 and blocks[-2].column == last_value:
                blocks[-1].column = last_value
        if role is BlockRole.VALUE:
            last_value = column
        blocks.append(Block(column, role.value, int(row[1]), int(row[2]), role=role))
    return blocks
