"""Image data from files: .npy (N x H x W, NCHW, NHWC), .npz with labels, PNG/JPEG folders;
value scaling to [-1, 1], classes, and a one-line error naming the file for each bad input."""
import json
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from aigc_engine import Engine
from aigc_engine.cli import cli
from aigc_engine.data import Dataset, from_file
from aigc_engine.errors import InputError
from aigc_engine.plugins import PluginManager

AIGC_ENGINE = os.path.join(os.path.dirname(sys.executable), "aigc-engine")


def load(spec, **options):
    return Engine(PluginManager(load_entry_points=False)).load_dataset(str(spec), options)


def in_range(d: Dataset) -> bool:
    return bool(d.x.min() >= -1 and d.x.max() <= 1)


def save_png(path, array, mode=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(array), mode=mode).save(path)


@pytest.fixture
def folder(tmp_path):
    """Two classes of 6x6 images: grey and RGB PNGs mixed, and a JPEG."""
    rng = np.random.default_rng(0)
    root = tmp_path / "pics"
    save_png(root / "cat" / "a.png", np.full((6, 6), 255, np.uint8))
    save_png(root / "cat" / "b.png", rng.integers(0, 256, (6, 6, 3), dtype=np.uint8))
    save_png(root / "dog" / "deep" / "c.png", np.zeros((6, 6), np.uint8))  # any depth below a class
    (root / "dog" / "d.jpg").parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((6, 6, 3), 128, np.uint8)).save(root / "dog" / "d.jpg", quality=95)
    (root / "dog" / "notes.txt").write_text("not an image")  # other files are ignored
    return root


# -- .npy ---------------------------------------------------------------------------------------
def test_npy_uint8_nhw_is_one_channel_memory_mapped(tmp_path):
    raw = np.random.default_rng(0).integers(0, 256, (50, 7, 5), dtype=np.uint8)
    raw[0, 0, 0], raw[0, 0, 1] = 0, 255
    np.save(tmp_path / "u8.npy", raw)
    d = load(tmp_path / "u8.npy")
    assert d.shape == (50, 1, 7, 5) and d.is_image and not d.in_memory and d.num_classes == 0
    assert d.class_names is None and d.y is None
    shard = d.shard(1, 2)  # stays lazy, and streams the same values
    assert not shard.in_memory and shard.shape == (25, 1, 7, 5)
    streamed = torch.cat(list(shard.iter_chunks(10)))
    assert torch.allclose(d.x[:, 0], torch.from_numpy(raw).float() / 127.5 - 1, atol=1e-6)
    assert d.x.min() == -1 and d.x.max() == 1
    assert torch.equal(streamed, d.x[25:])
    lazy = from_file(tmp_path / "u8.npy")  # rows read from the file, as minibatches gather them
    assert torch.equal(lazy.take([7, 3, 7]), d.x[[7, 3, 7]]) and not lazy.in_memory
    assert torch.equal(lazy.rows(-1), d.x[-1:]) and torch.equal(lazy.rows(2, 9)[::3, 0, 1], d.x[2:9:3, 0, 1])


@pytest.mark.parametrize("lo, hi, expected", [
    (0.0, 1.0, lambda v: 2 * v - 1),         # within [0, 1]
    (-1.0, 1.0, lambda v: v),                # within [-1, 1]: kept
    (0.0, 255.0, lambda v: v / 127.5 - 1),   # within [0, 255]
])
def test_npy_float_nchw_scaling_rules(tmp_path, lo, hi, expected):
    raw = np.random.default_rng(1).uniform(lo, hi, (9, 3, 4, 4)).astype(np.float64)
    raw.flat[0], raw.flat[1] = lo, hi
    np.save(tmp_path / "f.npy", raw)
    d = from_file(tmp_path / "f.npy")
    assert d.shape == (9, 3, 4, 4) and in_range(d)
    assert torch.allclose(d.x, torch.from_numpy(expected(raw)).float(), atol=1e-5)


def test_npy_channels_last_is_transposed(tmp_path):
    raw = np.random.default_rng(2).integers(0, 256, (4, 5, 6, 3), dtype=np.uint8)
    np.save(tmp_path / "hwc.npy", raw)
    d = from_file(tmp_path / "hwc.npy")
    assert d.shape == (4, 3, 5, 6) and in_range(d)
    assert torch.allclose(d.x, torch.from_numpy(raw.transpose(0, 3, 1, 2)).float() / 127.5 - 1, atol=1e-6)
    # the second axis decides: 1 or 3 there means channels-first even when the last is 3 too
    np.save(tmp_path / "chw.npy", np.zeros((2, 3, 4, 3), np.uint8))
    assert from_file(tmp_path / "chw.npy").shape == (2, 3, 4, 3)


