"""The bad-input matrix: every mistake a user can make on the CLI is exit status 2 with one line
`Error: ...` naming the problem, no traceback, and no run directory left behind; on the Python
APIs a ValueError/TypeError naming the argument."""
from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from aigc_engine.cli import cli


class _Payload:
    def __reduce__(self):
        return (print, ("unpickled!",))


def _write(tmp, name, content):
    path = tmp / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif isinstance(content, np.ndarray):
        np.save(path, content, allow_pickle=content.dtype == object)
    else:
        path.write_text(content)
    return str(path)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A fitted unconditional run (gmm on ring8) and a conditional one (a 2-step gan on digits)."""
    root = tmp_path_factory.mktemp("runs")
    runner = CliRunner()
    gmm, gan = root / "gmm", root / "gan"
    for args in (["run", "gmm", "--set", "dataset.n=300", "--set", "n_components=2", "--out", str(gmm)],
                 ["run", "gan", "--dataset", "digits", "--set", "dataset.n=100", "--set", "steps=2", "--set",
                  "batch_size=20", "--set", "channels=4", "--out", str(gan)]):
        result = runner.invoke(cli, [*args, "--no-progress"])
        assert result.exit_code == 0, result.output
    return {"gmm": str(gmm), "gan": str(gan)}


# (case id, argument builder (tmp_path, runs) -> CLI args, what the error line must contain)
CLI_CASES = [
    ("unknown model", lambda t, r: ["run", "nosuch"], "unknown model 'nosuch'"),
    ("unknown dataset", lambda t, r: ["run", "gmm", "--dataset", "nosuch"], "unknown dataset 'nosuch'"),
    ("unknown config key", lambda t, r: ["run", "gmm", "--set", "bogus=1"], "unknown config key 'bogus'"),
    ("set without =", lambda t, r: ["run", "gmm", "--set", "n_components"], "--set expects key=value"),
    ("badly typed set", lambda t, r: ["run", "gmm", "--set", "n_components=abc"], "n_components must be an int"),
    ("enumerated set", lambda t, r: ["run", "gmm", "--set", "covariance_type=banana"], "covariance_type must be one of"),
    ("zero components", lambda t, r: ["run", "gmm", "--set", "n_components=0"], "n_components"),
    ("negative steps", lambda t, r: ["run", "gan", "--set", "steps=-5"], "steps must be >= 1"),
    ("negative batch", lambda t, r: ["run", "gan", "--set", "batch_size=-4"], "batch_size must be >= 1"),
    ("bad betas", lambda t, r: ["run", "gan", "--set", "betas=0.5,2"], "betas"),
    ("cvae temperature", lambda t, r: ["run", "cvae", "--set", "temperature=0"], "temperature must be > 0"),
    ("cvae discrete decoder on points", lambda t, r: ["run", "cvae", "--dataset", "ring8", "--set", "dataset.n=200",
                                                      "--set", "decoder=discretized_logistic"], "continuous"),
    ("gan pack on a conditional model", lambda t, r: ["run", "gan", "--dataset", "digits", "--set", "pack=2"],
     "pack > 1"),
    ("gan Fourier features on images", lambda t, r: ["run", "gan", "--dataset", "digits", "--set", "fourier=8"],
     "for points, not images"),
    ("too few rows", lambda t, r: ["run", "gmm", "--set", "dataset.n=5", "--set", "n_components=8"],
     "more than the 5 rows"),
    ("gan batch larger than data", lambda t, r: ["run", "gan", "--set", "dataset.n=100", "--set", "batch_size=256"],
     "more than the 100 rows"),
    ("config file missing", lambda t, r: ["run", "gmm", "--config", str(t / "none.toml")], "does not exist"),
    ("config file not TOML", lambda t, r: ["run", "gmm", "--config", _write(t, "c.toml", "n_components = [")],
     "is not valid TOML"),
    ("dataset option unknown", lambda t, r: ["run", "gmm", "--set", "dataset.bogus=1"], "unknown option 'bogus'"),
    ("dataset option badly typed", lambda t, r: ["run", "gmm", "--set", "dataset.n=abc"], "dataset.n must be an int"),
    ("dataset option zero", lambda t, r: ["run", "gmm", "--set", "dataset.n=0"], "must be > 0"),
    ("inf in a CSV", lambda t, r: ["run", "gmm", "--dataset", _write(t, "inf.csv", "1,2\n3,inf\n4,5\n")],
     "is not a finite number"),
    ("inf in a npy", lambda t, r: ["run", "gmm", "--dataset", _write(t, "inf.npy", np.array([[1.0, np.inf]] * 4))],
     "NaN or inf"),
    ("empty CSV", lambda t, r: ["run", "gmm", "--dataset", _write(t, "empty.csv", "")], "empty.csv"),
    ("ragged CSV", lambda t, r: ["run", "gmm", "--dataset", _write(t, "ragged.csv", "1,2\n3\n4,5\n")], "ragged.csv"),
    ("non-numeric CSV", lambda t, r: ["run", "gmm", "--dataset", _write(t, "words.csv", "a,b\n1,x\n2,3\n")],
     "words.csv"),
    ("pickled npy", lambda t, r: ["run", "gmm", "--dataset", _write(t, "obj.npy", np.array([_Payload()], dtype=object))],
     "obj.npy"),
    ("truncated npy", lambda t, r: ["run", "gmm", "--dataset", _write(t, "cut.npy", b"\x93NUMPY\x01\x00v\x00{'descr'")],
     "cut.npy"),
    ("wrong rank npy", lambda t, r: ["run", "gmm", "--dataset", _write(t, "flat.npy", np.zeros(7))], "flat.npy"),
    ("npz without x", lambda t, r: ["run", "gmm", "--dataset", _npz(t)], "bad.npz"),
    ("empty image folder", lambda t, r: ["run", "gmm", "--dataset", _folder(t)], "empty"),
    ("CSV label column out of range", lambda t, r: ["run", "gmm", "--dataset", _write(t, "l.csv", "1,2\n3,4\n5,6\n"),
                                                    "--set", "dataset.label_column=5"], "label_column"),
    ("images the GAN cannot take", lambda t, r: ["run", "gan", "--dataset",
                                                 _write(t, "odd.npy", np.zeros((10, 6, 6), dtype=np.uint8))],
     "square images"),
    ("cuda without CUDA", lambda t, r: ["run", "gmm", "--device", "cuda"], "CUDA"),
    ("unknown device", lambda t, r: ["run", "gmm", "--device", "tpu"], "device"),
    ("--out is a file", lambda t, r: ["run", "gmm", "--out", _write(t, "afile", "x")], "is a file"),
    ("--out holds a run", lambda t, r: ["run", "gmm", "--out", r["gmm"]], "already holds a run"),
    ("resume a directory that is not a run", lambda t, r: ["run", "--resume", str(t)], "not a run directory"),
    ("resume a run of another model", lambda t, r: ["run", "gan", "--resume", r["gmm"]], "is a run of 'gmm'"),
    ("sample -n 0", lambda t, r: ["sample", r["gmm"], "-n", "0", "-o", str(t / "s.npy")], "0"),
    ("sample to a bad suffix", lambda t, r: ["sample", r["gmm"], "-o", str(t / "s.txt")], ".npy or .png"),
    ("condition on an unconditional model", lambda t, r: ["sample", r["gmm"], "--condition", "1", "-o",
                                                          str(t / "s.npy")], "not conditional"),
    ("condition out of range", lambda t, r: ["sample", r["gan"], "--condition", "10", "-o", str(t / "s.npy")],
     "condition"),
    ("eval on data of another shape", lambda t, r: ["eval", r["gmm"], "--dataset", "digits"], "shape [2]"),
    ("eval with a model key", lambda t, r: ["eval", r["gmm"], "--set", "n_components=3"], "dataset options only"),
    ("corrupt weights", lambda t, r: ["sample", _copy_run(t, r["gmm"], "model.safetensors", b"not a tensor file"),
                                      "-o", str(t / "s.npy")], "model.safetensors"),
    ("pickled weights", lambda t, r: ["sample", _copy_run(t, r["gmm"], "model.safetensors", pickle.dumps(_Payload())),
                                      "-o", str(t / "s.npy")], "model.safetensors"),
    ("foreign checkpoint", lambda t, r: ["run", "--resume", _copy_run(t, r["gmm"], "checkpoint.safetensors",
                                                                      b"\x00" * 64)], "checkpoint.safetensors"),
    ("corrupt config", lambda t, r: ["sample", _copy_run(t, r["gmm"], "config.json", b"{not json"), "-o",
                                     str(t / "s.npy")], "config.json"),
    ("config of no model", lambda t, r: ["sample", _copy_run(t, r["gmm"], "config.json", b'{"a": 1}'), "-o",
                                         str(t / "s.npy")], "not an aigc-engine run config"),
]


def _npz(tmp):
    path = tmp / "bad.npz"
    np.savez(path, y=np.arange(3))
    return str(path)


def _folder(tmp):
    path = tmp / "imgs"
    path.mkdir(exist_ok=True)
    return str(path)


def _copy_run(tmp, run_dir, name, content: bytes):
    import shutil

    dst = tmp / "copy"
    shutil.copytree(run_dir, dst)
    (dst / name).write_bytes(content)
    return str(dst)


@pytest.mark.parametrize("case,build,expect", CLI_CASES, ids=[c[0] for c in CLI_CASES])
def test_cli_bad_input(case, build, expect, tmp_path, runs, monkeypatch, capfd):
    monkeypatch.chdir(tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())
    args = build(tmp_path, runs)
    made = sorted(p.name for p in tmp_path.iterdir())
    result = CliRunner().invoke(cli, [*args, "--no-progress"] if args[0] in ("run", "sample", "eval") else args)
    lines = [line for line in result.output.strip().splitlines() if not line.startswith("aigc-engine: fitting")]
    assert result.exit_code == 2, (case, result.output, result.exception)
    assert len(lines) == 1 and lines[0].startswith("Error: "), (case, result.output)
    assert expect in lines[0], (case, lines[0])
    assert "Traceback" not in result.output and "unpickled!" not in capfd.readouterr().out
    # nothing that looks like a run was left behind (runs/ would hold a default run directory)
    assert sorted(p.name for p in tmp_path.iterdir()) == made and not (tmp_path / "runs").exists()
    del before


def _gmm(**kw):
    from aigc_gmm import GaussianMixture

    return GaussianMixture(**kw)


API_CASES = [
    ("GaussianMixture n_components=0", lambda: _gmm(n_components=0).fit(np.zeros((10, 2))), ValueError, "n_components"),
    ("GaussianMixture 1-D X", lambda: _gmm(n_components=1).fit(np.zeros(10)), ValueError, "2D array"),
    ("GaussianMixture NaN", lambda: _gmm(n_components=1).fit(np.full((10, 2), np.nan)), ValueError, "NaN"),
    ("log-density means of another width", lambda: __import__("aigc_engine").ops.gaussian_log_prob(
        torch.zeros(3, 2), torch.zeros(2, 3), torch.ones(2, 3), "diag"), ValueError, "means"),
    ("log-density covariance type", lambda: __import__("aigc_engine").ops.gaussian_log_prob(
        torch.zeros(3, 2), torch.zeros(2, 2), torch.ones(2, 2), "banana"), ValueError, "covariance_type"),
    ("GAN loss kind", lambda: __import__("aigc_engine").ops.gan_d_loss(torch.zeros(2), torch.zeros(2), "nope"),
     ValueError, "kind"),
    ("Batches batch_size", lambda: __import__("aigc_engine").Batches(_points(), 0), ValueError, "batch_size"),
    ("EMA decay", lambda: __import__("aigc_engine").EMA(torch.nn.Linear(1, 1), 2.0), ValueError, "decay"),
    ("loop steps", lambda: __import__("aigc_engine").Run(None, device="cpu", progress=False).loop(-1, {}),
     ValueError, "steps"),
    ("loop state without state_dict", lambda: __import__("aigc_engine").Run(None, device="cpu", progress=False)
     .loop(3, {"x": 5}), TypeError, "state['x']"),
    ("GAN lr", lambda: _model("aigc_gan", "GAN", "GANConfig", lr=-1.0), ValueError, "lr"),
    ("CVAE iwae_k", lambda: _model("aigc_cvae", "CVAE", "CVAEConfig", iwae_k=0), ValueError, "iwae_k"),
    ("dataset n", lambda: __import__("aigc_engine").data.ring8(n=0), ValueError, "n must be > 0"),
    ("split fractions", lambda: _points().split(0.7, 0.5), ValueError, "held-out fractions"),
    ("image metrics shapes", lambda: __import__("aigc_engine").metrics.image_metrics(
        torch.zeros(5, 1, 8, 8), torch.zeros(5, 1, 4, 4), judge=False), ValueError, "do not match"),
]


def _points():
    from aigc_engine.data import Dataset

    return Dataset(torch.zeros(10, 2), name="p")


def _model(module, cls, config, **kw):
    mod = __import__(module)
    return getattr(mod, cls)(getattr(mod, config)(**kw))


@pytest.mark.parametrize("case,call,error,expect", API_CASES, ids=[c[0] for c in API_CASES])
def test_api_bad_input(case, call, error, expect):
    with pytest.raises(error) as info:
        call()
    assert expect in str(info.value), (case, str(info.value))


def test_the_matrix_is_large_enough():
    assert len(CLI_CASES) + len(API_CASES) >= 40
    json.dumps([c[0] for c in CLI_CASES])  # case ids are plain text (the README counts them)
