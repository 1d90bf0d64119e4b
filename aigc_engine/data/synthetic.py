"""The built-in synthetic data sets: Gaussian mixtures with known modes (``ring8``, ``grid25``,
``blobs``), ``moons``, and scikit-learn's bundled ``digits`` images. Each factory's keyword
defaults are its ``--set dataset.KEY`` options."""
from __future__ import annotations

import math

import numpy as np
import torch

from ..errors import InputError
from .dataset import Dataset

__all__ = ["ring8", "grid25", "moons", "blobs", "digits", "BUILTIN_DATASETS"]


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def _check_positive(**values) -> None:
    for key, value in values.items():
        if value <= 0:
            raise InputError(f"dataset option {key} must be > 0, got {value}")


def _mixture(centres: np.ndarray, n: int, std: float, seed: int, name: str, options: dict) -> Dataset:
    _check_positive(n=n, std=std)
    rng = _rng(seed)
    labels = rng.integers(0, len(centres), size=n)
    x = centres[labels] + std * rng.standard_normal((n, centres.shape[1]))
    return Dataset(torch.from_numpy(x.astype(np.float32)), torch.from_numpy(labels.astype(np.int64)),
                   len(centres), name, options, labels_are_classes=False,
                   modes=torch.from_numpy(centres.astype(np.float64)), mode_std=float(std))


def ring8(n: int = 10_000, std: float = 0.01, radius: float = 1.0, modes: int = 8, seed: int = 0) -> Dataset:
    """Gaussians evenly spaced on a circle (8 modes, radius 1, std 0.01)."""
    _check_positive(radius=radius, modes=modes)
    angles = 2 * math.pi * np.arange(modes) / modes
    centres = radius * np.stack([np.cos(angles), np.sin(angles)], 1)
    return _mixture(centres, n, std, seed, "ring8", dict(n=n, std=std, radius=radius, modes=modes, seed=seed))


def grid25(n: int = 10_000, std: float = 0.05, seed: int = 0) -> Dataset:
    """25 Gaussians with means on {-4, -2, 0, 2, 4}^2, std 0.05."""
    g = np.arange(-4, 5, 2, dtype=np.float64)
    centres = np.stack(np.meshgrid(g, g, indexing="ij"), -1).reshape(-1, 2)
    return _mixture(centres, n, std, seed, "grid25", dict(n=n, std=std, seed=seed))


def moons(n: int = 10_000, noise: float = 0.05, seed: int = 0) -> Dataset:
    """scikit-learn's two interleaving half circles, labelled by moon."""
    from sklearn.datasets import make_moons

    _check_positive(n=n)
    x, y = make_moons(n_samples=n, noise=noise, random_state=seed)
    return Dataset(torch.from_numpy(x.astype(np.float32)), torch.from_numpy(y.astype(np.int64)), 2,
                   "moons", dict(n=n, noise=noise, seed=seed), labels_are_classes=False)


def blobs(n: int = 10_000, centers: int = 5, dim: int = 2, std: float = 1.0, seed: int = 0) -> Dataset:
    """Isotropic Gaussian blobs (scikit-learn's make_blobs), labelled by blob."""
    from sklearn.datasets import make_blobs

    _check_positive(n=n, centers=centers, dim=dim, std=std)
    x, y, c = make_blobs(n_samples=n, centers=centers, n_features=dim, cluster_std=std, random_state=seed,
                         return_centers=True)
    return Dataset(torch.from_numpy(x.astype(np.float32)), torch.from_numpy(y.astype(np.int64)), centers,
                   "blobs", dict(n=n, centers=centers, dim=dim, std=std, seed=seed), labels_are_classes=False,
                   modes=torch.from_numpy(c.astype(np.float64)), mode_std=float(std))


def digits(n: int = 0, seed: int = 0) -> Dataset:
    """scikit-learn's bundled 8x8 digits: 1797 labelled images, N x 1 x 8 x 8 in [-1, 1].

    ``n > 0`` keeps a random subset of that size. The full set carries the standard split
    (``splits``): rows 0:1000 train, 1000:1350 validation, 1350:1797 test."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = bunch.images.astype(np.float32) / 8.0 - 1.0  # pixel values are 0..16
    y = bunch.target.astype(np.int64)
    if n < 0 or n > len(x):
        raise InputError(f"dataset option n must be in [0, {len(x)}] for digits, got {n}")
    if n:
        keep = np.sort(_rng(seed).choice(len(x), size=n, replace=False))
        x, y = x[keep], y[keep]
    # the split of jmtomczak/intro_dgm, common for this set: rows 0:1000 / 1000:1350 / 1350:1797
    splits = None if n else {"train": (0, 1000), "validation": (1000, 1350), "test": (1350, 1797)}
    return Dataset(torch.from_numpy(x[:, None]), torch.from_numpy(y), 10, "digits", dict(n=n, seed=seed),
                   splits=splits)



BUILTIN_DATASETS = {"ring8": ring8, "grid25": grid25, "moons": moons, "blobs": blobs, "digits": digits}
