"""A DataFrame in, a DataFrame out: :class:`Synthesizer`, the Python API of the engine, after
SDV's single-table synthesizers (``fit``, ``sample``, ``save``, ``load``)::

    syn = aigc_engine.Synthesizer("gmm", n_components=8)
    syn.fit(df, label="species")
    rows = syn.sample(1000)
    syn.save("runs/penguins")

It holds no fitting, sampling or scoring of its own: ``fit`` is :meth:`Engine.train` on a
:class:`RunSpec` whose dataset is the frame itself (config.json records that the rows were held
in memory), ``sample`` is :meth:`Engine.sample` and ``evaluate`` :meth:`Engine.evaluate`. The run
directory lives under the system's temporary directory until ``save`` moves it into place (or
where ``fit(out=...)`` puts it), so a saved synthesizer is an ordinary run directory that
``aigc-engine sample`` and ``eval`` read, and ``load`` reads any finished run.

What it adds is ``dataframe.json`` in the run: the columns and dtypes of the frame it fitted, so
that sampled rows come back in exactly those (the engine decodes a column as a file means it: a
float64 column of whole numbers with missing cells as Int64, a category column as strings).
"""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import weakref
from pathlib import Path
from typing import Any

from .config import build_config
from .engine import HOLDOUT_OPTIONS, Engine, RunSpec
from .errors import InputError
from .store import io, rundir
from .store.rundir import CONFIG_FILE, MODEL_FILE

__all__ = ["Synthesizer", "FRAME_FILE"]

FRAME_FILE = "dataframe.json"  # the fitted frame's columns and dtypes (a run fitted on a DataFrame)


