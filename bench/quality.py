"""The quality protocol of the GAN and CVAE targets, run end to end through the CLI with the
default config, scored by code independent of ``aigc_engine.metrics`` (numpy mode counting,
scikit-learn's RBF SVC and NearestNeighbors), so the engine's own metrics are cross-checked.

    python bench/quality.py gan ring8 grid25 digits --seeds 0,1,2 --out runs/quality
    python bench/quality.py cvae digits ring8 --seeds 0,1,2
    python bench/quality.py gmm digits ring8 --seeds 0,1,2    # held-out NLL on the CVAE's split

For each model, dataset and seed: ``aigc-engine run MODEL --dataset D --seed S --out ...``, then
``aigc-engine sample RUN -n 2500 -o s.npy`` (2-D sets) or ``-n 200 --condition c`` for each class
(digits), and the scores:
- 2-D: modes captured, high-quality fraction (within 3 std of the nearest mode), reverse KL of the
  high-quality samples' mode histogram against uniform;
- digits: accuracy of an RBF SVC (default parameters, trained on all 1797 real digits on the
  0..16 scale) on the conditional samples mapped back to 0..16, and coverage (Naeem et al.
  2020, k = 5, pixel space) of the real digits by the 2000 samples.
Also the run's wall time and its summary.json. Prints a markdown table (per seed, mean, worst)
and writes ``quality.json`` in ``--out``.
"""
from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

POINT_SETS = {"ring8": (np.stack([np.cos(2 * np.pi * np.arange(8) / 8), np.sin(2 * np.pi * np.arange(8) / 8)], 1), 0.01),
              "grid25": (np.stack(np.meshgrid(np.arange(-4, 5, 2.0), np.arange(-4, 5, 2.0), indexing="ij"), -1)
                         .reshape(-1, 2), 0.05)}


def mode_scores(samples: np.ndarray, centres: np.ndarray, std: float) -> dict[str, float]:
    d = np.sqrt(((samples[:, None, :] - centres[None]) ** 2).sum(-1))
    nearest, dist = d.argmin(1), d.min(1)
    good = dist <= 3 * std
    counts = np.bincount(nearest[good], minlength=len(centres)).astype(float)
    p = counts[counts > 0] / max(1.0, counts.sum())
    rkl = math.log(len(centres)) + float((p * np.log(p)).sum()) if counts.sum() else float("inf")
    return {"modes": int((counts > 0).sum()), "high_quality": float(good.mean()), "reverse_kl": rkl}


def coverage(real: np.ndarray, fake: np.ndarray, k: int = 5) -> float:
    """Naeem et al. 2020: the fraction of real points with a sample inside their k-NN ball."""
    from sklearn.neighbors import NearestNeighbors

    radii = NearestNeighbors(n_neighbors=k + 1).fit(real).kneighbors(real)[0][:, -1]  # self excluded
    nearest = NearestNeighbors(n_neighbors=1).fit(fake).kneighbors(real)[0][:, 0]
    return float((nearest <= radii).mean())


