"""``course grade-all --scheduler ADDRESS``: a class graded by the workers of a Dask cluster.

Each submission that is not skipped becomes one task, :func:`grade_remotely`:
on a worker it runs the local job's :func:`graders.batch.grade_into` (the same
``graders.grade`` call, in the worker thread's own pytest server, with a fresh
sandboxed worker) into a temporary folder, and returns the outcome and that folder's files. The client
decides the skips (content hashes, as a local run does) and writes the
returned files into the results folder, so a cluster run's results folder is a
local run's, byte for byte but for timings.

What the workers must share with the client: this checkout of the course (the
same grader version, checked on every worker before the run and in every task)
and the submissions, at the same absolute path (a shared filesystem). The
results folder needs to be on the client only.

Dask is an optional extra (``pip install -e ".[cluster]"``), imported here only.
"""

from __future__ import annotations

import tempfile
import threading
from collections.abc import Callable, Mapping
from pathlib import Path

from course.folders import replacing
from graders.batch import BatchError, Outcome, grade_into, grader_version, outcome_of, recorded_outcome, skip_key
from graders.engine.grading import pytest_server

# A scheduler answers in well under a second, also across a cluster's network; Dask's own
# default (30 s) leaves an instructor with a mistyped address waiting for nothing.
CONNECT_SECONDS = 10


def connect(scheduler: str, submissions_dir: Path):
    """A Dask client of the scheduler at ``scheduler`` whose workers run this grader version and see
    ``submissions_dir``; checked before the results folder is touched. Use it as a context manager.

    Raises:
      BatchError: Dask is not installed, the scheduler cannot be reached, or a worker runs another grader version
        or cannot see the submissions.
    """
    try:
        import distributed
    except ImportError:
        raise BatchError('--scheduler: Dask is not installed; pip install -e ".[cluster]"') from None
    try:
        client = distributed.Client(scheduler, timeout=CONNECT_SECONDS)
    except (OSError, ValueError) as error:
        raise BatchError(f"--scheduler: cannot reach a Dask scheduler at {scheduler!r} ({error})") from None
    problems = client.run(worker_problem, str(submissions_dir), grader_version())
    if any(problems.values()):  # workers that join later (an adaptive cluster) are checked by each task
        client.close()
        raise BatchError("--scheduler: " + "; ".join(f"the worker {a} {p}" for a, p in sorted(problems.items()) if p))
    return client


def grade_on_cluster(client, submissions: Mapping[str, Path], out: Path, batch: dict, options: dict, *,
                     force: bool, on_done: Callable[[Outcome], None] | None) -> list[Outcome]:
    """Grades ``submissions`` (student -> folder or zip, absolute paths) on the workers of ``client`` (:func:`connect`)
    into ``out``, and tells ``on_done`` of each outcome as it completes (from this thread).

    Args:
      options: :func:`graders.batch.grade_into`'s keyword arguments (limits, isolation, open_interpreter_path).
    """
    import distributed

    outcomes = []

    def done(outcome: Outcome) -> None:
        outcomes.append(outcome)
        if on_done is not None:
            on_done(outcome)

    futures = {}
    for student, source in submissions.items():
        key = skip_key(source, batch)
        recorded = None if force else recorded_outcome(out / student, student, key)
        if recorded is not None:
            done(recorded)
        else:  # pure=False: a regrade is a new task, never a result the scheduler still holds
            futures[client.submit(grade_remotely, student, source, key, options, pure=False)] = student
    for future in distributed.as_completed(futures):
        student = futures[future]
        done(outcome_of(future, student, out, finish=lambda result, folder=out / student: store(folder, *result)))
    return outcomes


def worker_problem(submissions_dir: str, version: str) -> str | None:
    """What keeps this machine (a cluster's worker) from grading the class: another grader version than ``version``,
    or no view of ``submissions_dir``; ``None`` when nothing does."""
    mine = grader_version()
    if mine != version:
        return f"runs grader version {mine}, not the client's {version}: install the same checkout of the course on every worker"
    if not Path(submissions_dir).is_dir():
        return f"cannot see SUBMISSIONS_DIR {submissions_dir}: the workers need the submissions at the same path (a shared filesystem)"
    return None


_THREAD = threading.local()  # a Dask worker thread's pytest server (graders.engine.pytest_server)


def grade_remotely(student: str, source: Path, key: dict, options: dict) -> tuple[Outcome, dict[str, bytes]]:
    """The task of one submission, on a worker: :func:`graders.batch.grade_into` into a temporary folder; returns the
    outcome and the folder's files (name -> bytes) for the client to write.

    Raises:
      RuntimeError: this worker runs another grader version or cannot see ``source`` (the client records a grader
        error, regraded next run).
    """
    problem = worker_problem(str(source.parent), key["grader_version"])
    if problem is not None:
        raise RuntimeError(f"this worker {problem}")
    if getattr(_THREAD, "server", None) is None:  # one per worker thread, as a local job has; ends with the worker
        _THREAD.server = pytest_server()
    with tempfile.TemporaryDirectory(prefix="course-grade-all-") as tmp:
        folder = Path(tmp) / student
        outcome = grade_into(folder, student, source, key, **options, server=_THREAD.server)
        return outcome, {path.name: path.read_bytes() for path in sorted(folder.iterdir())}


def store(folder: Path, outcome: Outcome, files: Mapping[str, bytes]) -> Outcome:
    """Writes a task's ``files`` as the student's ``folder``, in place of what it held once all are written
    (:func:`course.folders.replacing`). Returns ``outcome``."""
    with replacing(folder) as new:
        for name, data in files.items():
            (new / name).write_bytes(data)
    return outcome
