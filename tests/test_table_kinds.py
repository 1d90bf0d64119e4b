"""Column kinds as classes: the registry, detection, overrides generated from it, each kind's
exact round trip and state, and the typed block contract models read (the table output head)."""
import inspect

import pytest
import torch

pd = pytest.importorskip("pandas")

from aigc_engine.data.readers import BUILTIN_READERS
from aigc_engine.errors import InputError
from aigc_engine.tables import (KINDS, Block, BlockRole, ColumnKind, TableEncoding, detect_schema, kind_class,
                                layout_from_json, layout_to_json, observed_mask, table_outputs)
from aigc_engine.tables.encoding import CONTINUOUS_ENCODINGS
from aigc_engine.tables.kinds import override_options

FRAME = {
    "cat": ["a", "b", None, "a", "c", "b", "a", "c"],
    "flag": [True, False, True, True, False, False, True, False],
    "count": [3, 17, 250, 4, None, 99, 1000, 42],
    "x": [0.5, -1.25, 3.75, None, 2.0, 8.5, -0.125, 1.0],
}


def frame():
    return pd.DataFrame(FRAME)


def test_the_registry_names_each_kind_by_its_own_name():
    assert list(KINDS) == ["datetime", "key", "text", "many_level", "categorical", "integer", "continuous"]
    for name, cls in KINDS.items():
        assert issubclass(cls, ColumnKind) and cls.name == name and kind_class(name) is cls
    assert override_options() == {k: k for k in ("datetime", "key", "text", "many_level", "categorical", "integer")}


def test_detection_asks_the_kinds_in_registry_order():
    kinds = {s.name: s.kind for s in detect_schema(frame()).features}
    assert kinds == {"cat": "categorical", "flag": "categorical", "count": "integer", "x": "continuous"}


@pytest.mark.parametrize("continuous", CONTINUOUS_ENCODINGS)
@pytest.mark.parametrize("column", list(FRAME))
def test_each_kind_round_trips_exactly_alone(column, continuous):
    rows = frame()[[column]]
    enc = TableEncoding.fit(rows, detect_schema(rows), continuous)
    (kind,) = enc.columns
    assert isinstance(kind, KINDS[kind.spec.kind])
    back = enc.decode(enc.transform(rows))
    assert back[column].isna().tolist() == rows[column].isna().tolist()
    assert back[column].dropna().tolist() == rows[column].dropna().tolist()
    assert str(back[column].dtype) == {"cat": "object", "flag": "bool", "count": "Int64", "x": "float64"}[column]
    again = TableEncoding.from_state(enc.state_dict())
    assert torch.equal(again.transform(rows), enc.transform(rows)) and again.describe() == enc.describe()


def test_kinds_are_forced_by_list_or_by_kinds():
    schema = detect_schema(frame(), categorical="count", kinds="x:categorical")
    assert {s.name: s.kind for s in schema.features}["count"] == "categorical"
    assert {s.name: s.kind for s in schema.features}["x"] == "categorical"
    schema = detect_schema(frame(), kinds={"count": "continuous"})
    assert {s.name: s.kind for s in schema.features}["count"] == "continuous"


@pytest.mark.parametrize("options, message", [
    ({"kinds": "x:date"}, "dataset.kinds: unknown column kind 'date' (kinds: datetime, key, text, many_level, "
                          "categorical, integer, continuous)"),
    ({"kinds": "x"}, "dataset.kinds: 'x' is not column:kind"),
    ({"kinds": "nope:integer"}, "dataset.kinds: no column 'nope'"),
    ({"kinds": "x:integer"}, "column 'x' in dataset.kinds holds"),
    ({"kinds": "cat:continuous"}, "column 'cat' in dataset.kinds holds 'a', not a number"),
    ({"kinds": "x:integer", "integer": "x"}, "column 'x' is in both dataset.integer and dataset.kinds"),
])
def test_bad_kind_overrides_are_one_line_errors(options, message):
    with pytest.raises(InputError) as err:
        detect_schema(frame(), **options)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_an_unknown_kind_in_a_saved_schema_is_one_line():
    enc = TableEncoding.fit(frame(), detect_schema(frame()))
    state = enc.state_dict()
    state["schema"]["features"][0]["kind"] = "words"
    with pytest.raises(InputError, match="unknown column kind 'words' \\(kinds: datetime, key, text, many_level, "
                                         "categorical, integer, continuous\\)"):
        TableEncoding.from_state(state)


def test_the_csv_reader_takes_each_kinds_option():
    options = BUILTIN_READERS[".csv"].options()
    assert {"kinds", *override_options()} <= set(options)
    assert all(options[o] == "" for o in override_options())
    assert list(inspect.signature(BUILTIN_READERS[".csv"].read).parameters)[:2] == ["path", "label_column"]


def test_layout_rows_round_trip_and_old_rows_name_columns():
    enc = TableEncoding.fit(frame(), detect_schema(frame()), "modes")
    back = layout_from_json(layout_to_json(enc.blocks))
    assert [(b.role, b.start, b.stop, b.column) for b in back] == [(b.role, b.start, b.stop, b.column) for b in enc.blocks]
    old = layout_from_json([r[:3] for r in layout_to_json(enc.blocks)])
    for span in enc.spans:  # a numeric column's value, mode and missing blocks are one column again
        assert len({old[enc.blocks.index(b)].column for b in span}) == 1
    assert len({b.column for b in old}) == len(enc.columns)


