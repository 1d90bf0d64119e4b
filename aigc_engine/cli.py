"""The ``aigc-engine`` command line.

Nothing heavy at import: torch, the engine's run machinery and the plugins' models are imported
by the commands that use them, so ``--version`` and ``--help`` start in a fraction of a second.
"""
from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from .errors import InputError, Interrupted, PluginError

if TYPE_CHECKING:  # pragma: no cover
    from .engine import Engine

DEBUG_ENV = "AIGC_ENGINE_DEBUG"


class _UserError(click.ClickException):
    exit_code = 2


class _Unexpected(click.ClickException):
    exit_code = 1


class _EnvironmentError(click.ClickException):
    exit_code = 3  # the machine refused a write: a full disk, a read-only directory (EnvironmentFault)


SEED = click.IntRange(-(2**63), 2**64 - 1)  # what torch.manual_seed takes
MAX_SAMPLES = 10_000_000  # sample -n: more is an allocation no machine here makes, refused before trying


class _EngineGroup(click.Group):
    """Bad input anywhere below (InputError or ValueError) is one line and exit status 2; any
    other failure one line and exit status 1; ``AIGC_ENGINE_DEBUG=1`` shows tracebacks."""

    def invoke(self, ctx):
        try:
            with _warnings_as_lines():
                return super().invoke(ctx)
        except click.UsageError as err:  # a command's bad option: one line too, with where to look
            where = f"{err.ctx.command_path} --help" if err.ctx is not None else "--help"
            raise _UserError(f"{err.format_message()} (see '{where}')") from None
        except (click.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except Interrupted as err:  # the loop wrote its checkpoint and said how to resume
            ctx.exit(err.exit_code)
        except (InputError, ValueError, PluginError) as err:  # PluginError: strict plugin mode
            if os.environ.get(DEBUG_ENV):
                raise
            raise _UserError(_first_line(err)) from None
        except Exception as err:  # noqa: BLE001
            if os.environ.get(DEBUG_ENV):
                raise
            from .store.io import environment_fault

            fault = environment_fault(err)
            if fault is not None:  # a full disk, a read-only directory: the machine's, not a bug
                raise _EnvironmentError(str(fault)) from None
            raise _Unexpected(f"unexpected {type(err).__name__}: {_first_line(err)} "
                              f"(set {DEBUG_ENV}=1 for the traceback)") from None


@contextlib.contextmanager
def _warnings_as_lines():
    """Library warnings (scikit-learn's ConvergenceWarning and the like) as one line on stderr,
    ``warning: MESSAGE (Category)``, without the source path and line that Python prints;
    ``AIGC_ENGINE_DEBUG=1`` keeps Python's format."""
    if os.environ.get(DEBUG_ENV):
        yield
        return

    def show(message, category, filename, lineno, file=None, line=None):
        text = " ".join(str(message).split())
        kind = "" if category is UserWarning else f" ({category.__name__})"
        print(f"warning: {text}{kind}", file=file or sys.stderr)

    with warnings.catch_warnings():
        warnings.showwarning = show
        yield


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    if isinstance(err, KeyError) or not text:
        text = f"{type(err).__name__}: {text}"
    return text.splitlines()[0]


def _engine(ctx: click.Context) -> Engine:
    from .engine import Engine

    return ctx.ensure_object(Engine)


class _LazyGroup(_EngineGroup):
    """Adds the plugins' commands (``aigc_engine_register_commands``) when the group starts."""

    _added = False

    def _plugins_added(self, ctx):
        if not self._added:
            self._added = True
            try:
                _engine(ctx).plugins.add_commands(self)
            except PluginError as err:  # strict plugin mode, before a command runs (--help)
                if os.environ.get(DEBUG_ENV):
                    raise
                raise _UserError(_first_line(err)) from None

    def list_commands(self, ctx):
        self._plugins_added(ctx)
        return super().list_commands(ctx)

    def get_command(self, ctx, name):
        self._plugins_added(ctx)
        return super().get_command(ctx, name)


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="aigc-engine", prog_name="aigc-engine")
@click.pass_context
def cli(ctx):
    """A plugin-based engine for generative models on PyTorch.

    Fit a model with `aigc-engine run MODEL`, then `sample` and `eval` its run directory.
    """
    _engine(ctx)


