"""Table metrics: each formula on known cases, cross-checked against SDMetrics where it is installed."""
import numpy as np
import pytest

pd = pytest.importorskip("pandas")

from aigc_engine.metrics.tables import (column_shapes, contingency_similarity, correlation_similarity, detection,
                                        ks_complement, missing_similarity, ml_efficacy, pair_trends,
                                        table_metrics, tv_complement)
from aigc_engine.tables import TableEncoding, detect_schema


def mixed_frame(n: int, seed: int, shift: float = 0.0) -> "pd.DataFrame":
    """Two correlated numbers, an integer, a category tied to the numbers, a label, missing values."""
    rng = np.random.default_rng(seed)
    label = rng.integers(0, 3, n)
    a = rng.normal(label * 2.0 + shift, 1.0)
    b = 0.8 * a + rng.normal(0, 0.5, n)
    frame = pd.DataFrame({
        "kind": np.array(["x", "y", "z"], dtype=object)[label],
        "a": a, "b": b,
        "count": rng.integers(0, 40, n),
        "colour": np.where(a > 2 + shift, "red", np.where(rng.random(n) < 0.5, "blue", "green")).astype(object),
    })
    frame.loc[rng.random(n) < 0.1, "b"] = np.nan
    frame.loc[rng.random(n) < 0.05, "colour"] = np.nan
    return frame


@pytest.fixture(scope="module")
def encoded():
    train = mixed_frame(600, 0)
    return train, TableEncoding.fit(train, detect_schema(train, "kind"))


def test_ks_and_tv_on_known_cases():
    assert ks_complement([1, 2, 3], [1, 2, 3]) == 1.0
    assert ks_complement([1, 2, 3], [10, 11]) == 0.0
    assert ks_complement([1, 2, 3, 4], [3, 4, 5, 6]) == 0.5
    assert ks_complement([1.0, np.nan, 2.0], [1.0, 2.0]) == 1.0  # missing values dropped
    assert tv_complement(["a", "a", "b", "b"], ["a", "b", "b", "b"]) == 0.75
    assert tv_complement(["a"], ["c"]) == 0.0
    assert missing_similarity([1, np.nan, 2, 3], [1, 2, 3, 4]) == 0.75


def test_pairs_on_known_cases():
    x = np.arange(20.0)
    real = pd.DataFrame({"u": x, "v": 2 * x})
    assert correlation_similarity(real, real) == pytest.approx(1.0)
    assert correlation_similarity(real, pd.DataFrame({"u": x, "v": -x})) == pytest.approx(0.0)
    cats = pd.DataFrame({"p": list("aabb"), "q": list("xyxy")})
    assert contingency_similarity(cats, cats) == 1.0
    assert contingency_similarity(cats, pd.DataFrame({"p": list("aabb"), "q": list("xxyy")})) == 0.5


def test_cross_check_against_sdmetrics(encoded):
    sdmetrics = pytest.importorskip("sdmetrics")
    from sdmetrics.column_pairs import ContingencySimilarity, CorrelationSimilarity
    from sdmetrics.single_column import KSComplement, MissingValueSimilarity, TVComplement

    train, enc = encoded
    synthetic = mixed_frame(400, 1, shift=0.4)
    for col in ("a", "b", "count"):
        assert ks_complement(train[col], synthetic[col]) == pytest.approx(
            KSComplement.compute(train[col], synthetic[col]), abs=1e-12)
    for col in ("colour", "kind"):
        assert tv_complement(train[col], synthetic[col]) == pytest.approx(
            TVComplement.compute(train[col], synthetic[col]), abs=1e-9)
    assert missing_similarity(train["b"], synthetic["b"]) == pytest.approx(
        MissingValueSimilarity.compute(train["b"], synthetic["b"]), abs=1e-12)
    assert correlation_similarity(train[["a", "b"]], synthetic[["a", "b"]]) == pytest.approx(
        CorrelationSimilarity.compute(train[["a", "b"]], synthetic[["a", "b"]]), abs=1e-9)
    assert contingency_similarity(train[["kind", "colour"]], synthetic[["kind", "colour"]]) == pytest.approx(
        ContingencySimilarity.compute(train[["kind", "colour"]], synthetic[["kind", "colour"]]), abs=1e-9)
    ours = pair_trends(train, synthetic, enc.schema)["pairs"]
    for pair in ("a|colour", "kind|count"):  # mixed pairs: the numeric column in 10 bins of its real range
        cols = pair.split("|")
        numeric = [c for c in cols if c in ("a", "b", "count")]
        theirs = ContingencySimilarity.compute(train[cols], synthetic[cols], continuous_column_names=numeric)
        assert ours[pair] == pytest.approx(theirs, abs=1e-9)


