"""The ``diffusion`` model's hyper-parameters, declared with :func:`aigc_engine.config.option`
(ranges and choices checked before a run starts, NaN and inf refused), its defaults per kind of
data and the rules between fields."""
from __future__ import annotations

import dataclasses
from typing import Any, Literal

from aigc_engine import InputError
from aigc_engine.config import data_kind, fit_to_table, option, resolve_defaults

from .samplers import SAMPLERS

TABLE_STEPS = 6000  # the most default steps on a table; fewer on small ones (config.fit_to_table)
TABLE_EPOCHS = 400  # passes over a small table's training rows in a default run (early stopping may end sooner)

# Defaults that depend on the kind of data (points N x D, images N x C x H x W, or tables: encoded
# rows with known blocks): a Config field left at None takes the value for the data's kind
# (resolved at fit, saved with the model). On a table the batch is at most its training rows and
# the steps TABLE_EPOCHS passes over them (``resolved``), and training stops early on the
# validation rows' denoising loss.
DEFAULTS = {
    "points": dict(steps=6000, batch_size=256, lr=2e-3, width=128, depth=4, fourier=2, channels=0, logsnr_min=-10.0,
                   logsnr_max=14.0, logsnr_shift=0.0, target="v", weighting="simple", ema_decay=0.999,
                   sampler="ddpm", sample_steps=128, sample_grid="logsnr", clip=4.0, validation=0.0, guidance=1.5),
    "images": dict(steps=1600, batch_size=128, lr=2e-3, width=0, depth=0, fourier=0, channels=32, logsnr_min=-10.0,
                   logsnr_max=7.0, logsnr_shift=0.0, target="eps", weighting="simple", ema_decay=0.999,
                   sampler="dpm++2m", sample_steps=32, sample_grid="schedule", clip=1.0, validation=0.0, guidance=1.5),
    # tables: a small network (64 units, 2 blocks: 128-256 units or 4 blocks put the samples' median
    # distance to the training rows at 0.67-0.77 of held-out rows' on CPS1985, 64 x 2 at 0.80), no
    # guidance beyond the conditional model (1.5 sharpened the classes: closer to the training rows)
    "tables": dict(steps=TABLE_STEPS, batch_size=128, lr=2e-3, width=64, depth=2, fourier=0, channels=0,
                   logsnr_min=-10.0, logsnr_max=14.0, logsnr_shift=0.0, target="v", weighting="simple",
                   ema_decay=0.995, sampler="ddpm", sample_steps=128, sample_grid="logsnr", clip=4.0,
                   validation=0.1, guidance=1.0),
}


