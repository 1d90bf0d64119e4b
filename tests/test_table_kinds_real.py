"""The column kinds of real tables: datetimes, keys, many-level categoricals and texts, each
detected, forced, round-tripped (where that means something), scored, drawn, and never releasing
a training key, a rare level or a rare text; one table of all four through the CLI."""
import json
import warnings

import numpy as np
import pytest
import torch

pd = pytest.importorskip("pandas")

from aigc_engine import plotting
from aigc_engine.errors import InputError
from aigc_engine.metrics.tables import column_shapes, pair_trends
from aigc_engine.tables import TableEncoding, detect_schema, table_outputs
from aigc_engine.tables.encoding import CONTINUOUS_ENCODINGS
from aigc_engine.tables.kinds.manylevel import MAX_LEVELS, MIN_COUNT

N = 600


def table(n=N, seed=0):
    """A date, a timestamp, a time of day, an integer id, a string key, a 300-level column whose
    levels are held by 1..12 rows, a text column and a number."""
    rng = np.random.default_rng(seed)
    seconds = rng.integers(1_420_070_400, 1_451_606_399, n)
    levels = rng.permutation(np.resize(np.repeat(np.arange(300), np.arange(300) % 12 + 1), max(n, 1950)))[:n]
    notes = np.where(rng.random(n) < 0.5, rng.integers(0, 20, n), 1000 + np.arange(n))  # 20 common, the rest unique
    return pd.DataFrame({
        "date": pd.to_datetime(seconds, unit="s").strftime("%Y-%m-%d"),
        "stamp": pd.to_datetime(seconds, unit="s").strftime("%Y-%m-%dT%H:%M:%SZ"),
        "time": pd.to_datetime(seconds % 86400, unit="s").strftime("%H:%M:%S"),
        "id": rng.permutation(n) * 13 + 1000,
        "order": [f"2015-{i:06d}" for i in rng.permutation(n) + 1],
        "city": [f"city-{v}" for v in levels],
        "note": [f"a note about item {v} that is long enough" for v in notes],
        "x": np.round(rng.normal(size=n), 3),
    })


def schema_of(frame, **options):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the text kind's line
        return detect_schema(frame, **options)


KINDS = {"date": "datetime", "stamp": "datetime", "time": "datetime", "id": "key", "order": "key",
         "city": "many_level", "note": "text", "x": "continuous"}


def test_each_kind_is_detected():
    assert {s.name: s.kind for s in schema_of(table()).features} == KINDS


def test_the_text_kind_says_what_it_does_in_one_line():
    line = r"^column note: text, \d\d\d values: modelled by its length and drawn from the \d+ values held by >= 5 rows$"
    with pytest.warns(UserWarning, match=line):
        detect_schema(table()[["note"]])


@pytest.mark.parametrize("values, fmt, write", [
    (["2015-01-01", "2015-12-31"], "%Y-%m-%d", "%Y-%m-%d"),
    (["2015-01-01 10:00:00", "2015-06-30 23:59:59"], "%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M:%S"),
    (["2009-12-23T17:38:18Z", "2010-01-01T00:00:00Z"], "%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M:%SZ"),
    (["2016-03-01T10:00:00+01:00", "2016-03-02T11:30:00+01:00"], "%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M:%S%:z"),
    (["01/05/2015", "12/31/2016"], "%m/%d/%Y", "%m/%d/%Y"),
    (["1/5/2015", "12/31/2016"], "%m/%d/%Y", "%-m/%-d/%Y"),
    (["25/12/2015", "01/01/2016"], "%d/%m/%Y", "%d/%m/%Y"),
    (["11:38:36", "23:05:00"], "%H:%M:%S", "%H:%M:%S"),
])
def test_datetime_formats_are_inferred_and_written_back_exactly(values, fmt, write):
    frame = pd.DataFrame({"d": values * 10 + [None]})
    (spec,) = schema_of(frame).features
    assert spec.kind == "datetime" and spec.details["format"] == fmt and spec.details["write"] == write
    for continuous in CONTINUOUS_ENCODINGS:
        enc = TableEncoding.fit(frame, schema_of(frame), continuous)
        back = enc.decode(enc.transform(frame))
        assert back["d"].tolist()[:-1] == frame["d"].tolist()[:-1] and pd.isna(back["d"].iloc[-1])


@pytest.mark.parametrize("continuous", CONTINUOUS_ENCODINGS)
def test_kept_values_round_trip_exactly_and_state_reloads(continuous):
    rows = table()
    enc = TableEncoding.fit(rows, schema_of(rows), continuous)
    back = enc.decode(enc.transform(rows))
    assert list(back.columns) == list(rows.columns)
    for column in ("date", "stamp", "time", "x"):
        assert back[column].tolist() == rows[column].tolist()
    kept = rows["city"].isin(enc.schema.features[5].categories)
    assert kept.any() and back["city"][kept].tolist() == rows["city"][kept].tolist()
    again = TableEncoding.from_state(enc.state_dict())
    assert torch.equal(again.transform(rows), enc.transform(rows)) and again.describe() == enc.describe()