def test_detection_cross_check_against_sdmetrics(encoded):
    pytest.importorskip("sdmetrics")
    from sdmetrics.single_table import LogisticDetection

    train, enc = encoded
    far = mixed_frame(300, 2, shift=6.0)
    far["count"] = far["count"] + 0  # same kinds, far apart in a and b
    ours = detection(train, far, enc)
    assert ours["detection_auc"] > 0.95 and ours["detection"] < 0.1
    np.random.seed(0)
    assert LogisticDetection.compute(train, far) < 0.1
    same = mixed_frame(600, 3)
    ours = detection(train, same, enc)
    np.random.seed(0)
    theirs = LogisticDetection.compute(train, same)
    assert ours["detection"] > 0.75 and abs(ours["detection"] - theirs) < 0.2


def test_column_shapes_rank_a_worse_sample_lower(encoded):
    train, enc = encoded
    close, far = mixed_frame(600, 4), mixed_frame(600, 4, shift=2.0)
    good, bad = column_shapes(train, close, enc.schema), column_shapes(train, far, enc.schema)
    assert set(good["columns"]) == {"kind", "a", "b", "count", "colour"}
    assert good["column_shapes"] > 0.9 > bad["column_shapes"]
    assert pair_trends(train, close, enc.schema)["pair_trends"] > pair_trends(train, far, enc.schema)["pair_trends"]


def test_ml_efficacy_and_full_report(encoded):
    train, enc = encoded
    holdout = mixed_frame(300, 5)
    shuffled = mixed_frame(600, 6)
    shuffled["kind"] = np.random.default_rng(0).permutation(shuffled["kind"].to_numpy())  # label unrelated
    real = ml_efficacy(train, holdout, mixed_frame(600, 7), enc)
    noise = ml_efficacy(train, holdout, shuffled, enc)
    assert real["ml_efficacy_real"] > 0.6 and abs(real["ml_efficacy"] - real["ml_efficacy_real"]) < 0.1
    assert noise["ml_efficacy"] < real["ml_efficacy"] - 0.2
    report = table_metrics(train, holdout, mixed_frame(300, 8), enc)
    assert set(report) == {"column_shapes", "missing_values", "pair_trends", "correlation_difference", "ml_efficacy",
                           "ml_efficacy_real", "ml_efficacy_gap", "detection_auc", "detection", "dcr_ratio",
                           "exact_copies", "mia_distance_auc", "mia_domias_auc"}
    assert 0.7 < report["dcr_ratio"] < 1.4 and report["exact_copies"] == 0
    copies = train.iloc[:300].reset_index(drop=True)
    copied = table_metrics(train, holdout, copies, enc)
    assert copied["dcr_ratio"] == 0.0 and copied["exact_copies"] == 1.0


def test_no_label_no_ml_efficacy():
    train = mixed_frame(200, 0).drop(columns=["kind"])
    enc = TableEncoding.fit(train, detect_schema(train))
    assert ml_efficacy(train, mixed_frame(100, 1), mixed_frame(100, 2), enc) == {}
