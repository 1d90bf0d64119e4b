"""Nearest-neighbour distances computed in row blocks, so that no ``N x M`` matrix of all
pairwise distances is ever held at once."""
from __future__ import annotations

from typing import Iterator

import numpy as np
import torch

from ..errors import InputError

# Elements of one block of pairwise distances (float64): 32 MiB.
_BLOCK_ELEMENTS = 1 << 22


def as_matrix(x, name: str, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """``x`` (tensor or array, ``N x ...``) as an ``N x D`` tensor of ``dtype`` on its device,
    detached; images are flattened to their pixels."""
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(x)
    if not isinstance(x, torch.Tensor):
        raise InputError(f"{name} must be a tensor or an array, got {type(x).__name__}")
    if x.dim() < 2:
        raise InputError(f"{name} must be N x D (or N x C x H x W), got shape {tuple(x.shape)}")
    x = x.detach().reshape(len(x), -1).to(dtype)
    if not torch.isfinite(x).all():
        raise InputError(f"{name} has NaN or inf values")
    return x


def check_same_width(a: torch.Tensor, b: torch.Tensor, name_a: str, name_b: str) -> None:
    if a.shape[1] != b.shape[1]:
        raise InputError(f"{name_a} and {name_b} must have the same number of features, got "
                         f"{a.shape[1]} and {b.shape[1]}")


def distance_blocks(a: torch.Tensor, b: torch.Tensor) -> Iterator[tuple[int, torch.Tensor]]:
    """Yield ``(start, cdist(a[start:start + r], b))`` over blocks of rows of ``a``."""
    rows = max(1, _BLOCK_ELEMENTS // max(1, len(b)))
    b = b.to(a.device)
    for start in range(0, len(a), rows):
        yield start, torch.cdist(a[start:start + rows], b)


def kth_neighbour_distance(x: torch.Tensor, k: int) -> torch.Tensor:
    """Distance from each row of ``x`` to its ``k``-th nearest *other* row: the ``(k + 1)``-th
    smallest distance with the row itself (at distance 0) counted, as the ``prdc`` package
    does (so a duplicated row counts as a neighbour at distance 0)."""
    if not 1 <= k < len(x):
        raise InputError(f"k = {k} nearest neighbours need more than k points, got {len(x)}")
    out = torch.empty(len(x), dtype=x.dtype, device=x.device)
    for start, block in distance_blocks(x, x):
        out[start:start + len(block)] = block.kthvalue(k + 1, dim=1).values
    return out


def nearest_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Distance from each row of ``a`` to its nearest row of ``b``."""
    out = torch.empty(len(a), dtype=a.dtype, device=a.device)
    for start, block in distance_blocks(a, b):
        out[start:start + len(block)] = block.min(dim=1).values
    return out