class Synthesizer:
    """One model fitted on one table (a pandas DataFrame or a ``.csv`` / ``.parquet`` path), or on
    points or images (an array or tensor, labels ``y``), through the engine.

    ``model``: any installed model (``aigc-engine models``); ``config``: its Config fields as
    keywords (``n_components=8``), checked here; ``seed``, ``device`` and ``progress`` (a
    progress bar while fitting, as the CLI's ``run``) as for ``aigc-engine run``; ``privacy``: a
    budget for the fit and the table's encoding together (``{"epsilon": 1}``, and ``delta``,
    ``accountant``, ``encoding_share``: the ``privacy.KEY`` options of docs/privacy.md). Fitted
    attributes: ``run_dir_`` (the run directory) and ``dtypes_`` (``{column: dtype}`` of the
    fitted DataFrame, or None)."""

    def __init__(self, model: str, *, seed: int = 0, device: str = "auto", progress: bool = True,
                 engine: Engine | None = None, privacy: dict[str, Any] | None = None, **config: Any):
        from .privacy.plan import plan_for

        self.model, self.config, self.privacy = model, dict(config), dict(privacy or {})
        self.seed, self.device, self.progress = int(seed), device, bool(progress)
        self.engine = engine if engine is not None else Engine()
        build_config(self.engine.model_class(model).Config, self.config, model)  # fails now, not after a fit
        plan_for(self.privacy, model, self.engine.model_class(model).supports_privacy, self.engine.private_models)
        self.run_dir_: Path | None = None
        self.dtypes_: dict[str, Any] | None = None
        self._fitted_on: tuple[Any, dict[str, Any]] | None = None  # this session's rows in memory, for evaluate
        self._temporary: weakref.finalize | None = None  # removes the temporary run of an unsaved fit
        self._draws = 0

    def __repr__(self) -> str:
        state = f"run_dir_={str(self.run_dir_)!r}" if self.run_dir_ is not None else "not fitted"
        return f"Synthesizer({self.model!r}, {state})"

    # -- fit -----------------------------------------------------------------------------------
    def fit(self, data: Any, y: Any = None, *, label: str | None = None, out: str | Path | None = None,
            **options: Any) -> "Synthesizer":
        """Fit the model on ``data``: a DataFrame, a ``.csv`` / ``.parquet`` (or any readable)
        path, or an array or tensor of points ``N x D`` or images (with labels ``y``). ``label``:
        the table's label column (classes for conditional models); ``options``: the dataset
        options (``ignore=[...]``, ``categorical=[...]``, ``kinds={"a": "integer"}``,
        ``continuous="quantile"``, ``holdout=0.2``...; lists and dicts as ``--set`` writes them).
        The run goes to ``out``, else to a temporary directory that :meth:`save` moves. Returns
        the synthesizer."""
        source, options = self._source(data, y, label, options)
        temp = Path(tempfile.mkdtemp(prefix="aigc-engine-")) if out is None else None
        run_dir = Path(out) if out is not None else temp / "run"
        try:
            self.engine.train(RunSpec(self.model, dict(self.config), source, options, self.seed, self.device,
                                      run_dir, progress=self.progress, privacy=dict(self.privacy)))
            dtypes = frame_dtypes(data) if hasattr(data, "columns") else None
            if dtypes is not None:
                io.write_json(run_dir / FRAME_FILE, dtypes)
        except BaseException:
            if temp is not None:
                shutil.rmtree(temp, ignore_errors=True)
            raise
        self._use_run(run_dir, temp)
        self.dtypes_ = read_dtypes(dtypes) if dtypes is not None else None
        self._draws = 0
        self._fitted_on = (source, options) if not isinstance(source, str) else None
        return self

    @staticmethod
    def _source(data: Any, y: Any, label: str | None, options: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        """What the engine opens for ``data`` (a path as a string, a DataFrame or a Dataset as it
        is, arrays as a Dataset) and the dataset options as ``--set`` would give them."""
        options = {key: _option_text(value) for key, value in options.items()}
        if isinstance(data, (str, os.PathLike)) or hasattr(data, "columns"):
            if y is not None:
                raise InputError("y= gives the labels of arrays; name a table's label column with label=")
            if label is not None:
                options["label_column"] = str(label)
            return (str(data) if isinstance(data, (str, os.PathLike)) else data), options
        if label is not None:
            raise InputError("label= names a table's column; give the labels of arrays as y=")
        from .data import Dataset
        from .data.arrays import from_arrays

        if isinstance(data, Dataset) and y is None:
            return data, options
        if not hasattr(data, "shape") and not isinstance(data, (list, tuple)):
            raise InputError(f"cannot fit a {type(data).__name__}: give a DataFrame, a file path, or an array or "
                             "tensor of points or images")
        return from_arrays(_numpy(data), None if y is None else _numpy(y), name="array"), options

    # -- use -----------------------------------------------------------------------------------
    def sample(self, n: int, conditions: Any = None, *, seed: int | None = None):
        """``n`` rows: a DataFrame in the fitted frame's columns, order and dtypes (a run on a
        file: as the engine decodes them), or a tensor ``[n, *row shape]`` for points and images
        (images in [-1, 1]). ``conditions``: as :meth:`Engine.sample` takes them (a dict such as
        ``{"island": "Biscoe"}``, a list of strings such as ``["body_mass_g>=5000"]``, a class id
        or name, a tensor of ids); every row returned meets them all. ``seed`` draws the same rows every time;
        without it, call ``k`` of this synthesizer draws from ``seed + k`` (the synthesizer's
        seed; a loaded one starts again at 0), so successive calls give new rows."""
        run_dir = self._fitted()
        if seed is None:
            seed, self._draws = self.seed + self._draws, self._draws + 1
        rows = self.engine.sample(run_dir, n, conditions, seed=seed)
        return as_dtypes(rows, self.dtypes_) if self.dtypes_ is not None else rows

    def evaluate(self, data: Any = None, *, device: str = "cpu", n_samples: int | None = None,
                 **options: Any) -> dict[str, Any]:
        """The metrics of the fitted model (:meth:`Engine.evaluate`), a dict: on ``data`` (real
        rows it did not fit, in the form ``fit`` takes, read with the fit's options and
        ``options``) the held-out metrics: a table's column shapes, pair trends, detection, ML
        efficacy and DCR ratio. Without ``data``, on its training rows (``part="holdout"``: the
        rows a ``holdout=F`` fit held out). A loaded synthesizer fitted on a DataFrame no longer
        has its training rows: ``data`` is then scored as they would be (no ML efficacy or DCR),
        as ``aigc-engine eval RUN --dataset F`` does."""
        run_dir = self._fitted()
        held = self._fitted_on
        if data is None and held is None:
            if rundir.read_config(run_dir).get("dataset", {}).get("in_memory"):
                raise InputError(f"{run_dir} was fitted on rows held in memory, which a loaded synthesizer no "
                                 "longer has: pass real rows, evaluate(data)")
            return self.engine.evaluate(run_dir, None, options, device, n_samples)
        if data is None:
            rows, read = held[0], {**held[1], **options}
        else:
            kept = {k: v for k, v in (held[1] if held else {}).items() if k not in HOLDOUT_OPTIONS}
            rows, read = self._source(data, None, None, {**kept, **options})
        train = held[0] if held is not None and (data is not None or read != held[1]) else None
        return self.engine.evaluate(run_dir, rows, read, device, n_samples, train=train)

    # -- save / load ---------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Put the run directory at ``path`` (a new or empty directory; an existing run there is
        refused), all at once: moved when it is this synthesizer's temporary run, else copied.
        Returns ``path``; the synthesizer now uses the run there."""
        run_dir, target = self._fitted(), Path(path)
        if (target / CONFIG_FILE).exists():
            raise InputError(f"{target} already holds a run: save to another directory")
        if target.exists() and not (target.is_dir() and not any(target.iterdir())):
            raise InputError(f"{target} exists and is not an empty directory: save to another one")
        target.parent.mkdir(parents=True, exist_ok=True)
        place_run(run_dir, target, move=self._temporary is not None)
        self._use_run(target, None)
        return target

    @classmethod
    def load(cls, path: str | Path, *, device: str = "auto", progress: bool = True,
             engine: Engine | None = None) -> "Synthesizer":
        """The synthesizer of a finished run directory (one :meth:`save` wrote, or any run of
        ``aigc-engine run``), with its model, config and seed."""
        run_dir = Path(path)
        saved = rundir.read_config(run_dir)
        if not (run_dir / MODEL_FILE).exists():
            raise InputError(f"{run_dir} has no {MODEL_FILE}: the run did not finish")
        syn = cls(saved["model"], seed=saved.get("seed", 0), device=device, progress=progress, engine=engine,
                  **saved.get("config", {}))
        syn._use_run(run_dir, None)
        if (run_dir / FRAME_FILE).exists():
            syn.dtypes_ = read_dtypes(io.read_json(run_dir / FRAME_FILE))
        return syn

    # -- state ---------------------------------------------------------------------------------
    def _fitted(self) -> Path:
        if self.run_dir_ is None:
            raise InputError("this Synthesizer is not fitted: call fit(data) first, or Synthesizer.load(run_dir)")
        return self.run_dir_

    def _use_run(self, run_dir: Path, temp: Path | None) -> None:
        """Use ``run_dir`` from now on (``temp``: the temporary directory that holds it, removed
        when it is saved elsewhere, refitted or garbage-collected); the previous one's removed."""
        if self._temporary is not None:
            self._temporary()
        self._temporary = weakref.finalize(self, shutil.rmtree, temp, True) if temp is not None else None
        self.run_dir_ = run_dir


