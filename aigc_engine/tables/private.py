"""A private table encoding: every statistic the encoding keeps of the training rows (category
sets, ranges, quantiles, label rates) released by DP mechanisms, within the encoding's share of
a run's budget (:class:`~aigc_engine.privacy.PrivacyPlan`), except for the columns the user
declares public (``dataset.public=a,b``: their categories and ranges are taken as they are,
for nothing).

The engine asks for it around the reading of a table (:func:`private_encoding`); the table
reader's :meth:`~aigc_engine.tables.TableEncoding.fit` then calls :func:`fit_private`. Each
private column runs its kind's histograms (``ColumnKind.mechanisms``: sensitivity 1 each, a row
being in one bin of each), all with one noise multiplier calibrated so that their composition,
with the delta of each thresholded release, spends at most the encoding's share
(:func:`~aigc_engine.privacy.calibrate_noise`, the plan's accountant). What a kind releases
is in its ``fit_private``; the column names, the kinds (detected or given with
``dataset.kinds``), a datetime's format and the row count are the schema, taken as public.
"""
from __future__ import annotations

import contextlib
import contextvars
import secrets
from dataclasses import replace

import numpy as np

from ..errors import InputError
from .kinds import kind_class
from .kinds.base import Spend
from .kinds.categorical import release, released_categories

__all__ = ["private_encoding", "current_plan", "fit_private", "release_frame"]

_PLAN: contextvars.ContextVar = contextvars.ContextVar("aigc_engine_private_encoding", default=None)


@contextlib.contextmanager
def private_encoding(plan):
    """Tables read inside fit their encodings privately under ``plan`` (a PrivacyPlan; None: not)."""
    token = _PLAN.set(plan)
    try:
        yield plan
    finally:
        _PLAN.reset(token)


def current_plan():
    return _PLAN.get()


# The label's histogram runs at 1 / sqrt(LABEL_WEIGHT) of the others' noise std, which composes
# exactly as LABEL_WEIGHT histograms at theirs (a Gaussian mechanism's privacy loss is Gaussian):
# its classes pass a threshold half as high, and a class the label loses costs every model its
# conditional fit and ML efficacy (breast_cancer's smaller class at epsilon 1), a column's
# quantiles a little resolution.
LABEL_WEIGHT = 4


def _counts(schema, public: set[str]) -> tuple[int, int]:
    """The Gaussian histograms and thresholded releases of the private columns (the label: one
    thresholded histogram, counted as ``LABEL_WEIGHT``); a kind without a private fit is an
    InputError naming the column."""
    gaussians = thresholded = 0
    for spec in schema.features:
        if spec.name in public:
            continue
        counts = kind_class(spec.kind).mechanisms(spec)
        if counts is None:
            raise InputError(f"column {spec.name!r} ({spec.kind}) has no private fit: declare it public "
                             f"(dataset.public={spec.name}) or leave it out (dataset.ignore={spec.name})")
        gaussians, thresholded = gaussians + counts[0], thresholded + counts[1]
    if schema.label is not None and schema.label.name not in public:
        gaussians, thresholded = gaussians + LABEL_WEIGHT, thresholded + 1
    return gaussians, thresholded


def _spend(plan, rows: int, gaussians: int, thresholded: int) -> Spend | None:
    """The noise of every histogram, calibrated to the encoding's share; records the spend."""
    from ..privacy import Accountant, calibrate_noise, release_threshold, require_accounting

    if not gaussians:
        plan.spent_on_encoding(0.0, 0.0, accountant="none (every column public)")
        return None
    require_accounting()
    budget, kind = plan.encoding_budget(rows), plan.request.accountant
    per_release = budget.delta / 2 / thresholded if thresholded else 0.0
    z = calibrate_noise(budget.epsilon, budget.delta - per_release * thresholded, gaussians, kind=kind)
    accountant = Accountant(kind).gaussian(z, gaussians)
    for _ in range(thresholded):
        accountant.add_delta(per_release)
    threshold = release_threshold(z, per_release) if thresholded else None
    plan.spent_on_encoding(accountant.epsilon(budget.delta), budget.delta, accountant=accountant.name,
                           noise_multiplier=z, histograms=gaussians, thresholded=thresholded,
                           release_threshold=threshold, events=accountant.events)
    return Spend(z, threshold, rows, _generator(), per_release)


