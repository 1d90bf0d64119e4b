"""The shape every model plugin provides."""
from __future__ import annotations

import abc
import dataclasses
from typing import TYPE_CHECKING, Any, ClassVar

from .errors import InputError

if TYPE_CHECKING:  # pragma: no cover - annotations only: listing models needs no torch
    import torch

    from .data import Dataset
    from .run import Run


class Model(abc.ABC):
    """Base class for engine models (subclassing is optional; the engine only uses this shape).

    A model has a registry ``name``, a ``Config`` dataclass whose fields all have defaults (its
    hyper-parameters), and implements ``fit``, ``sample``, ``state_dict`` and
    ``load_state_dict``. Optional: ``log_prob(x)``, ``evaluate(dataset, run) -> dict`` and
    ``annotate_plot(ax)`` (draws on the 2-D scatter of ``samples.png``), ``figures(dataset) ->
    {file_name: draw(path)}`` (more pictures for the run directory, written by the engine, e.g.
    ``progress.png``), ``default_dataset`` and ``num_classes`` (> 0 for a model that samples
    conditioned on a label).
    """

    name: ClassVar[str]
    Config: ClassVar[type]
    default_dataset: ClassVar[str | None] = None

    def __init__(self, config: Any = None):
        self.config = config if config is not None else self.Config()

    @abc.abstractmethod
    def fit(self, dataset: "Dataset", run: "Run") -> None:
        """Train on ``dataset``, logging through ``run``."""

    @abc.abstractmethod
    def sample(self, n: int, condition: torch.Tensor | None = None) -> torch.Tensor:
        """Draw ``n`` samples (``condition``: int64 labels ``[n]`` for conditional models)."""

    @abc.abstractmethod
    def state_dict(self) -> dict[str, Any]:
        """Tensors (and JSON-able values) that restore the fitted model."""

    @abc.abstractmethod
    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore from what ``state_dict`` returned."""


def config_fields(config_cls: type) -> dict[str, dataclasses.Field]:
    """The fields of a model's Config dataclass, by name."""
    return {f.name: f for f in dataclasses.fields(config_cls)}


def conditional_classes(dataset: "Dataset", mode: str = "auto") -> int:
    """How many classes a model conditions on, for its ``conditional`` option: ``auto`` the
    dataset's classes when its labels are classes (0 for the mixtures' component ids),
    ``true`` its labels whatever they are (an InputError without labels), ``false`` 0."""
    if mode == "false":
        return 0
    if mode == "true":
        if dataset.y is None or not dataset.num_classes:
            raise InputError(f"conditional=true needs class labels; dataset {dataset.name!r} has none")
        return dataset.num_classes
    return dataset.conditional_classes


def sample_labels(n: int, condition: Any, num_classes: int, class_freq: "torch.Tensor | None", model: str):
    """The int64 labels ``[n]`` a conditional model samples for: ``condition`` (one label or
    ``n``, checked), or labels drawn from the training frequencies ``class_freq`` when it is
    None; None for an unconditional model (where a condition is an InputError)."""
    import torch

    if not num_classes:
        if condition is not None:
            raise InputError(f"this {model} is unconditional: it cannot sample with a condition")
        return None
    if condition is None:
        return torch.multinomial(class_freq.double(), n, replacement=True)
    y = torch.as_tensor(condition, dtype=torch.int64).reshape(-1)
    y = y.expand(n) if y.numel() == 1 else y
    if len(y) != n or y.min() < 0 or y.max() >= num_classes:
        raise InputError(f"condition must be one label or {n} labels in [0, {num_classes - 1}]")
    return y
