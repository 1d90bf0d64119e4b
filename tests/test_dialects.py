"""CSV dialects as users' files come: comma, semicolon with decimal commas (Excel's European
export), tab, pipe, thousands separators, a BOM, CRLF, cp1252, quoted long fields, 64-bit ids and
a few stray strings in a numeric column; each read right, written back in the same dialect, and
through a run: `sample -o` writes the input's dialect."""
import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from aigc_engine.cli import cli
from aigc_engine.tables.dialect import Dialect, write_csv
from aigc_engine.tables.schema import read_frame

BIG = 9223372036854775807  # int64's largest: a float64 would round it


def write(tmp_path, content, name="t.csv"):
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return path


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


# (id, file content, the dialect's fields expected, the columns expected)
CASES = [
    ("comma", "a,b,c\n1.5,x,10\n2.25,y,20\n", {"delimiter": ","},
     {"a": [1.5, 2.25], "b": ["x", "y"], "c": [10, 20]}),
    ("semicolon, decimal comma", "a;b;c\n1,5;x;10\n2,25;y;20\n", {"delimiter": ";", "decimal": ","},
     {"a": [1.5, 2.25], "b": ["x", "y"], "c": [10, 20]}),
    ("tab", "a\tb\tc\n1.5\tx\t10\n2.25\ty\t20\n", {"delimiter": "\t"},
     {"a": [1.5, 2.25], "b": ["x", "y"], "c": [10, 20]}),
    ("pipe", "a|b|c\n1.5|x, y|10\n2.25|y|20\n", {"delimiter": "|"},
     {"a": [1.5, 2.25], "b": ["x, y", "y"], "c": [10, 20]}),
    ("thousands commas", 'a,b\n"1,234,567.5",x\n"12,345",y\n7,z\n', {"thousands": ","},
     {"a": [1234567.5, 12345.0, 7.0], "b": ["x", "y", "z"]}),
    ("thousands dots, decimal comma", "a;b\n1.234.567;0,5\n12.345;1,25\n7;2\n", {"thousands": ".", "decimal": ","},
     {"a": [1234567, 12345, 7], "b": [0.5, 1.25, 2.0]}),
    ("thousands spaces", "a;b\n1 234;x\n12 345;y\n", {"thousands": " ", "delimiter": ";"},
     {"a": [1234, 12345], "b": ["x", "y"]}),
    ("BOM and CRLF", b"\xef\xbb\xbfa,b\r\n1,x\r\n2,y\r\n", {"encoding": "utf-8-sig", "line_terminator": "\r\n"},
     {"a": [1, 2], "b": ["x", "y"]}),
    ("quoted fields", '"a","b"\n"1","x;y, z"\n"2","two\nlines"\n', {"quoting": "all", "delimiter": ","},
     {"a": [1, 2], "b": ["x;y, z", "two\nlines"]}),
    ("no header, decimal comma", "1;2,5\n3;4,5\n", {"delimiter": ";", "decimal": ","},
     {"0": [1, 3], "1": [2.5, 4.5]}),
    ("64-bit ids", f"id,v\n{BIG},1\n,2\n9007199254740993,3\n", {},
     {"id": [BIG, None, 9007199254740993], "v": [1, 2, 3]}),
    ("one column, decimal comma", "v\n1,5\n2,25\n", {"decimal": ","}, {"v": [1.5, 2.25]}),
    ("large floats", "a;b\n1e20;1,5\n;2\n", {"decimal": ","}, {"a": [1e20, None], "b": [1.5, 2.0]}),
]


