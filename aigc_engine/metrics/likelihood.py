"""Held-out log-likelihood per dimension, for models that have ``log_prob``."""
from __future__ import annotations

import math

import torch

from ..errors import InputError


def heldout_log_likelihood(model, data, batch_size: int = 4096,
                           device: str | torch.device | None = None) -> dict[str, float | bool]:
    """Mean log-likelihood of held-out data under ``model.log_prob`` (one value per row).

    ``data`` is a :class:`~aigc_engine.data.Dataset` (streamed in chunks) or a tensor ``N x ...``;
    rows go to ``model.log_prob`` in batches of ``batch_size``, on ``device`` when given. With
    ``D`` the number of values in a row::

        log_likelihood         = 1/N sum_n log p(x_n)                    (nats per row)
        log_likelihood_per_dim = log_likelihood / D                      (nats per dimension)
        bits_per_dim           = -log_likelihood / (D log 2)             (the usual NLL in bits)

    ``model`` follows the :class:`~aigc_engine.Model` contract: a model whose ``log_prob`` is a
    lower bound (an ELBO or IWAE estimate) says so with ``log_prob_kind`` ``"bound"`` or
    ``"discrete_bound"``; ``is_bound`` carries it (then the true
    log-likelihood is at least ``log_likelihood``, and the true bits/dim at most
    ``bits_per_dim``). For a density of continuous values these are densities, not
    probabilities of discrete pixels: compare models on the same scaling of the data.
    """
    kind = model.log_prob_kind
    if kind is None:
        raise InputError(f"{type(model).__name__} has no log_prob: its held-out likelihood is undefined")
    chunks, dims = _chunks(data, batch_size)
    total = torch.zeros((), dtype=torch.float64)
    n = 0
    with torch.no_grad():
        for x in chunks:
            if device is not None:
                x = x.to(device)
            lp = torch.as_tensor(model.log_prob(x))
            if lp.shape != (len(x),):
                raise InputError(f"{type(model).__name__}.log_prob gave shape {tuple(lp.shape)} "
                                 f"for {len(x)} rows; it must give one value per row")
            total += lp.detach().to(torch.float64).sum().cpu()
            n += len(x)
    if n == 0:
        raise InputError("no held-out rows to evaluate")
    ll = float(total) / n
    return {"log_likelihood": ll, "log_likelihood_per_dim": ll / dims,
            "bits_per_dim": -ll / (dims * math.log(2)), "is_bound": kind in ("bound", "discrete_bound")}


def _chunks(data, batch_size: int):
    if batch_size < 1:
        raise InputError(f"batch_size must be >= 1, got {batch_size}")
    if hasattr(data, "iter_chunks"):
        shape = data.shape
        return data.iter_chunks(batch_size), math.prod(shape[1:])
    x = torch.as_tensor(data)
    if x.dim() < 2:
        raise InputError(f"data must be N x D (or N x C x H x W), got shape {tuple(x.shape)}")
    return (x[i:i + batch_size] for i in range(0, len(x), batch_size)), math.prod(x.shape[1:])
