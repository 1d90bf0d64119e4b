"""Built-in datasets: shapes, options, ranges; files: .npy memory-mapped, .csv with labels."""
import numpy as np
import pytest
import torch

from aigc_engine import Engine, open_dataset
from aigc_engine.data import Dataset, blobs, digits, from_file, grid25, moons, ring8
from aigc_engine.errors import InputError
from aigc_engine.plugins import PluginManager


def test_ring8_modes_and_std():
    d = ring8(n=4000, std=0.01, seed=1)
    assert d.shape == (4000, 2) and d.num_classes == 8 and d.y.dtype == torch.int64
    angles = 2 * np.pi * d.y.numpy() / 8
    centres = torch.from_numpy(np.stack([np.cos(angles), np.sin(angles)], 1)).float()
    resid = d.x - centres
    assert resid.abs().max() < 0.06 and abs(resid.std().item() - 0.01) < 1e-3
    assert torch.equal(ring8(n=10, seed=1).x, ring8(n=10, seed=1).x)
    assert not torch.equal(ring8(n=10, seed=1).x, ring8(n=10, seed=2).x)


def test_grid25_means():
    d = grid25(n=5000, std=0.05)
    assert d.num_classes == 25
    rounded = torch.round(d.x / 2) * 2
    assert set(rounded.flatten().tolist()) <= {-4.0, -2.0, 0.0, 2.0, 4.0}
    assert (d.x - rounded).abs().max() < 0.3


def test_moons_blobs_options():
    assert moons(n=123).shape == (123, 2)
    b = blobs(n=300, centers=4, dim=5)
    assert b.shape == (300, 5) and b.num_classes == 4


def test_digits_images_in_range():
    d = digits()
    assert d.shape == (1797, 1, 8, 8) and d.is_image and d.num_classes == 10
    assert d.x.min() == -1.0 and d.x.max() == 1.0
    assert digits(n=100).shape == (100, 1, 8, 8)
    with pytest.raises(InputError):
        digits(n=5000)


def test_options_are_typed_from_strings():
    d = Engine(PluginManager(load_entry_points=False)).load_dataset("ring8", {"n": "50", "std": "0.2"})
    assert len(d) == 50 and d.options["std"] == 0.2
    assert len(open_dataset("blobs", n=20, dim=3)) == 20


def test_npy_is_memory_mapped_and_streams(tmp_path):
    arr = np.random.default_rng(0).normal(size=(1000, 3))
    np.save(tmp_path / "x.npy", arr)
    d = from_file(tmp_path / "x.npy")
    assert not d.in_memory and len(d) == 1000 and d.shape == (1000, 3)
    chunks = list(d.iter_chunks(300))
    assert [len(c) for c in chunks] == [300, 300, 300, 100]
    assert np.allclose(torch.cat(chunks).numpy(), arr, atol=1e-6)
    shard = d.shard(1, 2)
    assert len(shard) == 500 and not shard.in_memory
    assert np.allclose(shard.x.numpy(), arr[500:], atol=1e-6)


