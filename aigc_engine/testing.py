"""Conformance checks for model plugins: what the engine relies on, one check per promise.

``check_model(MyModel)`` in a plugin's pytest runs them all (scikit-learn's
``check_estimator``, for models); each ``check_<rule>`` function can also be called alone. A
broken promise is an AssertionError whose message starts with ``check_model[<rule>]:``.

Rules (:data:`RULES`, in the order they run):

- ``config``: ``Config`` is a dataclass whose fields all have defaults that pass their own
  :func:`~aigc_engine.config.option` ranges, ``aigc-engine models`` can list it, and each
  ``defaults_by_kind`` entry names a field left at None and resolves to a valid config.
- ``validate``: ``validate`` takes the check's dataset, and rejects data it cannot take with an
  InputError: an empty dataset always; rows of shape ``[3, 5]`` (neither points nor images)
  unless ``fit`` then really takes them. Any other exception breaks the rule.
- ``fit``: ``fit`` on the tiny dataset through a real :class:`~aigc_engine.Run` (CPU, seeded).
- ``sample``: ``sample(n)`` is a float tensor ``[n, *row shape]``, finite, images in [-1, 1].
- ``state_round_trip``: ``state_dict`` through ``model.safetensors`` into a fresh instance gives
  identical samples (and ``log_prob``) for the same torch seed.
- ``reproducible_fit``: two fits with one seed give identical samples.
- ``log_prob``: when ``log_prob_kind`` is not None, one finite value per row; ``exact`` densities
  of 1-D and 2-D points integrate to 1 (within 5%, on a grid over the data); ``discrete``
  kinds are <= 0 (log-probabilities of discrete values).
- ``condition``: an unconditional model refuses a condition with an InputError; a model fitted
  on labelled data (two well separated classes of points when the check's dataset has none)
  samples for one label or ``n`` labels, samples for different labels differ in distribution,
  and an out-of-range label is an InputError.
- ``evaluate``: a dict of metric name -> number.
- ``resume`` (models that use ``run.loop``): ``aigc-engine run`` interrupted by SIGINT after its
  second step and continued with ``--resume`` ends with the same ``model.safetensors`` tensors,
  bit for bit, as an uninterrupted run (CPU). It drives the real CLI in subprocesses, so the
  model must be installed as a plugin (``pip install -e .``).
- ``world_size`` (opt-in: ``distributed=True``; models that use ``run.loop``): a 2-process
  ``torchrun`` fit equals the 1-process fit to float rounding.
"""
from __future__ import annotations

import dataclasses
import math
import os
import signal as _signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterable

import torch

from .store import io
from .config import DATA_KINDS, build_config, check_config, describe_fields
from .data import Dataset, ring8
from .errors import InputError
from .model import LOG_PROB_KINDS, as_model_class
from .run import Run

RULES: tuple[str, ...] = ("config", "validate", "fit", "sample", "state_round_trip", "reproducible_fit",
                          "log_prob", "condition", "evaluate", "resume", "world_size")
ODD_ROWS = (3, 5)  # a row shape that is neither points nor images


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
            run = _LoopRecorder(self.workdir / f"fit-{self._fits}", device="cpu", seed=self.seed, progress=False)
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


class _LoopRecorder(Run):
    """A Run that remembers whether the model trained through ``run.loop``."""
    used_loop = False

    def loop(self, *args, **kwargs):
        self.used_loop = True
        return super().loop(*args, **kwargs)


# -- the rules -----------------------------------------------------------------------------------
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
            shape = tuple(fitted.sample(4).shape)
        except RuleBroken as err:
            raise RuleBroken("validate", f"validate accepted rows of shape {list(ODD_ROWS)} but "
                                         f"{str(err).split(': ', 1)[1]}") from None
        if shape != (4, *ODD_ROWS):
            raise RuleBroken("validate", f"validate accepted rows of shape {list(ODD_ROWS)}, but samples have "
                                         f"shape {list(shape)}")


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
    if not torch.equal(*(_seeded(m.sample, 16, seed=subject.seed) for m in (model, fresh))):
        raise RuleBroken("state_round_trip", "the model reloaded from its state_dict samples differently for "
                                             "the same torch seed: the state misses something")
    if model.log_prob_kind is not None:
        x = subject.dataset.x[:16]
        if not torch.equal(*(_seeded(m.log_prob, x, seed=subject.seed) for m in (model, fresh))):
            raise RuleBroken("state_round_trip", "the reloaded model's log_prob differs from the fitted one's")


