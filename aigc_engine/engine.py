"""The engine: resolves models and datasets through the plugin manager and drives a run from
config to artifacts. The CLI is a thin layer over this.

torch, matplotlib and the data modules are imported where a run or a dataset needs them, not at
import: ``aigc-engine --help`` builds an Engine to list the plugins' commands.
"""
from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import itertools
import os
import platform
import re
import shutil
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from .config import build_config, coerce_options, read_toml, split_dataset_keys
from .errors import InputError
from .plugins import PluginManager

if TYPE_CHECKING:  # pragma: no cover
    from .data import Dataset

CONFIG_FILE = "config.json"
MODEL_FILE = "model.safetensors"
SUMMARY_FILE = "summary.json"
SAMPLES_PNG = "samples.png"
METRICS_PNG = "metrics.png"
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


class Engine:
    """Models and datasets from the plugins, and the run life cycle."""

    def __init__(self, plugins: PluginManager | None = None):
        self.plugins = plugins if plugins is not None else PluginManager()

    # -- lookup --------------------------------------------------------------------------------
    def model_class(self, name: str) -> type:
        models = self.plugins.models()
        if name not in models:
            if self.plugins.failure(name):  # its plugin did not load: say why instead
                raise InputError(f"model {name!r} is not available: {self.plugins.failure(name)}")
            known = ", ".join(sorted(models)) or "none installed"
            raise InputError(f"unknown model {name!r}; available: {known}{self.plugins.not_loaded_note()}")
        return models[name].cls

    def load_dataset(self, spec: str, options: dict[str, Any] | None = None) -> Dataset:
        """A registered dataset by name, else a path: a file whose name ends in a registered
        reader's suffix (``.npy``, ``.npz``, ``.csv``, a plugin's), or a folder (the ``"folder"``
        reader: images); the reader's keyword options are the dataset options (``data.open_file``).

        Every dataset also takes ``holdout`` (a fraction; 0: none), ``holdout_seed`` and ``part``
        (``train`` or ``holdout``): with ``holdout`` set, only that part of the rows of
        :meth:`Dataset.holdout_split` (what ``aigc-engine compare`` trains and evaluates on)."""
        options = dict(options or {})
        split = coerce_options(HOLDOUT_OPTIONS, {k: options.pop(k) for k in HOLDOUT_OPTIONS if k in options}, spec,
                               HOLDOUT_TYPES)
        data = self._open_dataset(spec, options)
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
    def train(self, model_name: str | None, dataset: str | None = None, config_file: str | None = None,
              sets: dict[str, str] | None = None, out: str | None = None, device: str = "auto",
              seed: int = 0, resume: str | None = None, progress: bool = True) -> Path:
        """Fit a model and write the run directory; returns its path."""
        from . import io
        from .errors import Interrupted
        from .run import Run, resolve_device

        saved: dict[str, Any] = {}
        if resume:
            saved = read_run_config(Path(resume))
            if model_name and model_name != saved["model"]:
                raise InputError(f"{resume} is a run of {saved['model']!r}, not {model_name!r}")
            model_name, out, seed = saved["model"], resume, saved.get("seed", seed)
        cls = self.model_class(model_name)
        values: dict[str, Any] = dict(saved.get("config", {}))
        data_section: dict[str, Any] = dict(saved.get("dataset", {}).get("options", {}))
        if config_file:
            toml = read_toml(config_file)
            section = toml.pop("dataset", {})
            if not isinstance(section, dict):
                raise InputError("the [dataset] entry of a config file must be a table")
            name = section.pop("name", None)
            dataset = dataset or name
            data_section.update(section)
            values.update(toml)
        model_sets, data_sets = split_dataset_keys(sets or {})
        values.update(model_sets)
        data_section.update(data_sets)
        config = build_config(cls.Config, values, model_name)
        dataset = dataset or saved.get("dataset", {}).get("name") or getattr(cls, "default_dataset", None)
        if not dataset:
            raise InputError(f"model {model_name!r} has no default dataset: pass --dataset")
        data = self.load_dataset(dataset, data_section)

        model = cls(config)  # a model validates its config here: bad values fail before any directory
        if hasattr(model, "validate"):
            model.validate(data)
        resolve_device(device)  # an absent CUDA is an error before any directory
        main = int(os.environ.get("RANK", "0")) == 0
        created = False
        if resume:
            run_dir = Path(resume)
        elif main:
            run_dir, created = claim_run_dir(Path(out) if out else None, model_name, data.name)
        else:
            run_dir = Path(out) if out else None  # rank 0's name is broadcast by Run
        try:
            run = Run(run_dir, device=device, seed=seed, progress=progress, resume=bool(resume))
            if run.is_main_process:
                io.write_json(run.dir / CONFIG_FILE, {
                    "model": model_name, "config": dataclasses.asdict(config),
                    "dataset": {"name": _dataset_spec(dataset), "options": data.options, "shape": list(data.shape[1:]),
                                **({"class_names": data.class_names} if data.class_names else {})}, "seed": seed,
                    "device": str(run.device), "world_size": run.world_size, "versions": versions(),
                    "created": _dt.datetime.now().isoformat(timespec="seconds")})
                print(f"aigc-engine: fitting {model_name} on {data.name} {list(data.shape)} "
                      f"({run.device}, {run.world_size} process{'es' if run.world_size > 1 else ''})",
                      file=sys.stderr)
            start = time.perf_counter()
            model.fit(data, run)
            fit_seconds = time.perf_counter() - start
            metrics = model.evaluate(data, run) if hasattr(model, "evaluate") else {}
            if run.is_main_process:
                io.save_state(run.dir / MODEL_FILE, model.state_dict())
                summary = {"model": model_name, "dataset": data.name, "fit_seconds": round(fit_seconds, 3),
                           **(metrics or {})}
                io.write_json(run.dir / SUMMARY_FILE, summary)
                self.draw(model, data, run.dir, run.history)
        except Interrupted:
            raise  # the loop wrote its checkpoint: the directory is a resumable run
        except BaseException:
            if main and not resume:
                release_run_dir(run_dir, created)
            raise
        run.barrier()
        return run.dir

    def draw(self, model, data: Dataset, run_dir: Path, history: list[dict]) -> None:
        """``samples.png`` and, when metrics were logged, ``metrics.png``."""
        import torch

        from . import plotting

        title = f"{model.name} on {data.name}"
        num_classes = getattr(model, "num_classes", 0) or 0
        with torch.no_grad():
            if data.is_image:
                if num_classes:
                    per = 8
                    cond = torch.arange(num_classes).repeat_interleave(per)
                    plotting.image_grid(model.sample(len(cond), condition=cond), run_dir / SAMPLES_PNG,
                                        ncols=per, title=title + " (a row per class)",
                                        row_labels=data.class_names or [str(i) for i in range(num_classes)])
                else:
                    plotting.image_grid(model.sample(64), run_dir / SAMPLES_PNG, title=title)
            else:
                samples = model.sample(N_PLOT_SAMPLES)
                plotting.scatter(samples, data.subsample(plotting.MAX_POINTS), run_dir / SAMPLES_PNG,
                                 title=title, annotate=getattr(model, "annotate_plot", None),
                                 data_total=len(data))
        plotting.metric_curves(history, run_dir / METRICS_PNG, title=title)
        figures = getattr(model, "figures", None)
        for name, draw in (figures(data) if figures is not None else {}).items():
            draw(run_dir / name)

    # -- using a finished run ------------------------------------------------------------------
    def load_model(self, run_dir: str | Path):
        """The fitted model of a run directory and its saved config."""
        from . import io

        run_dir = Path(run_dir)
        saved = read_run_config(run_dir)
        if not (run_dir / MODEL_FILE).exists():
            raise InputError(f"{run_dir} has no {MODEL_FILE}: the run did not finish")
        cls = self.model_class(saved["model"])
        model = cls(build_config(cls.Config, saved.get("config", {}), saved["model"]))
        model.load_state_dict(io.load_state(run_dir / MODEL_FILE))
        return model, saved


