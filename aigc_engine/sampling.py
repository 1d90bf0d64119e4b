"""The one checked path from a fitted model to samples.

Every sample the engine keeps is drawn here: ``aigc-engine sample`` and :meth:`Engine.sample`,
the held-out protocol of ``eval`` and ``compare`` (:mod:`aigc_engine.evaluation`), the run's
pictures and :func:`aigc_engine.metrics.sample_metrics`. A draw is made without gradients, moved
to the CPU and refused when it holds NaN or inf (:func:`check_samples`); a table run's samples are
decoded to the user's columns (:func:`draw_rows`).

``condition`` is resolved in one place (:func:`resolve_condition`): today the classes of a
conditional model (ids, or the training labels' names, ``"species=Gentoo"`` for a table's label
column); a condition on other columns resolves here too, before any model is asked.
"""
from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from .errors import InputError

if TYPE_CHECKING:  # pragma: no cover
    import pandas
    import torch

    from .tables import TableEncoding

__all__ = ["check_samples", "draw", "draw_rows", "sample", "resolve_condition", "class_id", "TABLE_SUFFIXES",
           "TENSOR_SUFFIXES"]

#: What ``-o`` may end in: a table run's rows, and any other run's samples (or their picture).
TABLE_SUFFIXES = (".csv", ".parquet")
TENSOR_SUFFIXES = (".npy", ".png")


def check_samples(samples: "torch.Tensor", model: str) -> None:
    """Samples with NaN or inf come from a fit that diverged: an InputError naming the model,
    never a file or a picture of NaN rows (the engine checks every sample it draws)."""
    import torch

    bad = ~torch.isfinite(samples)
    if bad.any():
        rows = int(bad.reshape(len(samples), -1).any(1).sum())
        raise InputError(f"model {model!r} returned NaN or inf in {rows} of {len(samples)} samples: the fit "
                         "diverged (retrain with a lower lr, or use another model)")


def draw(model: Any, n: int, labels: "torch.Tensor | None" = None) -> "torch.Tensor":
    """``n`` samples of ``model`` (for the class ``labels`` of a conditional model), on the CPU,
    in the model's dtype, checked finite."""
    import torch

    with torch.no_grad():
        samples = model.sample(n, condition=labels).detach().cpu()
    check_samples(samples, model.name)
    return samples


def draw_rows(model: Any, n: int, encoding: "TableEncoding", labels: "torch.Tensor | None" = None,
              quiet: bool = False) -> tuple["pandas.DataFrame", "torch.Tensor"]:
    """``n`` rows of ``model`` decoded to the table's columns (a DataFrame), and the encoded
    samples. The label column comes from ``labels`` (class ids), else is drawn at the training
    rows' frequencies; a conditional model samples for those labels. An unconditional model on a
    labelled table cannot tie the label to the other columns: it is drawn independently, and said
    so once on stderr (``quiet`` silences that)."""
    import torch

    if encoding.schema.label is not None:
        if labels is None:
            labels = torch.multinomial(torch.tensor(encoding.label_freq, dtype=torch.float64), n, replacement=True)
        if not model.num_classes and not quiet:
            print(f"aigc-engine: warning: model {model.name!r} is unconditional: column "
                  f"{encoding.schema.label.name!r} is drawn at its training frequencies, independently of the "
                  f"other columns (leave dataset.label_column unset to model it as a feature)", file=sys.stderr)
    x = draw(model, n, labels if model.num_classes else None).float()
    return encoding.decode(x, labels), x


def sample(model: Any, n: int, condition: Any = None, encoding: "TableEncoding | None" = None,
           class_names: list[str] | None = None, quiet: bool = False):
    """``n`` samples of a fitted ``model``: a DataFrame in the table's columns when ``encoding``
    (a table run's) is given, else a tensor. ``condition``: see :func:`resolve_condition`."""
    labels = resolve_condition(model, n, condition, encoding, class_names)
    if encoding is not None:
        return draw_rows(model, n, encoding, labels, quiet)[0]
    return draw(model, n, labels)


def resolve_condition(model: Any, n: int, condition: Any, encoding: "TableEncoding | None" = None,
                      class_names: list[str] | None = None) -> "torch.Tensor | None":
    """The int64 class labels ``[n]`` that ``condition`` asks of ``model``, or None (no
    condition). ``condition``: a class id, a class name of the training labels (``class_names``,
    or the table's label column), ``"column=name"`` for a table's label column, or a tensor of
    one or ``n`` ids. A condition given to an unconditional model is an InputError."""
    import torch

    if condition is None:
        return None
    if not model.num_classes:
        raise InputError(f"model {model.name!r} of this run is not conditional: drop --condition")
    if isinstance(condition, str):
        label = class_id(_condition_value(condition, encoding), class_names, model.num_classes)
        return torch.full((n,), label, dtype=torch.int64)
    labels = torch.as_tensor(condition, dtype=torch.int64).reshape(-1)
    labels = labels.expand(n) if labels.numel() == 1 else labels
    if len(labels) != n or labels.min() < 0 or labels.max() >= model.num_classes:
        raise InputError(f"condition must be one label or {n} labels in [0, {model.num_classes - 1}]")
    return labels


def _label(encoding) -> str | None:
    return encoding.schema.label.name if encoding is not None and encoding.schema.label is not None else None


def _condition_value(condition: str, encoding) -> str:
    """``species=Gentoo`` names the label column of a table run; the value alone also works."""
    column, sep, value = condition.partition("=")
    if not sep:
        return condition
    label = _label(encoding)
    if column.strip() != label:
        where = f"the label column is {label!r}" if label else "this run has no label column"
        raise InputError(f"--condition {condition!r}: {where}")
    return value.strip()


def class_id(condition: str, class_names: list[str] | None, num_classes: int) -> int:
    """The label id that ``--condition`` names: a class name of the training data, or an id."""
    if class_names and condition in class_names:
        return class_names.index(condition)
    try:
        label = int(condition)
    except ValueError:
        known = f"one of {', '.join(class_names)} or an id" if class_names else "an integer id"
        raise InputError(f"--condition must be {known} in [0, {num_classes - 1}], got {condition!r}") from None
    if not 0 <= label < num_classes:
        raise InputError(f"--condition must be in [0, {num_classes - 1}], got {label}")
    return label
