"""DP-SGD for the neural models (Abadi et al. 2016), on opacus: what ``gan``, ``cvae`` and
``diffusion`` share, written once.

A :class:`DPSGD` is made for one fit from its budget, the rows the fit reads, the expected batch
and the planned steps. It picks the noise multiplier from the budget (opacus' accountant, RDP by
default, PRV on request), makes the module that reads the training rows private
(:meth:`DPSGD.make_private`: opacus' ``GradSampleModule`` for per-sample gradients and its
``DPOptimizer``: each row's gradient clipped to ``max_grad_norm``, their sum plus Gaussian noise
of std ``noise_multiplier * max_grad_norm``, over the expected batch), draws the Poisson-sampled
batches (:meth:`DPSGD.batch`: each row in with probability ``sample_rate``, as opacus'
``UniformWithReplacementSampler``), releases the class rates as noisy counts when the model
needs them (:meth:`DPSGD.class_frequencies`) and reports what the accountant counted
(:meth:`DPSGD.spent`).

What the model must keep true for the guarantee: one row's loss depends on that row and on
randomness drawn for it alone (no batch statistics: no batch norm, no stratified draws over the
batch, no batch-level clamps), the loss is the mean over the sampled rows, and nothing else it
releases reads the rows (the data's scale, early stopping on held-out rows, ...).

The noise and the sampling are drawn from generators seeded by the operating system, never by the
run's seed (as the gmm's DP-EM): noise anyone can replay from config.json protects nothing. A
private fit is therefore not reproducible, by design.
"""
from __future__ import annotations

import math
import secrets
import warnings
from typing import Any

import torch

from ..errors import InputError
from .budget import PrivacyBudget

SGD_ACCOUNTANTS: tuple[str, ...] = ("rdp", "prv")
COUNT_SHARE = 0.1  # the part of epsilon the label counts are calibrated to on their own


def require_opacus() -> None:
    """An InputError when opacus is not installed."""
    try:
        import opacus  # noqa: F401
    except ImportError:
        raise InputError("a private fit of a neural model needs opacus: pip install 'aigc-engine[privacy]'") from None


def _epsilon(history: list[tuple[float, float, int]], delta: float, kind: str) -> float:
    from opacus.accountants import create_accountant

    accountant = create_accountant(mechanism=kind)
    accountant.history = list(history)
    with warnings.catch_warnings():  # RDP's orders end at 63: past them the bound is loose, never low
        warnings.filterwarnings("ignore", message="Optimal order is the largest alpha")
        return float(accountant.get_epsilon(delta=delta))


def _opacus_multiplier(epsilon: float, delta: float, sample_rate: float, steps: int, kind: str,
                       tolerance: float) -> float:
    from opacus.accountants.utils import get_noise_multiplier

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Optimal order is the largest alpha")
        return float(get_noise_multiplier(target_epsilon=epsilon, target_delta=delta, sample_rate=sample_rate,
                                          steps=steps, accountant=kind, epsilon_tolerance=tolerance))


def gaussian_sigma(epsilon: float, delta: float) -> float:
    """The smallest noise std (over the L2 sensitivity) with which one Gaussian mechanism is
    ``(epsilon, delta)``-DP: the analytic Gaussian mechanism (Balle and Wang 2018), exact where
    the classical ``sqrt(2 ln(1.25 / delta)) / epsilon`` is loose (and wrong for epsilon > 1)."""
    def phi(t: float) -> float:
        return 0.5 * math.erfc(-t / math.sqrt(2))

    def delta_of(sigma: float) -> float:
        return phi(0.5 / sigma - epsilon * sigma) - math.exp(epsilon) * phi(-0.5 / sigma - epsilon * sigma)

    lo, hi = 1e-3, 1.0
    while delta_of(hi) > delta:
        lo, hi = hi, 2 * hi
    for _ in range(100):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if delta_of(mid) > delta else (lo, mid)
    return hi