def test_kinds_are_forced_by_kinds_or_by_their_lists():
    rows = table()
    schema = schema_of(rows, kinds="date:many_level,x:continuous", text="city", many_level="order")
    kinds = {s.name: s.kind for s in schema.features}
    assert (kinds["date"], kinds["city"], kinds["order"]) == ("many_level", "text", "many_level")
    small = rows.iloc[:10]  # too few rows to detect keys: forced, they are
    assert schema_of(small, kinds="id:key,order:key").features[3].kind == "key"
    assert schema_of(small[["order"]]).features[0].kind == "categorical"


@pytest.mark.parametrize("options, message", [
    ({"kinds": "city:datetime"}, "column 'city' in dataset.kinds holds 'city-"),
    ({"key": "note"}, "column 'note' in dataset.key holds 'a note about item"),
    ({"key": "x"}, "a key is an integer or a string, not a float"),
    ({"key": "city"}, "twice: a key is unique per row"),
    ({"text": "id"}, "a number, not text"),
])
def test_bad_forced_kinds_are_one_line(options, message):
    with pytest.raises(InputError) as err:
        schema_of(table(), **options)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_measurements_and_small_tables_are_not_keys():
    rows = pd.DataFrame({"income": np.arange(50) * 1013 + 7, "name": [f"n{i}" for i in range(50)]})
    assert [s.kind for s in schema_of(rows).features] == ["integer", "key"]
    assert [s.kind for s in schema_of(rows.iloc[:15]).features] == ["integer", "categorical"]


def decoded(enc, n, seed=0):
    torch.manual_seed(seed)
    return enc.decode(table_outputs(torch.randn(n, enc.width) * 3, enc.blocks, "sample"))


def test_keys_are_new_unique_and_in_the_values_pattern():
    rows = table()
    enc = TableEncoding.fit(rows, schema_of(rows))
    assert all(not span for column, span in zip(enc.columns, enc.spans) if column.spec.kind == "key")
    first, second = decoded(enc, 300), decoded(enc, 300, seed=1)  # two chunks of one sampling
    ids, orders = pd.concat([first["id"], second["id"]]), pd.concat([first["order"], second["order"]])
    assert ids.dtype == np.int64 and ids.is_unique and not ids.isin(rows["id"]).any()
    assert orders.is_unique and not orders.isin(rows["order"]).any()
    assert orders.str.fullmatch(r"2015-\d{6}").all()


def test_shape_keys_never_repeat_a_training_key():
    rng = np.random.default_rng(0)
    letters = np.array(list("ABCDEFGHIJKLMNOPQRSTUVWXYZ"))
    space = [f"{a}{d}-" for a in letters for d in range(10)]  # every key of shape 'A9-'
    rows = pd.DataFrame({"code": rng.choice(space, 200, replace=False)})
    (spec,) = schema_of(rows).features
    assert spec.kind == "key" and spec.details["pattern"] == "shape"
    enc = TableEncoding.fit(rows, schema_of(rows))
    made = enc.decode(np.zeros((60, 0)))["code"]
    assert made.is_unique and not made.isin(rows["code"]).any() and made.str.fullmatch(r"[A-Z]\d-").all()
    with pytest.raises(InputError, match="cannot make 1 new keys"):
        enc.decode(np.zeros((1, 0)))
    refit = enc.refit(pd.DataFrame({"code": ["Q1-", "Q2-", "Q3-"]}))
    assert set(refit.params["code"]["hashes"]) >= set(enc.params["code"]["hashes"])  # a split keeps the table's


def test_64_bit_integer_keys_are_read_and_kept_exactly(tmp_path):
    from aigc_engine.data.tablefile import read_table

    ids = [1_064_946_542_436_454_401 + 7 * i for i in range(30)]
    path = tmp_path / "tweets.csv"
    pd.DataFrame({"id_str": ids, "likes": np.arange(30) % 4}).to_csv(path, index=False)
    ds = read_table(path)
    spec = ds.encoding.schema.features[0]
    assert spec.kind == "key" and spec.details["next"] == ids[-1] + 1
    made = ds.encoding.decode(ds.x)["id_str"]
    assert made.dtype == np.int64 and made.tolist() == list(range(ids[-1] + 1, ids[-1] + 31))


def test_many_levels_have_bounded_width_and_no_rare_level_is_released():
    rows = table(2000)
    enc = TableEncoding.fit(rows, schema_of(rows))
    (span,) = enc.spans[list(KINDS).index("city")]
    assert span.width == MAX_LEVELS + 1  # the kept levels and "other"; no missing slot
    counts = rows["city"].value_counts()
    rare = set(counts[counts < MIN_COUNT].index)
    back = decoded(enc, 3000)["city"]
    assert rare and not (set(back) & rare) and set(back) <= set(counts.index)
    pooled = set(enc.schema.features[5].details["pooled"])
    assert pooled and set(back) & pooled  # the "other" slot draws pooled levels
    unseen = rows.iloc[:1].assign(city="atlantis")
    assert enc.transform(unseen)[0, span.start + MAX_LEVELS] == 1.0  # a level never seen is "other"