def digit_scores(samples: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    from sklearn.datasets import load_digits
    from sklearn.svm import SVC

    d = load_digits()
    fake = np.clip((samples.reshape(len(samples), -1) + 1) * 8, 0, 16)
    svc = SVC().fit(d.data, d.target)
    return {"svc_accuracy": float((svc.predict(fake) == labels).mean()), "coverage": coverage(d.data, fake)}


def gmm_heldout(dataset: str, seed: int, n_components: int) -> dict:
    """The GMM plugin's held-out log-likelihood on the split the CVAE uses (``Dataset.split`` with
    its default fractions and the seed; digits: rows 1350:1797), fitted on the train rows. Discrete
    pixels are scored as Theis et al. (2016) prescribe: the density is fitted to and evaluated on
    uniformly dequantised data, log P(x) >= E_u[log p(x + u)] + D log(bin width)."""
    import torch

    from aigc_engine import open_dataset
    from aigc_gmm import GaussianMixture

    parts = open_dataset(dataset).split(0.1, 0.1, seed=seed)
    train, test = parts["train"].x.flatten(1).double(), parts["test"].x.flatten(1).double()
    d = train.shape[1]
    g = torch.Generator().manual_seed(seed)
    width = 1 / 8 if dataset == "digits" else 0.0  # digits: 17 levels 1/8 apart in [-1, 1]
    deq = (lambda x: x + width * torch.rand(x.shape, generator=g, dtype=x.dtype)) if width else (lambda x: x)
    start = time.perf_counter()
    gm = GaussianMixture(n_components, covariance_type="full", random_state=seed, reg_covar=1e-4 if width else 1e-6,
                         dtype="float64").fit(deq(train))
    fit_s = time.perf_counter() - start
    draws = 10 if width else 1
    ll = float(torch.stack([gm.score_samples(deq(test)) for _ in range(draws)]).mean()) + d * (math.log(width) if width else 0)
    return {"model": "gmm", "dataset": dataset, "seed": seed, "n_components": n_components, "test_nll": -ll,
            "bound": bool(width), "fit_s": round(fit_s, 1)}


def true_heldout_log_density(dataset: str, seed: int, test: float = 0.1, rows: int = 2000) -> float:
    """The true density's mean log p(x) (an equal mixture of isotropic Gaussians) on the rows the
    diffusion model scores (``split(0, test, seed)["test"]``, up to 2000): what a perfect
    model's ``test_log_likelihood`` would be on that split."""
    from scipy.special import logsumexp

    from aigc_engine import open_dataset

    x = open_dataset(dataset).split(0.0, test, seed=seed)["test"].x[:rows].double().numpy()
    centres, std = POINT_SETS[dataset]
    d2 = ((x[:, None, :] - centres[None]) ** 2).sum(-1)
    logp = -d2 / (2 * std ** 2) - math.log(len(centres)) - math.log(2 * math.pi * std ** 2)
    return float(logsumexp(logp, axis=1).mean())


def _cli(*args: str, env=None) -> str:
    out = subprocess.run([sys.executable, "-m", "aigc_engine", *args], capture_output=True, text=True, env=env)
    if out.returncode:
        raise SystemExit(f"aigc-engine {' '.join(args)} failed ({out.returncode}): {out.stderr.strip()[-2000:]}")
    return out.stdout.strip()


def evaluate(model: str, dataset: str, seed: int, root: Path) -> dict:
    run_dir = root / f"{model}-{dataset}-s{seed}"
    start = time.perf_counter()
    _cli("run", model, "--dataset", dataset, "--seed", str(seed), "--out", str(run_dir), "--no-progress")
    wall = time.perf_counter() - start
    row = {"model": model, "dataset": dataset, "seed": seed, "wall_s": round(wall, 1), "run": str(run_dir)}
    if dataset in POINT_SETS:
        _cli("sample", str(run_dir), "-n", "2500", "-o", str(run_dir / "s.npy"), "--seed", str(seed))
        row.update(mode_scores(np.load(run_dir / "s.npy"), *POINT_SETS[dataset]))
    elif dataset == "digits":
        parts, labels = [], []
        for c in range(10):
            path = run_dir / f"s{c}.npy"
            _cli("sample", str(run_dir), "-n", "200", "--condition", str(c), "-o", str(path), "--seed", str(seed + c))
            parts.append(np.load(path))
            labels.append(np.full(200, c))
        row.update(digit_scores(np.concatenate(parts), np.concatenate(labels)))
    summary = json.loads((run_dir / "summary.json").read_text())
    row["summary"] = {k: v for k, v in summary.items() if isinstance(v, (int, float))}
    if dataset in POINT_SETS and "test_log_likelihood" in summary:
        row["summary"]["true_test_log_likelihood"] = true_heldout_log_density(dataset, seed)
    return row


COLUMNS = {"points": ["modes", "high_quality", "reverse_kl"], "digits": ["svc_accuracy", "coverage"]}


def table(rows: list[dict]) -> str:
    lines = []
    for (model, dataset) in dict.fromkeys((r["model"], r["dataset"]) for r in rows):
        group = [r for r in rows if r["model"] == model and r["dataset"] == dataset]
        cols = COLUMNS["digits" if dataset == "digits" else "points"] + ["wall_s"]
        extra = [k for k in ("test_nll_x", "test_nll_x_given_c", "test_elbo", "test_log_likelihood_per_dim",
                             "test_log_likelihood", "test_log_likelihood_se", "true_test_log_likelihood",
                             "conditional_accuracy", "judge_fd") if k in group[0]["summary"]]
        lines.append(f"\n{model} on {dataset}\n")
        lines.append("| seed | " + " | ".join(cols + extra) + " |")
        lines.append("|---" * (len(cols + extra) + 1) + "|")
        for r in group:
            vals = [r[c] for c in cols] + [r["summary"][k] for k in extra]
            lines.append(f"| {r['seed']} | " + " | ".join(_fmt(v) for v in vals) + " |")
        means = [np.mean([r[c] for r in group]) for c in cols] + [np.mean([r["summary"][k] for r in group]) for k in extra]
        lines.append("| mean | " + " | ".join(_fmt(v) for v in means) + " |")
    return "\n".join(lines) + "\n"


def _fmt(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("datasets", nargs="+")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--out", default="runs/quality")
    args = ap.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    if args.model == "gmm":  # the held-out likelihood beside the CVAE's, on the same split
        rows = [gmm_heldout(d, s, {"digits": 5, "ring8": 8}.get(d, 8)) for d in args.datasets for s in seeds]
        for r in rows:
            print(json.dumps(r))
        return
    root = Path(args.out)
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    for dataset in args.datasets:
        for seed in seeds:
            rows.append(evaluate(args.model, dataset, seed, root))
            print(json.dumps({k: v for k, v in rows[-1].items() if k != "summary"}), file=sys.stderr, flush=True)
    path = root / f"quality-{args.model}.json"
    path.write_text(json.dumps(rows, indent=2))
    sys.stdout.write(table(rows))


if __name__ == "__main__":
    main()
