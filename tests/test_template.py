"""The third-party plugin template installs with pip and is found with no change to the core."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
AIGC_ENGINE = os.path.join(os.path.dirname(sys.executable), "aigc-engine")


def _pip(*args):
    return subprocess.run([sys.executable, "-m", "pip", *args], capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def kde_installed():
    proc = _pip("install", "--no-build-isolation", "--no-deps", "--no-index", str(ROOT / "examples" / "aigc-kde"))
    assert proc.returncode == 0, proc.stderr
    yield
    _pip("uninstall", "-y", "aigc-kde")


def test_template_plugin_end_to_end(kde_installed, tmp_path):
    models = subprocess.run([AIGC_ENGINE, "models"], capture_output=True, text=True, timeout=120)
    assert models.returncode == 0 and "kde  [kde]" in models.stdout
    assert "bandwidth: float | None  kernel std as a factor of the data covariance" in models.stdout
    out = tmp_path / "kde-run"
    proc = subprocess.run([AIGC_ENGINE, "run", "kde", "--dataset", "ring8", "--set", "dataset.n=2000",
                           "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == str(out)
    assert {"config.json", "metrics.jsonl", "model.safetensors", "summary.json", "samples.png"} <= \
        {p.name for p in out.iterdir()}
    summary = json.loads((out / "summary.json").read_text())
    assert summary["mean_log_likelihood"] > -1.0  # ring8 is concentrated: a KDE fits it well
    proc = subprocess.run([AIGC_ENGINE, "sample", str(out), "-n", "10", "-o", str(tmp_path / "s.npy")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


def test_kde_matches_scipy(kde_installed):
    import numpy as np
    import torch
    from scipy.stats import gaussian_kde

    from aigc_engine import Run
    from aigc_engine.data import blobs
    from aigc_kde import KDE

    data = blobs(n=400, dim=2, seed=3)
    model = KDE()
    model.fit(data, Run(None, device="cpu", progress=False))
    x = torch.randn(50, 2) * 3
    expected = gaussian_kde(data.x.double().numpy().T).logpdf(x.double().numpy().T)
    assert np.allclose(model.log_prob(x).numpy(), expected, rtol=1e-6, atol=1e-8)


def test_the_template_s_own_tests_pass(kde_installed):
    """What an author gets on copying the folder: its tests (check_model included) pass as they are."""
    folder = ROOT / "examples" / "aigc-kde"
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"], cwd=folder,
                          capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "2 passed" in proc.stdout
