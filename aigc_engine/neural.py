"""What the neural model plugins (``gan``, ``cvae``, ``diffusion``) share, written once: the
fitted and sample-count guards, the data's scale, early stopping on a held-out score, the
snapshots of the averaged network over training and their ``progress.png``, the averaged
network rebuilt from a saved state, and the one error a state that is not the model's raises.

Per-kind defaults and the table clamp are :func:`aigc_engine.config.resolve_defaults`; config
checks are :func:`aigc_engine.config.option` declarations.

The state keys the neural models share (``state_dict``): ``config`` (the resolved config),
``data_shape`` (a row's shape), ``scale``, ``num_classes``, ``class_freq``, ``snapshots`` and the
weights (``ema``: an averaged network; ``net``: a network trained without one).
"""
from __future__ import annotations

import contextlib
import math
import time
from typing import Callable, Iterator, TypeVar

import torch

from .errors import InputError
from .loop import EMA

T = TypeVar("T")


# -- guards --------------------------------------------------------------------------------------
def fitted(part: T | None, model: str) -> T:
    """``part`` (what a fitted model has: its network, its EMA), or the InputError of a model
    used before ``fit`` or ``load_state_dict``."""
    if part is None:
        raise InputError(f"the {model} model is not fitted")
    return part


def check_count(n: int) -> None:
    """The InputError of a request for fewer than one sample."""
    if n < 1:
        raise InputError(f"the number of samples must be >= 1, got {n}")


@contextlib.contextmanager
def reading_state(model: str) -> Iterator[None]:
    """Around ``load_state_dict``'s reads: a missing key, a value of the wrong type or weights of
    the wrong shape are one InputError, ``not a MODEL model state: ...``."""
    try:
        yield
    except (KeyError, TypeError, RuntimeError) as err:
        raise InputError(f"not a {model} model state: {type(err).__name__}: {err}") from None


# -- the data's scale ----------------------------------------------------------------------------
def data_scale(x: torch.Tensor, standardize: bool) -> float:
    """The one scalar points are trained on ``x / scale`` with (one for all coordinates: the
    data's geometry is kept) and samples are multiplied back by: the std of ``x``, or 1 when
    ``standardize`` is off or the std is 0 or undefined."""
    scale = float(x.std()) if standardize else 1.0
    return scale if scale > 0 else 1.0


def scaled(x: torch.Tensor, scale: float) -> torch.Tensor:
    """``x / scale`` (``x`` itself for 1: no copy)."""
    return x / scale if scale != 1.0 else x


# -- early stopping ------------------------------------------------------------------------------
class EarlyStopping:
    """Early stopping on a held-out score, lower is better: the module's weights at the best score
    so far (``update``; ``restore`` puts them back) and whether ``patience`` evaluations have passed
    without a better one. Checkpointed with the loop's state (``state_dict``): a resumed run
    stops where an uninterrupted one does."""

    def __init__(self, patience: int):
        if patience < 1:
            raise InputError(f"patience must be >= 1, got {patience}")
        self.patience = patience
        self.best, self.step, self.since = math.inf, 0, 0
        self.weights: dict[str, torch.Tensor] = {}

    def update(self, score: float, step: int, module: torch.nn.Module) -> bool:
        """Record the held-out ``score`` of ``module`` at ``step``; True once training should stop."""
        if score < self.best:
            self.best, self.step, self.since = float(score), int(step), 0
            self.weights = {k: v.detach().clone() for k, v in module.state_dict().items()}
        else:
            self.since += 1
        return self.since >= self.patience

    def restore(self, module: torch.nn.Module) -> None:
        """``module`` with the best score's weights (unchanged when nothing was recorded)."""
        if self.weights:
            module.load_state_dict(self.weights)

    def state_dict(self) -> dict:
        return {"best": self.best, "step": self.step, "since": self.since, "weights": self.weights}

    def load_state_dict(self, state: dict) -> None:
        self.best, self.step, self.since = float(state["best"]), int(state["step"]), int(state["since"])
        self.weights = dict(state["weights"])


# -- the averaged network ------------------------------------------------------------------------
def loaded_ema(net: torch.nn.Module, decay: float) -> EMA:
    """The EMA of a saved model: ``net`` holds the averaged weights; both in eval mode."""
    ema = EMA(net.eval(), decay)
    ema.module.eval()
    return ema


# -- snapshots over training, for progress.png ---------------------------------------------------
def new_snapshots() -> dict[str, list]:
    """Snapshots: a plain dict (the loop checkpoints it, ``state_dict`` saves it) of the steps, the
    samples (CPU tensors, in the data's scale) and the wall clock (as ``metrics.jsonl``'s)."""
    return {"steps": [], "samples": [], "time": []}


def snapshot_due(step: int, steps: int, count: int) -> bool:
    """Whether ``step`` of ``steps`` takes one of ``count`` evenly spaced snapshots (the last step
    always does)."""
    return step % max(1, steps // max(1, count)) == 0 or step == steps


@torch.no_grad()
def take_snapshot(snapshots: dict[str, list], step: int, module: torch.nn.Module,
                  draw: Callable[[], torch.Tensor]) -> None:
    """Append ``draw()`` (samples of the averaged ``module`` from one fixed input; ``module`` in
    eval mode meanwhile) at ``step``."""
    training = module.training
    module.eval()
    try:
        snapshots["steps"].append(step)
        snapshots.setdefault("time", []).append(time.time())  # runs saved before it had no time
        snapshots["samples"].append(draw())
    finally:
        module.train(training)


def progress_figure(snapshots: dict[str, list], title: str, data: torch.Tensor | None = None) -> dict[str, Callable]:
    """``{"progress.png": draw}``: the snapshots over training (``data``, points, drawn behind
    them), or nothing without snapshots."""
    if not snapshots.get("steps"):
        return {}
    from . import plotting

    return {"progress.png": lambda path: plotting.training_progress(
        snapshots["steps"], snapshots["samples"], path, data=data, title=title)}
