"""Console output of the stages: progress with rate and ETA, the summary table, and logging (quiet
unless --verbose).

On a terminal `Progress` draws a rich bar; when the output is a file or a pipe (a log, CI, `dvc
repro > log`) it prints a plain line at most every `every` seconds and one at the end, so a long
stage always shows that it is alive and how fast it goes.
"""
from __future__ import annotations

import logging
import time
from datetime import timedelta
from typing import Iterable, Sequence

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, ProgressColumn, TextColumn, TimeElapsedColumn
from rich.progress import Progress as RichProgress
from rich.table import Table
from rich.text import Text

LOG_EVERY_SECONDS = 10.0


def format_eta(seconds: float | None) -> str:
    return "-" if seconds is None else str(timedelta(seconds=round(seconds)))


class Progress:
    """Progress of `total` units (examples, images; None: unknown): `update(completed)`,
    `advance(n)`, `note(text)` for a line above the bar. Use as a context manager;
    `enabled=False` shows nothing."""

    def __init__(self, label: str, total: int | None, unit: str = "examples", console: Console | None = None,
                 every: float = LOG_EVERY_SECONDS, completed: int = 0, enabled: bool = True):
        self.label, self.total, self.unit, self.every, self.enabled = label, total, unit, every, enabled
        self.console = console or Console(stderr=True)
        self.completed = self.start_completed = completed
        self.bar = None

    def __enter__(self) -> "Progress":
        self.start = self.last_line = time.perf_counter()
        if self.enabled and self.console.is_terminal:
            self.bar = RichProgress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                    _RateETA(self), TimeElapsedColumn(), console=self.console)
            self.bar.start()
            self.task = self.bar.add_task(self.label, total=self.total, completed=self.completed)
        return self

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.stop()
        elif exc[0] is None and self.enabled:
            self.console.print(self.line(), soft_wrap=True)

    def rate(self) -> float | None:
        elapsed = time.perf_counter() - self.start
        done = self.completed - self.start_completed
        return done / elapsed if done and elapsed > 0 else None

    def eta(self) -> float | None:
        rate = self.rate()
        return (self.total - self.completed) / rate if rate and self.total is not None else None

    def line(self) -> str:
        rate = f"{'-' if self.rate() is None else f'{self.rate():.1f}'} {self.unit}/s"
        if self.total is None:
            return f"{self.label}: {self.completed} {self.unit}, {rate}"
        share = self.completed / self.total if self.total else 1.0
        return (f"{self.label}: {self.completed}/{self.total} {self.unit} ({share:.0%}), {rate}, "
                f"ETA {format_eta(self.eta())}")

    def update(self, completed: int, label: str | None = None) -> None:
        self.completed, self.label = completed, label or self.label
        if self.bar is not None:
            self.bar.update(self.task, completed=completed, description=self.label)
        elif self.enabled and time.perf_counter() - self.last_line >= self.every:
            self.last_line = time.perf_counter()
            self.console.print(self.line(), soft_wrap=True)

    def advance(self, count: int = 1, label: str | None = None) -> None:
        self.update(self.completed + count, label)

    def note(self, text: str) -> None:
        """A line of its own (above the bar on a terminal)."""
        if self.enabled:
            self.console.print(text, soft_wrap=True)


class _RateETA(ProgressColumn):
    def __init__(self, progress: Progress):
        super().__init__()
        self.progress = progress

    def render(self, task) -> Text:
        rate = self.progress.rate()
        eta = "" if self.progress.total is None else f"  ETA {format_eta(self.progress.eta())}"
        return Text(f"{'-' if rate is None else f'{rate:.1f}'} {self.progress.unit}/s{eta}")


def summary(title: str, columns: Sequence[str], rows: Iterable[Sequence[object]], *, labels: int = 1,
            caption: str | None = None, console: Console | None = None) -> Table:
    """Print a stage's summary table (on stdout unless `console` says otherwise) and return it.

    The first `labels` columns are left-aligned labels, the rest right-aligned numbers; cells are
    shown with str().
    """
    table = Table(title=title)
    for i, column in enumerate(columns):
        table.add_column(column, justify="left" if i < labels else "right")
    for row in rows:
        table.add_row(*(str(cell) for cell in row))
    table.caption = caption
    (console or Console()).print(table)
    return table


def setup_logging(verbose: bool) -> None:
    """Quiet by default (warnings only), INFO with --verbose; rich formatting."""
    from rich.logging import RichHandler

    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(message)s",
                        handlers=[RichHandler(show_path=False)], force=True)
