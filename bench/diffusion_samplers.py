"""Sampler comparison of trained ``diffusion`` runs on a 2-D mode set (ring8, grid25): modes,
high-quality fraction and reverse KL (``bench/quality.py``'s scoring) of 2500 samples for each
sampler (ddpm, ddim, dpm++2m), time grid (``sample_grid``: the training schedule's, or uniform in
log-SNR) and number of ``sample_steps``, the samples' within-mode spread over the data's (1: the
modes' true width) and the sampling seconds.

    python bench/quality.py diffusion grid25 --seeds 0,1,2 --out runs/quality
    OMP_NUM_THREADS=1 python bench/diffusion_samplers.py runs/quality/diffusion-grid25-s*

Prints a markdown table, one row per sampler and step count, the seeds' values side by side.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from quality import POINT_SETS, mode_scores

STEPS = (8, 16, 32, 64, 128, 256)


def load(run: Path):
    from aigc_diffusion import Diffusion, DiffusionConfig
    from aigc_engine.store import io

    cfg = json.loads((run / "config.json").read_text())
    model = Diffusion(DiffusionConfig(**cfg["config"]))
    model.load_state_dict(io.load_state(run / "model.safetensors"))
    return model, cfg["dataset"]["name"], int(cfg["seed"])


def main() -> None:
    from aigc_diffusion import SAMPLERS

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--steps", default=",".join(map(str, STEPS)))
    parser.add_argument("--grids", default="schedule,logsnr")
    args = parser.parse_args()
    steps = [int(s) for s in args.steps.split(",")]
    scores: dict[tuple, list] = {}
    for run in args.runs:
        model, dataset, seed = load(run)
        centres, std = POINT_SETS[dataset]
        for grid in args.grids.split(","):
            for sampler in SAMPLERS:
                for k in steps:
                    model.resolved.sampler, model.resolved.sample_steps, model.resolved.sample_grid = sampler, k, grid
                    torch.manual_seed(seed)
                    start = time.perf_counter()
                    x = model.sample(2500).numpy()
                    scores.setdefault((grid, sampler, k), []).append(
                        {**mode_scores(x, centres, std), "spread": spread(x, centres, std),
                         "seconds": time.perf_counter() - start})
    print("| grid | sampler | sample_steps | modes | high quality | reverse KL | within-mode spread | seconds |")
    print("|---|---|---|---|---|---|---|---|")
    for (grid, sampler, k), rows in scores.items():
        col = lambda key, fmt: " / ".join(format(r[key], fmt) for r in rows)  # noqa: E731
        print(f"| {grid} | {sampler} | {k} | {col('modes', 'd')} | {col('high_quality', '.1%')} | "
              f"{col('reverse_kl', '.4f')} | {col('spread', '.2f')} | {np.mean([r['seconds'] for r in rows]):.1f} |")


def spread(x: np.ndarray, centres: np.ndarray, std: float) -> float:
    """The standard deviation of the high-quality samples about their mode over the modes' own."""
    d = np.linalg.norm(x[:, None] - centres[None], axis=2)
    good = d.min(1) <= 3 * std
    return float((x[good] - centres[d.argmin(1)[good]]).std() / std)


if __name__ == "__main__":
    main()
