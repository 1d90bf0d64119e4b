"""Memorisation: are samples closer to the training data than fresh real data is?"""
from __future__ import annotations

from ._neighbours import as_matrix, check_same_width, nearest_distance


def closest_distance_ratio(samples, train, holdout) -> dict[str, float]:
    """Distance to the closest record (DCR), as synthcity and SDMetrics report it.

    For each sample, the Euclidean distance to its nearest training point; for each held-out
    real point (not trained on), the same distance. A model that generalises puts its samples
    about as far from the training set as new real data is, so::

        dcr_ratio = median_j DCR(sample_j) / median_i DCR(holdout_i)

    is about 1; well below 1 means samples sit on (copies of) training points. Rows are
    flattened (pixels) and compared in float64; scale the data as the model saw it.

    Returns ``{"sample_dcr_median", "holdout_dcr_median", "dcr_ratio"}`` (the ratio is ``inf``
    or NaN when the held-out median is 0).
    """
    samples, train, holdout = (as_matrix(v, n) for v, n in
                               ((samples, "samples"), (train, "train"), (holdout, "holdout")))
    check_same_width(samples, train, "samples", "train")
    check_same_width(holdout, train, "holdout", "train")
    sample_median = float(nearest_distance(samples.to(train.device), train).median())
    holdout_median = float(nearest_distance(holdout.to(train.device), train).median())
    ratio = sample_median / holdout_median if holdout_median > 0 else (
        float("nan") if sample_median == 0 else float("inf"))
    return {"sample_dcr_median": sample_median, "holdout_dcr_median": holdout_median, "dcr_ratio": ratio}
