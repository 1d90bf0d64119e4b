"""The model under check: its class, config and data, the fits the rules share, and how a broken
rule is reported."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable

import torch

from ..config import build_config
from ..data import Dataset, ring8
from ..engine import Engine
from ..run import Run


class RuleBroken(AssertionError):
    """A broken rule: ``check_model[<rule>]: <what>``."""

    def __init__(self, rule: str, message: str):
        super().__init__(f"check_model[{rule}]: {message}")
        self.rule = rule


def tiny_dataset(n: int = 512, seed: int = 0) -> Dataset:
    """The default dataset of the checks: 2-D points on 8 modes (std 0.05)."""
    return ring8(n=n, std=0.05, seed=seed)


def two_classes(dim: int = 2, n: int = 512, seed: int = 0) -> Dataset:
    """Points of two classes 4 apart along the first axis (std 0.5), labels as classes."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    x = 0.5 * torch.randn(n, dim, generator=g)
    x[:, 0] += 4.0 * y - 2.0
    return Dataset(x, y, 2, "two-classes")


def as_dataset(dataset: Dataset | str | None) -> Dataset:
    """The data of the checks: a Dataset as it is, a registered name or file path opened as
    ``aigc-engine run --dataset`` would, None: :func:`tiny_dataset`."""
    if dataset is None:
        return tiny_dataset()
    if isinstance(dataset, str):
        return Engine().load_dataset(dataset)
    return dataset


@dataclasses.dataclass
class Subject:
    """The model under check, its config and data, and what the checks learnt of it so far."""
    cls: type
    overrides: dict[str, Any]
    dataset: Dataset
    workdir: Path
    seed: int = 0
    fitted: Any = None
    used_loop: bool = False
    _fits: int = 0

    @property
    def name(self) -> str:
        return self.cls.name

    def config(self) -> Any:
        return build_config(self.cls.Config, dict(self.overrides), self.name)

    def fit(self, dataset: Dataset | None = None, rule: str = "fit") -> Any:
        """A fresh model fitted on ``dataset`` (the check's) through a real Run in a new folder."""
        data = self.dataset if dataset is None else dataset
        self._fits += 1
        model = self.cls(self.config())
        try:
            model.validate(data)
            run = LoopRecorder(self.workdir / f"fit-{self._fits}", device="cpu", seed=self.seed, progress=False)
            model.fit(data, run)
        except AssertionError:
            raise
        except Exception as err:
            raise RuleBroken(rule, f"fit on {data!r} raised {type(err).__name__}: {err}") from err
        self.used_loop = self.used_loop or run.used_loop
        return model

    def model(self) -> Any:
        """The model fitted on the check's dataset (fitted once)."""
        if self.fitted is None:
            self.fitted = self.fit()
        return self.fitted


class LoopRecorder(Run):
    """A Run that remembers whether the model trained through ``run.loop``."""
    used_loop = False

    def loop(self, *args, **kwargs):
        self.used_loop = True
        return super().loop(*args, **kwargs)


def seeded(call: Callable, *args: Any, seed: int = 0, **kwargs: Any) -> torch.Tensor:
    """``call(*args, **kwargs)`` right after ``torch.manual_seed(seed)``."""
    torch.manual_seed(seed)
    return call(*args, **kwargs)