def test_npy_points_unchanged(tmp_path):
    raw = np.random.default_rng(3).normal(scale=10, size=(20, 3))
    np.save(tmp_path / "p.npy", raw)
    d = from_file(tmp_path / "p.npy")
    assert d.shape == (20, 3) and not d.is_image and np.allclose(d.x.numpy(), raw, atol=1e-5)


# -- .npz ---------------------------------------------------------------------------------------
def test_npz_images_with_int_labels(tmp_path):
    x = np.random.default_rng(4).integers(0, 256, (6, 8, 8), dtype=np.uint8)
    np.savez(tmp_path / "d.npz", x=x, y=np.array([0, 2, 1, 2, 0, 1]))
    d = load(tmp_path / "d.npz")
    assert d.shape == (6, 1, 8, 8) and d.in_memory and in_range(d)
    assert d.y.dtype == torch.int64 and d.y.tolist() == [0, 2, 1, 2, 0, 1]
    assert d.num_classes == 3 and d.class_names is None


def test_npz_string_labels_become_class_names(tmp_path):
    x = np.random.default_rng(5).uniform(0, 1, (5, 4, 4, 3)).astype(np.float32)
    np.savez_compressed(tmp_path / "d.npz", x=x, y=np.array(["zebra", "ant", "zebra", "bee", "ant"]))
    d = from_file(tmp_path / "d.npz")
    assert d.shape == (5, 3, 4, 4) and in_range(d)
    assert d.class_names == ["ant", "bee", "zebra"] and d.num_classes == 3
    assert d.y.tolist() == [2, 0, 2, 1, 0]
    assert d.shard(0, 2).class_names == d.class_names
    np.savez(tmp_path / "b.npz", x=np.zeros((2, 2)), y=np.array([b"yes", b"no"]))
    assert from_file(tmp_path / "b.npz").class_names == ["no", "yes"]


def test_npz_points_without_labels(tmp_path):
    np.savez(tmp_path / "p.npz", x=np.arange(12.0).reshape(6, 2))
    d = from_file(tmp_path / "p.npz")
    assert d.shape == (6, 2) and d.y is None and d.num_classes == 0 and d.x[-1].tolist() == [10.0, 11.0]


# -- folders -------------------------------------------------------------------------------------
def test_folder_classes_auto_rgb(folder):
    d = load(folder)
    assert d.name == "pics" and d.shape == (4, 3, 6, 6) and in_range(d)
    assert d.class_names == ["cat", "dog"] and d.num_classes == 2
    assert d.y.tolist() == [0, 0, 1, 1]  # cat/a, cat/b, dog/d.jpg, dog/deep/c (sorted paths)
    assert torch.all(d.x[0] == 1.0)  # white grey PNG replicated to 3 channels
    assert torch.all(d.x[3] == -1.0)
    assert abs(d.x[2].mean().item()) < 0.03  # JPEG grey 128
    assert d.options == {"size": None, "channels": "auto"}


def test_folder_all_grey_is_one_channel_and_options(folder, tmp_path):
    grey = tmp_path / "grey"
    save_png(grey / "a" / "1.png", np.zeros((5, 5), np.uint8))
    save_png(grey / "b" / "2.png", np.full((5, 5), 255, np.uint8))
    d = load(grey)
    assert d.shape == (2, 1, 5, 5) and d.x[0].max() == -1 and d.x[1].min() == 1
    assert load(grey, channels="3").shape == (2, 3, 5, 5)
    d = load(folder, channels=1, size="3")
    assert d.shape == (4, 1, 3, 3) and in_range(d) and d.options == {"size": 3, "channels": 1}


def test_folder_resize_shorter_side_and_centre_crop(tmp_path):
    root = tmp_path / "sizes"
    wide = np.zeros((8, 16, 3), np.uint8)
    wide[:, 4:12] = 255  # a white centre square that the crop keeps
    save_png(root / "a" / "wide.png", wide)
    save_png(root / "a" / "small.png", np.full((2, 2), 255, np.uint8))
    with pytest.raises(InputError, match=r"images differ in size: .*small.png is 2x2, .*wide.png is 16x8"):
        load(root)
    d = load(root, size=4)
    assert d.shape == (2, 3, 4, 4) and in_range(d)
    assert d.x[1].mean() > 0.85  # wide.png: its white centre is left (squashed whole, the mean is 0)