def test_the_head_applies_each_role():
    blocks = [Block("v", "continuous", 0, 1), Block("c", "categorical", 1, 4, ["a", "b", "c"], BlockRole.ONE_HOT),
              Block("v", "missing", 4, 5, role=BlockRole.MISSING)]
    raw = torch.tensor([[0.3, 5.0, -5.0, 0.0, 4.0], [-2.0, -5.0, 0.0, 5.0, -4.0]])
    mean = table_outputs(raw, blocks, "mean")
    assert torch.equal(mean, torch.tensor([[0.3, 1, 0, 0, 1], [-2.0, 0, 0, 1, 0]]))
    torch.manual_seed(0)
    sample = table_outputs(raw, blocks, "sample", scale=torch.zeros_like(raw))
    assert torch.equal(sample[:, 0], raw[:, 0]) and torch.all(sample[:, 1:4].sum(1) == 1)
    relaxed = table_outputs(raw.requires_grad_(), blocks, "relaxed", tau=0.2)
    relaxed.sum().backward()
    assert raw.grad is not None and torch.allclose(relaxed[:, 1:4].sum(1), torch.ones(2))
    assert torch.equal(observed_mask(mean, blocks)[:, 0], torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match="draw"):
        table_outputs(raw, blocks, "argmax")


def test_models_read_roles_not_kind_words():
    """The plugins' table code names roles only: a new kind's blocks need nothing of them."""
    from pathlib import Path

    root = Path(__file__).parent.parent / "plugins"
    for path in [*root.glob("gan/aigc_gan/*.py"), *root.glob("cvae/aigc_cvae/*.py"), root / "gmm/aigc_gmm/model.py"]:
        text = path.read_text()
        for word in ('"one_hot"', '== "missing"', '== "value"', "block.kind", "b.kind", "roles()"):
            assert word not in text, f"{path.name} reads {word}"


class Percent(ColumnKind):
    """A kind written only against the ColumnKind interface, as a new kind's module would be:
    strings such as ``"12.5%"``, one value block, decoded back to the strings."""

    name, option = "percent", "percent"

    @classmethod
    def detects(cls, profile):
        return not profile.numeric and all(isinstance(v, str) and v.endswith("%") for v in profile.present)

    @classmethod
    def describe(cls, values, profile, name):
        from aigc_engine.tables import ColumnSpec

        return ColumnSpec(name=name, kind=cls.name, dtype=str(values.dtype), has_missing=bool(values.isna().any()),
                          details={"sign": "%"})

    @classmethod
    def numbers(cls, values):
        return values.str.rstrip("%").astype(float).to_numpy()

    def blocks(self, start):
        return [Block(self.spec.name, self.name, start, start + 1)]

    def encode(self, values, absent, out, blocks):
        out[:, blocks[0].start] = self.numbers(values) / 100

    def decode(self, m, blocks):
        return self.typed(m[:, blocks[0].start] * 100, None)

    def typed(self, values, absent):
        return pd.array([f"{v:g}{self.spec.details['sign']}" for v in values], dtype=object)


def test_a_new_kind_is_one_class_and_one_registry_entry(monkeypatch, tmp_path):
    from aigc_engine import metrics, plotting
    from aigc_engine.tables import kinds

    monkeypatch.setattr(kinds, "KINDS", {"percent": Percent, **kinds.KINDS})
    import aigc_engine.tables.schema as schema_module
    monkeypatch.setattr(schema_module, "KINDS", kinds.KINDS)
    rows = frame().assign(share=["12.5%", "3%", "40%", "7%", "12.5%", "99%", "1%", "50%"])
    schema = detect_schema(rows)
    assert {s.name: s.kind for s in schema.features}["share"] == "percent"
    assert detect_schema(rows, percent="share").features[-1].kind == "percent"
    enc = TableEncoding.fit(rows, schema)
    assert TableEncoding.from_state(enc.state_dict()).describe() == enc.describe()
    back = enc.decode(enc.transform(rows))
    assert back["share"].tolist() == rows["share"].tolist()
    assert metrics.tables.column_shapes(rows, back, schema)["columns"]["share"] == 1.0
    plotting.table_columns(rows, back, tmp_path / "samples.png", schema)
    drawn = table_outputs(torch.randn(4, enc.width), enc.blocks, "sample")
    assert enc.decode(drawn).shape == (4, len(rows.columns))


def test_category_ids_treat_pandas_na_as_missing():
    """A nullable integer column (64-bit ids with empty cells read as Int64) holds pd.NA, not NaN:
    it is the missing slot, not an unknown category."""
    import pandas as pd

    from aigc_engine.tables.kinds.base import ColumnSpec
    from aigc_engine.tables.kinds.categorical import category_ids

    spec = ColumnSpec(name="a", kind="categorical", dtype="Int64", has_missing=True, categories=[1, 2])
    assert category_ids(pd.Series([1, pd.NA, 2], dtype="Int64"), spec).tolist() == [0, 2, 1]
