"""The engine: resolves models and datasets through the plugin manager and drives a run from
config to artifacts. The CLI is a thin layer over this.

torch, matplotlib and the data modules are imported where a run or a dataset needs them, not at
import: ``aigc-engine --help`` builds an Engine to list the plugins' commands.
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import os
import platform
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from .config import build_config, coerce_options, read_run_config, read_toml, split_dataset_keys
from .errors import InputError
from .model import as_model_class
from .plugins import PluginManager
from .store import rundir
from .store.rundir import CONFIG_FILE, ENCODING_FILE, METRICS_PNG, MODEL_FILE, SAMPLES_PNG, SUMMARY_FILE

if TYPE_CHECKING:  # pragma: no cover
    from .data import Dataset
    from .model import Model
    from .run import Run
    from .tables import TableEncoding

N_PLOT_SAMPLES = 2500
# Options every dataset takes (``--set dataset.holdout=0.2``): which rows of Dataset.holdout_split
HOLDOUT_OPTIONS: dict[str, Any] = {"holdout": 0.0, "holdout_seed": 0, "part": "train"}
HOLDOUT_TYPES: dict[str, Any] = {"holdout": float, "holdout_seed": int, "part": Literal["train", "holdout"]}


def versions() -> dict[str, str]:
    import numpy
    import torch

    from . import __version__

    return {"aigc_engine": __version__, "torch": torch.__version__, "numpy": numpy.__version__,
            "python": platform.python_version()}


@dataclasses.dataclass
class RunSpec:
    """What one run is, before anything is resolved: the input of :meth:`Engine.train`.

    ``config``: values of the model's Config fields (typed, or strings as ``--set`` gives them;
    missing fields keep their defaults); ``dataset``: a registered name or a file path (None:
    the model's ``default_dataset``), or data held in memory (a pandas DataFrame, a Dataset;
    config.json records that it was), with its ``dataset_options``; ``out``: the run directory
    (None: ``runs/<model>-<data>-<time>``); ``resume``: ``out`` is an existing run to continue;
    ``privacy``: the ``privacy.KEY`` options (``{"epsilon": 1}``; empty: not private; docs/privacy.md)."""
    model: str
    config: dict[str, Any] = dataclasses.field(default_factory=dict)
    dataset: str | Any | None = None
    dataset_options: dict[str, Any] = dataclasses.field(default_factory=dict)
    seed: int = 0
    device: str = "auto"
    out: Path | None = None
    resume: bool = False
    progress: bool = True
    privacy: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class Prepared:
    """A :class:`RunSpec` resolved and validated: ``spec.dataset`` filled in, the model built from
    ``config``, the dataset loaded; a private run's ``plan`` (the budget, the encoding's spend) and
    the fit's share of it, ``privacy`` (what ``run.privacy`` holds while the model fits)."""
    spec: RunSpec
    model: Model
    config: Any
    data: Dataset
    plan: Any = None
    privacy: Any = None


