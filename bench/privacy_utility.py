"""Utility against epsilon, the first pieces of issue 29's privacy bench.

DP-EM: held-out log-likelihood per row of DP-EM on 3-D blobs (4 clusters of std 0.5; 3,000
training rows, 2,000 held out), 4 components, ``--iterations`` iterations, rows clipped to norm 3,
the noise calibrated by ``calibrate_noise`` (PLD, delta = rows ** -1.1), next to a single Gaussian
and converged EM.

DP-SGD (``--models gan,cvae,diffusion``): bench_tables.py's protocol on ``--tables`` (a 70/30 split,
seed 0; the encoding fitted on the training rows, not privately: this measures the fit's DP alone),
each model's default config (``--set`` overrides) fitted with ``run.privacy`` at each of
``--epsilons`` (inf: the non-private fit; delta = rows ** -1.1), as many rows sampled as training
rows, scored by ``aigc_engine.metrics.tables`` (column shapes, pair trends, ML efficacy, DCR, the
membership-inference AUCs), with the fit's seconds and the epsilon the accountant reports.

    OMP_NUM_THREADS=1 python bench/privacy_utility.py --seeds 0,1,2,3,4
    OMP_NUM_THREADS=1 python bench/privacy_utility.py --models gan,cvae,diffusion --tables breast_cancer
"""
from __future__ import annotations

import argparse
import math

import numpy as np
import torch
from sklearn.mixture import GaussianMixture

from aigc_engine.privacy import calibrate_noise, default_delta
from aigc_gmm import _dp_em

EPSILONS = (0.3, 1.0, 3.0, 10.0, math.inf)


def blobs(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = np.array([[2.0, 0, 0], [-2, 0, 0], [0, 2, 0], [0, -1.5, 1.5]])
    return centres[rng.integers(0, 4, n)] + rng.normal(size=(n, 3)) * 0.5


def heldout_score(fit: dict, heldout: np.ndarray, covariance_type: str) -> float:
    cov = fit["covariances"] if covariance_type == "full" else torch.diag_embed(fit["covariances"])
    gm = GaussianMixture(len(fit["weights"]))
    gm.weights_, gm.means_, gm.covariances_ = fit["weights"].numpy(), fit["means"].numpy(), cov.numpy()
    gm.precisions_cholesky_ = np.linalg.cholesky(np.linalg.inv(gm.covariances_))
    return float(gm.score(heldout))


def dp_sgd_row(table: str, kind: str, epsilon: float, seed: int, set_: dict) -> dict:
    """One private (or, at inf, non-private) fit of engine model ``kind`` on ``table`` under
    bench_tables.py's protocol, scored; with the fit's seconds and what it spent."""
    import time

    import aigc_engine
    from aigc_engine.data import Dataset
    from aigc_engine.metrics.tables import table_metrics
    from aigc_engine.privacy import PrivacyBudget
    from aigc_engine.tables import TableEncoding, detect_schema
    from bench_tables import _model_class, load, split

    frame, label = load(table)
    train, holdout = split(frame)
    encoding = TableEncoding.fit(train, detect_schema(frame, label, name=table), "quantile", seed=0)
    dataset = Dataset(encoding.transform(train), encoding.labels(train), name=table,
                      class_names=encoding.schema.class_names)
    dataset.encoding = encoding
    cls = _model_class(kind)
    model = cls(cls.Config(**set_))
    run = aigc_engine.Run(None, device="cpu", seed=seed, progress=False)
    run.privacy = PrivacyBudget(epsilon).for_rows(len(dataset)) if math.isfinite(epsilon) else None
    torch.manual_seed(seed)
    start = time.perf_counter()
    model.fit(dataset, run)
    seconds = time.perf_counter() - start
    n = max(len(train), len(holdout))
    y = torch.multinomial(model.class_freq.float(), n, replacement=True, generator=torch.Generator().manual_seed(seed))
    rows = encoding.decode(model.sample(n, condition=y), y)
    return {"table": table, "model": kind, "epsilon": epsilon, "seed": seed, "fit_s": seconds,
            "spent": getattr(model, "privacy", {}), **table_metrics(train, holdout, rows, encoding, seed)}


def dp_sgd_main(args) -> None:
    import json

    set_ = dict((k.strip(), json.loads(v)) for k, _, v in (s.partition("=") for s in args.set))
    keys = ("column_shapes", "pair_trends", "ml_efficacy", "dcr_ratio", "mia_distance_auc")
    print("| table | model | epsilon | spent | noise | " + " | ".join(keys) + " | fit s |")
    print("|---" * (len(keys) + 6) + "|")
    results = []
    for table in args.tables.split(","):
        for kind in args.models.split(","):
            for eps in (float(e) for e in args.epsilons.split(",")):
                r = dp_sgd_row(table, kind, eps, args.seed, set_)
                results.append(r)
                sp = r["spent"]
                print(f"| {table} | {kind} | {eps:g} | {sp.get('epsilon', float('inf')):.3f} | "
                      f"{sp.get('noise_multiplier', 0):.2f} | " + " | ".join(f"{r.get(k, float('nan')):.3f}" for k in keys)
                      + f" | {r['fit_s']:.0f} |", flush=True)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", default="0,1,2,3,4")
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument("--models", default="", help="gan,cvae,diffusion: DP-SGD on --tables instead of DP-EM")
    parser.add_argument("--tables", default="breast_cancer")
    parser.add_argument("--epsilons", default="1,10,inf")
    parser.add_argument("--seed", type=int, default=0, help="the DP-SGD fits' seed")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a config override of the --models (values read as JSON)")
    parser.add_argument("--json", default="")
    args = parser.parse_args()
    if args.models:
        return dp_sgd_main(args)
    seeds = [int(s) for s in args.seeds.split(",")]
    train, held = blobs(3000, 1), blobs(2000, 2)
    print(f"converged EM: {GaussianMixture(4, random_state=0).fit(train).score(held):.3f}, "
          f"one Gaussian: {GaussianMixture(1).fit(train).score(held):.3f}")
    print("covariance epsilon noise_multiplier mean min max")
    for covariance_type in ("full", "diag"):
        for eps in EPSILONS:
            z = calibrate_noise(eps, default_delta(len(train)), args.iterations)
            scores = [heldout_score(_dp_em.dp_em(torch.as_tensor(train), 4, args.iterations, 3.0, z, covariance_type,
                                                 init_generator=torch.Generator().manual_seed(s),
                                                 noise_generator=torch.Generator().manual_seed(50 + s)),
                                    held, covariance_type) for s in seeds]
            print(covariance_type, eps, "-" if z is None else f"{z:.2f}",
                  f"{np.mean(scores):.3f} {min(scores):.3f} {max(scores):.3f}")


if __name__ == "__main__":
    main()
