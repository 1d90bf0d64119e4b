"""``aigc-engine gmm-select``: fit a Gaussian mixture for each number of components, compare
them by BIC or AIC, and keep the winner as a normal run directory (``best/``) that ``sample``,
``eval`` and ``run --resume`` accept.

Only click is imported at module level: ``aigc-engine --help`` lists this command without
loading torch or scikit-learn.
"""
from __future__ import annotations

import dataclasses
import warnings
from functools import partial
from pathlib import Path
from typing import Any

import click

from aigc_engine import InputError

from .config import COVARIANCE_TYPES, DTYPES, GMMConfig

SELECTION_FILE = "selection.json"
SELECTION_PNG = "selection.png"
BEST_RUN = "best"


def parse_components(spec: str) -> list[int]:
    """``"2:20"`` (inclusive), ``"2:20:2"`` or ``"2,4,8"`` -> sorted distinct positive ints."""
    try:
        if ":" in spec:
            parts = [int(p) for p in spec.split(":")]
            if len(parts) not in (2, 3):
                raise ValueError
            lo, hi, step = parts[0], parts[1], parts[2] if len(parts) == 3 else 1
            if step < 1 or hi < lo:
                raise ValueError
            values = list(range(lo, hi + 1, step))
        else:
            values = [int(p) for p in spec.split(",") if p.strip()]
    except ValueError:
        raise click.BadParameter(f"{spec!r} is not LO:HI, LO:HI:STEP or a comma list of integers",
                                 param_hint="--components") from None
    if not values or min(values) < 1:
        raise click.BadParameter(f"{spec!r}: the numbers of components must be >= 1",
                                 param_hint="--components")
    return sorted(set(values))


def select_components(dataset, components: list[int], covariance_type: str = "full",
                      criterion: str = "bic", device: str = "cpu", seed: int = 0, max_iter: int = 100,
                      n_init: int = 1, dtype: str = "float32", reg_covar: float = 1e-6,
                      progress=None) -> dict[str, Any]:
    """Fit one mixture per K; returns ``{"results": [...], "best": {...}}``. Each K's estimator
    is the one the ``gmm`` model builds from ``best["config"]`` with the same seed, so a run of
    that config refits the winner exactly. ``progress(total, desc)`` (such as
    ``Fabric.progress_bar``) makes the bar advanced at each EM iteration."""
    from aigc_engine import ProgressBar

    from .model import build_estimator

    if max(components) > len(dataset):
        raise InputError(f"n_components={max(components)} is more than the {len(dataset)} rows of "
                         f"dataset {dataset.name!r}")
    results = []
    configs = {K: GMMConfig(n_components=K, covariance_type=covariance_type, max_iter=max_iter,
                            n_init=n_init, dtype=dtype, reg_covar=reg_covar) for K in components}
    budget = n_init * max_iter  # a bar over the EM iterations of all K, its total lowered as fits converge
    bar = (progress or partial(ProgressBar, enabled=False))(len(components) * budget, "EM")
    try:
        for K in components:
            gm, start = build_estimator(configs[K], seed, device), bar.done
            try:
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    gm.em_fit(dataset, sample_weight=dataset.weights).finish(
                        lambda it: bar.advance(f"K={K} lower_bound={it.lower_bound:.4f}"))
            except ValueError as err:
                raise InputError(f"n_components={K}: {err}") from None
            bar.set_total(bar.total - budget + bar.done - start)
            c = gm.criteria(dataset, sample_weight=dataset.weights)
            results.append({"n_components": K, "bic": c["bic"], "aic": c["aic"],
                            "mean_log_likelihood": c["mean_log_likelihood"], "n_iter": int(gm.n_iter_),
                            "converged": bool(gm.converged_), "n_parameters": c["n_parameters"],
                            "warnings": sorted({str(w.message) for w in caught})})
    finally:
        bar.close()
    best = min(results, key=lambda r: r[criterion])
    return {"dataset": dataset.name, "covariance_type": covariance_type, "criterion": criterion,
            "seed": seed, "results": results,
            "best": {"n_components": best["n_components"], criterion: best[criterion],
                     "config": dataclasses.asdict(configs[best["n_components"]])}}


