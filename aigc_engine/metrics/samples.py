"""The sample-based evaluation every model plugin shares."""
from __future__ import annotations

import torch

from ..sampling import draw
from .images import image_metrics
from .modes import mode_coverage


def sample_metrics(model, dataset, device: str | torch.device = "cpu", *, n_points: int = 2500,
                   per_class: int = 200, n_images: int = 2000) -> dict[str, float]:
    """Metrics of a fitted model's samples against ``dataset``: on points with known modes the
    :func:`mode_coverage` of ``n_points`` samples; on images the :func:`image_metrics` of
    ``per_class`` samples of each class (a conditional model, ``conditional_accuracy``
    included) or of ``n_images`` samples (an unconditional one). Other data: none. Samples are
    drawn from the global generator, in that order (a seeded run gives the same numbers), through
    the engine's checked path (:func:`aigc_engine.sampling.draw`)."""
    out: dict[str, float] = {}
    if dataset.modes is not None and not dataset.is_image:
        out.update(mode_coverage(draw(model, n_points), dataset.modes, dataset.mode_std))
    if dataset.is_image:
        labels = torch.arange(model.num_classes).repeat_interleave(per_class) if model.num_classes else None
        samples = draw(model, len(labels) if labels is not None else n_images, labels)
        out.update(image_metrics(dataset, samples, labels, device=device))
    return out
