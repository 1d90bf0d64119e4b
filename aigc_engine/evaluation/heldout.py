"""The held-out metrics of one fitted model: what ``compare`` tabulates and ``eval`` reports on
rows the model never saw. Every metric the measures return is kept (no fixed list)."""
from __future__ import annotations

import dataclasses
import math
import time
from typing import Any

import torch

from .. import metrics
from ..metrics.privacy import privacy_report
from ..sampling import draw, draw_rows

__all__ = ["Measured", "measure", "measure_table", "judge_for", "N_SAMPLES"]

N_SAMPLES = 2000


@dataclasses.dataclass
class Measured:
    """``metrics`` (name -> value), ``likelihood`` (how the held-out log-likelihood was
    computed: ``exact``, ``bound``, ``bound (dequantised)``, or None without ``log_prob``) and
    the ``samples`` drawn (None when none were)."""
    metrics: dict[str, Any]
    likelihood: str | None = None
    samples: torch.Tensor | None = None


def measure(model: Any, train, holdout, seed: int = 0, n_samples: int = N_SAMPLES, judge=None) -> Measured:
    """``model`` against the real ``holdout`` rows it never saw (``train``: the rows it fitted):
    ``samples_per_second``; ``log_likelihood_per_dim`` with a ``log_prob``; mode coverage on
    points with known modes; with an image ``judge`` every :func:`~aigc_engine.metrics.image_metrics`
    (class by class for a conditional model); for a table every
    :func:`~aigc_engine.metrics.table_metrics`, else the DCR ratio and, for points, the
    :func:`~aigc_engine.metrics.privacy.privacy_report`. Seeded by ``seed``: the same
    model and rows give the same numbers."""
    torch.manual_seed(seed)
    out: dict[str, float] = {}
    labels = None
    if holdout.is_image and model.num_classes:
        labels = torch.arange(model.num_classes).repeat_interleave(math.ceil(n_samples / model.num_classes))
        labels = labels[:n_samples]
    start = time.perf_counter()
    samples = draw(model, n_samples, labels)
    out["samples_per_second"] = n_samples / max(time.perf_counter() - start, 1e-9)
    samples = samples.float()
    kind = None
    if model.log_prob_kind is not None:
        out["log_likelihood_per_dim"], kind = _likelihood(model, holdout, seed)
    if holdout.modes is not None and not holdout.is_image:
        out.update(metrics.mode_coverage(samples, holdout.modes, holdout.mode_std))
    if judge is not None:
        out.update(metrics.image_metrics(holdout, samples, labels, judge=judge, seed=seed))
    if holdout.encoding is not None:  # a table: its decoded columns against the real rows
        out.update(measure_table(model, train, holdout, seed))
    else:
        out["dcr_ratio"] = metrics.closest_distance_ratio(samples, train.x, holdout.x)["dcr_ratio"]
        if not holdout.is_image:  # points; an image's pixel distances say little of membership
            out.update(privacy_report(samples, train.x, holdout.x, seed))
    return Measured({k: float(v) for k, v in out.items()}, kind, samples)


def measure_table(model: Any, train, holdout=None, seed: int = 0, n: int | None = None) -> dict[str, float]:
    """The :func:`~aigc_engine.metrics.table_metrics` of ``model``'s rows (``n``; by default as
    many as that function scores: ``holdout``'s rows, and ``train``'s for ML efficacy) against
    the real ``train`` rows and (None: left out) the real ``holdout`` rows, Datasets in the
    columns of the run's encoding. A table with rules (``dataset.constraints``) adds
    ``rule_validity``: the share of the model's own rows that keep every rule, before the
    sampling path drops those that do not (:func:`aigc_engine.rules.rule_validity`)."""
    from ..rules import parse_rules, rule_validity

    encoding = train.encoding
    torch.manual_seed(seed)
    size = n or (max(len(train), len(holdout)) if holdout is not None else len(train))
    synthetic = draw_rows(model, size, encoding, quiet=True)
    decode = lambda d: encoding.decode(d.x, d.y) if d is not None else None  # noqa: E731
    found = metrics.table_metrics(decode(train), decode(holdout), synthetic, encoding, seed)
    rules = parse_rules((train.options or {}).get("constraints"), encoding.schema)
    return {**found, "rule_validity": rule_validity(rules, synthetic)} if rules else found


def _likelihood(model: Any, holdout, seed: int) -> tuple[float, str]:
    """Held-out log-likelihood per dimension. Images on evenly spaced levels (8-bit, the 17
    levels of digits) are discrete: a model whose ``log_prob`` gives the probability of each
    level (``log_prob_kind`` ``discrete`` or ``discrete_bound``) is put on the density scale (-
    log of the bin width per dimension); a density model is evaluated on uniformly dequantised
    rows, which is a lower bound of the same quantity (Theis et al. 2016)."""
    kind = model.log_prob_kind
    bound = kind in ("bound", "discrete_bound")
    width = holdout.bin_width if holdout.is_image else None
    if width is None:
        found = metrics.heldout_log_likelihood(model, holdout)
        return found["log_likelihood_per_dim"], "bound" if bound else "exact"
    if kind.startswith("discrete"):
        found = metrics.heldout_log_likelihood(model, holdout)
        return found["log_likelihood_per_dim"] - math.log(width), "bound" if bound else "exact"
    x = holdout.x
    noise = torch.rand(x.shape, generator=torch.Generator().manual_seed(seed), dtype=x.dtype)
    found = metrics.heldout_log_likelihood(model, x + (noise - 0.5) * width)
    return found["log_likelihood_per_dim"], "bound (dequantised)"


def judge_for(data, device: str = "auto"):
    """The image judge of labelled images (trained once per data set and cached), else None."""
    if not (data.is_image and data.labels_are_classes and data.y is not None and data.num_classes >= 2):
        return None
    from ..fabric import resolve_device

    return metrics.ImageJudge.for_dataset(data, device=resolve_device(device))
