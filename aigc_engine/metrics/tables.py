"""Table metrics on decoded rows (pandas DataFrames), as SDMetrics / SDGym / synthcity define them.

Scores are in [0, 1], higher is better (1: indistinguishable from the real rows), except the
ML-efficacy accuracies (higher is better, compare with train-on-real), the detection AUC (0.5
is best), the DCR ratio (about 1 is best; well below 1 means copies of training rows) and the
privacy report's (exact copies, lower is best; membership-inference AUCs, 0.5 is best).

- :func:`column_shapes`: per column, KS complement ``1 - KS`` (the kinds of a ``numeric``
  distribution, on their kind's numbers: continuous and integer values, datetimes in seconds,
  texts by length; missing values dropped) or TV complement ``1 - TV`` (``categorical``: the
  categorical and many-level kinds, missing values dropped), averaged (SDMetrics'
  ``KSComplement``, ``TVComplement``); the missing-value rates apart
  (``MissingValueSimilarity``). Keys (no distribution) are not scored.
- :func:`pair_trends`: per column pair, correlation similarity ``1 - |r_real - r_syn| / 2``
  (Pearson, both numeric) or contingency similarity ``1 - TV`` of the joint frequencies (both
  categorical, or mixed with the numeric column cut into 10 equal-width bins of its real range),
  averaged (SDMetrics' ``CorrelationSimilarity``, ``ContingencySimilarity``).
- :func:`ml_efficacy`: a random forest (scikit-learn, 100 trees, seed 0) classifying the label
  column from the encoded features, trained on synthetic rows and on real training rows, both
  tested on the real held-out rows (accuracy). :func:`table_metrics` trains it on as many
  synthetic rows as real ones (CTGAN's protocol, Xu et al. 2019), so the gap measures the rows'
  quality, not their number.
- :func:`detection`: ROC AUC of a logistic regression telling real from synthetic rows (encoded),
  3-fold stratified cross-validation, and SDMetrics' ``LogisticDetection`` score
  ``1 - (2 max(AUC, 1/2) - 1)``.
- :func:`table_metrics`: all of them plus :func:`closest_distance_ratio` and
  :func:`~aigc_engine.metrics.privacy.privacy_report` on the encoded rows (label one-hot; the
  report on up to ``len(train)`` synthetic rows).
"""
from __future__ import annotations

import itertools

import numpy as np

from .memorisation import closest_distance_ratio
from .privacy import privacy_report

__all__ = ["ks_complement", "tv_complement", "missing_similarity", "correlation_similarity", "contingency_similarity",
           "column_shapes", "pair_trends", "ml_efficacy", "detection", "table_metrics"]

PAIR_BINS = 10


def ks_complement(real, synthetic) -> float:
    """``1 - sup_x |F_real(x) - F_syn(x)|`` (the two-sample KS statistic), missing values dropped."""
    a = np.sort(np.asarray(real, dtype=np.float64)[~np.isnan(np.asarray(real, dtype=np.float64))])
    b = np.sort(np.asarray(synthetic, dtype=np.float64)[~np.isnan(np.asarray(synthetic, dtype=np.float64))])
    if len(a) == 0 or len(b) == 0:
        return 0.0
    grid = np.concatenate([a, b])
    gap = np.abs(np.searchsorted(a, grid, side="right") / len(a) - np.searchsorted(b, grid, side="right") / len(b))
    return float(1.0 - gap.max())


def tv_complement(real, synthetic) -> float:
    """``1 - 1/2 sum_c |p_real(c) - p_syn(c)|`` over the categories of either, missing values
    dropped (their rate is :func:`missing_similarity`)."""
    import pandas as pd

    p, q = (pd.Series(v).dropna().astype(object).value_counts(normalize=True).to_dict() for v in (real, synthetic))
    if not p or not q:
        return 0.0
    return float(1.0 - 0.5 * sum(abs(p.get(c, 0.0) - q.get(c, 0.0)) for c in set(p) | set(q)))


def missing_similarity(real, synthetic) -> float:
    """``1 - |missing rate real - missing rate synthetic|`` (SDMetrics' ``MissingValueSimilarity``)."""
    import pandas as pd

    return float(1.0 - abs(pd.Series(real).isna().mean() - pd.Series(synthetic).isna().mean()))


