"""Precision, recall, density and coverage: how the samples sit on the real data's manifold,
estimated with k-nearest-neighbour balls (Kynkaanniemi et al. 2019; Naeem et al. 2020)."""
from __future__ import annotations

import torch

from ._neighbours import as_matrix, check_same_width, distance_blocks, kth_neighbour_distance


def precision_recall_density_coverage(real, samples, k: int = 5) -> dict[str, float]:
    """Precision and recall (Kynkaanniemi et al. 2019), density and coverage (Naeem et al. 2020)
    of ``samples`` (``M x D``) against ``real`` (``N x D``), in whatever feature space the rows
    are given in (pixels are flattened).

    With ``B(x, r)`` the open ball of radius ``r`` around ``x``, ``NND_k(x)`` the distance from
    a point to its ``k``-th nearest neighbour within its own set, real points ``X_i`` and
    samples ``Y_j``::

        precision = 1/M sum_j 1[ exists i: Y_j in B(X_i, NND_k(X_i)) ]
        recall    = 1/N sum_i 1[ exists j: X_i in B(Y_j, NND_k(Y_j)) ]
        density   = 1/(k M) sum_j sum_i 1[ Y_j in B(X_i, NND_k(X_i)) ]
        coverage  = 1/N sum_i 1[ exists j: Y_j in B(X_i, NND_k(X_i)) ]

    Precision and density measure fidelity (density is not capped at 1 and is about 1 for
    samples from the real distribution), recall and coverage diversity. Balls are open (strict
    ``<``) and a point's own distance counts among the ``k + 1`` smallest, exactly as in the
    authors' ``prdc`` package. Distances are Euclidean, computed in float64 in row blocks.

    Returns ``{"precision", "recall", "density", "coverage"}``.
    """
    real = as_matrix(real, "real")
    samples = as_matrix(samples, "samples").to(real.device)
    check_same_width(real, samples, "real", "samples")
    real_radii = kth_neighbour_distance(real, k)
    sample_radii = kth_neighbour_distance(samples, k)

    inside = torch.zeros(len(samples), dtype=torch.float64, device=real.device)  # balls holding Y_j
    covered = torch.zeros(len(real), dtype=torch.bool, device=real.device)
    recalled = torch.zeros(len(real), dtype=torch.bool, device=real.device)
    for start, d in distance_blocks(samples, real):  # d[j, i] = |Y_j - X_i|
        in_real_ball = d < real_radii[None, :]
        inside[start:start + len(d)] = in_real_ball.sum(1, dtype=torch.float64)
        covered |= in_real_ball.any(0)
        recalled |= (d < sample_radii[start:start + len(d), None]).any(0)
    return {"precision": float((inside > 0).double().mean()),
            "recall": float(recalled.double().mean()),
            "density": float(inside.mean() / k),
            "coverage": float(covered.double().mean())}
