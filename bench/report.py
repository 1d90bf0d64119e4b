"""Turns pytest-benchmark's JSON (``--benchmark-json``) of the files in bench/ into a markdown
table: per group (case), each implementation's time and our speed-up over it, with the machine
named.

    python bench/report.py bench.json [--stat min|median] [-o table.md]

Ratios use the minimum over rounds by default (the least disturbed run on a shared machine);
``ratio > 1`` means ours (``ext`` in bench_kernels.py, ``ours-*`` in bench_gmm.py) is faster.
For floors (``*_floor``) the ratio is below 1 and says how far ours is from the floor. EM
cases (bench_gmm.py) report time per EM iteration; start-up cases (bench_startup.py) their
target. A missing or unreadable file is one ``error:`` line and exit status 2.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
from collections import OrderedDict


def _cpu_model(info: dict) -> str:
    brand = (info.get("cpu") or {}).get("brand_raw")
    if brand:
        return brand
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _fmt_time(seconds: float) -> str:
    if seconds >= 1:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds * 1e6:.0f} us"


def machine_line(data: dict) -> str:
    info = data.get("machine_info", {})
    cpu = _cpu_model(info)
    cores = (info.get("cpu") or {}).get("count")
    if cores is None:
        import os
        cores = os.cpu_count()
    extra = [b.get("extra_info", {}) for b in data.get("benchmarks", [])]
    threads = sorted({e.get("threads") for e in extra if e.get("threads") is not None})
    torch_version = "?"
    gpu = ""
    try:
        import torch
        torch_version = torch.__version__
        if torch.cuda.is_available():
            gpu = f", GPU {torch.cuda.get_device_name(0)} (CUDA {torch.version.cuda})"
    except Exception:
        pass
    when = data.get("datetime", "")
    return (f"Machine: {cpu}, {cores} cores (torch threads: {', '.join(map(str, threads)) or '?'}), "
            f"torch {torch_version}, Python {info.get('python_version', platform.python_version())}"
            f"{gpu}; run {when}")


def _impl_name(bench: dict) -> str:
    """``extra_info["impl"]``, else the test's parameter (``test_em_full[ours-f32]`` -> ``ours-f32``)."""
    impl = bench.get("extra_info", {}).get("impl")
    if impl:
        return impl
    name = bench["name"]
    return name[name.index("[") + 1:-1] if name.endswith("]") and "[" in name else name


def _seconds(bench: dict, stat: str) -> float:
    extra = bench.get("extra_info", {})
    if "ms_per_iter" in extra:  # bench_gmm.py: per EM iteration, timed inside the fit
        return extra["ms_per_iter"] / 1e3
    return bench["stats"][stat]


def _note(bench: dict, seconds: float) -> str:
    extra = bench.get("extra_info", {})
    notes = []
    if "cpu_s_min" in extra:
        notes.append(f"CPU {extra['cpu_s_min']:.2f} s")
    if "target_s" in extra:
        notes.append(f"target <= {extra['target_s']:g} s: {'met' if seconds <= extra['target_s'] else 'missed'}")
    return "; ".join(notes)


def _ours(impls: dict) -> str | None:
    if "ext" in impls:
        return "ext"
    return next((k for k in impls if k.startswith("ours")), None)


def table(data: dict, stat: str = "min") -> str:
    groups: "OrderedDict[str, dict]" = OrderedDict()
    for b in data.get("benchmarks", []):
        groups.setdefault(b.get("group") or b["name"], {})[_impl_name(b)] = b
    lines = [machine_line(data), "",
             f"| case | implementation | time ({stat}) | our speed-up | note |",
             "|---|---|---:|---:|---|"]
    for group, impls in groups.items():
        times = {impl: _seconds(b, stat) for impl, b in impls.items()}
        ours = _ours(times)
        order = sorted(times, key=lambda k: (k != ours, k != "ext_estep", times[k]))
        for impl in order:
            t = times[impl]
            if impl == ours:
                ratio = "1.00x (this)"
            elif ours is None:
                ratio = "n/a"
            else:
                ratio = f"{t / times[ours]:.2f}x"
            per = " / iter" if "ms_per_iter" in impls[impl].get("extra_info", {}) else ""
            lines.append(f"| {group} | {impl} | {_fmt_time(t)}{per} | {ratio} | {_note(impls[impl], t)} |")
    return "\n".join(lines) + "\n"


def read_results(path: str) -> dict:
    """The JSON of ``--benchmark-json``; ValueError with a one-line reason otherwise."""
    try:
        with open(path) as f:
            data = json.load(f)
    except FileNotFoundError:
        raise ValueError(f"{path} does not exist; write it with "
                         f"`pytest bench/ --benchmark-only --benchmark-json {path}`") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ValueError(f"cannot read {path}: {err}") from None
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not JSON ({err}); is it a --benchmark-json file?") from None
    if not isinstance(data, dict) or not isinstance(data.get("benchmarks"), list):
        raise ValueError(f"{path} is not pytest-benchmark output (no 'benchmarks' list)")
    if not data["benchmarks"]:
        raise ValueError(f"{path} holds no benchmarks: was the run collected (pytest bench/ --benchmark-only)?")
    return data


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("json_path")
    ap.add_argument("--stat", default="min", choices=["min", "median", "mean"])
    ap.add_argument("-o", "--output", help="write the table here too")
    args = ap.parse_args(argv)
    try:
        data = read_results(args.json_path)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    text = table(data, args.stat)
    sys.stdout.write(text)
    if args.output:
        with open(args.output, "w") as f:
            f.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
