"""The one checked path from a fitted model to samples.

Every sample the engine keeps is drawn here: ``aigc-engine sample`` and :meth:`Engine.sample`,
the held-out protocol of ``eval`` and ``compare`` (:mod:`aigc_engine.evaluation`), the run's
pictures and :func:`aigc_engine.metrics.sample_metrics`. A draw is made without gradients, moved
to the CPU and refused when it holds NaN or inf (:func:`check_samples`); a table run's samples are
decoded to the user's columns (:func:`draw_rows`).

``condition`` is resolved in one place: the classes of a conditional model (ids, or the
training labels' names: :func:`resolve_condition`), and for a table conditions on any column
(:mod:`aigc_engine.conditions`), drawn by :func:`draw_where`: the model's own conditioning where
it has one (``Model.sample_conditioned``), else bounded rejection; every returned row is checked.
"""
from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from .errors import InputError

if TYPE_CHECKING:  # pragma: no cover
    import pandas
    import torch

    from .tables import TableEncoding

__all__ = ["check_samples", "draw", "draw_rows", "draw_where", "sample", "resolve_condition", "TABLE_SUFFIXES",
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


#: Rows drawn and decoded at a time: sampling's memory does not grow with n past this.
CHUNK_ROWS = 65536


def draw_rows(model: Any, n: int, encoding: "TableEncoding", labels: "torch.Tensor | None" = None,
              quiet: bool = False) -> "pandas.DataFrame":
    """``n`` rows of ``model`` decoded to the table's columns (a DataFrame), drawn and decoded
    :data:`CHUNK_ROWS` at a time. The label column comes from ``labels`` (class ids), else is
    drawn at the training rows' frequencies; a conditional model samples for those labels. An
    unconditional model on a labelled table cannot tie the label to the other columns: it is
    drawn independently, and said so once on stderr (``quiet`` silences that)."""
    import pandas as pd
    import torch

    if encoding.schema.label is not None:
        if labels is None:
            labels = torch.multinomial(torch.tensor(encoding.label_freq, dtype=torch.float64), n, replacement=True)
        if not model.num_classes and not quiet:
            print(f"aigc-engine: warning: model {model.name!r} is unconditional: column "
                  f"{encoding.schema.label.name!r} is drawn at its training frequencies, independently of the "
                  f"other columns (leave dataset.label_column unset to model it as a feature)", file=sys.stderr)
    frames = []
    for lo in range(0, n, CHUNK_ROWS):
        part = None if labels is None else labels[lo:lo + CHUNK_ROWS]
        x = draw(model, min(CHUNK_ROWS, n - lo), part if model.num_classes else None).float()
        frames.append(encoding.decode(x, part))
    return frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)


def sample(model: Any, n: int, condition: Any = None, encoding: "TableEncoding | None" = None,
           class_names: list[str] | None = None, quiet: bool = False, rules: list | None = None):
    """``n`` samples of a fitted ``model``: a DataFrame in the table's columns when ``encoding``
    (a table run's) is given, else a tensor. ``condition``: see :func:`resolve_condition`; for a
    table also conditions on any column (:mod:`aigc_engine.conditions`: a string, a list of them,
    a dict), every returned row meeting every one and keeping every one of the table's ``rules``
    (:mod:`aigc_engine.rules`; :func:`draw_where`)."""
    if encoding is not None and (rules or isinstance(condition, (str, dict, list, tuple)) or
                                 (isinstance(condition, int) and encoding.schema.label is not None)):
        from .conditions import parse_conditions
        from .rules import check_conditions

        texts = [condition] if isinstance(condition, int) else condition
        conditions = parse_conditions(texts, encoding.schema, class_names, model.num_classes)
        check_conditions(rules or [], conditions, encoding.schema)
        return draw_where(model, n, encoding, conditions, quiet=quiet, rules=rules)
    labels = resolve_condition(model, n, condition, encoding, class_names)
    if encoding is not None:
        return draw_rows(model, n, encoding, labels, quiet)
    return draw(model, n, labels)


#: The rejection fallback's budget: draws per returned row, and seconds in all.
DRAWS_PER_ROW = 100
SECONDS = 60.0
MAX_BATCH = 200_000