def read_run_config(run_dir: Path) -> dict[str, Any]:
    from . import io

    if not (run_dir / CONFIG_FILE).is_file():
        raise InputError(f"{run_dir} is not a run directory (no {CONFIG_FILE})")
    try:
        saved = io.read_json(run_dir / CONFIG_FILE)
    except (ValueError, OSError) as err:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise InputError(f"{run_dir / CONFIG_FILE} is not a readable run config ({type(err).__name__}: "
                         f"{str(err).splitlines()[0] if str(err) else 'unreadable'})") from None
    if not isinstance(saved, dict) or "model" not in saved:
        raise InputError(f"{run_dir / CONFIG_FILE} is not an aigc-engine run config")
    return saved


def _dataset_spec(spec: str) -> str:
    """Registered names as they are; file paths made absolute so the run can be reopened anywhere."""
    from .data import file_kind

    path = Path(spec)
    return str(path.resolve()) if file_kind(spec) is not None and path.exists() else spec


RUN_FILES = (CONFIG_FILE, "metrics.jsonl", "checkpoint.safetensors", MODEL_FILE, SUMMARY_FILE, SAMPLES_PNG,
             METRICS_PNG)


def claim_run_dir(out: Path | None, model: str, dataset: str, marker: str = CONFIG_FILE) -> tuple[Path, bool]:
    """Make the run directory this run alone owns: ``out``, or ``runs/<model>-<data>-<time>``
    (``-2``, ``-3``, ... when taken). The claim is the exclusive creation of ``marker``
    (``config.json``; ``compare.json`` for a compare directory), so of several runs started at
    once on one ``--out`` exactly one wins and the others get an InputError. Returns the path and
    whether the directory was created by this call."""
    if out is None:
        stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{model}-{Path(dataset).stem}")
        base = Path("runs") / f"{safe}-{stamp}"
        base.parent.mkdir(parents=True, exist_ok=True)
        for i in itertools.count(1):
            path = base if i == 1 else Path(f"{base}-{i}")
            try:
                path.mkdir()
            except FileExistsError:
                continue
            _claim(path / marker, path)
            return path, True
    created = not out.exists()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise InputError(f"--out {out} exists and is not a directory") from None
    _claim(out / marker, out)
    return out, created


