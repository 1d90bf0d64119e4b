"""Turns pytest-benchmark's JSON (``--benchmark-json``) of bench/bench_kernels.py into a
markdown table: per group (case), each implementation's time and the extension's speed-up
over it, with the machine named.

    python bench/report.py /tmp/bench_kernels.json [--stat min|median] [-o table.md]

Ratios use the minimum over rounds by default (the least disturbed run on a shared machine);
``ratio > 1`` means the extension is faster. For floors (``*_floor``) the ratio is below 1 and
says how far the extension is from the floor.
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


def table(data: dict, stat: str = "min") -> str:
    groups: "OrderedDict[str, dict]" = OrderedDict()
    for b in data.get("benchmarks", []):
        impl = b.get("extra_info", {}).get("impl") or b["name"]
        groups.setdefault(b.get("group") or b["name"], {})[impl] = b["stats"][stat]
    lines = [machine_line(data), "",
             f"| case | implementation | time ({stat}) | extension speed-up |",
             "|---|---|---:|---:|"]
    for group, impls in groups.items():
        ext = impls.get("ext")
        order = sorted(impls, key=lambda k: (k != "ext", k != "ext_estep", impls[k]))
        for impl in order:
            t = impls[impl]
            if impl == "ext":
                ratio = "1.00x (this)"
            elif ext is None:
                ratio = "n/a"
            else:
                ratio = f"{t / ext:.2f}x"
            lines.append(f"| {group} | {impl} | {_fmt_time(t)} | {ratio} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("json_path")
    ap.add_argument("--stat", default="min", choices=["min", "median", "mean"])
    ap.add_argument("-o", "--output", help="write the table here too")
    args = ap.parse_args(argv)
    with open(args.json_path) as f:
        data = json.load(f)
    text = table(data, args.stat)
    sys.stdout.write(text)
    if args.output:
        with open(args.output, "w") as f:
            f.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