class Engine:
    """Models and datasets from the plugins, and the run life cycle."""

    def __init__(self, plugins: PluginManager | None = None):
        self.plugins = plugins if plugins is not None else PluginManager()
        self._wrapped: dict[type, type] = {}

    # -- lookup --------------------------------------------------------------------------------
    def model_class(self, name: str) -> type[Model]:
        """The registered class of model ``name``, with :class:`~aigc_engine.Model`'s defaults for
        the optional parts of the contract when it does not subclass it."""
        models = self.plugins.models()
        if name not in models:
            if self.plugins.failure(name):  # its plugin did not load: say why instead
                raise InputError(f"model {name!r} is not available: {self.plugins.failure(name)}")
            known = ", ".join(sorted(models)) or "none installed"
            raise InputError(f"unknown model {name!r}; available: {known}{self.plugins.not_loaded_note()}")
        cls = models[name].cls
        if cls not in self._wrapped:
            self._wrapped[cls] = as_model_class(cls)
        return self._wrapped[cls]

    def load_dataset(self, spec: str | Any, options: dict[str, Any] | None = None) -> Dataset:
        """A registered dataset by name, else a path: a file whose name ends in a registered
        reader's suffix (``.npy``, ``.npz``, ``.csv``, a plugin's), or a folder (the ``"folder"``
        reader: images); the reader's keyword options are the dataset options (``data.open_file``).
        Data held in memory instead of a name: a pandas DataFrame (read as a ``.csv`` file's
        rows) or a Dataset (``data.open_in_memory``).

        Every dataset also takes ``holdout`` (a fraction; 0: none), ``holdout_seed`` and ``part``
        (``train`` or ``holdout``): with ``holdout`` set, only that part of the rows of
        :meth:`Dataset.holdout_split` (what ``aigc-engine compare`` trains and evaluates on)."""
        options = dict(options or {})
        split = coerce_options(HOLDOUT_OPTIONS, {k: options.pop(k) for k in HOLDOUT_OPTIONS if k in options},
                               str(spec) if isinstance(spec, (str, os.PathLike)) else "in memory", HOLDOUT_TYPES)
        if isinstance(spec, (str, os.PathLike)):
            data = self._open_dataset(str(spec), options)
        else:
            from .data.readers import open_in_memory

            data = open_in_memory(spec, options)
        if not split.get("holdout"):
            if split.get("part", "train") != "train":
                raise InputError("dataset.part=holdout needs dataset.holdout=F (the held-out fraction)")
            return data
        split = {**HOLDOUT_OPTIONS, **split}
        train, held = data.holdout_split(split["holdout"], split["holdout_seed"])
        part = train if split["part"] == "train" else held
        part.options = {**data.options, **split}  # recorded in config.json: sample/eval/resume reopen these rows
        return part

    def _open_dataset(self, spec: str, options: dict[str, Any]) -> Dataset:
        from .data import Dataset, open_file, reader_for
        from .data.readers import kinds_text

        datasets = self.plugins.datasets()
        if spec in datasets:
            entry = datasets[spec]
            kwargs = coerce_options(entry.options(), options, spec)
            dataset = entry.factory(**kwargs)
            if not isinstance(dataset, Dataset):
                raise InputError(f"dataset {spec!r} (plugin {entry.plugin}) did not return a Dataset")
            dataset.name = dataset.name or spec
            return dataset.validate()
        readers = self.plugins.readers()
        if reader_for(spec, readers) is not None or Path(spec).exists() or "/" in spec or "\\" in spec:
            return open_file(spec, options, readers, spec)
        reason = self.plugins.failure(spec)
        if reason:
            raise InputError(f"dataset {spec!r} is not available: {reason}")
        known = ", ".join(sorted(datasets))
        raise InputError(f"unknown dataset {spec!r}; use one of {known}, {kinds_text(readers)}"
                         f"{self.plugins.not_loaded_note()}")

    # -- run -----------------------------------------------------------------------------------
    def run_spec(self, model: str | None, dataset: str | None = None, config_file: str | None = None,
                 sets: dict[str, str] | None = None, out: str | None = None, device: str = "auto",
                 seed: int = 0, resume: str | None = None, progress: bool = True) -> RunSpec:
        """The spec of what ``aigc-engine run`` was given: on ``--resume`` the run's saved config
        and dataset, then the TOML file's values, then ``--set`` (``dataset.KEY`` entries are
        dataset options)."""
        saved: dict[str, Any] = {}
        if resume:
            saved = read_run_config(resume)
            if saved.get("privacy"):
                raise InputError(f"{resume} is a private run: it cannot be resumed (a second fit would spend its "
                                 "budget again)")
            if model and model != saved["model"]:
                raise InputError(f"{resume} is a run of {saved['model']!r}, not {model!r}")
            if not dataset:
                _reopenable(saved, Path(resume), "pass --dataset FILE with the rows it was fitted on to resume it")
            model, out, seed = saved["model"], resume, saved.get("seed", seed)
        spec = RunSpec(model, dict(saved.get("config", {})), saved.get("dataset", {}).get("name"),
                       dict(saved.get("dataset", {}).get("options", {})), seed, device,
                       Path(out) if out else None, bool(resume), progress)
        if config_file:
            toml = read_toml(config_file)
            section = toml.pop("dataset", {})
            if not isinstance(section, dict):
                raise InputError("the [dataset] entry of a config file must be a table")
            spec.dataset = section.pop("name", None) or spec.dataset
            spec.dataset_options.update(section)
            spec.privacy.update(toml.pop("privacy", {}) or {})
            spec.config.update(toml)
        from .privacy.budget import split_privacy_keys  # the privacy package imports torch

        model_sets, data_sets = split_dataset_keys(sets or {})
        model_sets, privacy_sets = split_privacy_keys(model_sets)
        spec.privacy.update(privacy_sets)
        spec.config.update(model_sets)
        spec.dataset_options.update(data_sets)
        spec.dataset = dataset or spec.dataset
        return spec

    def train(self, spec: RunSpec | str | None, *args: Any, **kwargs: Any) -> Path:
        """Fit a model and write its run directory; returns its path. ``spec``: a :class:`RunSpec`,
        or the arguments of :meth:`run_spec` (what the CLI's ``run`` takes).

        The pipeline: resolve the model, its config and the dataset, and validate them (all
        before any directory exists) -> claim the directory -> fit -> evaluate -> write the
        artifacts. A failure before the first checkpoint leaves no directory behind."""
        from .errors import Interrupted

        ready = self.prepare(spec if isinstance(spec, RunSpec) else self.run_spec(spec, *args, **kwargs))
        spec = ready.spec
        main = int(os.environ.get("RANK", "0")) == 0
        run_dir, created = spec.out, False
        if main and spec.resume:
            rundir.lock(spec.out)  # one process at a time in a run directory
        elif main:
            run_dir, created = rundir.claim(spec.out, spec.model, ready.data.name)
        try:
            run = self._fit(ready, run_dir)
        except Interrupted:
            raise  # the loop wrote its checkpoint: the directory is a resumable run
        except BaseException:
            if main and not spec.resume:
                rundir.release(run_dir, created)
            raise
        finally:
            rundir.unlock(run_dir if main else None)
        run.barrier()
        return run.dir

    def _fit(self, ready: Prepared, run_dir: Path) -> Run:
        """The run of ``ready`` in ``run_dir``: config, fit, the model's metrics, artifacts."""
        from .run import Run

        spec, model, data = ready.spec, ready.model, ready.data
        run = Run(run_dir, device=spec.device, seed=spec.seed, progress=spec.progress, resume=spec.resume)
        run.privacy = ready.privacy
        if run.is_main_process:  # on --resume, config.json changes only once its checkpoint is restored
            run.when_restored(lambda: self.write_config(ready, run))
            if not spec.resume:
                run.restored()
        start = time.perf_counter()
        model.fit(data, run)
        run.restored()  # a fit that resumes without the training loop
        fit_seconds = time.perf_counter() - start
        metrics = model.evaluate(data, run)
        if ready.plan is not None:  # the fit's own figures become its part of the run's
            metrics = {**{k: v for k, v in (metrics or {}).items() if not k.startswith("privacy_")},
                       **ready.plan.report({k: v for k, v in (metrics or {}).items() if k.startswith("privacy_")},
                                           len(data))}
        if run.is_main_process:
            self.write_artifacts(model, data, run, {"model": spec.model, "dataset": data.name,
                                                    "fit_seconds": round(fit_seconds, 3), **(metrics or {})})
            if ready.plan is not None:  # config.json: what was spent, next to what was asked
                from .store import io

                saved = read_run_config(run.dir)
                spent = {k: v for k, v in metrics.items() if k.startswith("privacy_")}
                io.write_json(run.dir / CONFIG_FILE, {**saved, "privacy": self._privacy_json(ready, spent)})
        return run

    def prepare(self, spec: RunSpec) -> Prepared:
        """``spec`` resolved (the model from its config, the dataset) and validated: bad values,
        data the model cannot take and an absent device all fail here, before any run directory."""
        from .fabric import resolve_device

        from .privacy.plan import plan_for
        from .tables.private import private_encoding

        cls = self.model_class(spec.model)
        config = build_config(cls.Config, spec.config, spec.model)
        plan = plan_for(spec.privacy, spec.model, cls.supports_privacy, self.private_models)
        name = spec.dataset if spec.dataset is not None else cls.default_dataset
        if name is None or isinstance(name, str) and not name:
            raise InputError(f"model {spec.model!r} has no default dataset: pass --dataset")
        with private_encoding(plan):  # a table's encoding spends its share of the budget here
            data = self.load_dataset(name, spec.dataset_options)
        model = cls(config)  # a model validates its config here
        if data.weights is not None and not model.takes_weights:
            raise InputError(f"model {spec.model!r} does not take row weights (dataset {data.name!r} has them); "
                             f"models that do: {', '.join(self.weighted_models()) or 'none'}")
        model.validate(data)
        budget = plan.fit_budget(len(data)) if plan is not None else None
        if budget is not None:
            model.validate_privacy(data, budget)
        resolve_device(spec.device)
        return Prepared(dataclasses.replace(spec, dataset=name), model, config, data, plan, budget)

    def private_models(self) -> list[str]:
        """The registered models that fit under a privacy budget (``Model.supports_privacy``)."""
        return sorted(name for name in self.plugins.models() if self.model_class(name).supports_privacy)

    def weighted_models(self) -> list[str]:
        """The registered models whose ``fit`` uses row weights (``Model.takes_weights``)."""
        return sorted(name for name in self.plugins.models() if self.model_class(name).takes_weights)

    def write_config(self, ready: Prepared, run: Run) -> None:
        """``config.json``: what ``sample``, ``eval`` and ``--resume`` rebuild the run from."""
        from .store import io

        spec, config, data = ready.spec, ready.config, ready.data
        dataset = {"name": _dataset_spec(spec.dataset, self.plugins), "options": data.options, "shape": list(data.shape[1:]),
                   **({"class_names": data.class_names} if data.class_names else {})}
        if not isinstance(spec.dataset, (str, os.PathLike)):  # no rows to reopen: eval and --resume ask for them
            dataset["in_memory"] = type(spec.dataset).__name__
        io.write_json(run.dir / CONFIG_FILE, {
            "model": spec.model, "config": dataclasses.asdict(config), "dataset": dataset, "seed": spec.seed,
            **({"privacy": self._privacy_json(ready)} if ready.plan is not None else {}),
            "device": str(run.device), "world_size": run.world_size, "versions": versions(),
            "created": _dt.datetime.now().isoformat(timespec="seconds")})
        print(f"aigc-engine: fitting {spec.model} on {data.name} {list(data.shape)} ({run.device}, "
              f"{run.world_size} process{'es' if run.world_size > 1 else ''})", file=sys.stderr)

    @staticmethod
    def _privacy_json(ready: Prepared, spent: dict[str, Any] | None = None) -> dict[str, Any]:
        """config.json's ``privacy``: the budget, the accountant, the encoding's spend, the fit's
        share and, once fitted, what the run spent (summary.json's figures)."""
        fit = ready.privacy
        return {**ready.plan.to_json(), "fit_budget": {"epsilon": fit.epsilon, "delta": fit.delta},
                **({"spent": spent} if spent is not None else {})}

    def write_artifacts(self, model: Model, data: Dataset, run: Run, summary: dict[str, Any]) -> None:
        """``model.safetensors``, ``summary.json`` (``summary``) and the pictures of a fitted run."""
        from .store import checkpoint, io

        self.draw(model, data, run.dir, run.history)  # first: it checks the samples are finite
        checkpoint.save(run.dir / MODEL_FILE, model.state_dict())
        if data.encoding is not None:  # a table: what `sample -o x.csv` decodes with
            rundir.save_encoding(run.dir, data.encoding.state_dict())
        io.write_json(run.dir / SUMMARY_FILE, summary)

    def draw(self, model: Model, data: Dataset, run_dir: Path, history: list[dict]) -> None:
        """``samples.png`` (a row per class for a conditional model of images), ``metrics.png``
        when metrics were logged, and the model's own ``figures``."""
        from . import plotting

        title = f"{model.name} on {data.name}"
        if data.encoding is not None:
            self._draw_table(model, data, run_dir / SAMPLES_PNG, title)
        else:
            self._draw_samples(model, data, run_dir / SAMPLES_PNG, title)
        plotting.metric_curves(history, run_dir / METRICS_PNG, title=title)
        for name, draw in model.figures(data).items():
            draw(run_dir / name)

    @staticmethod
    def _draw_samples(model: Model, data: Dataset, path: Path, title: str) -> None:
        import torch

        from . import plotting
        from .sampling import draw

        condition, labels = None, None
        if data.is_image and model.num_classes:
            condition = torch.arange(model.num_classes).repeat_interleave(plotting.PER_CLASS)
            labels = data.class_names or [str(i) for i in range(model.num_classes)]
            title += " (a row per class)"
        n = len(condition) if condition is not None else (64 if data.is_image else N_PLOT_SAMPLES)
        samples = draw(model, n, condition)
        plotting.draw_samples(samples, path, data=data, title=title, row_labels=labels, annotate=model.annotate_plot)

    @staticmethod
    def _draw_table(model: Model, data: Dataset, path: Path, title: str) -> None:
        """Each column of the table: the real rows' distribution (a random sample of them: a file
        sorted by date would show its first months only) and that of samples decoded to it."""
        import torch

        from . import plotting
        from .sampling import draw_rows

        rows = data
        if len(data) > N_PLOT_SAMPLES:  # its own generator: the samples drawn next are not moved
            pick = torch.randperm(len(data), generator=torch.Generator().manual_seed(0))[:N_PLOT_SAMPLES]
            rows = data.subset(pick.sort().values)
        real = data.encoding.decode(rows.x, rows.y)
        synthetic = draw_rows(model, N_PLOT_SAMPLES, data.encoding)
        plotting.table_columns(real, synthetic, path, data.encoding.schema, title=title)

    # -- using a finished run ------------------------------------------------------------------
    def load_model(self, run_dir: str | Path):
        """The fitted model of a run directory and its saved config."""
        from .store import checkpoint

        run_dir = Path(run_dir)
        saved = read_run_config(run_dir)
        if not (run_dir / MODEL_FILE).exists():
            raise InputError(f"{run_dir} has no {MODEL_FILE}: the run did not finish")
        cls = self.model_class(saved["model"])
        model = cls(build_config(cls.Config, saved.get("config", {}), saved["model"]))
        checkpoint.restore(model, checkpoint.load(run_dir / MODEL_FILE), run_dir / MODEL_FILE)
        return model, saved

    def sample(self, run_dir: str | Path, n: int, condition: Any = None, out: str | Path | None = None,
               seed: int = 0):
        """``n`` samples of a finished run: a DataFrame in the table's columns, header and dtypes
        for a run on a table, else a tensor ``[n, *row shape]``. ``condition``: a class of a
        conditional model (its id, the training labels' name, or a tensor of ids:
        :func:`aigc_engine.sampling.resolve_condition`); for a table, conditions on any column,
        all of which every returned row meets: a string (``"body_mass_g>=5000"``), a list of
        them, or a dict (``{"island": "Biscoe", "year": [2008, 2009], "sex": None}``; see
        docs/conditions.md and :func:`aigc_engine.sampling.draw_where`).
        ``out``: also write them there, as its suffix says (``.csv`` / ``.parquet`` for a table;
        ``.npy``, or ``.png`` for a picture, otherwise). Drawn from ``seed``."""
        import torch

        from .sampling import sample

        if n < 1:
            raise InputError(f"n must be >= 1, got {n}")
        encoding = load_encoding(run_dir)
        out = Path(out) if out is not None else None
        if out is not None:
            _check_suffix(out, encoding is not None)
        model, saved = self.load_model(run_dir)
        class_names = saved.get("dataset", {}).get("class_names")
        rules = saved_rules(saved, encoding)
        torch.manual_seed(seed)
        if encoding is not None:
            encoding.start_sampling(seed)
        samples = sample(model, n, condition, encoding, class_names, rules=rules)
        if out is not None:
            _write_samples(samples, out, model, encoding.schema.dialect if encoding is not None else None)
        return samples

    def samples_path(self, run_dir: str | Path) -> Path:
        """Where ``aigc-engine sample`` writes without ``-o``: ``samples.csv`` in the run
        directory of a table, else ``samples.npy``."""
        return Path(run_dir) / (rundir.SAMPLES_CSV if (Path(run_dir) / ENCODING_FILE).exists() else rundir.SAMPLES_NPY)

    def evaluate(self, run_dir: str | Path, dataset: str | Any | None = None, options: dict[str, Any] | None = None,
                 device: str = "cpu", n_samples: int | None = None, progress: bool = False,
                 train: str | Any | None = None, condition: Any = None) -> dict[str, Any]:
        """The metrics of a finished run, ``{"dataset": name, metric: value, ...}``, by the protocol
        ``compare`` uses (:func:`aigc_engine.evaluation.evaluate`). The rows: the run's own
        (``dataset`` None, ``options`` overriding its dataset options: ``{"part": "holdout"}``
        gives the rows a ``dataset.holdout`` run held out), or ``dataset`` with ``options``, read
        into the run's columns for a table. Rows other than its training rows are held out: the
        held-out metrics (``n_samples`` samples, 2000 by default) and the model's own; its
        training rows: the model's own metrics and a table's metrics. ``dataset`` and ``train``
        may be data held in memory (:meth:`load_dataset`).

        A run fitted on data held in memory (``in_memory`` in its config.json) has no rows to
        reopen: ``dataset`` is required, and its rows are scored as the training rows are, unless
        ``train`` gives the fitted rows again (read with the run's dataset options): then they are
        held out. ``condition`` (a table run's, as :meth:`sample` takes it) adds the conditional
        fidelity of rows drawn under it against the rows that meet it
        (:func:`aigc_engine.evaluation.conditional.conditional_fidelity`)."""
        from .evaluation import N_SAMPLES, evaluate, judge_for

        run_dir = Path(run_dir)
        model, saved = self.load_model(run_dir)
        fitted = saved.get("dataset", {})
        trained = (fitted.get("name"), fitted.get("options", {}))
        if dataset is None:
            _reopenable(saved, run_dir, "pass --dataset FILE (the real rows to score it against)")
        name, options = (dataset, dict(options or {})) if dataset is not None else \
            (trained[0], {**trained[1], **(options or {})})
        encoding = load_encoding(run_dir)
        rows = _in_run_columns(self.load_dataset(name, options), encoding)
        if "shape" in fitted and list(rows.shape[1:]) != list(fitted["shape"]):
            source = fitted.get("in_memory") or Path(str(fitted.get("name"))).name
            raise InputError(f"{run_dir} was fitted on rows of shape {fitted['shape']} ({source}); "
                             f"{rows.name} has rows of shape {list(rows.shape[1:])}")
        fitted_rows, judge = None, None
        # rows it never fitted are held out; a run fitted in memory knows its rows only when given them again
        held_out = train is not None if fitted.get("in_memory") else \
            (_dataset_spec(name, self.plugins), rows.options) != trained
        if held_out:
            fitted_rows = _in_run_columns(self.load_dataset(train if train is not None else trained[0], trained[1]),
                                          encoding)
            if rows.is_image:
                whole = {k: v for k, v in options.items() if k not in HOLDOUT_OPTIONS}
                judge = judge_for(self.load_dataset(name, whole), device)
        found = evaluate(model, rows, fitted_rows, seed=saved.get("seed", 0), device=device, judge=judge,
                         n_samples=n_samples or N_SAMPLES, progress=progress)
        if condition is not None:
            from .evaluation.conditional import conditional_fidelity

            if encoding is None:
                raise InputError("eval --condition is for a run on a table")
            found.metrics.update(conditional_fidelity(model, rows, condition, seed=saved.get("seed", 0),
                                                      rules=saved_rules(saved, encoding),
                                                      class_names=fitted.get("class_names"), train=fitted_rows))
        return {"dataset": rows.name, **found.metrics}


