"""The quality bars of docs/tables.md, one row per table x model x seed, from the JSON files of
``bench/bench_tables.py --json`` (a later file's result replaces an earlier one's):

    python bench/tables_report.py results/*.json

Bars: column-shape error (1 - column_shapes) at most max(2 x the real held-out rows' error,
0.10); DCR ratio >= 0.8; with a label, ML efficacy within 0.08 of train-on-real.
"""
from __future__ import annotations

import argparse
import json
import math

MODELS = ("gmm", "bgmm", "gan", "cvae", "diffusion")


def bars(result: dict, reference: dict) -> list[str]:
    """The bars ``result`` (one model's metrics) misses: ``shape``, ``dcr``, ``ml``."""
    shape_bar = max(2 * (1 - reference["column_shapes"]), 0.10)
    ml = result.get("ml_efficacy", float("nan"))
    missed = [("shape", 1 - result["column_shapes"] > shape_bar), ("dcr", result["dcr_ratio"] < 0.8),
              ("ml", not math.isnan(ml) and result["ml_efficacy_real"] - ml > 0.08)]
    return [name for name, miss in missed if miss]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+")
    args = parser.parse_args()
    rows, order = {}, []
    for path in args.files:
        for r in json.load(open(path)):
            order += [r["table"]] if r["table"] not in order else []
            rows.update({(r["table"], m, r["seed"]): r for m in MODELS if m in r})
    print("| table | model | seed | column shapes (real) | DCR ratio | ML efficacy (real) | fit s | bars |")
    print("|---|---|---|---|---|---|---|---|")
    for t, m, s in sorted(rows, key=lambda k: (order.index(k[0]), MODELS.index(k[1]), k[2])):
        r = rows[(t, m, s)]
        x, ref = r[m], r["reference"]
        missed = bars(x, ref)
        print(f"| {t} | {m} | {s} | {x['column_shapes']:.3f} ({ref['column_shapes']:.3f}) | {x['dcr_ratio']:.2f} | "
              f"{x['ml_efficacy']:.3f} ({x['ml_efficacy_real']:.3f}) | {r[m + '_fit_s']:.0f} | "
              f"{'met' if not missed else 'missed: ' + ', '.join(missed)} |")


if __name__ == "__main__":
    main()
