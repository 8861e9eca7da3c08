"""``course notebooks --execute``: every notebook, top to bottom, in a real Jupyter kernel.

Each notebook runs in a kernel of its own (nbclient driving ipykernel, as
Jupyter would), started with the chosen submission switched in through
``COURSE_SUBMISSION`` and, in quick mode, ``COURSE_QUICK=1`` (the small setting
of long cells). A few notebooks run at a time. A run stops at the first cell
that fails and records which cell and why; nothing is written back to the
notebooks, which stay without outputs. With ``--output DIR`` the executed
notebooks, outputs and all, are written into ``DIR`` under their own names, to
open in Jupyter or any notebook viewer.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError
from nbformat import NotebookNode

from course import submission, syllabus
from course.notebook_helpers import EXERCISE_TAG, NOT_IMPLEMENTED, QUICK_ENV

ANSI = re.compile(r"\x1b\[[0-9;]*m")
# Cell errors are in the outputs; the kernel's own log warnings (one about
# loopback TCP on every start) would only bury them.
KERNEL_ARGUMENTS = ["--IPKernelApp.log_level=ERROR"]
JOBS = 2  # kernels at once: each takes a core while it computes, and this is a 2-core course machine


@dataclass(frozen=True)
class CellError:
    index: int | None  # the failing cell's position in the notebook (None: unknown, e.g. a dead kernel)
    ename: str  # the exception's type, or the kind of failure (timeout, dead kernel)
    evalue: str  # the exception's message
    traceback: str  # what the notebook shows for it, without terminal colours
    exercise: bool  # whether the failing cell is an exercise cell (it runs the student's code)

    @property
    def summary(self) -> str:
        """One line: a stub's message as it is, anything else as ``Type: message``."""
        text = self.evalue if self.evalue.startswith(NOT_IMPLEMENTED) else f"{self.ename}: {self.evalue}"
        return next((line for line in text.splitlines() if line.strip()), self.ename)


@dataclass(frozen=True)
class NotebookRun:
    section: syllabus.Section
    notebook: NotebookNode  # with the outputs of every cell that ran
    seconds: float
    error: CellError | None  # the first failure; None when every cell ran

    @property
    def ok(self) -> bool:
        return self.error is None


def resolve_target(target: str | os.PathLike[str] | None) -> Path:
    """The submission directory for ``--with``: a path, or ``reference`` for the repository's (:func:`submission.resolve`).

    Raises:
      FileNotFoundError, NotADirectoryError: the directory does not exist.
    """
    return submission.default_submission() if target is None else submission.resolve(target)


def kernel_environment(target: Path, quick: bool) -> dict[str, str]:
    """The kernel's environment: this one, with the submission and the quick setting switched in."""
    env = {**os.environ, submission.ENV_VAR: str(target)}
    if quick:
        env[QUICK_ENV] = "1"
    return env


def first_error(notebook: NotebookNode) -> CellError | None:
    """The first error output of an executed notebook, with its cell's position."""
    for index, cell in enumerate(notebook.cells):
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                text = ANSI.sub("", "\n".join(output.get("traceback", [])))
                tags = cell.get("metadata", {}).get("tags", [])
                return CellError(index, output["ename"], output["evalue"], text, EXERCISE_TAG in tags)
    return None


def _running_cell(notebook: NotebookNode) -> int | None:
    """The first code cell that has not finished (no execution count): the one a timeout or crash stopped."""
    return next(
        (i for i, c in enumerate(notebook.cells) if c.cell_type == "code" and c.get("execution_count") is None),
        None,
    )


async def _run(section: syllabus.Section, env: dict[str, str], timeout: float, limit: asyncio.Semaphore) -> NotebookRun:
    notebook = nbformat.read(section.notebook, as_version=4)
    client = NotebookClient(
        notebook,
        timeout=timeout,
        kernel_name="python3",
        extra_arguments=KERNEL_ARGUMENTS,
        resources={"metadata": {"path": str(section.notebook.parent)}},  # the kernel's working directory
    )
    async with limit:
        start = time.perf_counter()
        try:
            await client.async_execute(env=env)
            error = None
        except CellExecutionError:
            error = first_error(notebook)  # the kernel reported it; the outputs hold the details
        except (CellTimeoutError, DeadKernelError) as failure:
            index = _running_cell(notebook)
            tags = notebook.cells[index].get("metadata", {}).get("tags", []) if index is not None else []
            error = CellError(index, type(failure).__name__, str(failure), str(failure), EXERCISE_TAG in tags)
        seconds = time.perf_counter() - start
    return NotebookRun(section, notebook, seconds, error)