def load_encoding(run_dir: str | Path) -> TableEncoding | None:
    """The column encoding of a run on a table, or None for a run on points or images."""
    from .tables import TableEncoding

    state = rundir.load_encoding(Path(run_dir))
    return TableEncoding.from_state(state) if state is not None else None


def saved_rules(saved: dict, encoding: TableEncoding | None) -> list:
    """The rules of a table run (``dataset.constraints`` in its ``config.json``)."""
    from .rules import parse_rules

    spec = saved.get("dataset", {}).get("options", {}).get("constraints")
    return parse_rules(spec, encoding.schema) if encoding is not None and spec else []


def _reopenable(saved: dict[str, Any], run_dir: Path, hint: str) -> None:
    """A one-line InputError ending in ``hint`` when the run's rows were held in memory (nothing
    in config.json reopens them)."""
    kind = saved.get("dataset", {}).get("in_memory")
    if kind:
        raise InputError(f"{run_dir} was fitted on a {kind} held in memory: {hint}")


def _in_run_columns(data: Dataset, encoding: TableEncoding | None) -> Dataset:
    """The rows of ``data`` as a table run's model saw its training rows (``encoding``: the run's)."""
    if encoding is None:
        return data
    if data.encoding is None:
        raise InputError(f"this run was fitted on a table; {data.name} is not one (use a .csv or .parquet file)")
    return data.reencoded(encoding)


