"""One progress display for long jobs (training, grading a class): a live bar, or plain lines in a log.

A terminal gets a rich progress bar with the job's own fields; a log file or
a pipe gets no live bar (it would print control codes), but one plain line
whenever the job says a step is worth a line.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


class Bar:
    """The handle a job updates: ``bar.update(completed, line=..., **fields)``."""

    def __init__(self, progress: Progress, task, console: Console):
        self._progress, self._task, self._console = progress, task, console

    @property
    def elapsed(self) -> float:
        """Seconds since the bar started."""
        return self._progress.tasks[0].elapsed or 0.0

    @property
    def completed(self) -> int:
        return int(self._progress.tasks[0].completed)

    @property
    def total(self) -> int | None:
        total = self._progress.tasks[0].total
        return None if total is None else int(total)

    def start(self, total: int) -> None:
        """Sets the number of steps, once it is known."""
        self._progress.update(self._task, total=total)

    def update(self, completed: int, *, line: str | None = None, **fields: str) -> None:
        """Moves the bar to ``completed`` with new ``fields``; ``line`` is printed when the output is not a terminal."""
        self._progress.update(self._task, completed=completed, **fields)
        if line is not None and not self._console.is_terminal:
            self._console.print(line, markup=False, highlight=False)


@contextlib.contextmanager
def progress_bar(console: Console, *, label: str, total: int | None = None, fields: dict[str, str]) -> Iterator[Bar]:
    """A bar labelled ``label`` that shows ``completed/total``, each of ``fields``, the time taken and the time left.

    Args:
      console: where it is drawn.
      label: the first column, e.g. ``"step"`` or ``"grading"``.
      total: the number of steps, or ``None`` until :meth:`Bar.start`.
      fields: each field's name and its column's format (``"loss {value}"``), in order; starts as ``-``.
    """
    columns = [TextColumn(f"{label} {{task.completed:g}}/{{task.total}}"), BarColumn()]
    columns += [TextColumn(text.replace("{value}", f"{{task.fields[{name}]}}")) for name, text in fields.items()]
    columns += [TimeElapsedColumn(), TimeRemainingColumn()]
    with Progress(*columns, console=console) as progress:
        task = progress.add_task(label, total=total, **{name: "-" for name in fields})
        yield Bar(progress, task, console)