def output_folder(output: str | os.PathLike[str]) -> Path:
    """The folder for executed notebooks, made absolute; never one inside ``course/notebooks/``.

    Raises:
      ValueError: ``output`` is, or is inside, the folder of the source notebooks (their names are the same).
      NotADirectoryError: ``output`` is a file.
    """
    folder = Path(output).resolve()
    sources = syllabus.NOTEBOOK_DIR.resolve()
    if folder.is_relative_to(sources):
        raise ValueError(f"output: {output} is inside {sources}, whose notebooks it would overwrite; choose another folder")
    if folder.exists() and not folder.is_dir():
        raise NotADirectoryError(f"output: {output} is a file, expected a folder")
    return folder


def write_notebooks(runs: list[NotebookRun], *, output: str | os.PathLike[str]) -> list[Path]:
    """Writes each run's executed notebook into ``output`` (created), named as its source.

    A notebook that stopped is written as it stands: the outputs of the cells
    that ran, the failing cell's error, and the cells after it as they were.

    Returns:
      The files written, in the order of ``runs``.

    Raises:
      ValueError, NotADirectoryError: ``output`` is not a folder to write them to (see :func:`output_folder`).
    """
    folder = output_folder(output)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for run in runs:
        path = folder / run.section.notebook.name
        nbformat.write(run.notebook, path)
        written.append(path)
    return written


def execute_notebooks(
    sections: tuple[syllabus.Section, ...] = syllabus.SECTIONS,
    *,
    target: str | os.PathLike[str] | None = None,
    quick: bool = False,
    jobs: int = JOBS,
    timeout: float = 1800.0,
    output: str | os.PathLike[str] | None = None,
) -> list[NotebookRun]:
    """Executes the sections' notebooks, each in its own kernel, ``jobs`` at a time.

    Args:
      sections: which notebooks, in the order of the result.
      target: the submission: a directory, ``"reference"``, or ``None`` for ``exercises/``.
      quick: the small setting of long cells (``COURSE_QUICK=1``).
      jobs: how many kernels run at once, at least 1.
      timeout: seconds one cell may run.
      output: a folder to write the executed notebooks into (see :func:`write_notebooks`); ``None`` writes nothing.

    Returns:
      One :class:`NotebookRun` per section, in the order given.

    Raises:
      FileNotFoundError, NotADirectoryError: ``target`` is not a directory, or a notebook is missing.
      ValueError: ``jobs`` is below 1, or ``output`` is inside ``course/notebooks/``.
    """
    if jobs < 1:
        raise ValueError(f"jobs: expected at least 1, got {jobs}")
    env = kernel_environment(resolve_target(target), quick)
    if output is not None:
        output_folder(output)  # refused before minutes of running, not after
    for section in sections:
        if not section.notebook.is_file():
            raise FileNotFoundError(f"notebook: {section.notebook} is missing (build it: course build-notebooks)")

    async def run_all() -> list[NotebookRun]:
        limit = asyncio.Semaphore(jobs)
        return list(await asyncio.gather(*(_run(s, env, timeout, limit) for s in sections)))

    runs = asyncio.run(run_all())
    if output is not None:
        write_notebooks(runs, output=output)
    return runs


def print_runs(runs: list[NotebookRun], console) -> None:
    """A table of the runs (section, notebook, status, seconds, error) on a rich console, then each failure in full."""
    from rich.markup import escape

    from course.tables import summary_table

    rows = []
    for run in runs:
        if run.ok:
            status = "[green]ok[/green]"
        else:
            status = f"[red]stopped at {f'cell {run.error.index}' if run.error.index is not None else 'a cell'}[/red]"
        rows.append(((str(run.section.number), run.section.notebook.name, status, f"{run.seconds:.1f}"),
                     run.error.summary if run.error else ""))
    console.print(summary_table("Notebooks", ("section", "notebook", "status", "seconds"), "error", rows, width=console.width))
    for run in runs:
        if not run.ok:
            console.print(escape(f"{run.section.notebook.name}, cell {run.error.index}:\n{run.error.traceback}"), soft_wrap=True)
    total = sum(run.seconds for run in runs)
    console.print(f"{sum(r.ok for r in runs)}/{len(runs)} notebooks ran to the end ({total:.0f} s of kernel time).")
