"""Gaussian KDE: p(x) = 1/n sum_i N(x | x_i, H), with Scott's bandwidth H = n^(-2/(d+4)) Cov(X)
unless one is given. Written only against aigc-engine's public API."""
from __future__ import annotations

import dataclasses
import math

import torch

from aigc_engine import InputError, Model, ops
from aigc_engine.config import option


@dataclasses.dataclass
class KDEConfig:
    """Hyper-parameters: ``option`` gives each its help (``aigc-engine models``) and its range
    (checked by the engine before a run, with one error format)."""
    bandwidth: float | None = option(None, help="kernel std as a factor of the data covariance; None: Scott's rule", gt=0)
    max_points: int = option(5000, help="kernel centres kept, a random subset of the data beyond that", ge=1)
    chunk_size: int = option(2048, help="evaluation points per block", ge=1)


class KDE(Model):
    """Gaussian kernel density estimator (Scott's bandwidth)."""

    name = "kde"
    Config = KDEConfig
    default_dataset = "ring8"

    def __init__(self, config: KDEConfig | None = None):
        super().__init__(config)  # checks the config's values against their options
        self.points: torch.Tensor | None = None
        self.cov: torch.Tensor | None = None
        self.shape: tuple[int, ...] = ()

    def validate(self, dataset) -> None:
        """Called before the run directory exists: refuse what fit cannot take."""
        if len(dataset) < 2:
            raise InputError(f"a KDE needs at least 2 points; dataset {dataset.name!r} has {len(dataset)}")

    def fit(self, dataset, run) -> None:
        self.validate(dataset)
        x = dataset.x.reshape(len(dataset), -1).to(run.device, torch.float64)
        n, d = x.shape
        kept = min(n, self.config.max_points)
        factor = self.config.bandwidth or kept ** (-1.0 / (d + 4))  # Scott's rule, for the kept centres
        data_cov = torch.atleast_2d(torch.cov(x.T))
        self.cov = data_cov * factor**2 + 1e-12 * torch.eye(d, dtype=x.dtype, device=x.device)
        if n > self.config.max_points:
            gen = torch.Generator(device="cpu").manual_seed(run.seed)
            x = x[torch.randperm(n, generator=gen)[: self.config.max_points].to(x.device)]
        self.points, self.shape = x, tuple(dataset.shape[1:])
        run.log(0, bandwidth_factor=factor, kernel_points=len(x))

    def _check_fitted(self):
        if self.points is None:
            raise InputError("the KDE is not fitted yet")

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """log p(x) for each row of x, in nats."""
        self._check_fitted()
        prec_chol = torch.linalg.inv(torch.linalg.cholesky(self.cov)).T  # precision = P P^T
        x = x.reshape(len(x), -1).to(self.points)
        out = [torch.logsumexp(ops.gaussian_log_prob(block, self.points, prec_chol, "tied"), dim=1)
               for block in x.split(self.config.chunk_size)]
        return torch.cat(out) - math.log(len(self.points))

    def sample(self, n: int, condition: torch.Tensor | None = None) -> torch.Tensor:
        self._check_fitted()
        if condition is not None:
            raise InputError("the KDE is not conditional")
        idx = torch.randint(len(self.points), (n,), device=self.points.device)
        noise = torch.randn(n, self.points.shape[1], dtype=self.points.dtype, device=self.points.device)
        out = self.points[idx] + noise @ torch.linalg.cholesky(self.cov).T
        return out.float().reshape(n, *self.shape)

    def evaluate(self, dataset, run) -> dict[str, float]:
        total = 0.0
        for block in run.progress(dataset.iter_chunks(self.config.chunk_size), "log-likelihood"):
            total += float(self.log_prob(block).sum())
        return {"mean_log_likelihood": total / len(dataset), "kernel_points": len(self.points)}

    def state_dict(self) -> dict:
        self._check_fitted()
        return {"points": self.points, "cov": self.cov, "shape": list(self.shape)}

    def load_state_dict(self, state: dict) -> None:
        self.points, self.cov = state["points"].double(), state["cov"].double()
        self.shape = tuple(state["shape"])
