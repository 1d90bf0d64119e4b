"""Shared settings of the benchmarks.

``AIGC_BENCH_ROUNDS`` sets the number of timed rounds of every benchmark file (each file's
default otherwise); cases that are slow peers run at most a couple of rounds, microsecond cases
a fixed multiple, both derived from this one number.
"""
from __future__ import annotations

import os

ROUNDS_ENV = "AIGC_BENCH_ROUNDS"


def bench_rounds(default: int) -> int:
    """Timed rounds: ``$AIGC_BENCH_ROUNDS`` when set (a positive integer), else ``default``."""
    raw = os.environ.get(ROUNDS_ENV, "").strip()
    if not raw:
        return default
    try:
        rounds = int(raw)
    except ValueError:
        rounds = 0
    if rounds < 1:
        raise ValueError(f"{ROUNDS_ENV} must be a positive integer, got {raw!r}")
    return rounds