def _claim(config: Path, run_dir: Path) -> None:
    try:
        os.close(os.open(config, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
    except FileExistsError:
        raise InputError(f"{run_dir} already holds a run; choose another --out or --resume it") from None


def release_run_dir(run_dir: Path, created: bool) -> None:
    """After a run failed before it wrote anything worth keeping (no checkpoint): remove what it
    wrote, and the directory itself when it made it, so that no half-written run is left behind."""
    if run_dir is None or (run_dir / "checkpoint.safetensors").exists():
        return
    if created:
        shutil.rmtree(run_dir, ignore_errors=True)
        if run_dir.parent.name == "runs":  # the default parent, when this run made it and it is empty
            with contextlib.suppress(OSError):
                run_dir.parent.rmdir()
        return
    for name in RUN_FILES:
        (run_dir / name).unlink(missing_ok=True)
    for tmp in run_dir.glob(".*.tmp"):
        tmp.unlink(missing_ok=True)


def open_dataset(spec: str, **options: Any) -> Dataset:
    """A dataset by registered name (``"ring8"``) or file path, with options, for plugins and
    scripts: ``open_dataset("blobs", n=500, dim=3)``. Inside an ``aigc-engine`` command it uses
    that command's engine (its plugins are loaded once)."""
    import click

    ctx = click.get_current_context(silent=True)
    engine = ctx.find_object(Engine) if ctx is not None else None
    return (engine or Engine()).load_dataset(spec, options)
