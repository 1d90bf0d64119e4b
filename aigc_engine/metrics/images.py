"""All the image metrics in one call."""
from __future__ import annotations

import torch

from ..errors import InputError
from .distances import frechet_distance, kernel_distance
from .judge import ImageJudge
from .manifold import precision_recall_density_coverage


def image_metrics(real, samples, sample_labels=None, judge: ImageJudge | bool | None = None,
                  k: int = 5, kid_subsets: int = 100, kid_subset_size: int = 1000,
                  seed: int = 0, device: str | torch.device = "cpu") -> dict[str, float]:
    """Judge and manifold metrics of image ``samples`` (``M x C x H x W`` in [-1, 1]) against
    the ``real`` images (a Dataset or an ``N x C x H x W`` tensor).

    ``judge`` is an :class:`ImageJudge`; ``None`` trains (or loads from the cache) the judge of
    ``real`` on ``device`` when it is a Dataset with at least two classes, ``False`` skips the
    judge's metrics. Keys:

    - ``pixel_precision``, ``pixel_recall``, ``pixel_density``, ``pixel_coverage``:
      :func:`precision_recall_density_coverage` (``k`` neighbours) on the flattened pixels;
    - with a judge: ``judge_accuracy`` (the judge's own held-out accuracy on real images),
      ``judge_fd`` (:func:`frechet_distance`), ``judge_kid`` and ``judge_kid_std``
      (:func:`kernel_distance`), and ``judge_precision`` ... ``judge_coverage``, all in the
      judge's penultimate features of ``real`` and ``samples``;
    - with a judge and ``sample_labels`` (the labels the samples were generated for):
      ``conditional_accuracy`` (:meth:`ImageJudge.conditional_accuracy`).
    """
    real_x = real.x if hasattr(real, "x") else torch.as_tensor(real)
    samples = torch.as_tensor(samples).detach()
    if samples.dim() < 2 or samples[0].numel() != real_x[0].numel():
        raise InputError(f"samples of shape {tuple(samples.shape)} do not match the real images' "
                         f"{tuple(real_x.shape[1:])}")
    out: dict[str, float] = {}
    for key, value in precision_recall_density_coverage(real_x, samples, k).items():
        out[f"pixel_{key}"] = value
    if judge is None:
        labelled = getattr(real, "y", None) is not None and getattr(real, "num_classes", 0) >= 2
        judge = ImageJudge.for_dataset(real, device=device) if labelled else False
    if judge is False:
        return out
    real_f = judge.features(real_x.reshape(len(real_x), *judge.image_shape))
    sample_f = judge.features(samples.reshape(len(samples), *judge.image_shape))
    out["judge_accuracy"] = judge.accuracy
    if sample_labels is not None:
        out["conditional_accuracy"] = judge.conditional_accuracy(samples, sample_labels)
    out["judge_fd"] = frechet_distance(real_f, sample_f)
    out["judge_kid"], out["judge_kid_std"] = kernel_distance(
        real_f, sample_f, subsets=kid_subsets, subset_size=kid_subset_size, seed=seed)
    for key, value in precision_recall_density_coverage(real_f, sample_f, k).items():
        out[f"judge_{key}"] = value
    return out