def correlation_similarity(real_pair, synthetic_pair) -> float:
    """``1 - |r_real - r_syn| / 2`` for Pearson's r of two numeric columns (rows with both present)."""
    with np.errstate(divide="ignore", invalid="ignore"):  # a constant column: no correlation (0), no warning
        r = [np.corrcoef(np.asarray(f.dropna(), dtype=np.float64).T)[0, 1] if len(f.dropna()) > 1 else np.nan
             for f in (real_pair, synthetic_pair)]
    r = [0.0 if not np.isfinite(v) else v for v in r]
    return float(1.0 - abs(r[0] - r[1]) / 2.0)


def contingency_similarity(real_pair, synthetic_pair) -> float:
    """``1 - TV`` of the joint frequencies of two discrete columns (missing is a value)."""
    def joint(frame):
        keys = frame.astype(object).where(frame.notna(), "<missing>")
        return keys.value_counts(normalize=True).to_dict()
    p, q = joint(real_pair), joint(synthetic_pair)
    return float(1.0 - 0.5 * sum(abs(p.get(c, 0.0) - q.get(c, 0.0)) for c in set(p) | set(q)))


def _kinds(schema) -> dict:
    """Each kept column's kind class, in header order, but those of no distribution (keys)."""
    kept = {spec.name for spec in schema.features} | ({schema.label.name} if schema.label is not None else set())
    kinds = {name: schema.kind(name) for name in schema.columns if name in kept}
    return {name: kind for name, kind in kinds.items() if kind.distribution is not None}


def _as_numbers(frame, kinds: dict):
    """``frame`` with each column of a numeric distribution as its kind's float64 numbers."""
    import pandas as pd

    return pd.DataFrame({name: (pd.Series(kind.numbers(frame[name]), index=frame.index)
                                if kind.distribution == "numeric" else frame[name]) for name, kind in kinds.items()})


def column_shapes(real, synthetic, schema) -> dict:
    """``{"column_shapes": mean, "columns": {name: score}, "missing_values": mean missing-rate
    similarity over the columns with missing values (1.0 when none has)}``."""
    kinds = _kinds(schema)
    real, synthetic = _as_numbers(real, kinds), _as_numbers(synthetic, kinds)
    scores = {name: (ks_complement if kind.distribution == "numeric" else tv_complement)(real[name], synthetic[name])
              for name, kind in kinds.items()}
    missing = [missing_similarity(real[s.name], synthetic[s.name]) for s in schema.features
               if s.has_missing and s.name in kinds]
    return {"column_shapes": float(np.mean(list(scores.values()))), "columns": scores,
            "missing_values": float(np.mean(missing)) if missing else 1.0}


def _binned(real_col, synthetic_col):
    """A numeric column as the index of one of PAIR_BINS equal-width bins of its real range."""
    import pandas as pd

    low, high = np.nanmin(real_col.to_numpy(dtype=np.float64)), np.nanmax(real_col.to_numpy(dtype=np.float64))
    edges = np.linspace(low, high, PAIR_BINS + 1)[1:-1]
    return [pd.Series(np.where(c.isna(), np.nan, np.searchsorted(edges, c.to_numpy(dtype=np.float64, na_value=np.nan),
                                                                  side="right")), index=c.index)
            for c in (real_col, synthetic_col)]


def pair_trends(real, synthetic, schema) -> dict:
    """``{"pair_trends": mean, "correlation_difference": mean |r_real - r_syn| over the numeric
    pairs, "pairs": {"a|b": score}}`` over every pair of the schema's columns."""
    import pandas as pd

    classes, scores, gaps = _kinds(schema), {}, []
    real, synthetic = _as_numbers(real, classes), _as_numbers(synthetic, classes)
    kinds = {name: kind.distribution for name, kind in classes.items()}
    for a, b in itertools.combinations(list(kinds), 2):
        if kinds[a] == kinds[b] == "numeric":
            scores[f"{a}|{b}"] = correlation_similarity(real[[a, b]], synthetic[[a, b]])
            gaps.append(2.0 * (1.0 - scores[f"{a}|{b}"]))
            continue
        cols = []
        for name in (a, b):
            cols.append(_binned(real[name], synthetic[name]) if kinds[name] == "numeric" else [real[name], synthetic[name]])
        pair = [pd.DataFrame({a: cols[0][i].reset_index(drop=True), b: cols[1][i].reset_index(drop=True)}) for i in (0, 1)]
        scores[f"{a}|{b}"] = contingency_similarity(*pair)
    return {"pair_trends": float(np.mean(list(scores.values()))) if scores else float("nan"),
            "correlation_difference": float(np.mean(gaps)) if gaps else float("nan"), "pairs": scores}