def test_no_rare_text_is_released():
    rows = table(1000)
    enc = TableEncoding.fit(rows, schema_of(rows))
    counts = rows["note"].value_counts()
    back = decoded(enc, 2000)["note"]
    assert set(back) <= set(counts[counts >= MIN_COUNT].index)
    words = "alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november oscar".split()
    pairs = pd.DataFrame({"t": [f"{a} {b}" for i, a in enumerate(words) for b in words[i + 1:]]})  # 105, each once
    with pytest.warns(UserWarning, match=r"written as words found in >= 5 rows \(15\), never a training value$"):
        schema = detect_schema(pairs)
    enc = TableEncoding.fit(pairs, schema)
    back = enc.decode(enc.transform(pairs))["t"]  # lengths of pairs: many draws are pairs, and are drawn again
    assert back.str.split().map(len).max() >= 2 and not back.isin(pairs["t"]).any()
    assert set(" ".join(back).split()) <= set(words)
    lonely = pd.DataFrame({"t": [f"t{i} u{i * 7}" for i in range(150)]})  # no word twice
    with pytest.warns(UserWarning, match="left empty"):
        schema = detect_schema(lonely)
    assert TableEncoding.fit(lonely, schema).decode(np.zeros((3, 1)))["t"].isna().all()


def test_texts_whose_words_are_all_training_values_decode():
    """Order ids without spaces, each held by 5 rows, are many-level; forced to be text, every
    frequent word is a training value, so a one-word text is always one (the draws never
    ended); words are added until it is not."""
    ids = pd.DataFrame({"t": [f"2015-{i:06d}" for i in range(8) for _ in range(5)] +
                             [f"2015-{i:06d}" for i in range(8, 300)]})
    assert detect_schema(ids).features[0].kind == "many_level"
    with pytest.warns(UserWarning, match=r"written as words found in >= 5 rows \(8\)"):
        schema = detect_schema(ids, text="t")
    enc = TableEncoding.fit(ids, schema)
    back = enc.decode(enc.transform(ids))["t"]
    assert not back.isin(ids["t"]).any() and back.str.split().map(len).min() >= 2
    assert set(" ".join(back).split()) <= set(ids["t"])


def test_metrics_score_dates_and_texts_and_skip_keys(tmp_path):
    rows = table()
    schema = schema_of(rows)
    enc = TableEncoding.fit(rows, schema)
    synth = decoded(enc, N)
    scores = column_shapes(rows, synth, schema)["columns"]
    assert set(scores) == set(KINDS) - {"id", "order"} and all(0 <= v <= 1 for v in scores.values())
    assert column_shapes(rows, rows, schema)["column_shapes"] == 1.0
    assert "id|x" not in pair_trends(rows, synth, schema)["pairs"]
    plotting.table_columns(rows, synth, tmp_path / "samples.png", schema)
    assert (tmp_path / "samples.png").stat().st_size > 0


def test_ignored_columns_decode_empty():
    rows = table()
    enc = TableEncoding.fit(rows, schema_of(rows, ignore="note,x"))
    back = enc.decode(enc.transform(rows))
    assert list(back.columns) == list(rows.columns) and back["note"].isna().all() and back["x"].isna().all()


def test_a_table_of_every_kind_through_the_cli(tmp_path):
    from click.testing import CliRunner

    from aigc_engine.cli import cli

    rows = table()
    path, out, run = tmp_path / "mixed.csv", tmp_path / "synth.csv", tmp_path / "run"
    rows.to_csv(path, index=False)
    invoke = lambda *a: CliRunner().invoke(cli, [str(v) for v in a], catch_exceptions=False)  # noqa: E731
    result = invoke("run", "gmm", "--dataset", path, "--set", "n_components=2", "--out", run, "--no-progress")
    assert result.exit_code == 0, result.output
    assert "column note: text" in result.output
    assert invoke("sample", run, "-n", 500, "-o", out).exit_code == 0
    synth = pd.read_csv(out)
    assert list(synth.columns) == list(rows.columns) and synth["id"].dtype == np.int64
    assert synth["id"].is_unique and not synth["id"].isin(rows["id"]).any() and synth["order"].is_unique
    assert synth["date"].between(rows["date"].min(), rows["date"].max()).all()
    assert synth["date"].str.fullmatch(r"\d{4}-\d\d-\d\d").all() and synth["stamp"].str.endswith("Z").all()
    counts = rows["city"].value_counts()
    assert set(synth["city"]) <= set(counts[counts >= MIN_COUNT].index)
    result = invoke("eval", run, "--no-progress")
    assert result.exit_code == 0, result.output
    scores = json.JSONDecoder().raw_decode(result.output[result.output.index("{"):])[0]
    assert 0 < scores["column_shapes"] <= 1
