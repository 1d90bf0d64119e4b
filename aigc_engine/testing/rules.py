"""The rules of :func:`~aigc_engine.testing.check_model`, one small check per promise of the model
contract, each failing with :class:`RuleBroken` named after it (:data:`RULES`, in the order they
run; ``world_size``, which drives the CLI under torchrun, is in :mod:`.cli`)."""
from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import signal
import threading
from io import StringIO
from typing import Callable, Iterator

import torch

from ..store import io
from ..config import DATA_KINDS, check_config, describe_fields
from ..data import Dataset
from ..errors import InputError, Interrupted
from ..model import LOG_PROB_KINDS
from ..run import Run
from ..loop import TrainLoop
from .cli import check_world_size, compare_states
from .subject import RuleBroken, Subject, seeded, two_classes

ODD_ROWS = (3, 5)  # a row shape that is neither points nor images
INTERRUPT_AT = 2  # the step during which the resume rule's SIGINT arrives
GRID_POINTS = (51, 101, 201, 401, 801)  # a side, of the grids that integrate an exact density
GRID_AGREE = 0.005  # two successive grids whose integrals agree this closely end the refinement


def check_config_fields(subject: Subject) -> None:
    cls = subject.cls
    if not dataclasses.is_dataclass(cls.Config):
        raise RuleBroken("config", f"{cls.__name__}.Config is not a dataclass")
    no_default = [f.name for f in dataclasses.fields(cls.Config)
                  if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if no_default:
        raise RuleBroken("config", f"Config fields without a default: {', '.join(no_default)}")
    try:
        check_config(cls.Config(), cls.name)
    except InputError as err:
        raise RuleBroken("config", f"a default is outside its own declared range: {err}") from None
    lines = describe_fields(cls.Config, cls.defaults_by_kind)
    fields = {f.name: f for f in dataclasses.fields(cls.Config)}
    listed = {line.split(":", 1)[0] for line in lines}
    if listed != set(fields):
        raise RuleBroken("config", f"aigc-engine models lists {sorted(listed)}, not the fields {sorted(fields)}")
    for kind, values in cls.defaults_by_kind.items():
        if kind not in DATA_KINDS:
            raise RuleBroken("config", f"defaults_by_kind has an unknown kind {kind!r} (kinds: {', '.join(DATA_KINDS)})")
        for key in values:
            if key not in fields or fields[key].default is not None:
                raise RuleBroken("config", f"defaults_by_kind[{kind!r}][{key!r}] is never used: only a Config "
                                           "field that defaults to None takes a default per kind")
        try:
            check_config(dataclasses.replace(cls.Config(), **values), cls.name)
        except InputError as err:
            raise RuleBroken("config", f"the {kind} defaults are outside the declared ranges: {err}") from None


def check_validate(subject: Subject) -> None:
    model = subject.cls(subject.config())
    data = subject.dataset
    _expect_accepts(model, data)
    empty = data.subset(slice(0, 0))
    if _rejects(model, empty) is False:
        raise RuleBroken("validate", "validate accepted an empty dataset: raise InputError for data fit cannot take")
    odd = Dataset(torch.randn(64, *ODD_ROWS, generator=torch.Generator().manual_seed(0)), name="odd-rows")
    if _rejects(model, odd) is False:  # accepted: then fit must really take it
        try:
            fitted = subject.fit(odd, rule="validate")
            rows = tuple(fitted.sample(4).shape[1:])  # how many is the sample rule's to check
        except RuleBroken as err:
            raise RuleBroken("validate", f"validate accepted rows of shape {list(ODD_ROWS)} but "
                                         f"{str(err).split(': ', 1)[1]}") from None
        if rows != ODD_ROWS:
            raise RuleBroken("validate", f"validate accepted rows of shape {list(ODD_ROWS)}, but samples have "
                                         f"rows of shape {list(rows)}")


def _expect_accepts(model, data: Dataset) -> None:
    try:
        model.validate(data)
    except Exception as err:
        raise RuleBroken("validate", f"validate rejected the check's dataset {data!r}: "
                                     f"{type(err).__name__}: {err}") from None


def _rejects(model, data: Dataset) -> bool:
    """True when ``validate`` raised InputError, False when it accepted ``data``."""
    try:
        model.validate(data)
    except InputError:
        return True
    except Exception as err:
        raise RuleBroken("validate", f"validate raised {type(err).__name__} for {data!r} (shape "
                                     f"{list(data.shape)}), not InputError: {err}") from None
    return False


def check_fit(subject: Subject) -> None:
    model = subject.model()
    if not isinstance(model.num_classes, int) or model.num_classes < 0:
        raise RuleBroken("fit", f"num_classes must be an int >= 0 after fit, got {model.num_classes!r}")
    if model.log_prob_kind is not None and model.log_prob_kind not in LOG_PROB_KINDS:
        raise RuleBroken("fit", f"log_prob_kind must be one of {', '.join(LOG_PROB_KINDS)} or None, "
                                f"got {model.log_prob_kind!r}")


def check_sample(subject: Subject) -> None:
    model, data = subject.model(), subject.dataset
    for n in (1, 7):
        x = model.sample(n)
        want = (n, *data.shape[1:])
        if not isinstance(x, torch.Tensor) or tuple(x.shape) != want:
            got = list(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise RuleBroken("sample", f"sample({n}) must be a tensor of shape {list(want)}, got {got}")
        if not x.is_floating_point():
            raise RuleBroken("sample", f"sample({n}) must be a float tensor, got {x.dtype}")
        if not torch.isfinite(x).all():
            raise RuleBroken("sample", f"sample({n}) has NaN or inf values")
        if data.is_image and (x.min() < -1 or x.max() > 1):
            raise RuleBroken("sample", f"image samples must be in [-1, 1], got [{float(x.min()):g}, {float(x.max()):g}]")


def check_state_round_trip(subject: Subject) -> None:
    model = subject.model()
    path = subject.workdir / "round-trip.safetensors"
    io.save_state(path, model.state_dict())
    fresh = subject.cls(subject.config())
    fresh.load_state_dict(io.load_state(path))
    if fresh.num_classes != model.num_classes or fresh.log_prob_kind != model.log_prob_kind:
        raise RuleBroken("state_round_trip", f"the reloaded model has num_classes={fresh.num_classes}, "
                         f"log_prob_kind={fresh.log_prob_kind!r}; the fitted one {model.num_classes}, "
                         f"{model.log_prob_kind!r}")
    if not torch.equal(*(seeded(m.sample, 16, seed=subject.seed) for m in (model, fresh))):
        raise RuleBroken("state_round_trip", "the model reloaded from its state_dict samples differently for "
                                             "the same torch seed: the state misses something")
    if model.log_prob_kind is not None:
        x = subject.dataset.x[:16]
        if not torch.equal(*(seeded(m.log_prob, x, seed=subject.seed) for m in (model, fresh))):
            raise RuleBroken("state_round_trip", "the reloaded model's log_prob differs from the fitted one's")


def check_reproducible_fit(subject: Subject) -> None:
    first, again = subject.model(), subject.fit(rule="reproducible_fit")
    if not torch.equal(seeded(first.sample, 16, seed=subject.seed), seeded(again.sample, 16, seed=subject.seed)):
        raise RuleBroken("reproducible_fit", f"two fits with seed {subject.seed} sample differently: draw "
                         "randomness from the global generators (Run seeds them) or from ones seeded by run.seed")


def check_log_prob(subject: Subject) -> None:
    model, data = subject.model(), subject.dataset
    kind = model.log_prob_kind
    if kind is None:
        return
    x = data.x[:32]
    lp = model.log_prob(x)
    if not isinstance(lp, torch.Tensor) or tuple(lp.shape) != (len(x),):
        got = list(lp.shape) if isinstance(lp, torch.Tensor) else type(lp).__name__
        raise RuleBroken("log_prob", f"log_prob of {len(x)} rows must be a tensor [{len(x)}], got {got}")
    if not torch.isfinite(lp).all():
        raise RuleBroken("log_prob", "log_prob of the training rows has NaN or inf values")
    if kind.startswith("discrete") and float(lp.max()) > 1e-6:
        raise RuleBroken("log_prob", f"a {kind} log_prob is a log-probability of discrete values, <= 0; "
                                     f"got {float(lp.max()):g}")
    if kind == "exact" and data.x.dim() == 2 and data.x.shape[1] <= 2:
        total = _grid_integral(model.log_prob, data.x)
        if abs(total - 1) > 0.05:
            raise RuleBroken("log_prob", f"an exact density must integrate to 1; exp(log_prob) integrates to "
                                         f"{total:.4f} over a grid around the data")


def _grid_integral(log_prob: Callable, x: torch.Tensor) -> float:
    """The integral of exp(log_prob) over a box twice the data's range, by Riemann sums on finer
    grids (:data:`GRID_POINTS` a side) until two agree within :data:`GRID_AGREE`: a smooth
    density stops at a coarse grid (a point of it may cost the model an ODE solve: 501 a side
    each time made this rule run for minutes), sharp modes go on to the finest."""
    lo, hi = x.min(0).values.double(), x.max(0).values.double()
    lo, hi = lo - 0.5 * (hi - lo) - 1e-3, hi + 0.5 * (hi - lo) + 1e-3
    previous = math.nan
    for points in GRID_POINTS:
        axes = [torch.linspace(float(a), float(b), points, dtype=torch.float64) for a, b in zip(lo, hi)]
        grid = torch.stack(torch.meshgrid(*axes, indexing="ij"), -1).reshape(-1, len(axes))
        values = torch.cat([log_prob(block.float()).double().exp() for block in grid.split(1 << 16)])
        total = float(values.sum()) * math.prod(float(a[1] - a[0]) for a in axes)
        if abs(total - previous) <= GRID_AGREE * abs(total):
            break
        previous = total
    return total


def check_condition(subject: Subject) -> None:
    model, data = subject.model(), subject.dataset
    if not model.num_classes:
        _expect_input_error(lambda: model.sample(4, condition=torch.zeros(4, dtype=torch.int64)),
                            "an unconditional model must refuse a condition with an InputError")
    if data.conditional_classes >= 2:
        labelled = model
    elif not data.is_image:
        labelled = subject.fit(two_classes(data.shape[1]), rule="condition")
    else:
        return
    classes = labelled.num_classes
    if not classes:
        _expect_input_error(lambda: labelled.sample(4, condition=torch.zeros(4, dtype=torch.int64)),
                            "an unconditional model must refuse a condition with an InputError")
        return
    n, seed = 400, subject.seed
    one = seeded(labelled.sample, n, condition=torch.tensor(0), seed=seed)
    if not torch.equal(one, seeded(labelled.sample, n, condition=torch.zeros(n, dtype=torch.int64), seed=seed)):
        raise RuleBroken("condition", "sample(n, condition=label) must equal sample(n, condition=n copies of label)")
    mixed = labelled.sample(n, condition=torch.arange(n) % classes)
    if tuple(mixed.shape) != tuple(one.shape):
        raise RuleBroken("condition", f"sample with {n} labels has shape {list(mixed.shape)}")
    other = seeded(labelled.sample, n, condition=torch.tensor(1), seed=seed + 1)
    if _mean_difference(one, other) < 6.0:
        raise RuleBroken("condition", "samples for label 0 and label 1 do not differ in distribution: the model "
                                      "ignores its condition")
    for bad in (classes, -1):
        _expect_input_error(lambda: labelled.sample(2, condition=torch.tensor([0, bad])),
                            f"a label out of [0, {classes - 1}] ({bad}) must be an InputError")


def _mean_difference(a: torch.Tensor, b: torch.Tensor) -> float:
    """How many null standard deviations the difference of the two sample means lies above what
    sampling noise gives (a chi-square statistic over the dimensions that vary, standardised)."""
    a, b = a.flatten(1).double(), b.flatten(1).double()
    var = (a.var(0) + b.var(0)) / len(a)
    varies = var > 1e-12
    d = int(varies.sum())
    if d == 0:
        return 0.0 if torch.equal(a, b) else math.inf
    stat = float(((a.mean(0) - b.mean(0))[varies] ** 2 / var[varies]).sum())
    return (stat - d) / math.sqrt(2 * d)


def _expect_input_error(call: Callable, message: str) -> None:
    try:
        call()
    except InputError:
        return
    except Exception as err:
        raise RuleBroken("condition", f"{message}; got {type(err).__name__}: {err}") from None
    raise RuleBroken("condition", message)


def check_evaluate(subject: Subject) -> None:
    model = subject.model()
    run = Run(subject.workdir / "evaluate", device="cpu", seed=subject.seed, progress=False)
    found = model.evaluate(subject.dataset, run)
    if not isinstance(found, dict):
        raise RuleBroken("evaluate", f"evaluate must return a dict of metrics, got {type(found).__name__}")
    for key, value in found.items():
        try:
            float(value)
        except (TypeError, ValueError):
            raise RuleBroken("evaluate", f"metric {key!r} is not a number: {value!r}") from None
        if not isinstance(key, str):
            raise RuleBroken("evaluate", f"metric names must be strings, got {key!r}")


def check_resume(subject: Subject) -> None:
    reference = subject.model()
    if not subject.used_loop:
        return  # a fit without the core loop has no checkpoint to resume from
    if threading.current_thread() is not threading.main_thread():
        raise RuleBroken("resume", "the rule interrupts a fit by SIGINT, which only the main thread takes: call "
                                   "check_model from it")
    folder = subject.workdir / "resume"
    try:  # in this process: a subprocess per run cost a start-up, imports and the run's pictures
        with contextlib.redirect_stderr(StringIO()):  # the loop's "continue with: aigc-engine run --resume"
            subject.cls(subject.config()).fit(subject.dataset, InterruptedRun(folder, device="cpu", seed=subject.seed,
                                                                              progress=False))
    except Interrupted:
        pass
    else:
        raise RuleBroken("resume", f"the fit ended before step {INTERRUPT_AT}, where it was to be interrupted: give "
                                   "it more steps")
    run = Run(folder, device="cpu", seed=subject.seed, progress=False, resume=True)
    saved = run.load_checkpoint()
    if not saved or saved.get("loop", {}).get("step") != INTERRUPT_AT:
        raise RuleBroken("resume", f"interrupted by SIGINT at step {INTERRUPT_AT}, the loop left no checkpoint of it")
    resumed = subject.cls(subject.config())
    resumed.fit(subject.dataset, run)
    compare_states(reference.state_dict(), resumed.state_dict(), "resume",
                   "the resumed fit ends differently from the uninterrupted one", exact=True)


class InterruptedRun(Run):
    """A Run whose step loop gets SIGINT during step :data:`INTERRUPT_AT`, as from Ctrl-C."""

    def loop(self, steps: int, state: dict, **options) -> TrainLoop:
        return _InterruptedLoop(self, steps, state, **options)


class _InterruptedLoop(TrainLoop):
    def __iter__(self) -> Iterator[int]:
        for step in super().__iter__():
            yield step
            if step == INTERRUPT_AT:
                os.kill(os.getpid(), signal.SIGINT)


CHECKS: dict[str, Callable[[Subject], None]] = {
    "config": check_config_fields, "validate": check_validate, "fit": check_fit, "sample": check_sample,
    "state_round_trip": check_state_round_trip, "reproducible_fit": check_reproducible_fit,
    "log_prob": check_log_prob, "condition": check_condition, "evaluate": check_evaluate,
    "resume": check_resume, "world_size": check_world_size,
}
RULES: tuple[str, ...] = tuple(CHECKS)
