"""Table runs: the encoding kept in the run directory, samples decoded to the user's columns,
and tables written as CSV or Parquet."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import torch

from ..errors import InputError
from ..model import check_samples
from ..store import io, rundir
from .dialect import write_csv
from .encoding import TableEncoding

__all__ = ["save_encoding", "load_encoding", "reencode", "sample_rows", "measure", "write_table", "TABLE_OUTPUTS"]

TABLE_OUTPUTS = (".csv", ".parquet")


def save_encoding(run_dir: Path, encoding: TableEncoding) -> None:
    rundir.save_encoding(run_dir, encoding.state_dict())


def load_encoding(run_dir: Path) -> TableEncoding | None:
    """The encoding of a table run, or None for a run on points or images."""
    state = rundir.load_encoding(run_dir)
    return TableEncoding.from_state(state) if state is not None else None


def reencode(dataset, encoding: TableEncoding):
    """``dataset`` (a table read with an encoding of its own) in the columns of ``encoding`` (a
    run's): decoded by its own encoding (exact for categories, integers and missing cells), encoded
    by the run's, so the run's model sees the rows as it saw its training rows. A category the
    run never saw is an InputError."""
    from ..data import Dataset

    frame = dataset.encoding.decode(dataset.x, dataset.y)
    y = encoding.labels(frame) if encoding.schema.label is not None else None
    return Dataset(encoding.transform(frame), y, len(encoding.schema.class_names) if y is not None else None,
                   dataset.name, dataset.options, encoding.schema.class_names, encoding=encoding,
                   weights=dataset.weights)


def measure(model: Any, train, holdout, encoding: TableEncoding, seed: int = 0, n: int | None = None) -> dict:
    """The table metrics (:func:`aigc_engine.metrics.table_metrics`) of ``model``'s samples
    (``n``; by default as many as that function scores: ``holdout``'s rows, and ``train``'s for ML
    efficacy) against the real ``train`` rows and (None: left out) the real ``holdout`` rows, all
    Datasets in the columns of ``encoding``."""
    from ..metrics import table_metrics

    torch.manual_seed(seed)
    size = n or (max(len(train), len(holdout)) if holdout is not None else len(train))
    synthetic, _ = sample_rows(model, size, encoding, quiet=True)
    decode = lambda d: encoding.decode(d.x, d.y) if d is not None else None  # noqa: E731
    return table_metrics(decode(train), decode(holdout), synthetic, encoding, seed)


def sample_rows(model: Any, n: int, encoding: TableEncoding, condition: torch.Tensor | None = None,
                quiet: bool = False):
    """``n`` rows from ``model`` decoded to the table's columns (a DataFrame), and the encoded
    samples. The label column comes from ``condition`` (class ids), else is drawn at the training
    rows' frequencies; a conditional model samples for those labels. An unconditional model on a
    labelled table cannot tie the label to the other columns: it is drawn independently, and said
    so once on stderr (``quiet`` silences that)."""
    labels = None
    if encoding.schema.label is not None:
        freq = torch.tensor(encoding.label_freq, dtype=torch.float64)
        labels = condition if condition is not None else torch.multinomial(freq, n, replacement=True)
        if not model.num_classes and not quiet:
            print(f"aigc-engine: warning: model {model.name!r} is unconditional: column "
                  f"{encoding.schema.label.name!r} is drawn at its training frequencies, independently of the "
                  f"other columns (leave dataset.label_column unset to model it as a feature)", file=sys.stderr)
    with torch.no_grad():
        x = model.sample(n, condition=labels if model.num_classes else None).detach().float().cpu()
    check_samples(x, model.name)
    return encoding.decode(x, labels), x


def write_table(frame, path: Path, dialect=None) -> None:
    """``frame`` as ``path`` (``.csv``: the header, no index, in ``dialect``, a
    :class:`~aigc_engine.tables.dialect.Dialect`, by default comma-separated UTF-8; ``.parquet``:
    needs pyarrow), atomically."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in TABLE_OUTPUTS:
        raise InputError(f"a table is written as .csv or .parquet, not {path.name!r}")
    if suffix == ".parquet":
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            raise InputError("writing Parquet needs pyarrow (pip install pyarrow)") from None
        io.atomic_write(path, lambda tmp: frame.to_parquet(tmp, index=False))
    else:
        write_csv(frame, path, dialect)