def _check_suffix(out: Path, table: bool) -> None:
    from .sampling import TABLE_SUFFIXES, TENSOR_SUFFIXES

    allowed = TABLE_SUFFIXES if table else TENSOR_SUFFIXES
    if out.suffix.lower() not in allowed:
        what = "a run on a table" if table else "this run"
        raise InputError(f"-o for {what} must end in {' or '.join(allowed)}, got {out.name!r}")


def _write_samples(samples: Any, out: Path, model: Model, dialect=None) -> None:
    """``samples`` as ``out`` (atomically): a DataFrame as CSV (the header, no index, in the
    table file's ``dialect``: :func:`aigc_engine.tables.dialect.write_csv`) or Parquet, a tensor
    as ``.npy`` or a picture."""
    from . import plotting
    from .store import io

    suffix = out.suffix.lower()
    if suffix == ".parquet":
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            raise InputError("writing Parquet needs pyarrow (pip install pyarrow)") from None
        io.atomic_write(out, lambda tmp: samples.to_parquet(tmp, index=False))
    elif suffix == ".csv":
        from .tables.dialect import write_csv

        write_csv(samples, out, dialect)
    elif suffix == ".npy":
        import numpy as np

        def write(tmp):
            with open(tmp, "wb") as fh:
                np.save(fh, samples.numpy())

        io.atomic_write(out, write)
    else:
        plotting.draw_samples(samples, out, title=f"{model.name} samples", annotate=model.annotate_plot)


def _dataset_spec(spec: str | Any, plugins: PluginManager) -> str | None:
    """Registered names as they are; file paths made absolute so the run can be reopened anywhere;
    None for data held in memory."""
    if not isinstance(spec, (str, os.PathLike)):
        return None
    spec = str(spec)
    path = Path(spec)
    return str(path.resolve()) if spec not in plugins.datasets() and path.exists() else spec


def open_dataset(spec: str, **options: Any) -> Dataset:
    """A dataset by registered name (``"ring8"``) or file path, with options, for plugins and
    scripts: ``open_dataset("blobs", n=500, dim=3)``. Inside an ``aigc-engine`` command it uses
    that command's engine (its plugins are loaded once)."""
    import click

    ctx = click.get_current_context(silent=True)
    engine = ctx.find_object(Engine) if ctx is not None else None
    return (engine or Engine()).load_dataset(spec, options)