def draw_where(model: Any, n: int, encoding: "TableEncoding", conditions: list, quiet: bool = False,
               draws_per_row: int = DRAWS_PER_ROW, seconds: float = SECONDS, rules: list | None = None
               ) -> "pandas.DataFrame":
    """``n`` decoded rows that meet every condition. Conditions on the label column pick the
    class labels (drawn at the training rates among the classes they allow: exact); the others
    go to ``model.sample_conditioned`` (exact where the model can), else the model samples
    freely; either way each batch is decoded and checked, and the rows that miss are dropped.
    Past ``draws_per_row * n`` draws or ``seconds`` an InputError names the condition met least
    and its rate. ``rules`` (:class:`aigc_engine.rules.Rule`) are kept the same way, by
    rejection. The DataFrame's ``attrs["conditions"]`` say how: ``exact`` (the model's own
    conditioning was used), ``draws`` (rows drawn), ``accepted`` (of them, those that met every
    condition: the rest were dropped)."""
    import time

    import pandas as pd

    from .conditions import all_hold, encode_conditions

    label = _label(encoding)
    freq = _label_weights(encoding, [c for c in conditions if c.column == label])
    where = encode_conditions([c for c in conditions if c.column != label], encoding)
    conditions = [*conditions, *(rules or [])]
    kept, drawn, accepted, met = [], 0, 0, [0] * len(conditions)
    start, limit = time.monotonic(), draws_per_row * n
    while accepted < n:
        if drawn >= limit or time.monotonic() - start > seconds:
            raise InputError(_budget_message(conditions, met, drawn, limit, seconds))
        rate = max(accepted / drawn, 1.0 / limit) if drawn else 1.0
        m = max(1, min(int((n - accepted) / rate * 1.2) + 8, limit - drawn, MAX_BATCH,
                       _rows_in_time(drawn, time.monotonic() - start, seconds)))
        rows, exact = _draw_batch(model, m, encoding, freq, where, quiet or bool(kept))
        ok, hits = all_hold(conditions, rows, encoding.schema)
        drawn, accepted = drawn + m, accepted + int(ok.sum())
        met = [a + b for a, b in zip(met, hits)]
        kept.append(rows[ok])
        where = where if exact else None
    out = pd.concat(kept, ignore_index=True).iloc[:n].reset_index(drop=True)
    out.attrs["conditions"] = {"exact": where is not None and bool(where), "draws": drawn, "accepted": accepted}
    return out


def _rows_in_time(drawn: int, elapsed: float, seconds: float) -> int:
    """The most rows the next batch may hold to end within ``seconds`` at the rate of the draws
    so far (a slow model's batch is not one long draw past the time limit)."""
    if not drawn or elapsed <= 0:
        return MAX_BATCH
    return max(1, int(0.8 * (seconds - elapsed) * drawn / elapsed))  # a margin: a batch's time varies


def _draw_batch(model: Any, m: int, encoding: "TableEncoding", freq, where,
                quiet: bool) -> tuple["pandas.DataFrame", bool]:
    """``m`` decoded rows, and whether the model drew them under ``where`` (``sample_conditioned``)."""
    import torch

    drawn = None
    if where:
        with torch.no_grad():
            drawn = model.sample_conditioned(m, where, freq if model.num_classes else None)
    if drawn is None:
        labels = torch.multinomial(freq, m, replacement=True) if freq is not None else None
        return draw_rows(model, m, encoding, labels, quiet), False
    x, labels = drawn[0].detach().cpu(), drawn[1]
    check_samples(x, model.name)
    if labels is None and freq is not None:  # an unconditional model: the label is drawn independently
        labels = torch.multinomial(freq, m, replacement=True)
    return encoding.decode(x.float(), labels), True


def _label_weights(encoding: "TableEncoding", conditions: list) -> "torch.Tensor | None":
    """The label rates among the classes the label conditions allow (None: no label column)."""
    import torch

    if encoding.schema.label is None:
        return None
    freq = torch.tensor(encoding.label_freq, dtype=torch.float64)
    categories = encoding.schema.label.categories
    for c in conditions:
        freq = freq * torch.tensor([v in c.values for v in categories], dtype=torch.float64)
    if not freq.sum() > 0:
        raise InputError(f"--condition: no row can meet {' and '.join(repr(c.text) for c in conditions)} together")
    return freq / freq.sum()


def _budget_message(conditions: list, met: list[int], drawn: int, limit: int, seconds: float) -> str:
    worst = min(range(len(conditions)), key=lambda i: met[i])
    rate = met[worst] / max(drawn, 1)
    why = f"the budget of {limit} draws" if drawn >= limit else f"the time limit ({seconds:g} s)"
    together = " (all conditions together: fewer)" if len(conditions) > 1 else ""
    what = "--condition" if conditions[worst].column is not None else "rule"
    return (f"{what} {conditions[worst].text!r}: met by {rate:.3%} of {drawn} draws{together}; {why} ran "
            "out before enough rows met every condition (the model rarely makes such rows: loosen the condition)")


def resolve_condition(model: Any, n: int, condition: Any, encoding: "TableEncoding | None" = None,
                      class_names: list[str] | None = None) -> "torch.Tensor | None":
    """The int64 class labels ``[n]`` that ``condition`` asks of ``model``, or None (no
    condition). ``condition``: a class id, a class name of the training labels (``class_names``,
    or the table's label column), ``"column=name"`` for a table's label column, or a tensor of
    one or ``n`` ids. A condition given to an unconditional model is an InputError."""
    import torch

    from .conditions import class_id

    if condition is None:
        return None
    texts = isinstance(condition, (list, tuple)) and all(isinstance(c, str) for c in condition)
    if isinstance(condition, dict) or (texts and len(condition) != 1):
        raise InputError("conditions on columns (several, or a dict) are for a run on a table; this run takes "
                         "one class of a conditional model")
    if texts:
        condition = condition[0]
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
