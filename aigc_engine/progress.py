"""Progress on stderr: :class:`ProgressBar` (rich on a terminal, plain lines otherwise) and
:func:`track`, an iteration with a bar. Nothing of the engine below it: ``compare``, ``gmm-select``
and :class:`aigc_engine.Fabric` show their bars with it."""
from __future__ import annotations

import sys
import time
from typing import Callable, Iterable, Iterator

__all__ = ["ProgressBar", "track"]

PLAIN_EVERY_S = 5.0  # a plain line at least this often on a long run, whatever the tenths of its total


class ProgressBar:
    """A progress bar on stderr: rich on a terminal (redrawn at most ~10 times a second), plain
    lines otherwise (at every tenth of the total and at least every ``PLAIN_EVERY_S`` seconds,
    with the rate and the ETA), nothing when disabled. ``rich``: None draws the rich bar when
    stderr is a terminal."""

    def __init__(self, total: int | None, desc: str = "", initial: int = 0, *, enabled: bool = True,
                 rich: bool | None = None):
        self.total, self.desc, self.done, self.enabled = total, desc, initial, enabled
        self.initial = initial
        self._start = time.perf_counter()
        self._every = max(1, (total or 100) // 10)
        self._bar = None
        self._next_draw = 0.0
        self._last_line = self._start
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
        else:
            now = time.perf_counter()
            if self.done % self._every == 0 or self.done == self.total or now - self._last_line >= PLAIN_EVERY_S:
                print(self.line(now, metrics), file=sys.stderr, flush=True)
                self._last_line = now

    def line(self, now: float, metrics: str = "") -> str:
        """The plain line at time ``now`` (``time.perf_counter()``): ``desc done/total [elapsed,
        rate, ETA m:ss] metrics``; the ETA is that of the rest of the total at the mean rate so far."""
        elapsed, steps = now - self._start, self.done - self.initial
        of, timing = (f"/{self.total}" if self.total else ""), f"{elapsed:.1f}s"
        if steps > 0 and elapsed > 0:
            rate = steps / elapsed
            timing += f", {rate:.3g} it/s" if rate >= 1 else f", {1 / rate:.3g} s/it"
            if self.total and self.done < self.total:
                timing += f", ETA {_clock((self.total - self.done) / rate)}"
        return f"{self.desc} {self.done}{of} [{timing}] {metrics}".rstrip()

    def set_total(self, total: int | None) -> None:
        """Change the total: work that turns out shorter (an EM fit that converges before its
        ``max_iter``) lowers it, so that the bar ends full and the ETA counts only what may remain."""
        ended = total != self.total and total is not None and self.done >= total
        self.total = total
        if ended and self.enabled and self._bar is None:  # the last line of plain lines
            print(self.line(time.perf_counter()), file=sys.stderr, flush=True)
        if self._bar is not None:
            self._bar.update(self._task, total=total, completed=self.done)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.update(self._task, completed=self.done)
            self._bar.stop()
            self._bar = None


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


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