def check_reproducible_fit(subject: Subject) -> None:
    first, again = subject.model(), subject.fit(rule="reproducible_fit")
    if not torch.equal(_seeded(first.sample, 16, seed=subject.seed), _seeded(again.sample, 16, seed=subject.seed)):
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


def _grid_integral(log_prob: Callable, x: torch.Tensor, points: int = 501) -> float:
    """The integral of exp(log_prob) over a box twice the data's range, by a Riemann sum."""
    lo, hi = x.min(0).values.double(), x.max(0).values.double()
    lo, hi = lo - 0.5 * (hi - lo) - 1e-3, hi + 0.5 * (hi - lo) + 1e-3
    axes = [torch.linspace(float(a), float(b), points, dtype=torch.float64) for a, b in zip(lo, hi)]
    grid = torch.stack(torch.meshgrid(*axes, indexing="ij"), -1).reshape(-1, len(axes))
    values = torch.cat([log_prob(block.float()).double().exp() for block in grid.split(1 << 16)])
    cell = math.prod(float(a[1] - a[0]) for a in axes)
    return float(values.sum() * cell)


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
    one = _seeded(labelled.sample, n, condition=torch.tensor(0), seed=seed)
    if not torch.equal(one, _seeded(labelled.sample, n, condition=torch.zeros(n, dtype=torch.int64), seed=seed)):
        raise RuleBroken("condition", "sample(n, condition=label) must equal sample(n, condition=n copies of label)")
    mixed = labelled.sample(n, condition=torch.arange(n) % classes)
    if tuple(mixed.shape) != tuple(one.shape):
        raise RuleBroken("condition", f"sample with {n} labels has shape {list(mixed.shape)}")
    other = _seeded(labelled.sample, n, condition=torch.tensor(1), seed=seed + 1)
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
    subject.model()
    if not subject.used_loop:
        return  # a fit without the core loop has no checkpoint to resume from
    args = _cli_run_args(subject, "resume")
    ref, resumed = interrupted_and_resumed_runs(args, subject.workdir / "resume", env=plugin_env(), rule="resume")
    _compare_states(ref, resumed, "resume", "the resumed run ends differently from the uninterrupted one",
                    exact=True)