def _plot_selection(selection: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    from aigc_engine.store.io import atomic_write

    ks = [r["n_components"] for r in selection["results"]]
    fig, ax = plt.subplots(figsize=(6, 4))
    for crit, style in (("bic", "o-"), ("aic", "s--")):
        ax.plot(ks, [r[crit] for r in selection["results"]], style, label=crit.upper(), ms=4)
    best = selection["best"]["n_components"]
    ax.axvline(best, color="gray", lw=1, ls=":", label=f"best K = {best} ({selection['criterion'].upper()})")
    ax.set_xlabel("n_components")
    ax.set_ylabel("criterion (lower is better)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.ticklabel_format(axis="y", useOffset=False, style="plain")
    ax.set_title(f"GMM selection on {selection['dataset']} ({selection['covariance_type']})")
    ax.legend()
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=100, format="png"))
    plt.close(fig)


@click.command("gmm-select")
@click.option("--dataset", "dataset_spec", default="ring8", show_default=True,
              help="Registered dataset name or a .npy/.csv file.")
@click.option("--components", default="1:12", show_default=True,
              help="Numbers of components to try: LO:HI (inclusive), LO:HI:STEP or a comma list.")
@click.option("--covariance-type", type=click.Choice(COVARIANCE_TYPES), default="full",
              show_default=True)
@click.option("--criterion", type=click.Choice(["bic", "aic"]), default="bic", show_default=True)
@click.option("--max-iter", type=click.IntRange(min=1), default=100, show_default=True)
@click.option("--n-init", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--dtype", type=click.Choice(DTYPES), default="float32", show_default=True)
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Directory for selection.json, selection.png and the best K's run best/ "
                   "(default runs/gmm-select-<time>).")
@click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@click.pass_context
def gmm_select(ctx, dataset_spec, components, covariance_type, criterion, max_iter, n_init, dtype, out,
               device, seed, no_progress):
    """Pick the number of GMM components by BIC or AIC: fit each K, print a table, write
    selection.json and a criterion-vs-K plot, and keep the best K as the run directory
    OUT/best (printed last; `aigc-engine sample`, `eval` and `run --resume` take it)."""
    from aigc_engine import Engine, Fabric, RunSpec, open_dataset
    from aigc_engine.store import rundir
    from aigc_engine.store.io import write_json

    ks = parse_components(components)
    if out and (Path(out) / SELECTION_FILE).exists():
        raise InputError(f"{out} already holds a selection; choose another --out")
    dataset = open_dataset(dataset_spec)
    if dataset.is_image:
        raise InputError(f"dataset {dataset.name!r} holds images; gmm-select fits points N x D")
    fabric = Fabric(device, seed, progress=not no_progress, distributed=False)
    selection = select_components(dataset, ks, covariance_type, criterion, str(fabric.device), seed, max_iter,
                                  n_init, dtype, progress=fabric.progress_bar)
    out_dir, created = rundir.claim(Path(out) if out else None, "gmm-select", marker=SELECTION_FILE)
    # The winner as a normal run: the engine refits the best config with the same seed (the
    # same estimator as in the sweep, so the same fit) and writes every artifact of a run.
    engine = ctx.find_object(Engine) or Engine()
    spec = RunSpec("gmm", dict(selection["best"]["config"]), dataset_spec, seed=seed, device=device,
                   out=out_dir / BEST_RUN, progress=not no_progress)
    try:
        best_dir = engine.train(spec)
    except BaseException:
        rundir.release(out_dir, created, files=(SELECTION_FILE,))
        raise
    selection["best"]["run"] = BEST_RUN
    write_json(out_dir / SELECTION_FILE, selection)
    _plot_selection(selection, out_dir / SELECTION_PNG)
    best = selection["best"]["n_components"]
    click.echo(f"{'K':>4} {'BIC':>14} {'AIC':>14} {'mean loglik':>12} {'iter':>5} conv")
    for r in selection["results"]:
        mark = " *" if r["n_components"] == best else ""
        click.echo(f"{r['n_components']:>4} {r['bic']:>14.2f} {r['aic']:>14.2f} {r['mean_log_likelihood']:>12.4f} "
                   f"{r['n_iter']:>5} {'yes' if r['converged'] else 'no'}{mark}")
    click.echo(f"best n_components by {criterion.upper()}: {best} (selection.json and selection.png in {out_dir})")
    click.echo(str(best_dir))