@cli.command()
@click.argument("model", required=False)
@click.option("--dataset", "dataset", metavar="NAME|FILE|DIR",
              help="Registered dataset, .npy/.npz/.csv file or image folder (default: the model's own).")
@click.option("--config", "config_file", type=click.Path(dir_okay=False), help="TOML file of config values.")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="Override a config field; dataset.KEY=VALUE sets a dataset option, privacy.KEY=VALUE the "
                   "privacy budget (docs/privacy.md). Repeatable.")
@click.option("--out", type=click.Path(file_okay=False), help="Run directory (default runs/MODEL-DATA-TIME).")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--seed", default=0, show_default=True, type=SEED, help="Seed of every random generator.")
@click.option("--resume", type=click.Path(file_okay=False, exists=True), help="Continue this run directory.")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@click.pass_context
def run(ctx, model, dataset, config_file, sets, out, device, seed, resume, no_progress):
    """Fit MODEL and write a run directory (printed last).

    It holds config.json, metrics.jsonl, model.safetensors, summary.json and samples.png.
    """
    from .config import parse_sets

    if not model and not resume:
        raise click.UsageError("give a MODEL (see `aigc-engine models`) or --resume RUN_DIR")
    engine = _engine(ctx)
    spec = engine.run_spec(model, dataset, config_file, parse_sets(list(sets)), out, device, seed, resume,
                           progress=not no_progress)
    run_dir = engine.train(spec)
    if int(os.environ.get("RANK", "0")) == 0:
        click.echo(summary_line(run_dir), err=True)
        click.echo(str(run_dir))


def summary_line(run_dir: Path) -> str:
    """How a run went, in one line: the scalar entries of its summary.json (the model's metrics
    and the fit time), e.g. ``gmm on ring8: mean_log_likelihood=4.30116 bic=-85590.4 ... in 1.9 s``."""
    from .store.io import read_json
    from .store.rundir import SUMMARY_FILE

    summary = read_json(Path(run_dir) / SUMMARY_FILE)
    head = f"{summary.get('model', '?')} on {summary.get('dataset', '?')}"
    metrics = " ".join(f"{key}={_short(value)}" for key, value in summary.items()
                       if key not in ("model", "dataset", "fit_seconds") and isinstance(value, (int, float)))
    seconds = summary.get("fit_seconds")
    return f"aigc-engine: {head}: {metrics or 'no metrics'}" + (f" in {seconds:.1f} s" if seconds is not None else "")


