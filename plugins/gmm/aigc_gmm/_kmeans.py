"""k-means in torch, for initialising a mixture on streamed or distributed data (in-memory data
uses scikit-learn's ``KMeans`` / ``kmeans_plusplus``, so the same ``random_state`` gives
scikit-learn's initialisation)."""
from __future__ import annotations

import math

import torch


def hard_resp(labels: torch.Tensor, K: int, dtype) -> torch.Tensor:
    """One-hot responsibilities ``[n, K]`` of component ``labels [n]``."""
    resp = torch.zeros(len(labels), K, dtype=dtype, device=labels.device)
    resp[torch.arange(len(labels), device=labels.device), labels] = 1
    return resp


def nearest(x: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
    """Index ``[n]`` of the nearest of ``centres [K, D]`` for each row of ``x [n, D]`` (squared
    Euclidean, one GEMM)."""
    d = (centres * centres).sum(1)[None, :] - 2.0 * (x @ centres.T)
    return d.argmin(1)


def kmeans_plusplus(x: torch.Tensor, K: int, gen: torch.Generator) -> torch.Tensor:
    """Greedy k-means++ seeding (2 + log K trials per centre, as scikit-learn) of ``K`` centres
    ``[K, D]`` among the rows of ``x [n, D]``."""
    n = x.shape[0]
    n_trials = 2 + int(math.log(K))
    first = int(torch.randint(n, (1,), generator=gen, device="cpu"))
    centres = [x[first]]
    closest = ((x - x[first]) ** 2).sum(1)
    for _ in range(1, K):
        total = closest.sum()
        u = torch.rand(n_trials, generator=gen, device="cpu", dtype=torch.float64).to(x.device) * total
        cand = torch.searchsorted(torch.cumsum(closest, 0).to(torch.float64), u).clamp_(max=n - 1)
        d = ((x[None, :, :] - x[cand][:, None, :]) ** 2).sum(-1)      # [trials, n]
        d = torch.minimum(d, closest[None])
        best = int(d.sum(1).argmin())
        closest = d[best]
        centres.append(x[cand[best]])
    return torch.stack(centres)


def kmeans(x: torch.Tensor, K: int, seed: int, n_iter: int = 100, tol: float = 1e-4,
           init: str = "kmeans") -> torch.Tensor:
    """Centres ``[K, D]``: k-means++ seeding then Lloyd iterations (``init="k-means++"``: seeding
    only) on an in-memory sample ``x [n, D]``; deterministic for a given seed on every process."""
    gen = torch.Generator(device="cpu").manual_seed(int(seed))
    centres = kmeans_plusplus(x, K, gen)
    if init == "k-means++":
        return centres
    var_tol = tol * float(x.var(0).mean())
    for _ in range(n_iter):
        labels = nearest(x, centres)
        resp = hard_resp(labels, K, x.dtype)
        counts = resp.sum(0)
        new = (resp.T @ x) / counts.clamp(min=1)[:, None]
        new = torch.where(counts[:, None] > 0, new, centres)
        shift = float(((new - centres) ** 2).sum())
        centres = new
        if shift <= var_tol:
            break
    return centres