def noise_multipliers(epsilon: float, delta: float, sample_rate: float, steps: int, kind: str = "rdp",
                      counts: bool = False, tolerance: float = 0.01) -> tuple[float, float | None]:
    """The noise multiplier of ``steps`` DP-SGD steps at ``sample_rate`` (opacus'
    ``get_noise_multiplier``) and, with ``counts``, that of one full-batch Gaussian release of the
    label counts: the std with which that release alone would spend ``COUNT_SHARE`` of epsilon
    (:func:`gaussian_sigma`); the DP-SGD multiplier is then the smallest (bisection, to
    ``tolerance`` in epsilon) with which both, composed in the accountant, spend at most
    ``(epsilon, delta)``."""
    if kind not in SGD_ACCOUNTANTS:
        raise InputError(f"privacy_accountant of a neural model must be one of {SGD_ACCOUNTANTS}, got {kind!r}")
    if not counts:
        return _opacus_multiplier(epsilon, delta, sample_rate, steps, kind, tolerance), None
    z_counts = gaussian_sigma(COUNT_SHARE * epsilon, delta)

    def spent(z: float) -> float:
        return _epsilon([(z_counts, 1.0, 1), (z, sample_rate, steps)], delta, kind)

    lo, hi = 0.0, 1.0
    while spent(hi) > epsilon:
        lo, hi = hi, 2 * hi
        if hi > 1e6:
            raise InputError(f"privacy epsilon={epsilon:g} is too small for {steps} steps at sample rate "
                             f"{sample_rate:.3g}")
    while hi - lo > 1e-4 * hi:
        mid = (lo + hi) / 2
        eps_mid = spent(mid)
        lo, hi = (mid, hi) if eps_mid > epsilon else (lo, mid)
        if eps_mid <= epsilon and epsilon - eps_mid <= tolerance:
            break
    return hi, z_counts


