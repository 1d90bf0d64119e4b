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
    d = from_file(path, label_column=-1)
    assert d.y.tolist() == [1, 0, 2]
    with pytest.raises(InputError, match="not a column"):
        from_file(path, label_column="nope")
    nohead = tmp_path / "n.csv"
    nohead.write_text("1,2\n3,4\n")
    assert from_file(nohead).shape == (2, 2)


@pytest.mark.parametrize("content, message", [
    ("a,b\n1,x\n", "bad.csv line 2, column 2 ('b'): 'x' is not a number; if this column holds labels, "
                    "pass --set dataset.label_column=b"),
    ("a,b\n1,2\n3,4\n5,nan\n", "bad.csv line 4, column 2: NaN or inf value"),
    ("1,2\n3,inf\n", "bad.csv line 2, column 2: NaN or inf value"),  # no header: data starts on line 1
    ("1,2,3\n4,5\n", "bad.csv line 2 has 2 columns, line 1 has 3"),
    ("a,b,c\n1,2,3\n3,4\n", "bad.csv line 3 has 2 columns, the header has 3"),
    ("1,2\n3,x\n", "bad.csv line 2, column 2: 'x' is not a number; if this column holds labels, "
                    "pass --set dataset.label_column=1 (0-based)"),
    ("a,b\n", "has no rows"),
])
def test_bad_csv(tmp_path, content, message):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(InputError) as err:
        from_file(path)
    assert message in str(err.value)


def test_csv_string_labels_become_ids_with_names(tmp_path):
    path = tmp_path / "pets.csv"
    path.write_text('w,h,species\n1.0,2.0,dog\n3.0,4.0,cat\n5.0,6.0," dog"\n7.0,8.0,emu\n')
    d = from_file(path, label_column="species")
    assert d.class_names == ["cat", "dog", "emu"] and d.num_classes == 3
    assert d.y.tolist() == [1, 0, 1, 2] and d.shape == (4, 2)
    assert d.shard(1, 2).class_names == ["cat", "dog", "emu"]
    nohead = tmp_path / "n.csv"
    nohead.write_text("1.0,dog\n2.0,cat\n")  # a label column of names is no header
    d = from_file(nohead, label_column=1)
    assert d.shape == (2, 1) and d.class_names == ["cat", "dog"] and d.y.tolist() == [1, 0]
    numeric = tmp_path / "k.csv"
    numeric.write_text("a,k\n1,0\n2,3\n")
    d = from_file(numeric, label_column="k")
    assert d.class_names is None and d.num_classes == 4
    bad = tmp_path / "b.csv"
    bad.write_text("a,k\n1,0.5\n2,3\n")
    with pytest.raises(InputError, match="non-negative integers or class names"):
        from_file(bad, label_column="k")


@pytest.mark.parametrize("column", ["label", "Class", "target", "y"])
def test_csv_column_named_like_a_label_is_a_warning(tmp_path, column):
    path = tmp_path / "d.csv"
    path.write_text(f"a,{column}\n0.5,1\n2.0,0\n")
    with pytest.warns(UserWarning, match=f"column '{column}' of d.csv is fitted as a feature; if it holds labels, "
                                         f"pass --set dataset.label_column={column}"):
        d = from_file(path)
    assert d.shape == (2, 2) and d.y is None


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
