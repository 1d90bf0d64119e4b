"""Start-up: what each command imports (the timings are in bench/bench_startup.py; no timed
assertions here). ``--version`` and ``--help`` import no torch; the listing commands no
scikit-learn, SciPy, matplotlib or torch._dynamo; a fit imports torch._dynamo only for
torch.compile."""
import json
import subprocess
import sys

import pytest

HEAVY = ("torch", "torch._dynamo", "sklearn", "scipy", "matplotlib")

# Runs the CLI in a fresh interpreter and writes the heavy modules it imported to stdout's last line.
PROBE = """
import json, sys
from aigc_engine.cli import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
print(json.dumps(sorted(m for m in {heavy!r} if m in sys.modules)))
"""


def imported_by(*args, cwd=None):
    proc = subprocess.run([sys.executable, "-c", PROBE.format(heavy=HEAVY), *args], capture_output=True,
                          text=True, timeout=300, cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    return set(json.loads(proc.stdout.strip().splitlines()[-1]))


def test_version_and_help_import_no_torch():
    assert imported_by("--version") == set()
    assert imported_by("--help") == set()


@pytest.mark.parametrize("command", ["models", "datasets", "plugins"])
def test_listing_commands_import_torch_only(command):
    assert imported_by(command) <= {"torch"}


def test_package_import_is_lazy():
    code = ("import sys, aigc_engine; a = 'torch' in sys.modules; from aigc_engine import ops, Run, hookimpl;"
            "print(a, 'torch' in sys.modules, 'torch._dynamo' in sys.modules, ops.gaussian_log_prob.__name__,"
            " Run.__name__, aigc_engine.__version__ != '')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.stdout.split() == ["False", "True", "False", "gaussian_log_prob", "Run", "True"], out.stderr


def test_public_names_resolve():
    import aigc_engine

    for name in aigc_engine.__all__:
        assert getattr(aigc_engine, name) is not None
        assert name in dir(aigc_engine)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        aigc_engine.nope  # noqa: B018


def test_a_fit_loads_the_kernels_without_torch_dynamo(tmp_path):
    """The extension's register_fake / register_autograd and a whole gmm run leave torch._dynamo
    unimported."""
    modules = imported_by("run", "gmm", "--set", "n_components=2", "--set", "max_iter=3", "--set",
                          "dataset.n=500", "--out", str(tmp_path / "r"), "--no-progress", cwd=tmp_path)
    assert "torch" in modules and "torch._dynamo" not in modules
    code = ("import sys; from aigc_engine import ops; from aigc_engine.ops import _loader;"
            "print(_loader._load(), 'torch._dynamo' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.stdout.split()[1] == "False", out.stderr


def test_constant_marker_matches_torch_compiler():
    """ops marks a function constant for torch.compile the way torch.compiler does, without
    importing torch._dynamo."""
    import torch

    from aigc_engine import ops

    def probe():
        return 1

    marked = torch.compiler.assume_constant_result(probe)
    assert {k: v for k, v in vars(marked).items()} == {k: v for k, v in vars(ops._cuda_max_full_d).items()}
    assert vars(marked)  # torch's decorator does set an attribute: the comparison is not vacuous
