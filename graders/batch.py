"""``course grade-all``: grade a whole class, one result folder per student.

A submissions folder holds one entry per student, named by the student's id:
a folder shaped like ``exercises/`` or a ``.zip`` of one. Each is graded by
:func:`graders.grade` (its own pytest process and sandboxed worker), several
at a time, so a crash, hang or output flood costs only that student's grade.

The results folder holds ``batch.json`` (the grader version, the seed and the
exercises of the class run) and, per student, ``<student>/`` with the score
files of :func:`graders.grade` and ``submission.json`` (the content hash,
the status and, for a rejected submission, the reason; names in
:mod:`graders.results.layout`). A re-run skips every
student whose content hash, grader version, seed and exercises are unchanged.

Reference outputs are not shared between students: the reference runs in each
student's trusted pytest process at the same time as the student's worker
waits for its answer, so it costs little wall time, and with the one seed of
the class run its compilations come from JAX's persistent compilation cache
(``graders.engine.grading.default_cache_dir``), which is what made the reference side
expensive. Sharing the outputs would need a store that every grading process
trusts, for a saving the benchmark (``benchmarks/grade_all.py``) does not show.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import re
import shutil
import stat
import tempfile
import time
import traceback
import zipfile
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path

from course.seeds import check_seed, draw_seed
from course.submission import is_skipped
from graders.engine import grading, sandbox
from graders.results.layout import BATCH_FILE, BATCH_SCHEMA, STUDENT_FILE
from graders.results.scores import CaseStatus, RunStatus, SubmissionStatus, write_json

STUDENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,127}$")
# Zip bounds: a submission is a few small Python files; anything near these is a mistake or an attack.
MAX_ZIP_FILES = 2000
MAX_ZIP_BYTES = 50 * 2**20  # uncompressed, all entries together
MAX_ZIP_RATIO = 200  # uncompressed / compressed size of one entry (a zip bomb)
# What a grade depends on: the grading engine and worker, the suites, the reference and the course runtime.
# The batch, report and bundle tools beside them never change a grade, so editing them keeps results folders valid.
_GRADING_SOURCES = ("course", "graders/engine", "graders/runtime", "graders/suites", "reference")


class BatchError(ValueError):
    """The class run cannot start: the submissions or results folder is not usable."""


class Rejected(Exception):
    """One submission cannot be graded (a bad zip, an unsafe entry); it scores zero with this reason."""


@dataclass(frozen=True)
class Outcome:
    """What happened to one student's submission in this run."""

    student: str
    status: SubmissionStatus
    score: float = 0.0
    max_score: float = 0.0
    reason: str = ""
    seconds: float = 0.0
    skipped: bool = False  # unchanged since the last run: the recorded outcome, not regraded


@dataclass(frozen=True)
class BatchResult:
    """A class run: where it wrote, with which seed and grader version, and each student's outcome."""

    results_dir: Path
    seed: int
    grader_version: str
    exercises: tuple[str, ...]
    outcomes: tuple[Outcome, ...]
    seconds: float

    @property
    def failures(self) -> tuple[Outcome, ...]:
        """The outcomes the instructor must look at: rejected submissions and grader errors."""
        return tuple(o for o in self.outcomes if o.status != SubmissionStatus.GRADED)


