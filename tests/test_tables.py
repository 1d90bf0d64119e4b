"""Tables: column kinds, overrides, bad tables as one-line errors, the encoding's exact round trip,
its saved state, and the reader's Dataset."""
import math

import numpy as np
import pytest
import torch

pd = pytest.importorskip("pandas")

from aigc_engine.errors import InputError
from aigc_engine.io import load_state, save_state
from aigc_engine.data.tablefile import read_table
from aigc_engine.tables import TableEncoding, detect_schema, load_frame
from aigc_engine.tables.encoding import CONTINUOUS_ENCODINGS
from aigc_engine.tables.schema import MAX_NUMERIC_CATEGORIES

MIXED_CSV = """species,island,bill,mass,sex,year,flag
Adelie,Torgersen,39.1,3750,male,2007,True
Adelie,Dream,NA,,,2008,False
Gentoo,Biscoe,46.5,5200,female,2009,True
Chinstrap,Dream,NaN,3500,female,2007,False
Gentoo,Biscoe,50.0,5700,male,2008,True
Adelie,Torgersen,36.7,3450,female,2009,False
Chinstrap,Dream,49.2,3800,male,2008,True
"""


def write(tmp_path, text, name="t.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


def same_cells(a, b) -> bool:
    """Cell by cell, a missing value equal to a missing value, 2007 equal to 2007.0."""
    def cells(col):
        return [None if pd.isna(v) else (v.item() if hasattr(v, "item") else v) for v in col]
    return all(cells(a[c]) == cells(b[c]) for c in a.columns) and list(a.columns) == list(b.columns)


def test_kinds_detected(tmp_path):
    frame = load_frame(write(tmp_path, MIXED_CSV))
    schema = detect_schema(frame, "species")
    kinds = {c.name: c.kind for c in schema.features}
    # year: 3 values in 7 cells; mass: 6 in 6, too many for categories
    assert kinds == {"island": "categorical", "bill": "continuous", "mass": "integer", "sex": "categorical",
                     "year": "categorical", "flag": "categorical"}
    assert schema.label.name == "species" and schema.class_names == ["Adelie", "Chinstrap", "Gentoo"]
    by_name = {c.name: c for c in schema.features}
    assert by_name["bill"].has_missing and by_name["sex"].has_missing and not by_name["island"].has_missing
    assert by_name["flag"].categories == [False, True] and by_name["year"].categories == [2007, 2008, 2009]
    assert (by_name["bill"].low, by_name["bill"].high) == (36.7, 50.0) and by_name["bill"].decimals == 1


def test_decimals_of_continuous_columns():
    frame = pd.DataFrame({"a": [1.25, 2.5, 3.0, 4.125, 5.0, 6.5, 7.0, 8.25, 9.5, 10.75, 11.0, 12.5],
                          "b": np.linspace(0, 1, 12) * np.pi})
    by_name = {c.name: c for c in detect_schema(frame).features}
    assert by_name["a"].decimals == 3 and by_name["b"].decimals is None  # computed values: full precision
    enc = TableEncoding.fit(frame, detect_schema(frame))
    out = enc.decode(enc.transform(frame) + 0.01)
    assert np.array_equal(out["a"].to_numpy(), np.round(out["a"].to_numpy(), 3))
    assert not np.array_equal(out["b"].to_numpy(), np.round(out["b"].to_numpy(), 8))


def test_many_integers_are_integer_kind():
    frame = pd.DataFrame({"n": np.arange(MAX_NUMERIC_CATEGORIES + 1) * 3, "x": np.linspace(0, 1, 11)})
    kinds = {c.name: c.kind for c in detect_schema(frame).features}
    assert kinds == {"n": "integer", "x": "continuous"}
    few = pd.DataFrame({"n": np.arange(MAX_NUMERIC_CATEGORIES) % 4, "x": np.arange(MAX_NUMERIC_CATEGORIES) % 3 / 2})
    assert [c.kind for c in detect_schema(few).features] == ["categorical", "categorical"]
    assert detect_schema(few).features[1].categories == [0, 0.5, 1]


def test_overrides(tmp_path):
    frame = load_frame(write(tmp_path, MIXED_CSV))
    schema = detect_schema(frame, None, categorical="bill", integer="mass,year", ignore="flag,island")
    kinds = {c.name: c.kind for c in schema.features}
    assert {c.name: c.kind for c in detect_schema(frame, categorical="mass").features}["mass"] == "categorical"
    assert kinds == {"species": "categorical", "bill": "categorical", "mass": "integer", "sex": "categorical",
                     "year": "integer"}
    assert schema.ignored == ["flag", "island"] and schema.label is None
    assert {c.name: c.kind for c in detect_schema(frame, categorical=["bill"]).features}["bill"] == "categorical"


@pytest.mark.parametrize("options, message", [
    ({"categorical": "bill,nope"}, "dataset.categorical: no column 'nope'"),
    ({"integer": "Bill"}, "dataset.integer: no column 'Bill'"),
    ({"ignore": "x"}, "dataset.ignore: no column 'x'"),
    ({"label_column": "kind"}, "dataset.label_column: no column 'kind'"),
    ({"integer": "bill"}, "column 'bill' in dataset.integer holds"),
    ({"integer": "island"}, "column 'island' in dataset.integer holds 'Torgersen'"),
    ({"categorical": "bill", "integer": "bill"}, "column 'bill' is in both"),
    ({"label_column": "sex"}, "label column 'sex' has 1 missing values"),
    ({"label_column": "year", "ignore": "year"}, "column 'year' is in both dataset.label_column and dataset.ignore"),
])
def test_bad_overrides_are_one_line_errors(tmp_path, options, message):
    frame = load_frame(write(tmp_path, MIXED_CSV))
    with pytest.raises(InputError) as err:
        detect_schema(frame, options.pop("label_column", None), **options)
    assert message in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("text, message", [
    ("a,b\n1,2\n3\n", "line 3: 1 fields, the header has 2"),
    ("a,b\n1,2\n3,4,5\n", "line 3: 3 fields, the header has 2"),
    ("a,b\n", "has a header but no rows"),
    ("", "is empty"),
])
def test_bad_files_are_one_line_errors(tmp_path, text, message):
    with pytest.raises(InputError) as err:
        read_table(write(tmp_path, text))
    assert message in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("text, message", [
    ("a,b\n1,\n2,NA\n3,NaN\n", "column 'b' holds only missing values (drop it with dataset.ignore=b)"),
    ("a,b\n1,2.5\n2,inf\n3,1\n", "column 'b' row 2: inf is not a finite number"),
    ("a,b\n1,2.5\n2,1\n3,-inf\n", "column 'b' row 3: -inf is not a finite number"),
])
def test_bad_columns_name_the_column(tmp_path, text, message):
    with pytest.raises(InputError) as err:
        read_table(write(tmp_path, text))
    assert message in str(err.value) and "\n" not in str(err.value)


def test_missing_file_and_parquet(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        read_table(tmp_path / "nope.csv")
    pytest.importorskip("pyarrow")
    frame = load_frame(write(tmp_path, MIXED_CSV))
    frame.to_parquet(tmp_path / "t.parquet")
    ds = read_table(tmp_path / "t.parquet", label_column="species")
    assert ds.x.shape == read_table(write(tmp_path, MIXED_CSV), label_column="species").x.shape


@pytest.mark.parametrize("continuous", CONTINUOUS_ENCODINGS)
def test_round_trip_is_exact_on_training_rows(tmp_path, continuous):
    frame = load_frame(write(tmp_path, MIXED_CSV))
    schema = detect_schema(frame, "species", integer="mass")
    enc = TableEncoding.fit(frame, schema, continuous)
    x = enc.transform(frame)
    assert x.dtype == torch.float32 and x.shape == (len(frame), enc.width)
    back = enc.decode(x, enc.labels(frame))
    assert same_cells(back, frame)  # continuous values too: written back at the file's decimals
    assert list(back.columns) == list(frame.columns)
    assert str(back["mass"].dtype) == "Int64" and str(back["year"].dtype) == "int64"
    assert back["flag"].dtype == bool and back["species"].tolist()[:3] == ["Adelie", "Adelie", "Gentoo"]


def test_round_trip_on_penguins():
    palmerpenguins = pytest.importorskip("palmerpenguins")
    frame = palmerpenguins.load_penguins()
    enc = TableEncoding.fit(frame, detect_schema(frame, "species"))
    back = enc.decode(enc.transform(frame), enc.labels(frame))
    assert same_cells(back, frame)
    assert back["year"].dtype == np.int64 and str(back["body_mass_g"].dtype) == "Int64"


def test_blocks_describe_the_matrix(tmp_path):
    frame = load_frame(write(tmp_path, MIXED_CSV))
    enc = TableEncoding.fit(frame, detect_schema(frame, "species", integer="mass"))
    kinds = [(b.column, b.kind, b.stop - b.start) for b in enc.blocks]
    assert kinds == [("island", "categorical", 3), ("bill", "continuous", 1), ("bill", "missing", 1),
                     ("mass", "integer", 1), ("mass", "missing", 1), ("sex", "categorical", 3),
                     ("year", "categorical", 3), ("flag", "categorical", 2)]
    sex = enc.blocks[5]
    assert sex.categories == ["female", "male", None] and sex.one_hot
    x = enc.transform(frame)
    for b in enc.blocks:
        if b.one_hot:
            assert torch.all(x[:, b.slice].sum(1) == 1)
    assert enc.describe()[0] == {"column": "island", "kind": "categorical", "role": "one_hot", "start": 0, "stop": 3,
                                 "categories": ["Biscoe", "Dream", "Torgersen"]}
    assert [b.role.value for b in enc.blocks[1:3]] == ["value", "missing"]


def test_decode_clips_rounds_and_thresholds(tmp_path):
    frame = load_frame(write(tmp_path, MIXED_CSV))
    enc = TableEncoding.fit(frame, detect_schema(frame, "species", integer="mass"))
    x = enc.transform(frame)
    blocks = {(b.column, b.kind): b for b in enc.blocks}
    x[:, blocks["mass", "integer"].start] = torch.linspace(-10, 10, len(frame))
    x[:, blocks["bill", "missing"].start] = torch.tensor([0.4, 0.6, 0.2, 0.9, 0.0, 0.51, 0.49])
    x[:, blocks["island", "categorical"].slice] = torch.tensor([0.1, 0.7, 0.2])  # soft scores: argmax
    back = enc.decode(x, enc.labels(frame))
    assert back["mass"].min() == 3450 and back["mass"].max() == 5700
    assert back["bill"].isna().tolist() == [False, True, False, True, False, True, False]
    assert set(back["island"]) == {"Dream"}


def test_transform_refuses_unseen_values(tmp_path):
    frame = load_frame(write(tmp_path, MIXED_CSV))
    enc = TableEncoding.fit(frame, detect_schema(frame, "species"))
    other = frame.copy()
    other.loc[2, "island"] = "Atlantis"
    with pytest.raises(InputError, match="column 'island' row 3: category 'Atlantis' was not in the training rows"):
        enc.transform(other)
    other = frame.copy()
    other.loc[0, "island"] = None
    with pytest.raises(InputError, match="column 'island' row 1: a missing value"):
        enc.transform(other)
    with pytest.raises(InputError, match="no class 'Emperor'.*Adelie, Chinstrap, Gentoo"):
        enc.class_id("Emperor")
    assert enc.class_id("Gentoo") == 2
    with pytest.raises(InputError, match="needs the class ids"):
        enc.decode(enc.transform(frame))
    with pytest.raises(InputError, match="7 class ids in 0..2 expected for 'species'"):
        enc.decode(enc.transform(frame), torch.full((7,), 3))
    with pytest.raises(InputError, match="lacks its label column 'species'"):
        enc.labels(frame.drop(columns=["species"]))


@pytest.mark.parametrize("continuous", CONTINUOUS_ENCODINGS)
def test_state_round_trip_without_pickle(tmp_path, continuous):
    frame = load_frame(write(tmp_path, MIXED_CSV))
    enc = TableEncoding.fit(frame, detect_schema(frame, "species", integer="mass"), continuous)
    save_state(tmp_path / "encoding.safetensors", enc.state_dict())
    again = TableEncoding.from_state(load_state(tmp_path / "encoding.safetensors"))
    assert again.describe() == enc.describe() and again.schema == enc.schema
    x = enc.transform(frame)
    assert torch.equal(again.transform(frame), x)
    assert same_cells(again.decode(x, enc.labels(frame)), enc.decode(x, enc.labels(frame)))
    with pytest.raises(InputError, match="format"):
        TableEncoding.from_state({**enc.state_dict(), "format": 99})


def test_reader_gives_a_dataset(tmp_path):
    ds = read_table(write(tmp_path, MIXED_CSV, "penguins.csv"), label_column="species", ignore="flag")
    assert ds.name == "penguins.csv" and ds.num_classes == 3 and ds.class_names == ["Adelie", "Chinstrap", "Gentoo"]
    assert ds.y.tolist() == [0, 0, 2, 1, 2, 0, 1] and ds.x.shape == (7, ds.encoding.width)
    assert ds.options == {"label_column": "species", "ignore": "flag"}
    assert torch.isfinite(ds.x).all()
    unlabelled = read_table(write(tmp_path, MIXED_CSV), categorical="bill")
    assert unlabelled.y is None and unlabelled.num_classes == 0
    decoded = ds.encoding.decode(ds.x, ds.y)  # an ignored column is kept, empty: the header is the file's
    assert list(decoded.columns)[-1] == "flag" and decoded["flag"].isna().all()


def test_constant_column_and_semicolons(tmp_path):
    ds = read_table(write(tmp_path, "a;b\n1.5;7.25\n2.5;7.25\n3.5;7.25\n"), delimiter=";")
    assert torch.isfinite(ds.x).all()
    back = ds.encoding.decode(ds.x)
    assert back["b"].tolist() == [7.25] * 3 and back["a"].tolist() == [1.5, 2.5, 3.5]
    assert ds.x[0, 0] < 0 == ds.x[1, 0] < ds.x[2, 0]  # normal scores, the median at 0
    standard = read_table(tmp_path / "t.csv", delimiter=";", continuous="standard")
    assert math.isclose(float(standard.x[:, 0].std(unbiased=False)), 1.0, rel_tol=1e-5)


@pytest.mark.parametrize("continuous", CONTINUOUS_ENCODINGS)
def test_holdout_split_refits_the_encoding_on_the_training_rows(tmp_path, continuous):
    """Held-out rows shape none of the encoding's numbers, yet still encode (same layout), and
    both parts decode to the file's rows."""
    rng = np.random.default_rng(0)
    n = 60
    frame = pd.DataFrame({"species": rng.choice(["A", "B"], n), "bill": rng.normal(40, 3, n).round(2),
                          "mass": rng.integers(3000, 6000, n), "sex": rng.choice(["f", "m", None], n)})
    frame.loc[[3, 50], "bill"] = np.nan
    frame.to_csv(tmp_path / "t.csv", index=False)
    ds = read_table(tmp_path / "t.csv", label_column="species")
    ds.encoding = TableEncoding.fit(load_frame(tmp_path / "t.csv"), ds.encoding.schema, continuous)
    ds._data = ds.encoding.transform(load_frame(tmp_path / "t.csv"))
    train, held = ds.holdout_split(0.3, seed=1)
    assert train.encoding is held.encoding and train.encoding.width == ds.encoding.width
    assert [b["column"] for b in train.encoding.describe()] == [b["column"] for b in ds.encoding.describe()]
    rows = train.encoding.decode(train.x, train.y)
    refit = TableEncoding.fit(rows, train.encoding.schema, continuous)
    assert train.encoding.params.keys() == refit.params.keys()
    for name, p in refit.params.items():
        assert {k: pytest.approx(v, rel=1e-6) for k, v in p.items()} == train.encoding.params[name]
    if continuous == "standard":
        assert train.encoding.params["bill"]["mean"] == pytest.approx(rows["bill"].mean(), rel=1e-6)
        assert train.encoding.params["bill"]["mean"] != pytest.approx(frame["bill"].mean(), rel=1e-6)
    spec = {s.name: s for s in train.encoding.schema.features}["mass"]  # held-out rows decode unclipped
    assert (spec.low, spec.high) == (frame["mass"].min(), frame["mass"].max())
    np.testing.assert_allclose(train.encoding.label_freq, rows["species"].value_counts(normalize=True).sort_index())
    decoded = pd.concat([train.encoding.decode(p.x, p.y) for p in (train, held)])
    decoded = decoded.sort_values(["mass", "species"]).reset_index(drop=True)
    original = ds.encoding.decode(ds.x, ds.y).sort_values(["mass", "species"]).reset_index(drop=True)
    assert len(decoded) == n and same_cells(decoded.drop(columns="bill"), original.drop(columns="bill"))
    np.testing.assert_allclose(decoded["bill"].to_numpy(float), original["bill"].to_numpy(float), rtol=1e-6)


def test_quantile_encoding_gaussianises_skew_and_atoms():
    gen = np.random.default_rng(0)
    frame = pd.DataFrame({"skewed": np.round(gen.lognormal(0, 1, 2000), 3),
                          "atom": np.where(gen.random(2000) < 0.6, 0.0, np.round(gen.exponential(5, 2000), 2))})
    enc = TableEncoding.fit(frame, detect_schema(frame), "quantile")
    z = enc.transform(frame).double()
    skew = ((z[:, 0] - z[:, 0].mean()) ** 3).mean() / z[:, 0].std() ** 3
    assert abs(z[:, 0].mean()) < 0.01 and abs(z[:, 0].std() - 1) < 0.02 and abs(skew) < 0.05
    assert same_cells(enc.decode(z), frame)
    back = enc.decode(torch.randn(20000, 2, generator=torch.Generator().manual_seed(0)))
    assert abs((back["atom"] == 0).mean() - 0.6) < 0.02  # the atom of zeros keeps its rate
    assert abs(np.median(back["skewed"]) - np.median(frame["skewed"])) < 0.05
    assert back["skewed"].min() >= frame["skewed"].min() and back["skewed"].max() <= frame["skewed"].max()
