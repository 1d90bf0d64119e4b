"""The ``continuous`` kind: every numeric column that is neither categorical nor integer, in
one of three encodings of its value (``dataset.continuous``):

- ``quantile`` (the default; TabDDPM's Gaussianisation): the normal score ``Phi^-1(F(x))``
  under the training rows' quantiles, so skewed columns and atoms such as a column of mostly
  zeros become one normal bell;
- ``standard``: ``(x - mean) / std``;
- ``modes`` (CTGAN's mode-specific normalisation): a variational Gaussian mixture per column,
  up to 10 modes; the value is the offset within its most likely mode ``(x - mu_k) /
  (4 sigma_k)``, followed by a ``mode`` block, the one-hot of k.

A column with missing values adds a ``missing`` block, one 0/1 indicator (the value is 0 where
it is 1). Decoding clips to the observed range and rounds to the column's decimal places.
"""
from __future__ import annotations

import warnings

import numpy as np

from ...errors import InputError
from .base import Block, BlockRole, ColumnKind, ColumnSpec, Profile, Spend, private_numbers

__all__ = ["Continuous", "Scaling", "NUMERIC_ENCODINGS", "MAX_MODES", "MAX_QUANTILES", "MAX_DECIMALS"]

MAX_MODES = 10
MAX_QUANTILES = 1000
MAX_DECIMALS = 8


class Scaling:
    """A numeric encoding of a column's value: ``fit`` its parameters (a JSON dict) on the
    present values, ``encode`` values to (a value, the mode ids or None), ``decode`` back;
    ``modes`` the width of its mode block (0: none), ``filler`` the value a missing cell is
    encoded from (then zeroed)."""

    @staticmethod
    def modes(p: dict) -> int:
        return 0

    @staticmethod
    def filler(p: dict) -> float:
        return 0.0


class Quantile(Scaling):
    """``{"quantiles": [...]}``: the column's quantiles at ``min(MAX_QUANTILES, n)`` evenly spaced
    levels in [0, 1], the ends stretched to the observed range (a training split's encoding still
    spans the rows held out, which decode to themselves)."""

    @staticmethod
    def fit(values: np.ndarray, spec: ColumnSpec, seed: int) -> dict:
        q = np.quantile(values, np.linspace(0.0, 1.0, min(MAX_QUANTILES, len(values))))
        q[0], q[-1] = min(q[0], spec.low), max(q[-1], spec.high)
        return {"quantiles": q.tolist()}

    @staticmethod
    def encode(x: np.ndarray, p: dict) -> tuple[np.ndarray, None]:
        return normal_scores(x, p["quantiles"]), None

    @staticmethod
    def decode(value: np.ndarray, mode, p: dict) -> np.ndarray:
        return from_normal_scores(value, p["quantiles"])


class Standard(Scaling):
    """``{"mean", "std"}`` of the column (a constant column's std is 1)."""

    @staticmethod
    def fit(values: np.ndarray, spec: ColumnSpec, seed: int) -> dict:
        return {"mean": float(values.mean()), "std": float(values.std()) or 1.0}

    @staticmethod
    def encode(x: np.ndarray, p: dict) -> tuple[np.ndarray, None]:
        return (x - p["mean"]) / p["std"], None

    @staticmethod
    def decode(value: np.ndarray, mode, p: dict) -> np.ndarray:
        return value * p["std"] + p["mean"]


class Modes(Scaling):
    """``{"weights", "means", "stds"}``: CTGAN's per-column variational Gaussian mixture; a
    Dirichlet-process prior of 0.001 prunes unused modes; modes of weight above 0.005 are kept."""

    @staticmethod
    def modes(p: dict) -> int:
        return len(p["means"])

    @staticmethod
    def filler(p: dict) -> float:
        return p["means"][0]

    @staticmethod
    def fit(values: np.ndarray, spec: ColumnSpec, seed: int) -> dict:
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.mixture import BayesianGaussianMixture

        n = min(MAX_MODES, len(np.unique(values)))
        bgm = BayesianGaussianMixture(n_components=n, weight_concentration_prior_type="dirichlet_process",
                                      weight_concentration_prior=0.001, max_iter=100, random_state=seed)
        with warnings.catch_warnings():  # CTGAN silences the same non-convergence warnings
            warnings.simplefilter("ignore", ConvergenceWarning)
            bgm.fit(values.reshape(-1, 1))
        keep = bgm.weights_ > 0.005
        stds = np.sqrt(bgm.covariances_.reshape(-1))[keep]
        return {"weights": (bgm.weights_[keep] / bgm.weights_[keep].sum()).tolist(),
                "means": bgm.means_.reshape(-1)[keep].tolist(), "stds": np.maximum(stds, 1e-6).tolist()}

    @staticmethod
    def encode(x: np.ndarray, p: dict) -> tuple[np.ndarray, np.ndarray]:
        means, stds, weights = (np.asarray(p[k]) for k in ("means", "stds", "weights"))
        z = (x[:, None] - means) / stds
        mode = (np.log(weights) - np.log(stds) - 0.5 * z * z).argmax(axis=1)
        return (x - means[mode]) / (4 * stds[mode]), mode

    @staticmethod
    def decode(value: np.ndarray, mode: np.ndarray, p: dict) -> np.ndarray:
        return value * 4 * np.asarray(p["stds"])[mode] + np.asarray(p["means"])[mode]


NUMERIC_ENCODINGS = {"quantile": Quantile, "standard": Standard, "modes": Modes}


