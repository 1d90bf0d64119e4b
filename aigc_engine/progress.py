"""Progress on stderr: :class:`ProgressBar` (rich on a terminal, plain lines otherwise) and
:func:`track`, an iteration with a bar. Nothing of the engine below it: ``compare``, ``gmm-select``
and :class:`aigc_engine.Fabric` show their bars with it."""
from __future__ import annotations

import sys
import time
from typing import Callable, Iterable, Iterator

__all__ = ["ProgressBar", "track"]


class ProgressBar:
    """A progress bar on stderr: rich on a terminal (redrawn at most ~10 times a second), plain
    lines at every tenth of the total otherwise, nothing when disabled. ``rich``: None draws the
    rich bar when stderr is a terminal."""

    def __init__(self, total: int | None, desc: str = "", initial: int = 0, *, enabled: bool = True,
                 rich: bool | None = None):
        self.total, self.desc, self.done, self.enabled = total, desc, initial, enabled
        self._start = time.perf_counter()
        self._every = max(1, (total or 100) // 10)
        self._bar = None
        self._next_draw = 0.0
        if rich is None:
            rich = sys.stderr.isatty()
        if enabled and rich:
            from rich.console import Console
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                                       TimeRemainingColumn)

            columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                       TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[metrics]}"))
            self._bar = Progress(*columns, console=Console(stderr=True), transient=False)
            self._bar.start()
            self._task = self._bar.add_task(desc, total=total, completed=initial, metrics="")

    def advance(self, metrics: str = "") -> None:
        self.done += 1
        if not self.enabled:
            return
        if self._bar is not None:
            now = time.perf_counter()
            if now >= self._next_draw or self.done == self.total:
                self._bar.update(self._task, completed=self.done, metrics=metrics)
                self._next_draw = now + 0.1
        elif self.done % self._every == 0 or self.done == self.total:
            of = f"/{self.total}" if self.total else ""
            print(f"{self.desc} {self.done}{of} [{time.perf_counter() - self._start:.1f}s] {metrics}".rstrip(),
                  file=sys.stderr, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.update(self._task, completed=self.done)
            self._bar.stop()
            self._bar = None


def track(iterable_or_total: Iterable | int, desc: str = "", *, enabled: bool = True,
          text: Callable[[], str] | None = None) -> Iterator:
    """Iterate over ``iterable_or_total`` (an int: ``range`` of it) with a :class:`ProgressBar`;
    after each item the bar shows ``text()`` (such as the last logged metrics)."""
    if isinstance(iterable_or_total, int):
        iterable, total = range(iterable_or_total), iterable_or_total
    else:
        iterable = iterable_or_total
        total = len(iterable) if hasattr(iterable, "__len__") else None
    bar = ProgressBar(total, desc, enabled=enabled)
    try:
        for item in iterable:
            yield item
            bar.advance(text() if text is not None else "")
    finally:
        bar.close()