def place_run(source: Path, target: Path, move: bool) -> None:
    """``source`` (a run directory) at ``target`` (absent or empty), never half-written: renamed
    when ``move`` and both are on one file system, else copied beside ``target`` and renamed."""
    if move:
        with contextlib.suppress(OSError):
            os.rename(source, target)
            return
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        shutil.copytree(source, staging, dirs_exist_ok=True)
        os.rename(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def frame_dtypes(frame) -> list[dict[str, Any]]:
    """The columns of ``frame`` in order with their dtypes, as JSON (a category's categories and
    order with it)."""
    import pandas as pd

    out = []
    for name, dtype in frame.dtypes.items():
        entry: dict[str, Any] = {"column": str(name), "dtype": str(dtype)}
        if isinstance(dtype, pd.CategoricalDtype):
            entry.update(categories=dtype.categories.tolist(), ordered=bool(dtype.ordered))
        out.append(entry)
    return out


def read_dtypes(entries: list[dict[str, Any]]) -> dict[str, Any]:
    """``{column: pandas dtype}`` of :func:`frame_dtypes`' JSON."""
    import pandas as pd

    return {e["column"]: pd.CategoricalDtype(e["categories"], e["ordered"]) if "categories" in e
            else pd.api.types.pandas_dtype(e["dtype"]) for e in entries}


def as_dtypes(rows, dtypes: dict[str, Any]):
    """Decoded ``rows`` in the columns, order and ``dtypes`` of the fitted frame: a column the
    engine left out (ignored) comes back empty, and one that cannot take its dtype (int64 cells
    left empty) keeps the engine's."""
    out = rows.reindex(columns=list(dtypes))
    for name, dtype in dtypes.items():
        if out[name].dtype != dtype:
            with contextlib.suppress(TypeError, ValueError):
                out[name] = out[name].astype(dtype)
    return out


def _option_text(value: Any) -> Any:
    """A list option (``ignore=["a", "b"]``) or a dict (``kinds={"a": "integer"}``) as ``--set``
    writes it (``a,b``; ``a:integer``): what config.json records."""
    if isinstance(value, dict):
        return ",".join(f"{k}:{v}" for k, v in value.items())
    if isinstance(value, (list, tuple, set)):
        return ",".join(map(str, value))
    return value


def _numpy(values: Any):
    """An array or tensor (on any device, with or without gradients) as a NumPy array."""
    if hasattr(values, "detach"):
        values = values.detach().cpu()
    import numpy as np

    return np.asarray(values)