@dataclasses.dataclass
class DiffusionConfig:
    """Hyper-parameters of the ``diffusion`` model; None means the default for the data's kind
    (points or images, see ``aigc_diffusion.config.DEFAULTS``)."""
    steps: int | None = option(None, help="training steps", ge=1)
    batch_size: int | None = option(None, help="rows per step", ge=1)
    lr: float | None = option(None, help="Adam learning rate (cosine decay after the warm-up)", gt=0)
    warmup: int = option(100, help="steps of linear learning-rate warm-up", ge=0)
    schedule: Literal["cosine", "linear", "learned"] = option(
        "cosine", help="log-SNR schedule; learned: VDM's monotone network between the ends, trained on the "
                       "bound's variance (weighting=elbo only)")
    logsnr_min: float | None = option(None, help="log-SNR at the noise end")
    logsnr_max: float | None = option(None, help="log-SNR at the data end")
    logsnr_shift: float | None = option(None, help="the cosine schedule's log-SNR shifted by this much "
                                                   "(towards the data end when > 0)")
    target: Literal["eps", "v"] | None = option(None, help="what the network predicts")
    weighting: Literal["elbo", "simple"] | None = option(
        None, help="loss weighting; elbo: the likelihood bound's (the default with schedule=learned)")
    width: int | None = option(None, help="hidden units of the points network", ge=0)
    depth: int | None = option(None, help="residual blocks of the points network", ge=0)
    fourier: int | None = option(None, help="Fourier frequencies of the points' coordinates; 0: off", ge=0)
    channels: int | None = option(None, help="base channels of the U-Net, for images", ge=0)
    conditional: Literal["auto", "true", "false"] = option("auto", help="condition on class labels")
    label_dropout: float = option(0.1, help="fraction of labels dropped, for classifier-free guidance", ge=0, lt=1)
    guidance: float | None = option(None, help="classifier-free guidance; 0: unconditional, 1: conditional", ge=0)
    ema_decay: float | None = option(None, help="decay of the weights' EMA", ge=0, le=1)
    sampler: str | None = option(None, help="sampling algorithm", choices=SAMPLERS)
    sample_steps: int | None = option(None, help="steps of the sampler", ge=1)
    sample_grid: Literal["schedule", "logsnr"] | None = option(
        None, help="the sampler's time grid: the training schedule's, or uniform in log-SNR (resolves the data "
                   "end: sharp modes come out at their width, not narrower)")
    eta: float = option(0.0, help="noise of sampler=ddim; 0: deterministic, 1: ddpm", ge=0, le=1)
    clip: float | None = option(None, help="each denoised prediction clamped to [-clip, clip]", gt=0)
    ode_steps: int = option(100, help="Heun steps of the probability-flow ODE likelihood", ge=1)
    trace: Literal["auto", "hutchinson", "exact"] = option(
        "auto", help="the ODE's trace; auto: exact where it costs no more backward passes than the probes")
    probes: int = option(2, help="Hutchinson probes per row", ge=1)
    bound_draws: int = option(16, help="log-SNR draws per row of the images' bound", ge=1)
    test: float = option(0.1, help="held-out fraction for the test likelihood", ge=0, lt=1)
    validation: float | None = option(None, help="held-out fraction for early stopping on its denoising loss; "
                                                 "0: none, all steps run", ge=0, lt=1)
    eval_every: int = option(100, help="steps between early stopping's evaluations", ge=1)
    patience: int = option(10, help="evaluations without a lower held-out loss before stopping", ge=1)
    standardize: bool = option(True, help="train points on x / std, samples scaled back")
    grad_clip: float = option(1.0, help="gradient norm clip of the network; 0: off", ge=0)
    amp: bool = option(True, help="mixed precision on CUDA")
    log_every: int = option(50, help="steps per logged row", ge=1)
    checkpoint_every: int = option(1000, help="steps per checkpoint", ge=1)
    snapshots: int = option(8, help="sample snapshots over training, for progress.png", ge=0)
    privacy_clip: float = option(1.0, help="a private run's bound on each row's gradient (DP-SGD)", gt=0)
    privacy_accountant: Literal["rdp", "prv"] = option("rdp", help="a private run's accountant (opacus')")


def check_pairs(c: DiffusionConfig) -> None:
    """The rules between fields (each field's own range is its :func:`option`)."""
    if c.schedule == "learned" and c.weighting == "simple":
        raise InputError("schedule=learned is trained to lower the variance of the likelihood bound's estimate: "
                         "it needs weighting=elbo (the default with it)")
    if c.logsnr_min is not None and c.logsnr_max is not None and not c.logsnr_min < c.logsnr_max:
        raise InputError(f"logsnr_min must be below logsnr_max, got {c.logsnr_min} and {c.logsnr_max}")
    if c.validation is not None and c.validation + c.test >= 1:
        raise InputError(f"validation + test must be below 1, got {c.validation} and {c.test}")


def resolved(config: DiffusionConfig, data: Any) -> DiffusionConfig:
    """The config for ``data`` (a dataset, or its kind: ``"points"`` or ``"images"``): the fields
    left at None take the kind's defaults; a learned schedule's weighting defaults to elbo; on a
    table the default batch is at most the training rows (those left after ``validation`` and
    ``test``) and the default steps ``TABLE_EPOCHS`` passes over them (at least 1000, at most
    ``TABLE_STEPS``), the default width at least the encoded row's, rounded up to a power of 2
    (64 units under-fitted a 191-column table: ML efficacy 0.82 against 0.99 with 256)."""
    if config.schedule == "learned" and config.weighting is None:
        config = dataclasses.replace(config, weighting="elbo")
    c = resolve_defaults(config, DEFAULTS, data)
    if isinstance(data, str) or data_kind(data) != "tables":
        return c
    rows = max(1, len(data) - int(round(len(data) * c.validation)) - int(round(len(data) * c.test)))
    if config.width is None:  # at least the encoded row's width, rounded up to a power of 2
        c = dataclasses.replace(c, width=max(c.width, 1 << (int(data.shape[1]) - 1).bit_length()))
    return fit_to_table(c, config, rows, TABLE_EPOCHS)