def grader_version() -> str:
    """A hash of the Python code a grade depends on: the grading engine, suites, reference and course runtime."""
    root = Path(grading.__file__).resolve().parents[2]
    digest = hashlib.sha256()
    for top in _GRADING_SOURCES:
        for path in sorted((root / top).rglob("*.py")):
            relative = path.relative_to(root)
            if not is_skipped(relative):
                digest.update(relative.as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def discover(submissions_dir: str | os.PathLike[str]) -> dict[str, Path]:
    """The students' submissions of ``submissions_dir``: student id -> folder or ``.zip``.

    Hidden entries (``.git``, ``.DS_Store``) and loose files other than zips are ignored.

    Raises:
      BatchError: the folder is missing, holds no submission, or two entries
        give one student id or an id is not a plain name.
    """
    root = Path(submissions_dir)
    if not root.is_dir():
        raise BatchError(f"SUBMISSIONS_DIR: {str(root)!r} is not a folder")
    found: dict[str, Path] = {}
    for entry in sorted(root.iterdir()):
        if entry.name.startswith(".") or not (entry.is_dir() or entry.suffix.lower() == ".zip"):
            continue
        student = entry.name if entry.is_dir() else entry.stem
        if not STUDENT_ID.match(student):
            raise BatchError(f"SUBMISSIONS_DIR: {entry.name!r} is not a usable student id (letters, digits, . _ @ + -)")
        if student in found:
            raise BatchError(f"SUBMISSIONS_DIR: two submissions for student {student!r}: {found[student].name} and {entry.name}")
        found[student] = entry
    if not found:
        raise BatchError(f"SUBMISSIONS_DIR: {str(root)!r} holds no submission (a folder or a .zip per student)")
    return found


def content_hash(source: Path) -> str:
    """The hash of a submission's contents: the zip's bytes, every file's path and bytes of a folder (tools' leftovers
    aside), or a symbolic link's target path."""
    digest = hashlib.sha256()
    if source.is_symlink():  # never followed: the link is rejected, and its target is none of the student's
        digest.update(b"link\0" + os.fsencode(os.readlink(source)))
        return digest.hexdigest()
    if source.is_file():
        digest.update(source.read_bytes())
        return digest.hexdigest()
    for path in sorted(source.rglob("*")):
        relative = path.relative_to(source)
        if path.is_file() and not is_skipped(relative):
            digest.update(str(relative).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def safe_extract(archive: Path, target: Path) -> Path:
    """Extracts a student's zip into ``target`` and returns the submission folder in it.

    A zip that holds a single top folder (``alice/attention/...`` or
    ``exercises/attention/...``) gives that folder.

    Raises:
      Rejected: not a zip, an entry outside ``target`` (absolute or with ``..``),
        a symbolic link, too many entries, too large or too compressed.
    """
    try:
        with zipfile.ZipFile(archive) as zipped:
            entries = zipped.infolist()
            _check_entries(entries)
            for entry in entries:
                # Written by hand, not extractall: the checks above are the only path to the disk.
                destination = target / entry.filename
                if entry.is_dir():
                    destination.mkdir(parents=True, exist_ok=True)
                    continue
                destination.parent.mkdir(parents=True, exist_ok=True)
                with zipped.open(entry) as source, open(destination, "wb") as sink:
                    shutil.copyfileobj(source, sink)
    except zipfile.BadZipFile as error:
        raise Rejected(f"not a readable zip file ({error})") from None
    children = [c for c in target.iterdir() if not c.name.startswith(".") and c.name != "__MACOSX"]
    return children[0] if len(children) == 1 and children[0].is_dir() else target


@contextlib.contextmanager
def unpacked(source: Path) -> Iterator[Path]:
    """The submission folder of ``source``: the folder itself, or a ``.zip`` unpacked by :func:`safe_extract`.

    The zip's files live in a temporary folder for the ``with`` block only.

    Raises:
      Rejected: ``source`` is a symbolic link (which could point at any folder of the grader's machine),
        or a zip that :func:`safe_extract` refuses.
    """
    if source.is_symlink():
        raise Rejected(f"{source.name!r} is a symbolic link; submit the folder or .zip itself")
    if not source.is_file():
        yield source  # a folder, or a path that does not exist: graders.grade names the problem
        return
    with tempfile.TemporaryDirectory(prefix="course-grade-") as tmp:
        yield safe_extract(source, Path(tmp))


def _check_entries(entries: Sequence[zipfile.ZipInfo]) -> None:
    if len(entries) > MAX_ZIP_FILES:
        raise Rejected(f"the zip holds {len(entries)} entries; at most {MAX_ZIP_FILES} are accepted")
    total = 0
    for entry in entries:
        name = entry.filename
        parts = Path(name).parts
        if name.startswith(("/", "\\")) or ".." in parts or ":" in name or "\\" in name:
            raise Rejected(f"the zip entry {name!r} points outside the submission folder")
        if stat.S_ISLNK(entry.external_attr >> 16):
            raise Rejected(f"the zip entry {name!r} is a symbolic link; submit plain files")
        if entry.file_size > MAX_ZIP_RATIO * max(entry.compress_size, 1024):
            raise Rejected(f"the zip entry {name!r} is compressed more than {MAX_ZIP_RATIO}:1 (a zip bomb?)")
        total += entry.file_size
    if total > MAX_ZIP_BYTES:
        raise Rejected(f"the zip unpacks to {total / 2**20:.0f} MiB; at most {MAX_ZIP_BYTES / 2**20:.0f} MiB are accepted")


def prepare_results_dir(results_dir: Path, *, seed: int | None, exercises: Sequence[str], force: bool) -> dict:
    """Checks ``results_dir`` against this run and writes its ``batch.json``; returns the batch record.

    A folder graded before keeps its seed unless another is asked for, so a
    re-run can skip unchanged submissions.

    Raises:
      BatchError: the folder is not empty and not a results folder, or was
        graded by another grader version, seed or exercises (without ``force``).
    """
    version = grader_version()
    batch_file = results_dir / BATCH_FILE
    previous = None
    if batch_file.is_file():
        previous = json.loads(batch_file.read_text())
        if not isinstance(previous, dict) or previous.get("schema") != BATCH_SCHEMA:
            raise BatchError(f"--out: {batch_file} is not a batch file of schema {BATCH_SCHEMA}")
        changes = [f"{what} {previous.get(key)!r} (this run: {now!r})" for what, key, now in (
            ("grader version", "grader_version", version),
            ("seed", "seed", seed if seed is not None else previous.get("seed")),
            ("exercises", "exercises", list(exercises)),
        ) if previous.get(key) != now]
        if changes and not force:
            raise BatchError(f"--out: {results_dir} was graded with " + ", ".join(changes)
                             + "; use --force to regrade every submission, or another --out")
    elif results_dir.is_dir() and any(results_dir.iterdir()):
        raise BatchError(f"--out: {results_dir} is not empty and holds no {BATCH_FILE}: not a results folder of course grade-all")
    if seed is None:
        seed = previous["seed"] if previous else draw_seed()
    record = {"schema": BATCH_SCHEMA, "grader_version": version, "seed": seed, "exercises": list(exercises),
              "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    results_dir.mkdir(parents=True, exist_ok=True, mode=0o700)  # grades and the seed: the course staff's only
    write_json(batch_file, record)
    return record


def grade_one(student: str, source: Path, results_dir: Path, batch: dict, *, limits: sandbox.Limits | None,
              force: bool, isolation: str = "auto", open_interpreter_path: bool = False) -> Outcome:
    """Grades one student's submission into ``results_dir/<student>/``, or skips it when nothing changed."""
    started = time.monotonic()
    digest = content_hash(source)
    key = {"content_hash": digest, "grader_version": batch["grader_version"], "seed": batch["seed"], "exercises": batch["exercises"]}
    out = results_dir / student
    record_file = out / STUDENT_FILE
    if not force and record_file.is_file():
        record = json.loads(record_file.read_text())
        # A grader error is the grader's fault, never final: only graded or rejected submissions are kept.
        final = record.get("status") in (SubmissionStatus.GRADED, SubmissionStatus.REJECTED)
        if final and all(record.get(k) == v for k, v in key.items()):
            return Outcome(student, SubmissionStatus(record["status"]), record["score"], record["max_score"], record["reason"],
                           skipped=True)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True, mode=0o700)
    try:
        with unpacked(source) as folder:
            result = grading.grade(folder, exercises=batch["exercises"], out=out, seed=batch["seed"], limits=limits,
                                   isolation=isolation, open_interpreter_path=open_interpreter_path)
    except (Rejected, ValueError) as error:  # the submission's own faults: a bad zip, a link, graders.grade's refusals
        outcome = Outcome(student, SubmissionStatus.REJECTED, reason=str(error), seconds=time.monotonic() - started)
    except Exception as error:  # the grader's side failed (a read-only cache, a full disk): never final, regraded next run
        outcome = Outcome(student, SubmissionStatus.GRADER_ERROR, reason=f"grading this submission failed: {error!r}",
                          seconds=time.monotonic() - started)
    else:
        status = SubmissionStatus.GRADED if result.status == RunStatus.OK else SubmissionStatus.GRADER_ERROR
        outcome = Outcome(student, status, result.score, result.max_score, _reason(result), time.monotonic() - started)
    write_json(record_file, {**key, "student": student, "source": source.name, **asdict(outcome), "skipped": False})
    return outcome


def _reason(result) -> str:
    """Why a grade needs a look: the grader's errors, or the first message when no case passed (a broken submission)."""
    if result.errors:
        return "; ".join(result.errors)[:2000]
    cases = [c for e in result.exercises for c in e.cases]
    if cases and not any(c.status == CaseStatus.PASSED for c in cases):
        return f"no case passed; first: {cases[0].message.splitlines()[0][:300]}" if cases[0].message else "no case passed"
    return ""


def grade_all(
    submissions_dir: str | os.PathLike[str],
    results_dir: str | os.PathLike[str],
    *,
    jobs: int | None = None,
    force: bool = False,
    seed: int | None = None,
    exercises: Sequence[str] | None = None,
    limits: sandbox.Limits | None = None,
    isolation: str = "auto",
    open_interpreter_path: bool = False,
    on_start: Callable[[int], None] | None = None,
    on_done: Callable[[Outcome], None] | None = None,
) -> BatchResult:
    """Grades every submission of ``submissions_dir`` into ``results_dir``, ``jobs`` at a time.

    Args:
      submissions_dir: one folder or ``.zip`` per student, named by the student id.
      results_dir: the results folder (created; see the module docstring).
      jobs: submissions graded at once (default: one per core).
      force: regrade every submission, and accept a results folder of another
        grader version, seed or exercises.
      seed: the seed of every student's inputs (default: the results folder's, or random).
      exercises: the exercises to grade (default: every one with a suite).
      limits: each worker's limits (default :class:`graders.Limits()`).
      isolation, open_interpreter_path: as for :func:`graders.grade`; checked once, before any grading.
      on_start: called with the number of submissions before grading starts.
      on_done: called with each :class:`Outcome` as it completes (from this thread).

    Raises:
      BatchError: see :func:`discover` and :func:`prepare_results_dir`.
      ValueError: ``jobs`` or ``seed`` out of range, or an unknown ``isolation``; KeyError: an unknown exercise, or
        one without a grader suite.
      SandboxUnavailable: the isolation asked for cannot be had (see :func:`graders.engine.grading.isolation_level`).
    """
    started = time.monotonic()
    jobs, names = _checked_arguments(jobs, seed, exercises)
    grading.isolation_level(isolation, open_interpreter_path=open_interpreter_path)
    submissions = discover(submissions_dir)
    out = Path(results_dir)
    batch = prepare_results_dir(out, seed=seed, exercises=names, force=force)
    if on_start is not None:
        on_start(len(submissions))
    grade = functools.partial(grade_one, limits=limits, force=force, isolation=isolation, open_interpreter_path=open_interpreter_path)
    outcomes = _grade_in_pool(submissions, out, batch, grade, jobs=jobs, on_done=on_done)
    return BatchResult(out, batch["seed"], batch["grader_version"], tuple(names),
                       tuple(sorted(outcomes, key=lambda o: o.student)), time.monotonic() - started)


def _checked_arguments(jobs: int | None, seed: int | None, exercises: Sequence[str] | None) -> tuple[int, list[str]]:
    """The number of jobs (default: one per core) and the exercises to grade (default: every one with a suite).

    Raises:
      ValueError: ``jobs`` or ``seed`` out of range; KeyError: an exercise without a grader suite.
    """
    if jobs is None:
        jobs = os.cpu_count() or 1
    if not (isinstance(jobs, int) and jobs >= 1):
        raise ValueError(f"jobs: expected a positive int, got {jobs!r}")
    if seed is not None:
        check_seed(seed)
    names = list(exercises) if exercises else grading.graded_exercises()
    grading.check_graded(names)
    return jobs, names


def _grade_in_pool(submissions: dict[str, Path], out: Path, batch: dict, grade: Callable[..., Outcome], *, jobs: int,
                   on_done: Callable[[Outcome], None] | None) -> list[Outcome]:
    """Grades every submission with ``grade`` (:func:`grade_one`), ``jobs`` at a time, and tells ``on_done`` of each
    outcome as it completes."""
    outcomes = []
    with ThreadPoolExecutor(max_workers=jobs) as pool:  # threads suffice: each grading is its own processes
        futures = {pool.submit(grade, s, p, out, batch): s for s, p in submissions.items()}
        for future in as_completed(futures):
            outcome = _outcome_of(future, futures[future], out)
            outcomes.append(outcome)
            if on_done is not None:
                on_done(outcome)
    return outcomes


def _outcome_of(future, student: str, out: Path) -> Outcome:
    """The future's outcome; an unexpected error of the batch code becomes that student's grader_error, recorded."""
    error = future.exception()
    if error is None:
        return future.result()
    detail = "".join(traceback.format_exception(error))
    outcome = Outcome(student, SubmissionStatus.GRADER_ERROR, reason=f"grading this submission failed: {error!r}")
    (out / student).mkdir(parents=True, exist_ok=True)
    write_json(out / student / STUDENT_FILE, {"student": student, **asdict(outcome), "detail": detail})
    return outcome