def _generator():
    """Noise seeded by the operating system: a run's seed is in its config.json, and noise anyone
    can replay protects nothing."""
    import torch

    return torch.Generator().manual_seed(secrets.randbits(63))


def fit_private(frame, schema, continuous: str, seed: int, plan, public=""):
    """What the :class:`~aigc_engine.tables.TableEncoding` of ``frame`` under ``plan`` is built
    from (see the module doc): ``(schema, params, label rates, private)``, ``private`` the spend
    and the public columns; ``public``: the columns (``"a,b"`` or a list) whose statistics are
    taken as they are."""
    from .schema import parse_names

    public = set(parse_names(public, "dataset.public", schema.columns))
    gaussians, thresholded = _counts(schema, public)
    spend = _spend(plan, len(frame), gaussians, thresholded)
    features, params = [], {}
    for spec in schema.features:
        column = kind_class(spec.kind, f"column {spec.name!r}")(spec, continuous)
        fitted = column.fit(frame[spec.name], seed) if spec.name in public else \
            column.fit_private(frame[spec.name], seed, spend)
        features.append(column.spec)
        if fitted is not None:
            params[spec.name] = fitted
    label, freq = schema.label, None
    if label is not None:
        spend_label = _label_spend(spend)
        if label.name not in public and spend_label is not None:
            plan.encoding.update(label_noise_multiplier=spend_label.noise_multiplier,
                                 label_release_threshold=spend_label.threshold)
        label, freq = _label(frame[label.name], label, public, spend_label)
    private = {"public": sorted(public), **plan.encoding}
    private.pop("events", None)
    return replace(schema, features=features, label=label), params, freq, private


def _label_spend(spend: Spend | None) -> Spend | None:
    """The label's share: its histogram's noise std and release threshold (see LABEL_WEIGHT)."""
    if spend is None or spend.threshold is None:
        return spend
    from ..privacy import release_threshold

    z = spend.noise_multiplier / LABEL_WEIGHT ** 0.5
    return replace(spend, noise_multiplier=z, threshold=release_threshold(z, spend.release_delta))


def _label(values, spec, public: set[str], spend: Spend | None):
    """The label's classes and rates: as they are when public, else from one thresholded
    histogram (the classes released, their rates the noisy counts; a row of a class not
    released is trained as the class of the largest count)."""
    if spec.name in public:
        from .kinds.categorical import category_ids

        freq = np.bincount(category_ids(values, spec), minlength=len(spec.categories)).astype(np.float64)
        return spec, (freq / freq.sum()).tolist()
    from .kinds.base import private_categories

    counts = private_categories(values, spend)
    if not counts:
        raise InputError(f"no class of the label column {spec.name!r} passes the privacy threshold "
                         f"({spend.threshold:.0f} rows, with noise): declare it public "
                         f"(dataset.public={spec.name}) or give a larger privacy.epsilon")
    spec = released_categories(spec, counts, has_missing=False)
    freq = [max(counts[c], 0.0) for c in spec.categories]
    return spec, [f / sum(freq) for f in freq]


def release_frame(frame, schema, public) -> object:
    """``frame`` with each value of a private categorical column (and of a private label) that
    the encoding did not release replaced by the column's fallback, and the missing cells of a
    numeric column released without them by its ``fill`` (the median of its private quantiles), so
    that the training rows, and any other rows, encode."""
    out = frame.copy()
    for spec in [*schema.features, *([schema.label] if schema.label is not None else [])]:
        if spec.name in public or spec.name not in frame.columns:
            continue
        if spec.kind == "categorical":
            out[spec.name] = release(frame[spec.name], spec)
        elif "fill" in spec.details:  # a numeric column released without missing cells
            out[spec.name] = frame[spec.name].fillna(spec.details["fill"])
    return out