def _features(encoding, frame) -> np.ndarray:
    return encoding.transform(frame).numpy()


def ml_efficacy(train, holdout, synthetic, encoding, seed: int = 0) -> dict:
    """Accuracy on the real held-out rows of a random forest trained on synthetic rows
    (``ml_efficacy``) and on the real training rows (``ml_efficacy_real``); {} without a label."""
    from sklearn.ensemble import RandomForestClassifier

    if encoding.schema.label is None:
        return {}
    test_x, test_y = _features(encoding, holdout), encoding.labels(holdout).numpy()
    out = {}
    for key, frame in (("ml_efficacy", synthetic), ("ml_efficacy_real", train)):
        forest = RandomForestClassifier(n_estimators=100, random_state=seed, n_jobs=1)
        forest.fit(_features(encoding, frame), encoding.labels(frame).numpy())
        out[key] = float((forest.predict(test_x) == test_y).mean())
    out["ml_efficacy_gap"] = out["ml_efficacy_real"] - out["ml_efficacy"]
    return out


def detection(real, synthetic, encoding, seed: int = 0) -> dict:
    """``{"detection_auc", "detection"}``: the ROC AUC of a logistic regression telling real rows
    from synthetic ones (encoded, label included), averaged over 3 stratified folds, and
    SDMetrics' ``LogisticDetection`` score, the mean over folds of ``1 - (2 max(AUC, 1/2) - 1)``."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x = np.concatenate([_with_label(encoding, real), _with_label(encoding, synthetic)])
    y = np.concatenate([np.ones(len(real)), np.zeros(len(synthetic))])
    aucs = []
    for fit_rows, test_rows in StratifiedKFold(n_splits=3, shuffle=True, random_state=seed).split(x, y):
        model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
        model.fit(x[fit_rows], y[fit_rows])
        aucs.append(float(roc_auc_score(y[test_rows], model.predict_proba(x[test_rows])[:, 1])))
    return {"detection_auc": float(np.mean(aucs)),
            "detection": float(1.0 - np.mean([2.0 * max(a, 0.5) - 1.0 for a in aucs]))}


def _with_label(encoding, frame) -> np.ndarray:
    x = _features(encoding, frame)
    if encoding.schema.label is None:
        return x
    ids = encoding.labels(frame).numpy()
    return np.concatenate([x, np.eye(len(encoding.schema.label.categories))[ids]], axis=1)


def table_metrics(train, holdout, synthetic, encoding, seed: int = 0) -> dict:
    """All table metrics of ``synthetic`` rows as one flat dict of floats (per-column and
    per-pair scores left out). Shapes, pair trends and detection compare them with the real
    ``train`` rows the model fitted; ML efficacy and DCR also use the real ``holdout`` rows.
    ``synthetic=holdout`` scores real data the model never saw: the reference a model can reach.
    Since KS and TV shrink with the sample size, the first ``len(holdout)`` synthetic rows are
    scored against that reference; ML efficacy trains on up to ``len(train)`` of them (sample
    ``max(len(train), len(holdout))``). Without ``holdout`` (None), every row is scored and ML
    efficacy, DCR and the privacy report are left out."""
    schema = encoding.schema
    learn, synthetic = synthetic.iloc[:len(train)], (synthetic if holdout is None else synthetic.iloc[:len(holdout)])
    pairs = pair_trends(train, synthetic, schema)
    shapes = column_shapes(train, synthetic, schema)
    out = {"column_shapes": shapes["column_shapes"], "missing_values": shapes["missing_values"],
           "pair_trends": pairs["pair_trends"], "correlation_difference": pairs["correlation_difference"]}
    out.update(detection(train, synthetic, encoding, seed))
    if holdout is not None:
        out.update(ml_efficacy(train, holdout, learn, encoding, seed))
        encoded = [_with_label(encoding, frame) for frame in (synthetic, train, holdout)]
        out["dcr_ratio"] = closest_distance_ratio(*encoded)["dcr_ratio"]
        # every drawn row: an attack's power grows with the samples, and a copy is a copy at any size
        out.update(privacy_report(_with_label(encoding, learn), *encoded[1:], seed=seed))
    return out