class Continuous(ColumnKind):
    """A real-valued column (see the module doc)."""

    name = "continuous"
    option = None  # dataset.continuous names the encoding; force this kind with dataset.kinds=a:continuous

    @classmethod
    def detects(cls, profile: Profile) -> bool:
        return profile.numeric

    @classmethod
    def check(cls, profile: Profile, name: str, table: str, option: str) -> None:
        if not profile.numeric:
            raise InputError(f"{table}: column {name!r} in {option} holds {profile.present.iloc[0]!r}, not a number")

    @classmethod
    def describe(cls, values, profile: Profile, name: str) -> ColumnSpec:
        return ColumnSpec(name=name, kind=cls.name, dtype=str(values.dtype), has_missing=bool(values.isna().any()),
                          low=float(profile.numbers.min()), high=float(profile.numbers.max()),
                          decimals=cls.decimals(profile.numbers))

    @staticmethod
    def decimals(arr: np.ndarray) -> int | None:
        """The fewest decimal places that write every value of ``arr`` back (48.2 -> 1), or None."""
        for places in range(MAX_DECIMALS + 1):
            if np.allclose(np.round(arr, places), arr, rtol=1e-12, atol=0):
                return places
        return None

    @property
    def scaling(self):
        return NUMERIC_ENCODINGS[self.encoding]

    def fit(self, values, seed: int = 0, fallback: dict | None = None) -> dict:
        x = values.dropna().to_numpy(dtype=np.float64)
        self.params = fallback if not len(x) and fallback is not None else self.scaling.fit(x, self.spec, seed)
        return self.params

    private_mechanisms = (2, 0)

    def fit_private(self, values, seed: int, spend: Spend) -> dict:
        """The range and the numeric encoding's parameters from :func:`~.base.private_numbers`;
        decimals from the range (four significant digits of its width: the rows' own are not
        read)."""
        from dataclasses import replace

        present = values.dropna().to_numpy(dtype=np.float64)
        low, high, stand_in, has_missing = private_numbers(present, spend, len(values) - len(present))
        low, high = self.private_range(low, high)
        places = int(max(0, 3 - np.floor(np.log10(high - low))))
        has_missing = has_missing or self.name == "text"  # a text's missing cells have no number to fill
        median = float(np.clip(np.median(stand_in), low, high))
        fill = {} if has_missing else {"fill": round(median) if self.places == 0 else median}
        self.spec = replace(self.spec, low=low, high=high, has_missing=has_missing,
                            decimals=places,
                            details={**self.spec.details, **fill})
        self.params = self.scaling.fit(np.clip(stand_in, low, high), self.spec, seed)
        return self.params

    @staticmethod
    def private_range(low: float, high: float) -> tuple[float, float]:
        return low, high

    def blocks(self, start: int) -> list[Block]:
        out = [Block(self.spec.name, self.spec.kind, start, start + 1, role=BlockRole.VALUE)]
        modes = self.scaling.modes(self.params)
        if modes:
            out.append(Block(self.spec.name, "mode", start + 1, start + 1 + modes, list(range(modes)),
                             role=BlockRole.ONE_HOT))
        return out + self.missing_block(out[-1].stop)

    def encode(self, values, absent: np.ndarray, out: np.ndarray, blocks: list[Block]) -> None:
        x = values.to_numpy(dtype=np.float64, na_value=np.nan)
        value, mode = self.scaling.encode(np.where(absent, self.scaling.filler(self.params), x), self.params)
        out[:, blocks[0].start] = np.where(absent, 0.0, value)
        if mode is not None:
            out[np.arange(len(x)), blocks[1].start + mode] = 1.0
        if self.spec.has_missing:
            out[:, blocks[-1].start] = absent

    def decode(self, m: np.ndarray, blocks: list[Block]):
        mode = m[:, blocks[1].slice].argmax(axis=1) if self.scaling.modes(self.params) else None
        x = self.scaling.decode(m[:, blocks[0].start], mode, self.params)
        x = np.clip(x if self.places is None else np.round(x, self.places), self.spec.low, self.spec.high)
        absent = m[:, blocks[-1].start] > 0.5 if self.spec.has_missing else np.zeros(len(x), bool)
        return self.typed(x, absent)

    @property
    def places(self) -> int | None:
        return self.spec.decimals

    def typed(self, values: np.ndarray, absent: np.ndarray):
        import pandas as pd

        return pd.array(np.where(absent, np.nan, values).astype(np.float64), dtype="float64")


def normal_scores(x: np.ndarray, quantiles) -> np.ndarray:
    """``Phi^-1`` of the empirical CDF (scikit-learn's QuantileTransformer: ties go to the middle
    of their levels), the levels kept off 0 and 1 by half a step, so the extremes map to about
    +-3 (1,000 quantiles) instead of infinity."""
    from scipy.special import ndtri

    q, levels, steps = _levels(quantiles)
    u = 0.5 * (np.interp(x, q, levels) - np.interp(-x, -q[::-1], -levels[::-1]))
    return ndtri((u * steps + 0.5) / (steps + 1))


def from_normal_scores(z: np.ndarray, quantiles) -> np.ndarray:
    from scipy.special import ndtr

    q, levels, steps = _levels(quantiles)
    return np.interp(np.clip((ndtr(z) * (steps + 1) - 0.5) / steps, 0.0, 1.0), levels, q)


def _levels(quantiles) -> tuple[np.ndarray, np.ndarray, int]:
    q = np.asarray(quantiles, dtype=np.float64)
    return q, np.linspace(0.0, 1.0, len(q)), max(len(q) - 1, 1)
