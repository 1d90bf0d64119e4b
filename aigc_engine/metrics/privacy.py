"""A privacy report of synthetic rows: exact copies of training rows and membership-inference
attacks whose members are the training rows and non-members held-out rows of the same
population. Rows are compared as given (flattened, float64): pass them as the model saw them
(a table's encoded rows)."""
from __future__ import annotations

import math

import torch

from ..errors import InputError
from ._neighbours import as_matrix, check_same_width, distance_blocks, nearest_distance


def _matrices(**named) -> list[torch.Tensor]:
    out = [as_matrix(v, name) for name, v in named.items()]
    for name, m in zip(list(named)[1:], out[1:]):
        check_same_width(m, out[0], name, list(named)[0])
    return out


def exact_copies(samples, train) -> float:
    """The share of synthetic rows equal, value for value, to a training row (float64 equality:
    a distance below a tolerance would count a row that only comes close)."""
    samples, train = _matrices(samples=samples, train=train)
    _, ids = torch.cat([train, samples]).unique(dim=0, return_inverse=True)
    return float(torch.isin(ids[len(train):], ids[:len(train)]).double().mean())


def auc(members: torch.Tensor, non_members: torch.Tensor) -> float:
    """The ROC AUC of an attack scoring members higher: the probability that a random member
    outscores a random non-member, ties counted half (Mann-Whitney U over the two counts)."""
    if not len(members) or not len(non_members):
        raise InputError("an attack's AUC needs at least one member and one non-member")
    scores = torch.cat([members.double().reshape(-1), non_members.double().reshape(-1)])
    order = scores.argsort()
    ranks = torch.empty_like(scores)
    ranks[order] = torch.arange(1, len(scores) + 1, dtype=torch.float64)
    _, inverse, counts = scores.unique(return_inverse=True, return_counts=True)
    mean_rank = torch.zeros(len(counts), dtype=torch.float64).index_add_(0, inverse, ranks) / counts
    u = float(mean_rank[inverse][:len(members)].sum()) - len(members) * (len(members) + 1) / 2
    return u / (len(members) * len(non_members))


def distance_mia_auc(samples, train, holdout) -> float:
    """The AUC of the attack that calls a row a member the closer it lies to its closest
    synthetic row (score: minus that distance), training rows the members, ``holdout`` rows the
    non-members: about 0.5 when the samples are no closer to the training rows than to fresh
    ones, 1 when they copy them."""
    samples, train, holdout = _matrices(samples=samples, train=train, holdout=holdout)
    return auc(-nearest_distance(train, samples), -nearest_distance(holdout, samples))


def _log_kde(x: torch.Tensor, data: torch.Tensor, bandwidth: float) -> torch.Tensor:
    """log of the Gaussian kernel density of ``data`` (one ``bandwidth`` for every coordinate) at ``x``."""
    out = torch.empty(len(x), dtype=torch.float64)
    for start, block in distance_blocks(x, data):
        out[start:start + len(block)] = torch.logsumexp(-block ** 2 / (2 * bandwidth ** 2), dim=1)
    d = data.shape[1]
    return out - math.log(len(data)) - d * math.log(bandwidth * math.sqrt(2 * math.pi))


def _scott(x: torch.Tensor) -> float:
    """Scott's rule on the mean coordinate std: ``n ** (-1 / (d + 4)) * std``."""
    std = float(x.std(0).mean()) if len(x) > 1 else 1.0
    return max(std, 1e-12) * len(x) ** (-1 / (x.shape[1] + 4))


def domias_auc(samples, train, holdout, reference=None, bandwidth: float = 0.2) -> float:
    """The AUC of DOMIAS (van Breugel et al. 2023): a row is called a member the more the
    synthetic density exceeds the population's there, ``log p_synthetic(x) - log
    p_reference(x)``, both Gaussian KDEs. The reference's bandwidth is Scott's rule; the
    synthetic density's is ``bandwidth`` times Scott's, sharp enough to show where samples pile
    up on training rows (at Scott's own, copies of the training rows are smoothed back into the
    population: on 3-D blobs a memorising model's AUC is 0.55, at 0.2 of it 0.95). ``reference``
    rows are from the population and neither members nor scored; without them the first half of
    ``holdout`` is the reference and the second half the non-members."""
    samples, train, holdout = _matrices(samples=samples, train=train, holdout=holdout)
    if reference is None:
        if len(holdout) < 4:
            raise InputError("domias_auc needs at least 4 holdout rows to split off a reference")
        half = len(holdout) // 2
        reference, holdout = holdout[:half], holdout[half:]
    else:
        reference = _matrices(train=train, reference=reference)[1]
    h_syn, h_ref = bandwidth * _scott(samples), _scott(reference)

    def score(x):
        return _log_kde(x, samples, h_syn) - _log_kde(x, reference, h_ref)

    return auc(score(train), score(holdout))


def privacy_report(samples, train, holdout, seed: int = 0) -> dict[str, float]:
    """``exact_copies``, ``mia_distance_auc`` and ``mia_domias_auc`` of synthetic ``samples``
    against the ``train`` rows they were fitted on and ``holdout`` rows they were not. The
    attacks score as many members as non-members (a random ``seed``-ed pick of each); DOMIAS
    takes half the non-members as its reference, and is left out below 4 of them."""
    samples, train, holdout = _matrices(samples=samples, train=train, holdout=holdout)
    n = min(len(train), len(holdout))
    gen = torch.Generator().manual_seed(seed)
    members = train[torch.randperm(len(train), generator=gen)[:n]]
    others = holdout[torch.randperm(len(holdout), generator=gen)[:n]]
    out = {"exact_copies": exact_copies(samples, train), "mia_distance_auc": distance_mia_auc(samples, members, others)}
    if n >= 4:
        half = n // 2
        out["mia_domias_auc"] = domias_auc(samples, members[:n - half], others[half:], reference=others[:half])
    return out
