"""Start-up time of the ``aigc-engine`` command (pytest-benchmark; no timing assertions).

    pytest bench/bench_startup.py --benchmark-only [--benchmark-json startup.json]
    python bench/report.py startup.json

Each case runs the console script in a fresh process, as a user does, and times it to exit.
Targets (issue 12, on 2 cores): ``--version`` <= 0.5 s without importing torch; ``--help``,
``models``, ``datasets`` and ``plugins`` <= 2.5 s. Two floors are timed in the same run to read
the figures against: a bare interpreter and ``import torch`` (which the listing commands pay;
``--version`` and ``--help`` do not). What each command imports is tested in
tests/test_startup.py. ``AIGC_BENCH_ROUNDS`` sets the rounds (default 5).

On a shared machine wall time follows the load; the CPU seconds of each run (user + system,
``extra_info["cpu_s_min"]``) move much less, so both are recorded.
"""
from __future__ import annotations

import os
import resource
import subprocess
import sys

import pytest

from conftest import bench_rounds

pytest.importorskip("pytest_benchmark")

AIGC_ENGINE = os.path.join(os.path.dirname(sys.executable), "aigc-engine")
ROUNDS = bench_rounds(5)

CASES = {  # name: (argv, target in seconds or None for a floor)
    "aigc-engine --version": ([AIGC_ENGINE, "--version"], 0.5),
    "aigc-engine --help": ([AIGC_ENGINE, "--help"], 2.5),
    "aigc-engine models": ([AIGC_ENGINE, "models"], 2.5),
    "aigc-engine datasets": ([AIGC_ENGINE, "datasets"], 2.5),
    "aigc-engine plugins": ([AIGC_ENGINE, "plugins"], 2.5),
    "floor: python -c pass": ([sys.executable, "-c", "pass"], None),
    "floor: python -c 'import torch'": ([sys.executable, "-c", "import torch"], None),
}


@pytest.mark.parametrize("name", list(CASES))
def test_startup(benchmark, name):
    argv, target = CASES[name]

    cpu_seconds = []

    def run():
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu_seconds.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)

    benchmark.group = "start-up"
    benchmark.extra_info.update(impl=name, threads=os.cpu_count(), load_average_1min=os.getloadavg()[0],
                                **({"target_s": target} if target is not None else {}))
    benchmark.pedantic(run, rounds=ROUNDS, iterations=1, warmup_rounds=1)
    benchmark.extra_info["cpu_s_min"] = min(cpu_seconds)
