"""Conformance checks for model plugins: what the engine relies on, one check per promise.

``check_model(MyModel)`` in a plugin's pytest runs them all (scikit-learn's
``check_estimator``, for models); each ``check_<rule>`` function can also be called alone. A
broken promise is an AssertionError whose message starts with ``check_model[<rule>]:``.

Rules (:data:`RULES`, in the order they run):

- ``config``: ``Config`` is a dataclass whose fields all have defaults that pass their own
  :func:`~aigc_engine.config.option` ranges, ``aigc-engine models`` can list it, and each
  ``defaults_by_kind`` entry names a field left at None and resolves to a valid config.
- ``validate``: ``validate`` takes the check's dataset, and rejects data it cannot take with an
  InputError: an empty dataset always (the core refuses it before the model's own ``validate``
  runs); rows of shape ``[3, 5]`` (neither points nor images) unless ``fit`` then really takes
  them. Any other exception breaks the rule.
- ``fit``: ``fit`` on the tiny dataset through a real :class:`~aigc_engine.Run` (CPU, seeded).
- ``sample``: ``sample(n)`` is a float tensor ``[n, *row shape]``, finite, images in [-1, 1].
- ``state_round_trip``: ``state_dict`` through ``model.safetensors`` into a fresh instance gives
  identical samples (and ``log_prob``) for the same torch seed.
- ``reproducible_fit``: two fits with one seed give identical samples.
- ``log_prob``: when ``log_prob_kind`` is not None, one finite value per row; ``exact`` densities
  of 1-D and 2-D points integrate to 1 (within 5%, on grids over the data, refined until two
  agree); ``discrete`` kinds are <= 0 (log-probabilities of discrete values).
- ``condition``: an unconditional model refuses a condition with an InputError (the core does it
  before the model's ``sample`` runs); a model fitted on labelled data (two well separated
  classes of points when the check's dataset has none) samples for one label or ``n`` labels,
  samples for different labels differ in distribution, and an out-of-range label is an
  InputError.
- ``evaluate``: a dict of metric name -> number.
- ``resume`` (models that use ``run.loop``): a fit interrupted by SIGINT during its second step
  (the loop writes its checkpoint) and fitted again from that run directory with ``resume=True``
  ends with the same ``state_dict`` tensors, bit for bit, as the uninterrupted fit (CPU, in this
  process, called from the main thread).
- ``world_size`` (opt-in: ``distributed=True``; models that use ``run.loop``): a 2-process
  ``torchrun`` ``aigc-engine run`` equals the 1-process fit to float rounding. It drives the real
  CLI in subprocesses, so the model must be installed as a plugin (``pip install -e .``).
"""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Iterable

from ..data import Dataset
from ..model import as_model_class
from .cli import check_world_size, interrupted_and_resumed_runs, plugin_env
from .rules import (CHECKS, RULES, check_condition, check_config_fields, check_evaluate, check_fit, check_log_prob,
                    check_reproducible_fit, check_resume, check_sample, check_state_round_trip, check_validate)
from .subject import RuleBroken, Subject, as_dataset, tiny_dataset, two_classes


def check_model(model_class: type, dataset: Dataset | str | None = None, config: dict[str, Any] | None = None, *,
                skip: Iterable[str] = (), distributed: bool = False, seed: int = 0) -> None:
    """Run every rule of :data:`RULES` on ``model_class`` fitted on ``dataset`` (a Dataset, a
    registered name or file path such as ``"ring8"``; default :func:`tiny_dataset`) with the
    Config values ``config`` (e.g. ``{"steps": 30}``: keep the check fast), except those in
    ``skip``; ``world_size`` only with ``distributed=True``. Raises an AssertionError
    ``check_model[<rule>]: ...`` for the first rule broken."""
    skip = set(skip)
    unknown = sorted(skip - set(RULES))
    if unknown:
        raise ValueError(f"unknown rule {unknown[0]!r}; rules: {', '.join(RULES)}")
    cls = as_model_class(model_class)
    data = as_dataset(dataset)
    with tempfile.TemporaryDirectory(prefix="aigc-check-") as tmp:
        subject = Subject(cls, dict(config or {}), data, Path(tmp), seed)
        for rule, check in CHECKS.items():
            if rule in skip or (rule == "world_size" and not distributed):
                continue
            if rule != "config":
                subject.config()  # bad values in ``config`` are the caller's InputError, not a broken rule
            try:
                check(subject)
            except RuleBroken:
                raise
            except AssertionError as err:
                raise RuleBroken(rule, str(err)) from err
            except Exception as err:
                raise RuleBroken(rule, f"{type(err).__name__}: {err}") from err


__all__ = ["RULES", "RuleBroken", "Subject", "check_model", "tiny_dataset", "two_classes", "plugin_env",
           "interrupted_and_resumed_runs", *(check.__name__ for check in CHECKS.values())]