def check_world_size(subject: Subject) -> None:
    subject.model()
    if not subject.used_loop:
        return
    args = _cli_run_args(subject, "world_size")
    root, env = subject.workdir / "world-size", plugin_env()
    one, two = root / "one", root / "two"
    single = subprocess.Popen([sys.executable, "-m", "aigc_engine", "run", *args, "--out", str(one)], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        _run_or_fail([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                      "-m", "aigc_engine", "run", *args, "--out", str(two)], env, "world_size")
        _, err = single.communicate(timeout=600)
    finally:
        if single.poll() is None:
            single.kill()
    if single.returncode != 0:
        raise RuleBroken("world_size", f"aigc-engine run exited {single.returncode}: {err.strip()[-2000:]}")
    _compare_states(one, two, "world_size", "2 processes end differently from 1", exact=False)


CHECKS: dict[str, Callable[[Subject], None]] = {
    "config": check_config_fields, "validate": check_validate, "fit": check_fit, "sample": check_sample,
    "state_round_trip": check_state_round_trip, "reproducible_fit": check_reproducible_fit,
    "log_prob": check_log_prob, "condition": check_condition, "evaluate": check_evaluate,
    "resume": check_resume, "world_size": check_world_size,
}


def check_model(model_class: type, dataset: Dataset | None = None, config: dict[str, Any] | None = None, *,
                skip: Iterable[str] = (), distributed: bool = False, seed: int = 0) -> None:
    """Run every rule of :data:`RULES` on ``model_class`` fitted on ``dataset`` (default
    :func:`tiny_dataset`) with the Config values ``config`` (e.g. ``{"steps": 30}``: keep the
    check fast), except those in ``skip``; ``world_size`` only with ``distributed=True``. Raises
    an AssertionError ``check_model[<rule>]: ...`` for the first rule broken."""
    skip = set(skip)
    unknown = sorted(skip - set(RULES))
    if unknown:
        raise ValueError(f"unknown rule {unknown[0]!r}; rules: {', '.join(RULES)}")
    cls = as_model_class(model_class)
    with tempfile.TemporaryDirectory(prefix="aigc-check-") as tmp:
        subject = Subject(cls, dict(config or {}), dataset if dataset is not None else tiny_dataset(), Path(tmp), seed)
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


# -- the CLI in subprocesses ---------------------------------------------------------------------
def plugin_env(**extra: str) -> dict[str, str]:
    """The environment for ``aigc-engine`` subprocesses: this one, with this interpreter's
    ``sys.path`` (so plugins found here are found there) and one thread unless set."""
    env = {**os.environ, **extra}
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


def _cli_run_args(subject: Subject, rule: str) -> list[str]:
    """``aigc-engine run`` arguments for the model under check on its dataset (written to an .npz)."""
    from .engine import Engine

    try:
        registered = Engine().model_class(subject.name)
    except InputError:
        registered = None
    if registered is None or (registered.__module__, registered.__qualname__) != \
            (subject.cls.__module__, subject.cls.__qualname__):
        raise RuleBroken(rule, f"model {subject.name!r} is not this class in the installed plugins (aigc-engine "
                               f"run drives it): install the plugin (pip install -e .) or skip={(rule,)!r}")
    data = subject.dataset
    path = subject.workdir / f"{rule}-data.npz"
    if not path.exists():
        import numpy as np

        arrays = {"x": data.x.numpy()}
        if data.conditional_classes:
            arrays["y"] = data.y.numpy()
        np.savez(path, **arrays)
    sets = [a for k, v in subject.overrides.items() for a in ("--set", f"{k}={_cli_value(v)}")]
    return [subject.name, "--dataset", str(path), "--device", "cpu", "--seed", str(subject.seed), *sets,
            "--no-progress"]


def _cli_value(value: Any) -> str:
    if isinstance(value, (tuple, list)):
        return ",".join(map(str, value))
    if isinstance(value, bool):
        return "true" if value else "false"
    return "none" if value is None else str(value)


def _run_or_fail(cmd: list[str], env: dict[str, str], rule: str, timeout: float = 600) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuleBroken(rule, f"{' '.join(cmd[2:])} exited {proc.returncode}: {proc.stderr.strip()[-2000:]}")
    return proc


def _tensors(tree: Any, prefix: str = "") -> dict[str, torch.Tensor]:
    """The tensors of a state tree by path (JSON values, such as wall-clock times, left out)."""
    if isinstance(tree, torch.Tensor):
        return {prefix: tree}
    items = tree.items() if isinstance(tree, dict) else enumerate(tree) if isinstance(tree, (list, tuple)) else ()
    out: dict[str, torch.Tensor] = {}
    for key, value in items:
        out.update(_tensors(value, f"{prefix}/{key}"))
    return out


def _compare_states(a_dir: Path, b_dir: Path, rule: str, what: str, *, exact: bool) -> None:
    a, b = (_tensors(io.load_state(d / "model.safetensors")) for d in (a_dir, b_dir))
    if set(a) != set(b):
        raise RuleBroken(rule, f"{what}: model.safetensors holds {sorted(set(a) ^ set(b))[:3]} in one run only")
    for key in a:
        same = torch.equal(a[key], b[key]) if exact else (a[key].shape == b[key].shape and torch.allclose(
            a[key].double(), b[key].double(), rtol=1e-4, atol=1e-5))
        if not same:
            raise RuleBroken(rule, f"{what}: tensor {key} of model.safetensors differs")


_INTERRUPT_AT_STEP = """
import os, sys
from aigc_engine import TrainLoop
from aigc_engine.cli import main

at, signum = int(sys.argv[1]), int(sys.argv[2])
steps = TrainLoop.__iter__

def interrupted(loop):
    for step in steps(loop):
        yield step
        if step == at:  # as if Ctrl-C came while this step ran
            os.kill(os.getpid(), signum)

TrainLoop.__iter__ = interrupted
main(sys.argv[3:])
"""


def interrupted_and_resumed_runs(run_args: list[str], root: Path, env: dict[str, str] | None = None, *,
                                 signal: int = _signal.SIGINT, at_step: int = 2, timeout: float = 600,
                                 rule: str = "resume") -> tuple[Path, Path]:
    """``aigc-engine run *run_args`` twice: uninterrupted (``root/ref``), and interrupted then
    finished with ``--resume`` (``root/interrupted``); returns both run directories.

    SIGINT / SIGTERM arrive during step ``at_step`` (the loop writes its checkpoint and the CLI
    exits 128 + signal); SIGKILL, which no process can handle, as soon as the first checkpoint
    exists (give the run a small ``checkpoint_every``)."""
    env = env if env is not None else plugin_env()
    cli = [sys.executable, "-m", "aigc_engine"]
    ref, out = Path(root) / "ref", Path(root) / "interrupted"
    # the two runs side by side: each is mostly interpreter start-up
    reference = subprocess.Popen([*cli, "run", *run_args, "--out", str(ref)], env=env, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.PIPE, text=True)
    try:
        if signal == _signal.SIGKILL:
            _kill_after_first_checkpoint([*cli, "run", *run_args, "--out", str(out)], out, env, timeout)
        else:
            _interrupt_at_step(run_args, out, env, signal, at_step, timeout, rule)
        _, err = reference.communicate(timeout=timeout)
    finally:
        if reference.poll() is None:
            reference.kill()
    if reference.returncode != 0:
        raise RuleBroken(rule, f"aigc-engine run {' '.join(run_args)} exited {reference.returncode}: {err.strip()[-2000:]}")
    if (out / "model.safetensors").exists():
        raise RuleBroken(rule, "the run finished before it was interrupted: make it longer")
    _run_or_fail([*cli, "run", "--resume", str(out), "--no-progress"], env, rule, timeout)
    return ref, out


def _interrupt_at_step(run_args: list[str], out: Path, env: dict[str, str], signal: int, at_step: int,
                       timeout: float, rule: str) -> None:
    proc = subprocess.run([sys.executable, "-c", _INTERRUPT_AT_STEP, str(at_step), str(int(signal)), "run",
                           *run_args, "--out", str(out)], env=env, capture_output=True, text=True, timeout=timeout)
    if proc.returncode == 0:
        raise RuleBroken(rule, f"the run ended before step {at_step}, where it was to be interrupted: give it more steps")
    if proc.returncode != 128 + int(signal) or not (out / "checkpoint.safetensors").exists():
        raise RuleBroken(rule, f"interrupted by {_signal.Signals(signal).name}, the run exited {proc.returncode} "
                               f"(not {128 + int(signal)}, with a checkpoint): {proc.stderr.strip()[-2000:]}")


def _kill_after_first_checkpoint(cmd: list[str], out: Path, env: dict[str, str], timeout: float) -> None:
    import time

    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + timeout
    while not (out / "checkpoint.safetensors").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    proc.send_signal(_signal.SIGKILL)
    proc.wait()


def _seeded(call: Callable, *args: Any, seed: int = 0, **kwargs: Any) -> torch.Tensor:
    """``call(*args, **kwargs)`` right after ``torch.manual_seed(seed)``."""
    torch.manual_seed(seed)
    return call(*args, **kwargs)


__all__ = ["RULES", "RuleBroken", "Subject", "check_model", "tiny_dataset", "two_classes", "plugin_env",
           "interrupted_and_resumed_runs", *(check.__name__ for check in CHECKS.values())]