def test_csv_with_header_and_label(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("a,b,label\n0.5,1.0,1\n2.0,3.0,0\n4.0,5.0,2\n")
    d = from_file(path, label_column="label")
    assert d.shape == (3, 2) and d.y.tolist() == [1, 0, 2] and d.num_classes == 3
    back = d.encoding.decode(d.x, d.y)
    assert np.allclose(back[["a", "b"]].to_numpy(float), [[0.5, 1.0], [2.0, 3.0], [4.0, 5.0]])
    assert back["label"].tolist() == [1, 0, 2]
    d = from_file(path, label_column=-1)  # a 0-based index, negative from the end
    assert d.y.tolist() == [1, 0, 2]
    with pytest.raises(InputError, match="no column 'nope'"):
        from_file(path, label_column="nope")
    nohead = tmp_path / "n.csv"
    nohead.write_text("1,2\n3,4\n")  # a first line of numbers is data: columns 0, 1
    d = from_file(nohead)
    assert d.shape == (2, 2) and d.encoding.schema.columns == ["0", "1"]


@pytest.mark.parametrize("content, message", [
    ("1,2\n3,inf\n", "bad.csv: column '1' row 2: inf is not a finite number"),
    ("1,2,3\n4,5\n", "bad.csv line 2: 2 fields, the header has 3"),
    ("a,b,c\n1,2,3\n3,4\n", "bad.csv line 3: 2 fields, the header has 3"),
    ("a,b\n1,\n2,\n", "column 'b' holds only missing values"),
    ("a,b\n", "has a header but no rows"),
    ("", "bad.csv is empty"),
])
def test_bad_csv(tmp_path, content, message):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(InputError) as err:
        from_file(path)
    assert message in str(err.value)


def test_csv_strings_and_missing_cells_are_a_table(tmp_path):
    """A string column is a categorical feature, an empty cell or NaN a missing value: no error."""
    path = tmp_path / "t.csv"
    path.write_text("w,kind,h\n1.5,dog,2\n2.5,,NaN\n3.5,cat,4\n4.5,dog,5\n")
    d = from_file(path)
    kinds = {b.column: b.kind for b in d.encoding.blocks if b.kind != "missing"}
    assert kinds == {"w": "continuous", "kind": "categorical", "h": "integer"}
    back = d.encoding.decode(d.x)
    assert back["kind"].tolist()[::2] == ["dog", "cat"] and back["kind"].isna().tolist() == [False, True, False, False]
    assert back["h"].isna().tolist() == [False, True, False, False] and np.allclose(back["w"], [1.5, 2.5, 3.5, 4.5])


def test_csv_string_labels_become_ids_with_names(tmp_path):
    path = tmp_path / "pets.csv"
    path.write_text('w,h,species\n1.0,2.0,dog\n3.0,4.0,cat\n5.0,6.0,dog\n7.0,8.0,emu\n')
    d = from_file(path, label_column="species")
    assert d.class_names == ["cat", "dog", "emu"] and d.num_classes == 3
    assert d.y.tolist() == [1, 0, 1, 2] and d.shape == (4, 2)
    assert d.shard(1, 2).class_names == ["cat", "dog", "emu"] and d.shard(1, 2).encoding is d.encoding
    numeric = tmp_path / "k.csv"
    numeric.write_text("a,k\n1,0\n2,3\n")
    d = from_file(numeric, label_column="k")
    assert d.class_names == ["0", "3"] and d.num_classes == 2


@pytest.mark.parametrize("column", ["label", "Class", "target", "y"])
def test_csv_column_named_like_a_label_is_a_warning(tmp_path, column):
    path = tmp_path / "d.csv"
    path.write_text(f"a,{column}\n0.5,1\n2.0,0\n")
    with pytest.warns(UserWarning, match=f"column '{column}' of d.csv is modelled as a feature; to condition on it, "
                                         f"pass --set dataset.label_column={column}"):
        d = from_file(path)
    assert d.shape[0] == 2 and d.y is None


def test_bad_npy(tmp_path):
    np.save(tmp_path / "1d.npy", np.zeros(4))  # 3-D and 4-D arrays are images (test_image_data.py)
    with pytest.raises(InputError, match="N x D"):
        from_file(tmp_path / "1d.npy")
    (tmp_path / "x.txt").write_text("1\n")
    with pytest.raises(InputError, match="unsupported"):
        from_file(tmp_path / "x.txt")
    with pytest.raises(InputError, match="empty"):
        Dataset(torch.zeros(0, 2), name="e").validate()


def test_split_standard_and_random():
    from aigc_engine import data

    parts = data.digits().split()
    assert [len(parts[k]) for k in ("train", "validation", "test")] == [1000, 350, 447]
    assert torch.equal(parts["test"].x, data.digits().x[1350:])
    ring = data.ring8(n=1000)
    a, b = ring.split(0.1, 0.2, seed=3), ring.split(0.1, 0.2, seed=3)
    assert [len(a[k]) for k in ("train", "validation", "test")] == [700, 100, 200]
    assert torch.equal(a["test"].x, b["test"].x) and not torch.equal(a["test"].x, ring.split(0.1, 0.2, seed=4)["test"].x)
    rows = torch.cat([a[k].x for k in a])
    assert len(torch.unique(rows, dim=0)) == 1000  # disjoint, covering
    assert a["train"].modes is ring.modes and not a["train"].labels_are_classes
    with pytest.raises(ValueError, match="held-out fractions"):
        ring.split(0.6, 0.5)


# -- public row access, levels, encoding ----------------------------------------------------------
@pytest.fixture(params=["memory", "npy points", "npy images"])
def stored(request, tmp_path):
    """The same rows in memory and memory-mapped (points, and uint8 images scaled on read)."""
    rng = np.random.default_rng(0)
    if request.param == "npy images":
        np.save(tmp_path / "i.npy", rng.integers(0, 256, (40, 3, 4), dtype=np.uint8))
        return from_file(tmp_path / "i.npy")
    arr = rng.normal(size=(40, 3)).astype(np.float32)
    if request.param == "memory":
        return Dataset(torch.from_numpy(arr), name="m")
    np.save(tmp_path / "p.npy", arr)
    return from_file(tmp_path / "p.npy")


def test_rows_take_and_chunks_read_what_x_holds(stored):
    x = stored.x.clone()
    assert torch.equal(stored.rows(5, 12), x[5:12]) and torch.equal(stored.rows(), x)
    assert torch.equal(stored.rows(-3), x[-3:]) and len(stored.rows(38, 99)) == 2
    assert stored.rows(0, 4, dtype=torch.float64).dtype == torch.float64
    picked = [7, 3, 7, 39, 0]
    assert torch.equal(stored.take(picked), x[picked])  # any order, repeats kept
    assert torch.equal(stored.take(torch.tensor(picked), dtype=torch.float64), x[picked].double())
    assert torch.equal(torch.cat(list(stored.iter_chunks(16))), x)
    assert torch.equal(stored.subsample(10, seed=1), stored.subsample(10, seed=1)) and len(stored.subsample(10)) == 10


def test_lazy_rows_are_read_without_loading_x(tmp_path):
    np.save(tmp_path / "p.npy", np.arange(12, dtype=np.float32).reshape(6, 2))
    d = from_file(tmp_path / "p.npy")
    block = d.rows(2, 4)
    block += 100  # a copy: the read-only memory map is untouched
    assert torch.equal(d.take([5, 0]), torch.tensor([[10.0, 11.0], [0.0, 1.0]]))
    assert not d.in_memory and d.x[2, 0] == 4.0


@pytest.mark.parametrize("x, levels", [
    (None, 17),                                      # digits: pixels 0..16
    (torch.tensor([[-1.0], [1.0]]), 2),              # binary
    ((torch.arange(256) / 127.5 - 1)[:, None], 256),  # 8-bit
    (torch.tensor([[-1.0], [0.0], [1.0], [0.5]]), 5),  # the smallest grid holding every value
    (torch.randn(300, 1).clamp(-1, 1), 0),           # continuous
    (torch.tensor([[0.0], [2.0]]), 0),               # outside [-1, 1]
])
def test_levels_and_bin_width(x, levels):
    d = digits() if x is None else Dataset(x, name="v")
    assert d.levels == levels
    assert d.bin_width == (2 / (levels - 1) if levels else None)


def test_levels_of_memory_mapped_images_and_points(tmp_path):
    raw = np.random.default_rng(0).integers(0, 256, (64, 5, 5), dtype=np.uint8)
    raw[0, 0, :2] = 0, 255
    np.save(tmp_path / "u8.npy", raw)
    assert from_file(tmp_path / "u8.npy").levels == 256
    assert ring8(n=100).levels == 0 and ring8(n=100).bin_width is None


def test_encoding_is_carried_by_subsets_splits_and_shards():
    token = object()
    d = ring8(n=100)
    assert d.encoding is None
    d.encoding = token
    parts = [d.subset(slice(0, 10)), d.shard(1, 2), *d.split().values()]
    assert all(p.encoding is token for p in parts)
    # holdout_split refits a table's encoding on its training rows (tests/test_tables.py)


# -- the reader registry --------------------------------------------------------------------------
def test_reader_resolution_and_options():
    from aigc_engine.data import BUILTIN_READERS, FOLDER, Reader, file_kind, reader_for

    assert list(BUILTIN_READERS) == [".npy", ".npz", ".csv", ".parquet", FOLDER]
    assert file_kind("a/B.CSV") == ".csv" and file_kind("x.txt") is None and file_kind(".npy") is None
    assert BUILTIN_READERS[".csv"].options() == {"label_column": None, "datetime": "", "key": "", "text": "",
                                                 "many_level": "", "categorical": "", "integer": "", "ignore": "",
                                                 "delimiter": "auto", "decimal": "auto", "thousands": "auto",
                                                 "encoding": "auto", "weight_column": None,
                                                 "continuous": "quantile", "kinds": "", "constraints": "",
                                                 "public": ""}
    assert BUILTIN_READERS[FOLDER].kind == "image folders" and BUILTIN_READERS[".npz"].kind == ".npz files"
    longer = {**BUILTIN_READERS, ".gz": Reader(".gz", print), ".csv.gz": Reader(".csv.gz", print)}
    assert reader_for("t.csv.gz", longer).suffix == ".csv.gz" and reader_for("t.gz", longer).suffix == ".gz"


def test_an_option_of_another_reader_says_which_takes_it(tmp_path):
    (tmp_path / "p.csv").write_text("1,2\n3,4\n")
    with pytest.raises(InputError, match=r"unknown option 'size' for dataset .*p.csv; valid options: "
                                         r"label_column \(default None\), datetime .*categorical .*\(size applies to "
                                         r"image folders only\)"):
        from_file(tmp_path / "p.csv", size=3)
    with pytest.raises(InputError, match=r"unknown option 'colour' .*valid options: label_column") as info:
        from_file(tmp_path / "p.csv", colour=1)
    assert "applies to" not in str(info.value)
    assert from_file(tmp_path / "p.csv", label_column="1").class_names == ["2", "4"]  # typed by the annotation


def test_a_plugin_reader_opens_its_suffix_through_the_engine(tmp_path):
    from aigc_engine import hookimpl

    def read_pts(path, scale: float = 1.0, header: bool = False) -> Dataset:
        """Whitespace-separated points."""
        rows = path.read_text().splitlines()[1 if header else 0:]
        return Dataset(torch.tensor([[float(v) * scale for v in r.split()] for r in rows]))

    class Points:
        @hookimpl
        def aigc_engine_register_readers(self, register):
            register(".pts", read_pts, "whitespace points")

    pm = PluginManager(load_entry_points=False)
    pm.register(Points(), "points")
    (tmp_path / "a.pts").write_text("x y\n1 2\n3 4\n")
    d = Engine(pm).load_dataset(str(tmp_path / "a.pts"), {"scale": "2", "header": "true"})
    assert d.x.tolist() == [[2.0, 4.0], [6.0, 8.0]] and d.name == "a.pts"
    with pytest.raises(InputError, match="dataset.scale must be a float, got 'big'"):
        Engine(pm).load_dataset(str(tmp_path / "a.pts"), {"scale": "big"})
    with pytest.raises(InputError, match=r"unknown dataset 'nope'; use one of .*ring8, a \.npy/\.npz/\.csv/\.parquet/\.pts file"):
        Engine(pm).load_dataset("nope")
    (tmp_path / "b.txt").write_text("1 2\n")
    with pytest.raises(InputError, match=r"unsupported dataset file 'b.txt': use a \.npy/\.npz/\.csv/\.parquet/\.pts file or a folder"):
        Engine(pm).load_dataset(str(tmp_path / "b.txt"))
    with pytest.raises(InputError, match="unsupported"):
        from_file(tmp_path / "a.pts")  # the core's readers alone


def test_a_reader_that_returns_no_dataset_or_bad_rows_is_one_error(tmp_path):
    from aigc_engine import hookimpl

    class Bad:
        @hookimpl
        def aigc_engine_register_readers(self, register):
            register(".none", lambda path: None)
            register(".nan", lambda path: Dataset(torch.tensor([[float("nan")]])))

    pm = PluginManager(load_entry_points=False)
    pm.register(Bad(), "bad")
    for name, message in (("x.none", r"the \.none reader \(plugin bad\) did not return a Dataset"),
                          ("x.nan", "dataset 'x.nan' has NaN or inf values")):
        (tmp_path / name).write_text("")
        with pytest.raises(InputError, match=message):
            Engine(pm).load_dataset(str(tmp_path / name))