@pytest.mark.parametrize("content, dialect, columns", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_each_dialect_is_read_right(tmp_path, content, dialect, columns):
    frame, found = read_frame(write(tmp_path, content))
    assert {k: getattr(found, k) for k in dialect} == dialect
    assert list(frame.columns) == list(columns)
    for name, values in columns.items():
        assert [None if pd.isna(v) else v for v in frame[name].tolist()] == values, name
    assert [type(v) for v in frame["id"].dropna().tolist()] == [int, int] if "id" in columns else True


def test_a_cp1252_file_is_read_with_a_warning(tmp_path):
    path = write(tmp_path, "name;v\ncafé;1,5\nnaïve;2\n".encode("cp1252"))
    with pytest.warns(UserWarning, match=r"t\.csv is not UTF-8 .*read as cp1252") as caught:
        frame, dialect = read_frame(path)
    assert len(caught) == 1 and len(str(caught[0].message).splitlines()) == 1
    assert dialect.encoding == "cp1252" and frame["name"].tolist() == ["café", "naïve"]
    assert frame["v"].tolist() == [1.5, 2.0]
    assert read_frame(path, encoding="latin-1")[1].encoding == "iso8859-1"  # given: no warning, no sniffing


def test_a_field_over_the_csv_modules_limit(tmp_path):
    long = "x;, " * 50_000  # 200,000 characters with delimiters inside
    frame, _ = read_frame(write(tmp_path, f'a,text\n1,"{long}"\n2,short\n'))
    assert frame["text"].tolist() == [long, "short"] and frame["a"].tolist() == [1, 2]


def test_stray_strings_in_a_numeric_column_are_missing_with_one_warning(tmp_path):
    values = [str(i / 4) for i in range(300)]
    values[7], values[200] = "-", "?"
    path = write(tmp_path, "v,w\n" + "".join(f"{v},{i % 3}\n" for i, v in enumerate(values)))
    with pytest.warns(UserWarning, match=r"column 'v': 2 of 300 cells are not numbers \(e\.g\. '-'\)"):
        frame, _ = read_frame(path)
    assert frame["v"].dtype == np.float64 and frame["v"].isna().sum() == 2 and frame["v"][8] == 2.0
    many = write(tmp_path, "v\n" + "1\n" * 90 + "n.a.\n" * 10, "many.csv")  # 10%: a category, not strays
    assert read_frame(many)[0]["v"].dtype == object


def test_an_explicit_delimiter_is_honoured(tmp_path):
    path = write(tmp_path, "a|b,c\n1|2,3\n4|5,6\n")
    assert list(read_frame(path, delimiter="|")[0].columns) == ["a", "b,c"]
    assert list(read_frame(path, delimiter=",")[0].columns) == ["a|b", "c"]
    assert list(read_frame(write(tmp_path, "a\tb\n1\t2\n", "t2.csv"), delimiter="tab")[0].columns) == ["a", "b"]


@pytest.mark.parametrize("content, delimiter, message", [
    ("a;b;c;d\n1;2;3;4\n1;2;3;4;5\n", "auto",
     "line 3: 5 fields, the header has 4 (delimiter ';' sniffed; set dataset.delimiter="),
    ("a;b\n1,5;2\n3,5;4\n", ",", "line 2: 2 fields, the header has 1 (delimiter ',' from dataset.delimiter; "
                                  "the first lines split evenly on ';')"),
])
def test_a_ragged_file_is_one_line_with_a_hint(tmp_path, content, delimiter, message):
    path = write(tmp_path, content)
    result = invoke("run", "gmm", "--dataset", path, "--set", f"dataset.delimiter={delimiter}", "--out", tmp_path / "r")
    errors = [line for line in result.output.splitlines() if not line.startswith("warning: ")]
    assert result.exit_code == 2 and len(errors) == 1 and message in errors[0]
    assert not (tmp_path / "r").exists()


WRITTEN = [Dialect(";", ",", encoding="cp1252"), Dialect("\t"), Dialect("|", quoting="all"),
           Dialect(",", encoding="utf-8-sig", line_terminator="\r\n")]


@pytest.mark.filterwarnings("ignore:o.csv is not UTF-8")
@pytest.mark.parametrize("dialect", WRITTEN, ids=["semicolon cp1252", "tab", "pipe quoted", "BOM CRLF"])
def test_a_frame_written_in_a_dialect_reads_back_equal(tmp_path, dialect):
    frame = pd.DataFrame({"x": [1.5, -0.25, 1e-3], "n": [1, 2, 3], "s": ["é;1", "a|b", "c,d"],
                          "id": pd.array([BIG, None, 5], dtype="Int64")})
    write_csv(frame, tmp_path / "o.csv", dialect)
    back, found = read_frame(tmp_path / "o.csv")
    pd.testing.assert_frame_equal(back, frame)
    assert found.delimiter == dialect.delimiter and found.decimal == dialect.decimal
    assert found.line_terminator == dialect.line_terminator and found.quoting == dialect.quoting
    assert (tmp_path / "o.csv").read_bytes().startswith(b"\xef\xbb\xbf") == (dialect.encoding == "utf-8-sig")


def _european(rng, n=240):
    """An Excel European export: ';', decimal commas, cp1252, 64-bit account ids (a category)."""
    ids = [BIG, BIG - 1, 9007199254740993]
    lines = ["konto;größe;stadt"]
    for i in range(n):
        lines.append(f"{ids[i % 3]};{rng.normal(170, 10):.2f}".replace(".", ",") + f";{['Köln', 'Zürich'][i % 2]}")
    return ("\r\n".join(lines) + "\r\n").encode("cp1252"), ids


def test_a_run_samples_in_the_inputs_dialect(tmp_path):
    content, ids = _european(np.random.default_rng(0))
    path = write(tmp_path, content, "konten.csv")
    result = invoke("run", "gmm", "--dataset", path, "--set", "n_components=2", "--set", "max_iter=5",
                    "--out", tmp_path / "run", "--no-progress")
    assert result.exit_code == 0, result.output
    assert "konten.csv is not UTF-8" in result.output and "read as cp1252" in result.output
    out = tmp_path / "synth.csv"
    assert invoke("sample", tmp_path / "run", "-n", 300, "-o", out).exit_code == 0
    raw = out.read_bytes().decode("cp1252")  # the input's encoding
    assert raw.splitlines()[0] == "konto;größe;stadt" and "\r\n" in raw
    assert any("," in line.split(";")[1] for line in raw.splitlines()[1:])  # decimal commas
    synth, dialect = read_frame(out, encoding="cp1252")
    assert (dialect.delimiter, dialect.decimal) == (";", ",")
    assert set(synth["konto"].tolist()) <= set(ids) and synth["konto"].dtype == np.int64  # exact, never a float
    assert set(synth["stadt"]) <= {"Köln", "Zürich"} and synth["größe"].between(100, 250).all()


def test_an_explicit_delimiter_is_recorded_and_written_back(tmp_path):
    path = write(tmp_path, "a|b\n" + "".join(f"{i % 7}.5|{i % 3}\n" for i in range(60)))
    result = invoke("run", "gmm", "--dataset", path, "--set", "dataset.delimiter=|", "--set", "n_components=2",
                    "--set", "max_iter=5", "--out", tmp_path / "run", "--no-progress")
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "run" / "config.json").read_text())["dataset"]["options"]["delimiter"] == "|"
    assert invoke("sample", tmp_path / "run", "-n", 5, "-o", tmp_path / "s.csv").exit_code == 0
    assert (tmp_path / "s.csv").read_text().splitlines()[0] == "a|b"