def _short(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


@cli.command()
@click.argument("run_dir", type=click.Path(file_okay=False, exists=True))
@click.option("-n", "n", default=1000, show_default=True, type=click.IntRange(min=1, max=MAX_SAMPLES),
              help="How many samples.")
@click.option("--condition", "conditions", metavar="COND", multiple=True,
              help="Repeatable, all must hold. A class of a conditional model (its id, or its name: Gentoo, "
                   "species=Gentoo); for a table any column: island=Biscoe, body_mass_g>=5000, sex!=NA, "
                   "\"island in Biscoe,Dream\" (=, !=, <, <=, >, >=, in; NA: a missing value). See docs/conditions.md.")
@click.option("-o", "output", type=click.Path(dir_okay=False),
              help="FILE.npy (the samples) or FILE.png (a picture); for a run on a table FILE.csv or FILE.parquet "
                   "(the user's columns). Default RUN_DIR/samples.npy (samples.csv for a table).")
@click.option("--seed", default=0, show_default=True, type=SEED)
@click.option("--no-progress", is_flag=True, help="No progress bar (sampling shows none today; accepted as run takes it).")
@click.pass_context
def sample(ctx, run_dir, n, conditions, output, seed, no_progress):
    """Draw samples from a finished run."""
    engine = _engine(ctx)
    condition = list(conditions) if len(conditions) > 1 else (conditions[0] if conditions else None)
    output = output or engine.samples_path(run_dir)
    engine.sample(run_dir, n, condition, output, seed)
    click.echo(str(output))


@cli.command(name="eval")
@click.argument("run_dir", type=click.Path(file_okay=False, exists=True))
@click.option("--dataset", metavar="NAME|FILE", help="Evaluate on this data (default: the run's).")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Dataset options (dataset.KEY=VALUE).")
@click.option("--device", default="cpu", show_default=True)
@click.option("--condition", "conditions", metavar="COND", multiple=True,
              help="A table run: also the conditional fidelity of rows drawn under these conditions (as sample "
                   "takes them) against the real rows that meet them.")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@click.pass_context
def eval_(ctx, run_dir, dataset, sets, device, conditions, no_progress):
    """Evaluate a finished run; prints its metrics as JSON.

    On rows it did not fit (--dataset, or --set dataset.part=holdout for a run that held rows
    out) the metrics are those of `compare`, plus the model's own.
    """
    from .config import parse_sets, split_dataset_keys

    extra, options = split_dataset_keys(parse_sets(list(sets)))
    if extra:
        raise InputError(f"eval takes dataset options only (dataset.KEY=VALUE), got {sorted(extra)[0]!r}")
    metrics = _engine(ctx).evaluate(run_dir, dataset, options, device, progress=not no_progress,
                                    condition=list(conditions) or None)
    from .store.io import finite

    click.echo(json.dumps(finite(metrics, "eval", warn=False), indent=2, allow_nan=False))  # stdout: JSON alone


@cli.command()
@click.argument("models", nargs=-1)
@click.option("--dataset", "dataset", required=True, metavar="NAME|FILE|DIR",
              help="Registered dataset, .npy/.npz/.csv file or image folder.")
@click.option("--set", "sets", multiple=True, metavar="MODEL.KEY=VALUE",
              help="One model's config field (gmm.n_components=8), dataset.KEY=VALUE, or privacy.KEY=VALUE "
                   "(every model fits under that budget: docs/privacy.md). Repeatable.")
@click.option("--seeds", default="0,1,2", show_default=True, metavar="0,1,2", help="Seeds, comma-separated.")
@click.option("--holdout", default=0.2, show_default=True, type=float,
              help="Fraction of rows held out for the metrics (a dataset's standard test split instead, if it has one).")
@click.option("--samples", "n_samples", default=2000, show_default=True, type=click.IntRange(min=2),
              help="Samples drawn per model and seed for the metrics.")
@click.option("--out", type=click.Path(file_okay=False), help="Compare directory (default runs/compare-DATA-TIME).")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@click.pass_context
def compare(ctx, models, dataset, sets, seeds, holdout, n_samples, out, device, no_progress):
    """Fit MODELS (default: every installed model that can take the data) on one training split
    with each seed, and measure them on the same held-out rows.

    Writes compare.md (best value per column in bold), compare.json and compare.png, with each
    run directory (MODEL-seedK) under the compare directory, which is printed last. A model
    that fails keeps a row with its reason.
    """
    from .compare import compare as run_compare, parse_seeds
    from .config import parse_sets

    result = run_compare(list(models) or None, dataset, parse_sets(list(sets)), parse_seeds(seeds), holdout, out,
                         device, n_samples, progress=not no_progress, engine=_engine(ctx))
    click.echo(result.to_markdown(), err=True)
    click.echo(str(result.out))


@cli.command()
@click.pass_context
def models(ctx):
    """List the models the installed plugins provide, with each option's help and default (per
    kind of data where it depends on it)."""
    from .config import describe_fields
    from .model import as_model_class

    entries = _engine(ctx).plugins.models()
    if not entries:
        click.echo("no models installed")
    for name, entry in sorted(entries.items()):
        doc = (entry.cls.__doc__ or "").strip().splitlines()
        click.echo(f"{name}  [{entry.plugin}]  {doc[0] if doc else ''}".rstrip())
        for line in describe_fields(entry.cls.Config, as_model_class(entry.cls).defaults_by_kind):
            click.echo(f"    {line}")


@cli.command()
@click.pass_context
def datasets(ctx):
    """List datasets and file readers, and their options (set with --set dataset.KEY=VALUE)."""
    manager = _engine(ctx).plugins
    for name, entry in sorted(manager.datasets().items()):
        opts = ", ".join(f"{k}={v!r}" for k, v in entry.options().items())
        click.echo(f"{name}  [{entry.plugin}]  {entry.description}")
        if opts:
            click.echo(f"    options: {opts}")
    for suffix, reader in manager.readers().items():
        what = "FOLDER/" if suffix == "folder" else f"FILE{suffix}"
        click.echo(f"{what}  [{reader.plugin}]  {reader.description}")
        opts = ", ".join(f"{k}={v!r}" for k, v in reader.options().items())
        if opts:
            click.echo(f"    options: {opts}")
    click.echo("Any dataset: holdout=F (hold out that fraction, or the standard test split; what compare "
               "uses), holdout_seed=0, part=train|holdout (the rows to load)")


@cli.command()
@click.pass_context
def plugins(ctx):
    """List plugins: name, version, status, hooks and errors."""
    manager = _engine(ctx).plugins
    manager.models(), manager.datasets(), manager.readers()  # run the hooks: a failing one is listed as such
    for rec in manager.records.values():
        version = f" {rec.version}" if rec.version else ""
        click.echo(f"{rec.name}{version}  {rec.status}  ({rec.module})")
        if rec.hooks:
            click.echo(f"    hooks: {', '.join(rec.hooks)}")
        if rec.error:
            click.echo(f"    error: {rec.error}")


@cli.command()
@click.pass_context
def info(ctx):
    """Versions, threads, devices and the live kernel backend."""
    import torch

    from . import ops
    from .engine import versions

    for key, value in versions().items():
        click.echo(f"{key}: {value}")
    from .fabric import SMALL_MODEL_PARAMETERS

    click.echo(f"threads: {torch.get_num_threads()} (intra-op), {os.cpu_count()} CPUs; networks under "
               f"{SMALL_MODEL_PARAMETERS:,} parameters without convolutions train on 1 thread unless "
               f"OMP_NUM_THREADS or AIGC_ENGINE_THREADS is set")
    if torch.cuda.is_available():
        names = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
        click.echo(f"cuda: {torch.version.cuda}, {torch.cuda.device_count()} device(s): {names}")
    else:
        click.echo(f"cuda: not available (torch build: {torch.version.cuda or 'cpu'})")
    backend = ops.backend_info()
    click.echo(f"kernel backend: {backend['backend']} ({backend.get('reason', '')})")
    click.echo(f"kernel CUDA support compiled: {'yes' if backend.get('cuda') else 'no'}")
    manager = _engine(ctx).plugins
    manager.models(), manager.datasets(), manager.readers()
    records = manager.records.values()
    failed = [r.name for r in records if r.status in ("failed", "incompatible")]
    click.echo(f"plugins: {sum(r.status == 'loaded' for r in records)} loaded"
               + (f", failed: {', '.join(failed)}" if failed else ""))


@cli.command()
@click.argument("packages", nargs=-1, required=True)
@click.option("--upgrade", "-U", is_flag=True, help="Upgrade the packages if installed.")
def install(packages, upgrade):
    """Install plugin packages with pip into this environment."""
    cmd = [sys.executable, "-m", "pip", "install", *(["--upgrade"] if upgrade else []), *packages]
    click.echo("$ " + " ".join(cmd), err=True)
    code = subprocess.call(cmd)
    if code:
        raise _Unexpected(f"pip exited with status {code}")


def main(argv=None) -> None:
    cli.main(args=argv, prog_name="aigc-engine")


if __name__ == "__main__":  # pragma: no cover
    main()