def test_folder_without_class_folders_is_unlabelled(tmp_path):
    root = tmp_path / "flat"
    for i in range(3):
        save_png(root / f"{i}.png", np.full((4, 4), 60 * i, np.uint8))
    (root / ".hidden").mkdir()
    d = load(root)
    assert d.shape == (3, 1, 4, 4) and d.y is None and d.num_classes == 0 and d.class_names is None


def test_folder_palette_rgba_and_16_bit(tmp_path):
    root = tmp_path / "modes"
    save_png(root / "c" / "rgba.png", np.full((4, 4, 4), 255, np.uint8))
    Image.fromarray(np.full((4, 4, 3), 255, np.uint8)).convert("P").save(root / "c" / "pal.png")
    save_png(root / "c" / "deep.png", np.full((4, 4), 65535, np.uint16))
    d = load(root)
    assert d.shape == (3, 3, 4, 4) and torch.allclose(d.x, torch.ones_like(d.x))


# -- errors --------------------------------------------------------------------------------------
def bad_files(tmp_path):
    """(path, message) pairs: each bad input and the words its error must contain."""
    cases = []
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    cases.append(("obj.npy", "pickled or object data, which is refused"))
    with open(tmp_path / "pickle.npy", "wb") as fh:
        pickle.dump([1, 2, 3], fh)
    cases.append(("pickle.npy", "pickled or object data"))
    np.save(tmp_path / "cut.npy", np.zeros((100, 8, 8), np.uint8))
    data = (tmp_path / "cut.npy").read_bytes()
    (tmp_path / "cut.npy").write_bytes(data[:len(data) // 2])
    cases.append(("cut.npy", "cannot read cut.npy"))
    np.save(tmp_path / "rank5.npy", np.zeros((2, 1, 2, 2, 2)))
    cases.append(("rank5.npy", "must hold N x D points or N x H x W"))
    np.save(tmp_path / "rgba.npy", np.zeros((2, 4, 5, 4), np.uint8))
    cases.append(("rgba.npy", "1 or 3 channels"))
    nan = np.zeros((3, 4, 4), np.float32)
    nan[2, 1, 1] = np.nan
    np.save(tmp_path / "nan.npy", nan)
    cases.append(("nan.npy", r"NaN or inf values \(first in image 2\)"))
    np.save(tmp_path / "wide.npy", np.linspace(-2, 3, 32).reshape(2, 4, 4))
    cases.append(("wide.npy", r"float pixel values span \[-2, 3\]"))
    np.save(tmp_path / "i16.npy", np.full((2, 3, 3), 300, np.int16))
    cases.append(("i16.npy", "integer pixel values must be in 0..255, got 300..300"))
    np.save(tmp_path / "text.npy", np.array([["a", "b"]]))
    cases.append(("text.npy", "must hold integers or floats"))
    np.savez(tmp_path / "objy.npz", x=np.zeros((2, 2)), y=np.array([None, 1], dtype=object))
    cases.append(("objy.npz", "pickled or object data"))
    np.savez(tmp_path / "nox.npz", images=np.zeros((2, 4, 4)))
    cases.append(("nox.npz", "has no array 'x' .arrays: images."))
    np.savez(tmp_path / "short.npz", x=np.zeros((3, 4, 4)), y=np.array([0, 1]))
    cases.append(("short.npz", "3 rows in x but 2 labels in y"))
    np.savez(tmp_path / "neg.npz", x=np.zeros((2, 2)), y=np.array([0, -1]))
    cases.append(("neg.npz", "must be non-negative integers"))
    (tmp_path / "junk.npz").write_bytes(b"PK\x03\x04 not really a zip")
    cases.append(("junk.npz", "cannot read junk.npz"))
    np.save(tmp_path / "plain.npy", np.zeros((2, 2)))
    (tmp_path / "plain.npz").write_bytes((tmp_path / "plain.npy").read_bytes())
    cases.append(("plain.npz", "not an .npz archive"))
    (tmp_path / "empty").mkdir()
    cases.append(("empty", "holds no PNG/JPEG images"))
    save_png(tmp_path / "trunc" / "a" / "ok.png", np.random.default_rng(0).integers(0, 256, (8, 8), dtype=np.uint8))
    png = (tmp_path / "trunc" / "a" / "ok.png").read_bytes()
    (tmp_path / "trunc" / "a" / "broken.png").write_bytes(png[:len(png) // 2])
    cases.append(("trunc", r"cannot read image .*trunc/a/broken.png"))
    save_png(tmp_path / "fake" / "a" / "x.png", np.zeros((4, 4), np.uint8))
    (tmp_path / "fake" / "a" / "y.jpg").write_text("no picture here")
    cases.append(("fake", r"cannot read image .*fake/a/y.jpg"))
    save_png(tmp_path / "mixed" / "top.png", np.zeros((4, 4), np.uint8))
    save_png(tmp_path / "mixed" / "a" / "x.png", np.zeros((4, 4), np.uint8))
    cases.append(("mixed", r"mixes images \(top.png\) with class sub-folders"))
    save_png(tmp_path / "hole" / "a" / "x.png", np.zeros((4, 4), np.uint8))
    (tmp_path / "hole" / "b").mkdir()
    cases.append(("hole", r"class folder .*hole/b has no PNG/JPEG images"))
    cases.append(("missing.npz", "does not exist"))
    return cases


def test_each_bad_file_is_one_input_error_naming_it(tmp_path):
    for name, message in bad_files(tmp_path):
        with pytest.raises(InputError, match=message) as info:
            load(tmp_path / name)
        assert "\n" not in str(info.value)
        assert name.split(".")[0] in str(info.value), (name, str(info.value))


def test_pickled_npy_is_never_unpickled(tmp_path, monkeypatch):
    monkeypatch.setattr(pickle, "load", lambda *a, **k: pytest.fail("unpickled"))
    monkeypatch.setattr(pickle, "loads", lambda *a, **k: pytest.fail("unpickled"))
    np.save(tmp_path / "obj.npy", np.array([object()], dtype=object), allow_pickle=True)
    with pytest.raises(InputError, match="refused"):
        from_file(tmp_path / "obj.npy")


def test_bad_options(folder, tmp_path):
    with pytest.raises(InputError, match="dataset.channels must be one of 'auto', 1, 3, got '2'"):
        load(folder, channels="2")
    with pytest.raises(InputError, match="dataset.size must be int | None, got 'big'"):
        load(folder, size="big")
    with pytest.raises(InputError, match="size must be > 0"):
        load(folder, size=0)
    np.save(tmp_path / "x.npy", np.zeros((2, 4, 4), np.uint8))
    with pytest.raises(InputError, match="unknown option 'size' for dataset .*x.npy; valid options: none"):
        load(tmp_path / "x.npy", size=4)
    with pytest.raises(InputError, match="size applies to image folders only"):
        from_file(tmp_path / "x.npy", size=4)
    with pytest.raises(InputError, match="dataset path 'no/such/dir' does not exist"):
        load("no/such/dir")


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def test_cli_bad_files_exit_2_with_one_line(tmp_path):
    cases = dict(bad_files(tmp_path))
    for name in ("obj.npy", "cut.npy", "nox.npz", "empty", "trunc", "mixed"):
        result = invoke("run", "gmm", "--dataset", tmp_path / name, "--out", tmp_path / f"run-{name}")
        assert result.exit_code == 2, (name, result.output)
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
        assert name.split(".")[0] in lines[0]
        assert not (tmp_path / f"run-{name}").exists()  # rejected before fitting: no directory
    result = invoke("run", "gmm", "--dataset", tmp_path / "empty", "--set", "dataset.colour=1")
    assert result.exit_code == 2 and "valid options: size (default None), channels (default 'auto')" in result.output


@pytest.mark.slow
def test_gmm_runs_on_an_image_folder_end_to_end(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "tiny"
    for k, name in enumerate(["dark", "light"]):
        for i in range(12):
            save_png(root / name / f"{i}.png", np.clip(rng.normal(60 + 120 * k, 10, (4, 4)), 0, 255).astype(np.uint8))
    out = tmp_path / "run"
    proc = subprocess.run([AIGC_ENGINE, "run", "gmm", "--dataset", f"{root}/", "--set", "n_components=2",
                           "--set", "covariance_type=diag", "--set", "dataset.size=4", "--out", str(out),
                           "--no-progress"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == str(out)
    assert {"config.json", "model.safetensors", "summary.json", "samples.png"} <= {p.name for p in out.iterdir()}
    saved = json.loads((out / "config.json").read_text())
    assert saved["dataset"] == {"name": str(root.resolve()), "options": {"size": 4, "channels": "auto"},
                                "shape": [1, 4, 4], "class_names": ["dark", "light"]}
    proc = subprocess.run([AIGC_ENGINE, "eval", str(out)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["dataset"] == "tiny"
