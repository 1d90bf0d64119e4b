"""DP-EM's utility against epsilon, the first piece of issue 29's privacy bench: held-out
log-likelihood per row of DP-EM on 3-D blobs (4 clusters of std 0.5; 3,000 training rows, 2,000
held out), 4 components, ``--iterations`` iterations, rows clipped to norm 3, the noise calibrated
by ``calibrate_noise`` (PLD, delta = rows ** -1.1), next to a single Gaussian and converged EM.

    OMP_NUM_THREADS=1 python bench/bench_privacy.py --seeds 0,1,2,3,4
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", default="0,1,2,3,4")
    parser.add_argument("--iterations", type=int, default=10)
    args = parser.parse_args()
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
