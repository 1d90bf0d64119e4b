"""``aigc-engine compare``: several models on one dataset, one held-out split, one table.

Each model is fitted by :meth:`Engine.train` (an ordinary run directory, kept under the compare
directory, so ``sample``, ``eval`` and ``--resume`` work on it) on the training rows of
:meth:`Dataset.holdout_split` (``--set dataset.holdout=F``), once per seed, then reloaded from
its directory and measured on the held-out rows by the protocol of ``eval``
(:func:`aigc_engine.evaluation.evaluate`: the same run on the same rows gets the same numbers from
either; every metric it returns, the model's own included, is a column). A model that cannot take
the data, or fails, keeps a row with its one-line reason; the others go on.

    result = compare(["gmm", "kde"], "ring8", sets={"dataset.n": 2000}, seeds=[0, 1])
    print(result.to_markdown())
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import math
import re
import statistics
import sys
from pathlib import Path
from typing import Any, Literal

import torch

from .config import build_config, split_dataset_keys
from .engine import Engine, RunSpec, load_encoding
from .errors import InputError, Interrupted
from .evaluation import N_SAMPLES, evaluate, judge_for
from .store import io, rundir

COMPARE_JSON = "compare.json"
COMPARE_MD = "compare.md"
COMPARE_PNG = "compare.png"


@dataclasses.dataclass(frozen=True)
class Column:
    """A metric of the table: ``better`` is ``"higher"``, ``"lower"``, ``"one"`` (closest to 1
    is best: a ratio to real data), ``"half"`` (closest to 0.5 is best: an attack's AUC) or ``""``
    (not ranked: a model's own metric)."""
    key: str
    title: str
    better: Literal["higher", "lower", "one", "half", ""]
    doc: str = ""


COLUMNS = (
    Column("log_likelihood_per_dim", "held-out LL/dim", "higher",
           "mean log-likelihood of the held-out rows per dimension, nats (see 'LL' for exact or bound)"),
    Column("modes", "modes", "higher", "mixture modes with at least one high-quality sample"),
    Column("high_quality", "high-quality", "higher", "fraction of samples within 3 std of a mode"),
    Column("reverse_kl", "reverse KL", "lower", "KL(sample mode histogram || uniform), nats"),
    Column("conditional_accuracy", "cond. accuracy", "higher",
           "judge's accuracy on samples drawn per class (conditional models)"),
    Column("judge_fd", "FD", "lower", "Frechet distance in the judge's features, held-out images vs samples"),
    Column("judge_kid", "KID", "lower", "kernel inception distance in the judge's features"),
    Column("judge_precision", "precision", "higher", "k-NN precision in the judge's features"),
    Column("judge_recall", "recall", "higher", "k-NN recall in the judge's features"),
    Column("judge_density", "density", "one", "k-NN density in the judge's features (1 for real data)"),
    Column("judge_coverage", "coverage", "higher", "k-NN coverage in the judge's features"),
    Column("column_shapes", "column shapes", "higher",
           "tables: 1 - KS (numeric) or 1 - total variation (categories) per column, averaged (SDMetrics)"),
    Column("pair_trends", "pair trends", "higher",
           "tables: correlation and contingency similarity of column pairs, averaged (SDMetrics)"),
    Column("ml_efficacy", "ML efficacy", "higher",
           "tables: accuracy on held-out real rows of a random forest trained on samples (label column)"),
    Column("detection", "detection", "higher",
           "tables: 1 - (2 max(AUC, 0.5) - 1) of a classifier telling samples from real rows (1: indistinguishable)"),
    Column("dcr_ratio", "DCR ratio", "one",
           "median distance of samples to the closest training row / the same for held-out rows; "
           "well below 1: the model copies training rows"),
    Column("exact_copies", "exact copies", "lower", "share of samples identical to a training row"),
    Column("mia_distance_auc", "MIA AUC", "half",
           "AUC of a membership attack by distance to the closest sample (training rows vs as many held-out rows)"),
    Column("mia_domias_auc", "DOMIAS AUC", "half",
           "AUC of the DOMIAS attack (synthetic over real density, KDEs); 0.5: members not told apart"),
    Column("fit_seconds", "fit s", "lower", "wall-clock seconds of model.fit"),
    Column("samples_per_second", "samples/s", "higher", "sampling speed of the saved model, on the CPU"),
)


@dataclasses.dataclass
class CompareResult:
    """The table of a comparison: ``rows`` (one dict per model: ``model``, ``status`` ok or
    failed, ``reason``, ``likelihood`` exact / bound / None, ``metrics`` ``{key: {"mean", "std",
    "values"}}`` and ``runs``, one per seed), ``columns`` the metrics any row has."""
    dataset: str
    seeds: list[int]
    holdout: float
    train_rows: int
    holdout_rows: int
    rows: list[dict[str, Any]]
    out: Path | None = None
    skipped: dict[str, str] = dataclasses.field(default_factory=dict)
    held_out: str = ""  # how the rows were held out ("0.2 at random", "its standard test split")

    @property
    def columns(self) -> list[Column]:
        """The metrics any row has: those of ``COLUMNS`` in its order, then the others (a
        model's own metrics) in the order the rows name them, unranked."""
        known = {c.key for c in COLUMNS}
        others = dict.fromkeys(k for row in self.rows for k in row["metrics"] if k not in known)
        return ([c for c in COLUMNS if any(c.key in row["metrics"] for row in self.rows)]
                + [Column(k, k, "") for k in others])

    def row(self, model: str) -> dict[str, Any]:
        for row in self.rows:
            if row["model"] == model:
                return row
        raise KeyError(model)

    def table(self, timings: bool = True) -> list[dict[str, Any]]:
        """Model -> metric means, with the status and reason (``timings=False`` drops the
        machine-dependent fit seconds and samples per second)."""
        drop = () if timings else ("fit_seconds", "samples_per_second")
        return [{"model": r["model"], "status": r["status"], "reason": r["reason"], "likelihood": r["likelihood"],
                 **{k: v["mean"] for k, v in r["metrics"].items() if k not in drop}} for r in self.rows]

    def to_json(self) -> dict[str, Any]:
        return {"dataset": self.dataset, "seeds": self.seeds, "holdout": self.holdout, "held_out": self.held_out,
                "train_rows": self.train_rows, "holdout_rows": self.holdout_rows,
                "columns": [dataclasses.asdict(c) for c in self.columns], "rows": self.rows,
                "skipped": self.skipped}

    def to_markdown(self) -> str:
        """The table: ``mean ± std`` over seeds, the best value of each column in bold."""
        columns = self.columns
        best = {c.key: _best(c, [r["metrics"].get(c.key, {}).get("mean") for r in self.rows]) for c in columns}
        head = ["model", "LL", *[f"{c.title} {_arrow(c)}".rstrip() for c in columns], "note"]
        how = f" ({self.held_out})" if self.held_out else ""
        lines = [f"**{self.dataset}**: {self.train_rows} training rows, {self.holdout_rows} held out{how}; "
                 f"seeds {', '.join(map(str, self.seeds))} (mean ± std over seeds)", "",
                 "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for row in self.rows:
            cells = [row["model"], row["likelihood"] or "–"]
            for c in columns:
                m = row["metrics"].get(c.key)
                if m is None or m["mean"] is None:
                    cells.append("–")
                    continue
                text = _fmt(m["mean"]) + (f" ± {_fmt(m['std'], 2)}" if m.get("std") is not None else "")
                cells.append(f"**{text}**" if m["mean"] == best[c.key] else text)
            cells.append(_escape(row["reason"] or ""))
            lines.append("| " + " | ".join(cells) + " |")
        if self.skipped:
            lines += ["", "Skipped (cannot take the data): "
                      + "; ".join(f"{k}: {_escape(v)}" for k, v in self.skipped.items())]
        return "\n".join(lines) + "\n"


def _arrow(c: Column) -> str:
    return {"higher": "↑", "lower": "↓", "one": "→1", "half": "→0.5", "": ""}[c.better]


def _best(c: Column, values: list[float | None]) -> float | None:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    if len(finite) < 2 or not c.better:  # nothing to compare with, or no better way
        return None
    key = {"higher": lambda v: -v, "lower": lambda v: v, "one": lambda v: abs(math.log(v)) if v > 0 else math.inf,
           "half": lambda v: abs(v - 0.5)}
    return min(finite, key=key[c.better])


def _fmt(v: float, digits: int = 4) -> str:
    if isinstance(v, int) or (isinstance(v, float) and v.is_integer() and abs(v) < 1e6):
        return str(int(v))
    return f"{v:.{digits}g}" if math.isfinite(v) else str(v)


def _escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


# -- the comparison ------------------------------------------------------------------------------
def compare(models: list[str] | None, dataset: str, sets: dict[str, Any] | None = None,
            seeds: list[int] = (0,), holdout: float = 0.2, out: str | Path | None = None,
            device: str = "auto", n_samples: int = N_SAMPLES, progress: bool = True,
            engine: Engine | None = None) -> CompareResult:
    """Fit each of ``models`` (None: every installed model that can take the data) on the
    training rows of ``dataset`` for each seed, measure it on the held-out rows, and write
    ``compare.md``, ``compare.json`` and ``compare.png`` into ``out`` (default
    ``runs/compare-<data>-<time>``, claimed exclusively) with one run directory per model and
    seed (``<model>-seed<k>``). ``sets`` holds ``MODEL.KEY`` (one model's config) and
    ``dataset.KEY`` entries."""
    from .progress import ProgressBar

    engine = engine or Engine()
    seeds = [int(s) for s in seeds]
    if not seeds or len(set(seeds)) != len(seeds):
        raise InputError(f"seeds must be distinct integers, got {seeds}")
    if n_samples < 2:
        raise InputError(f"n_samples must be >= 2, got {n_samples}")
    installed = sorted(engine.plugins.models())
    from .privacy.budget import privacy_request, split_privacy_keys

    sets, privacy = split_privacy_keys(dict(sets or {}))
    request = privacy_request(privacy)  # checked before any directory
    privacy = privacy if request is not None and request.private else {}
    per_model, data_sets = _split_sets(sets, models or installed)
    split = {"holdout": holdout, "holdout_seed": 0}
    full = engine.load_dataset(dataset, data_sets)
    train, held = full.holdout_split(holdout, split["holdout_seed"])  # what each run's dataset.holdout gives
    models, skipped = _models_to_compare(engine, models, installed, per_model, train, dataset, bool(privacy))
    judge = judge_for(full, device)
    out_dir, _ = rundir.claim(Path(out) if out else None, "compare", full.name, marker=COMPARE_JSON,
                              reclaim=_interrupted)  # the same command again continues it
    bar = ProgressBar(len(models) * len(seeds), "compare", enabled=progress, rich=progress and sys.stderr.isatty())
    rows, pictures = [], {}
    held_out = "its standard test split" if full.splits and "test" in full.splits else f"{holdout:g} at random"
    result = CompareResult(full.name, seeds, holdout, len(train), len(held), rows, out_dir, skipped, held_out)
    try:
        for name in models:
            runs = []
            for seed in seeds:
                spec = RunSpec(name, dict(per_model.get(name, {})), dataset, {**data_sets, **split, "part": "train"},
                               seed, device, out_dir / f"{name}-seed{seed}", progress=False, privacy=privacy)
                runs.append(_fit_and_measure(engine, spec, train, held, n_samples, judge, pictures))
                bar.advance(f"{name} seed {seed}")
            rows.append(_row(name, runs))
    except BaseException:  # interrupted: the models done so far are still a table
        _write(result, out_dir, interrupted=True)
        raise
    finally:
        bar.close()
    _write(result, out_dir)
    if full.encoding is None:  # a table's columns do not fit a panel: each run has its samples.png
        draw(result, pictures, full, out_dir / COMPARE_PNG)
    return result


def _models_to_compare(engine: Engine, models: list[str] | None, installed: list[str],
                       per_model: dict[str, dict[str, Any]], train, dataset: str,
                       private: bool = False) -> tuple[list[str], dict[str, str]]:
    """The models to fit (the named ones, checked; else every installed one that can take the
    training rows, under a privacy budget the ones that can fit privately) and the reasons of
    those skipped. A bad ``--set`` is bad usage, before any directory."""
    for name, values in per_model.items():
        build_config(engine.model_class(name).Config, values, name)
    cannot_be_private = "cannot fit under a privacy budget (privacy.epsilon is set)"
    if models:
        unknown = [m for m in models if m not in installed]
        if unknown:
            raise InputError(f"unknown model {unknown[0]!r}; available: {', '.join(installed) or 'none installed'}")
        if len(set(models)) != len(models):
            raise InputError("each model can be named once")
        refused = [m for m in models if private and not engine.model_class(m).supports_privacy]
        if refused:
            raise InputError(f"model {refused[0]!r} {cannot_be_private}")
        return list(models), {}
    chosen, skipped = [], {}
    for name in installed:
        reason = (cannot_be_private if private and not engine.model_class(name).supports_privacy
                  else _cannot_take(engine, name, per_model.get(name, {}), train))
        if reason:
            skipped[name] = reason
        else:
            chosen.append(name)
    if not chosen:
        raise InputError(f"no installed model can take dataset {dataset!r}: "
                         + "; ".join(f"{k}: {v}" for k, v in skipped.items()))
    return chosen, skipped


def _fit_and_measure(engine: Engine, spec: RunSpec, train, held, n_samples: int, judge,
                     pictures: dict) -> dict[str, Any]:
    """One run of ``spec`` (in its own directory), reloaded and measured by the protocol of
    ``eval`` (:func:`aigc_engine.evaluation.evaluate`)."""
    record: dict[str, Any] = {"seed": spec.seed, "dir": None}
    try:
        run_dir = spec.out  # a compare run again after a kill: finished runs are kept, the others resumed
        if not (run_dir / rundir.MODEL_FILE).exists():
            started = (run_dir / rundir.CONFIG_FILE).is_file() and (run_dir / rundir.CONFIG_FILE).stat().st_size > 0
            run_dir = engine.train(dataclasses.replace(spec, resume=started))
        record["dir"] = run_dir.name
        model, _ = engine.load_model(run_dir)
        summary = io.read_json(run_dir / rundir.SUMMARY_FILE)
        encoding = load_encoding(run_dir)
        if encoding is not None and encoding.private is not None:  # its own columns, its released categories
            train, held = train.reencoded(encoding), held.reencoded(encoding)
        found = evaluate(model, held, train, seed=spec.seed, device=spec.device, n_samples=n_samples, judge=judge)
        values = {k: float(v) for k, v in found.metrics.items() if isinstance(v, (int, float))}
        values["fit_seconds"] = float(summary.get("fit_seconds", float("nan")))
        for key in ("privacy_epsilon", "privacy_delta"):  # a private run's whole spend: its encoding's and its fit's
            if key in summary:
                values[key] = float(summary[key])
        record.update(metrics=values, likelihood=found.likelihood)
        if spec.model not in pictures:
            pictures[spec.model] = (found.samples, model.num_classes)
    except (KeyboardInterrupt, Interrupted):
        raise
    except Exception as err:  # noqa: BLE001 - one model's failure is its row's reason
        record["error"] = _first_line(err)
    return record


def _interrupted(marker: Path) -> bool:
    """Whether ``compare.json`` is that of an interrupted comparison (which a new run continues)."""
    try:
        return io.read_json(marker).get("interrupted") is True
    except (OSError, ValueError, AttributeError):
        return False


def _write(result: CompareResult, out_dir: Path, interrupted: bool = False) -> None:
    stamp = {"created": _dt.datetime.now().isoformat(timespec="seconds"), **({"interrupted": True} if interrupted else {})}
    io.write_json(out_dir / COMPARE_JSON, {**result.to_json(), **stamp})
    note = "\n(interrupted: the models above finished; their run directories are kept)\n" if interrupted else ""
    io.atomic_write(out_dir / COMPARE_MD, lambda tmp: Path(tmp).write_text(result.to_markdown() + note))


def _split_sets(sets: dict[str, Any], models: list[str]) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """``MODEL.KEY`` entries per model and ``dataset.KEY`` entries."""
    per_model: dict[str, dict[str, Any]] = {}
    rest, data_sets = split_dataset_keys(sets)
    for key, value in rest.items():
        name, sep, field = key.partition(".")
        if not sep or not field:
            raise InputError(f"compare takes --set MODEL.KEY=VALUE or dataset.KEY=VALUE, got {key!r}")
        if name not in models:
            raise InputError(f"--set {key}: {name!r} is not a compared model ({', '.join(models)})")
        per_model.setdefault(name, {})[field] = value
    for key in ("holdout", "holdout_seed", "part"):
        if key in data_sets:
            raise InputError(f"dataset.{key} is set by compare itself (use --holdout)")
    return per_model, data_sets


def _cannot_take(engine: Engine, name: str, values: dict[str, Any], train) -> str | None:
    """Why model ``name`` cannot take the data (its config or ``validate``), or None."""
    try:
        cls = engine.model_class(name)
        model = cls(build_config(cls.Config, values, name))
        model.validate(train)
    except Exception as err:  # noqa: BLE001
        return _first_line(err)
    return None


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    text = text.splitlines()[0] if text else ""
    return text if isinstance(err, InputError) and text else f"{type(err).__name__}: {text}".rstrip(": ")


def _row(name: str, runs: list[dict[str, Any]]) -> dict[str, Any]:
    ok = [r for r in runs if "metrics" in r]
    errors = [f"seed {r['seed']}: {r['error']}" if len(runs) > 1 else r["error"] for r in runs if "error" in r]
    metrics: dict[str, dict[str, Any]] = {}
    for key in dict.fromkeys(k for r in ok for k in r["metrics"]):
        values = [r["metrics"].get(key) for r in ok]
        finite = [v for v in values if v is not None and math.isfinite(v)]
        mean = statistics.fmean(finite) if finite else (values[0] if values else None)
        std = statistics.stdev(finite) if len(finite) > 1 else None
        metrics[key] = {"mean": mean, "std": std, "values": values}
    kinds = sorted({r["likelihood"] for r in ok if r.get("likelihood")})
    return {"model": name, "status": "ok" if ok else "failed", "reason": "; ".join(errors) or None,
            "likelihood": "/".join(kinds) or None, "metrics": metrics, "runs": runs}


# -- the picture -------------------------------------------------------------------------------------
def draw(result: CompareResult, pictures: dict[str, tuple[torch.Tensor, int]], data, path: Path) -> None:
    """One panel per model, side by side (:func:`aigc_engine.plotting.draw_samples`): samples over
    the data (grey) for points, an image grid (a row per class for conditional models) for
    images; a failed model's reason."""
    import matplotlib.pyplot as plt

    from . import plotting

    rows = result.rows
    fig, axes = plt.subplots(1, len(rows), figsize=(3.2 * len(rows), 3.6), squeeze=False)
    for ax, row in zip(axes[0], rows):
        if row["model"] not in pictures:
            ax.set_title(row["model"], fontsize=11)
            ax.set_xticks([]), ax.set_yticks([])
            ax.text(0.5, 0.5, _wrap("failed: " + (row["reason"] or "")), ha="center", va="center", fontsize=7,
                    transform=ax.transAxes, wrap=True)
            continue
        samples, num_classes = pictures[row["model"]]
        picks, labels = _panel_samples(samples, num_classes)
        plotting.draw_samples(picks, ax=ax, data=data, title=row["model"], row_labels=labels)
    fig.suptitle(f"compare on {result.dataset}" + ("" if data.is_image else " (samples over the data in grey)"),
                 fontsize=11)
    plotting.save_figure(fig, path)


def _panel_samples(samples: torch.Tensor, num_classes: int) -> tuple[torch.Tensor, list[str] | None]:
    """What a panel shows of ``samples`` (drawn class by class when conditional): a row of
    images per class, 64 images, or all points."""
    from .plotting import PER_CLASS

    if samples.dim() != 4:
        return samples, None
    if not num_classes:
        return samples[:64], None
    block = math.ceil(len(samples) / num_classes)
    picks = torch.cat([samples[c * block: c * block + PER_CLASS] for c in range(num_classes)])
    return picks, [str(c) for c in range(num_classes)]


def _wrap(text: str, width: int = 40) -> str:
    return "\n".join(re.findall(rf".{{1,{width}}}(?:\s+|$)", text)) or text


def parse_seeds(text: str) -> list[int]:
    """``"0,1,2"`` -> ``[0, 1, 2]``."""
    try:
        seeds = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise InputError(f"--seeds takes comma-separated integers, got {text!r}") from None
    if not seeds:
        raise InputError("--seeds needs at least one seed")
    return seeds


__all__ = ["compare", "CompareResult", "Column", "COLUMNS", "parse_seeds"]