class DPSGD:
    """One private fit: ``budget`` (its delta resolved, else ``rows ** -1.1``) spent on ``steps``
    DP-SGD steps over ``rows`` rows, each step a Poisson sample of expected size ``batch_size``,
    and with ``counts`` on one noisy release of the label counts. ``device``: where the noise is
    drawn (the module's device)."""

    def __init__(self, budget: PrivacyBudget, rows: int, batch_size: int, steps: int, *, max_grad_norm: float = 1.0,
                 accountant: str = "rdp", counts: bool = False, device: torch.device | str = "cpu"):
        require_opacus()
        from opacus.accountants import create_accountant

        budget = budget.for_rows(rows)
        if not budget.private:
            raise InputError("DP-SGD needs a finite privacy epsilon")
        if not 1 <= batch_size <= rows:
            raise InputError(f"a private fit needs 1 <= batch_size <= rows, got {batch_size} and {rows} rows")
        if not max_grad_norm > 0:
            raise InputError(f"privacy_clip (the per-row gradient bound) must be > 0, got {max_grad_norm}")
        self.budget, self.rows, self.batch_size, self.steps = budget, rows, batch_size, steps
        self.max_grad_norm, self.kind = float(max_grad_norm), accountant
        self.sample_rate = batch_size / rows
        self.noise_multiplier, self.count_multiplier = noise_multipliers(
            budget.epsilon, budget.delta, self.sample_rate, steps, accountant, counts)
        self.accountant = create_accountant(mechanism=accountant)
        self._sampling = torch.Generator().manual_seed(secrets.randbits(63))
        self._noise = torch.Generator(device=torch.device(device)).manual_seed(secrets.randbits(63))
        self.modules: list = []

    # -- training --------------------------------------------------------------------------------
    def make_private(self, module: torch.nn.Module, optimizer: torch.optim.Optimizer):
        """``module`` (the one that reads the training rows) wrapped for per-sample gradients, and
        ``optimizer`` (over its parameters) wrapped to clip, noise and average them; each step of
        it is counted by the accountant. Layers opacus cannot give per-sample gradients (batch
        norm, ...) are an InputError."""
        from opacus import GradSampleModule
        from opacus.optimizers import DPOptimizer
        from opacus.validators import ModuleValidator

        # opacus' hooks on the first layer fire without an input that needs a gradient: torch warns
        warnings.filterwarnings("ignore", message="Full backward hook is firing when gradients are computed with "
                                "respect to module outputs since no inputs require gradients")
        errors = ModuleValidator.validate(module, strict=False)
        if errors:
            raise InputError(f"a private fit cannot train {type(module).__name__}: {errors[0]}")
        private = GradSampleModule(module, loss_reduction="mean")
        dp_optimizer = DPOptimizer(optimizer, noise_multiplier=self.noise_multiplier, max_grad_norm=self.max_grad_norm,
                                   expected_batch_size=self.batch_size, loss_reduction="mean", generator=self._noise)
        dp_optimizer.attach_step_hook(self.accountant.get_optimizer_hook_fn(sample_rate=self.sample_rate))
        self.modules.append(private)
        return private, dp_optimizer

    def batch(self) -> torch.Tensor:
        """The row indices of one step's Poisson sample (possibly none: the step is then noise)."""
        mask = torch.rand(self.rows, generator=self._sampling) < self.sample_rate
        return mask.nonzero().reshape(-1)

    def noise_step(self, private: torch.nn.Module, optimizer) -> None:
        """The step of an empty Poisson sample: no row's gradient, the noise alone (skipping the
        step instead would tell whether the sample was empty)."""
        for p in private.parameters():
            if p.requires_grad:
                p.grad_sample = torch.zeros(0, *p.shape, dtype=p.dtype, device=p.device)
        optimizer.step()

    def close(self) -> None:
        """The per-sample hooks removed from the trained modules (sampling and likelihoods after the
        fit run on the plain module)."""
        for private in self.modules:
            private.remove_hooks()
        self.modules = []

    # -- the label counts ------------------------------------------------------------------------
    def class_frequencies(self, y: torch.Tensor, num_classes: int) -> torch.Tensor:
        """The class rates from the counts plus Gaussian noise of std ``count_multiplier``
        (sensitivity 1: a row moves one count by 1), negative counts set to 0; uniform when all
        are. Composed into the accountant once."""
        if self.count_multiplier is None:
            raise InputError("this DPSGD was made without counts=True: the label counts are not in its budget")
        counts = torch.bincount(y.reshape(-1).cpu(), minlength=num_classes).double()
        counts = counts + torch.randn(num_classes, generator=self._sampling, dtype=torch.float64) * self.count_multiplier
        self.accountant.history.insert(0, (self.count_multiplier, 1.0, 1))
        counts = counts.clamp_min(0)
        return counts / counts.sum() if float(counts.sum()) > 0 else torch.full((num_classes,), 1.0 / num_classes,
                                                                             dtype=torch.float64)

    # -- the report ------------------------------------------------------------------------------
    def epsilon(self) -> float:
        """The epsilon the accountant counted so far, at the budget's delta (0 before any step)."""
        if not self.accountant.history:
            return 0.0
        return _epsilon(self.accountant.history, self.budget.delta, self.kind)

    def spent(self) -> dict[str, Any]:
        """What the fit spent, for the model's ``privacy`` (summary.json): ``epsilon`` (the
        accountant's, over the steps taken), ``delta``, ``accountant`` and the mechanism's
        settings."""
        steps = sum(n for z, q, n in self.accountant.history if (z, q) == (self.noise_multiplier, self.sample_rate))
        out = {"epsilon": self.epsilon(), "delta": self.budget.delta,
               "accountant": f"opacus.{self.kind} (add or remove one row)", "mechanism": "DP-SGD",
               "noise_multiplier": self.noise_multiplier, "sample_rate": self.sample_rate, "steps": steps,
               "max_grad_norm": self.max_grad_norm}
        if self.count_multiplier is not None:
            out["count_noise_multiplier"] = self.count_multiplier
        return out

    def state_dict(self) -> dict[str, Any]:
        """The accountant's history (a checkpoint of a private fit resumes its count)."""
        return {"history": [list(h) for h in self.accountant.history]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.accountant.history = [(float(z), float(q), int(n)) for z, q, n in state["history"]]


def budget_of(run) -> PrivacyBudget | None:
    """The run's privacy budget when it asks for a private fit (``run.privacy`` finite), else None."""
    budget = getattr(run, "privacy", None)
    if budget is None or not math.isfinite(budget.epsilon):
        return None
    return budget


def reported(spent: dict[str, Any]) -> dict[str, Any]:
    """A fit's ``privacy`` as summary.json's keys: ``privacy_epsilon``, ``privacy_delta``, ..."""
    return {f"privacy_{k}": v for k, v in spent.items()}
