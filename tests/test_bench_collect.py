"""The README's benchmark command collects every benchmark file (no timings are run here)."""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_pytest_collects_every_bench_file():
    proc = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
                           "bench/"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    # node ids are relative to bench/, the rootdir that bench/pytest.ini makes
    collected = {Path(line.split("::")[0]).name for line in proc.stdout.splitlines() if "::" in line}
    expected = {p.name for p in (ROOT / "bench").glob("bench_*.py")}
    assert expected == collected and len(expected) >= 3


def test_default_run_leaves_bench_out():
    proc = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
                           "-k", "startup"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "tests/test_startup.py::" in proc.stdout and "bench/" not in proc.stdout


def test_report_says_what_is_wrong_in_one_line(tmp_path):
    report = [sys.executable, str(ROOT / "bench" / "report.py")]
    for content, message in ((None, "does not exist"), ("{", "is not JSON"), ('{"a": 1}', "not pytest-benchmark output"),
                             ('{"benchmarks": []}', "holds no benchmarks")):
        path = tmp_path / "bench.json"
        if content is None:
            path.unlink(missing_ok=True)
        else:
            path.write_text(content)
        proc = subprocess.run([*report, str(path)], capture_output=True, text=True, timeout=60)
        assert proc.returncode == 2 and proc.stdout == ""
        assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("error: ") and message in proc.stderr


def test_report_table_of_em_and_startup_cases(tmp_path):
    import json

    def bench(group, name, seconds, **extra):
        return {"group": group, "name": name, "stats": {"min": seconds, "median": seconds, "mean": seconds},
                "extra_info": extra}
    data = {"benchmarks": [
        bench("em-full", "test_em_full[ours-f32]", 9.0, ms_per_iter=35.0),
        bench("em-full", "test_em_full[torchgmm-f32]", 20.0, ms_per_iter=470.0),
        bench("start-up", "test_startup[x]", 0.3, impl="aigc-engine --version", target_s=0.5, cpu_s_min=0.21),
    ]}
    path = tmp_path / "bench.json"
    path.write_text(json.dumps(data))
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "report.py"), str(path)], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    rows = {line.split("|")[2].strip(): line for line in proc.stdout.splitlines() if line.startswith("| ")}
    assert "35.0 ms / iter" in rows["ours-f32"] and "1.00x (this)" in rows["ours-f32"]
    assert "470.0 ms / iter" in rows["torchgmm-f32"] and "13.43x" in rows["torchgmm-f32"]
    assert "CPU 0.21 s; target <= 0.5 s: met" in rows["aigc-engine --version"]
