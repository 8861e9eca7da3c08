"""``course grade-all``: grade a whole class, one result folder per student.

A submissions folder holds one entry per student, named by the student's id:
a folder shaped like ``exercises/`` or a ``.zip`` of one. Each is graded by
:func:`graders.grade` (its own sandboxed worker, in its job's pytest process),
several at a time, so a crash, hang or output flood costs only that student's grade.

The results folder holds ``batch.json`` (the grader version, the seed and the
exercises of the class run) and, per student, ``<student>/`` with the score
files of :func:`graders.grade` and ``submission.json`` (the content hash,
the status and, for a rejected submission, the reason; names in
:mod:`graders.results.layout`). A re-run skips every
student whose content hash, grader version, seed and exercises are unchanged.

Beyond one machine: ``scheduler=`` sends the gradings to a Dask cluster's
workers (:mod:`graders.cluster`), and ``shard=(index, count)`` grades one of
``count`` disjoint parts of the class, whose folders :func:`merge_results`
joins into the folder of the unsharded run.

Every student of a run is graded with the run's seed, so the reference's
outputs are computed by the first grading and read by the others from the
grader's reference store (:mod:`graders.engine.reference_store`), which no
worker can see; its compilations are kept in JAX's persistent compilation
cache (``graders.engine.grading.default_cache_dir``) beside it. A batch's
students then cost about the half of a grading that is the submission's own
compilation and run (``BENCHMARKS.md``). Each local job also keeps one pytest
process for all its gradings (:mod:`graders.engine.pytest_server`), so the
trusted side starts once per job; every student still gets a fresh worker.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import queue
import re
import shutil
import stat
import tempfile
import threading
import time
import traceback
import zipfile
import zlib
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path

from course.folders import replacing, tidy
from course.seeds import check_seed, draw_seed
from course.submission import is_skipped
from graders.engine import grading, sandbox
from graders.engine.grading import grader_version
from graders.engine.pytest_server import PytestServer
from graders.results import layout
from graders.results.layout import BATCH_FILE, BATCH_SCHEMA, STUDENT_FILE
from graders.results.scores import CaseStatus, RunStatus, SubmissionStatus, write_json

STUDENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,127}$")
# Zip bounds: a submission is a few small Python files; anything near these is a mistake or an attack.
MAX_ZIP_FILES = 2000
MAX_ZIP_BYTES = 50 * 2**20  # uncompressed, all entries together
MAX_ZIP_RATIO = 200  # uncompressed / compressed size of one entry (a zip bomb)
# What every zip tool writes (stored, deflate); others (deflate64, bzip2 ...) fail on some
# Python builds, and their errors cannot be told apart from the grader's own.
ZIP_METHODS = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflate"}


class BatchError(ValueError):
    """The class run cannot start: the submissions or results folder is not usable."""


class Rejected(Exception):
    """One submission cannot be graded (a bad zip, an unsafe entry); it scores zero with this reason."""


class Stopped(Exception):
    """The class run was stopped (Ctrl-C) while this grading ran: it is dropped, and the grade recorded before stays."""


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
        if student == BATCH_FILE:
            raise BatchError(f"SUBMISSIONS_DIR: {entry.name!r} would be graded into the results folder's own {BATCH_FILE}; rename it")
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
      Rejected: not a zip or damaged, an entry outside ``target`` (absolute or with ``..``),
        a symbolic link, encrypted or compressed another way than :data:`ZIP_METHODS`,
        too many entries, too large or too compressed.
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
    except (zipfile.BadZipFile, zlib.error, EOFError) as error:  # not a zip; damaged data, a wrong CRC; cut short
        raise Rejected(f"not a readable zip file ({str(error) or 'it ends too early'})") from None
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
        if entry.flag_bits & 0x1:
            raise Rejected(f"the zip entry {name!r} is encrypted; submit a zip without a password")
        if entry.compress_type not in ZIP_METHODS:
            raise Rejected(f"the zip entry {name!r} is compressed with method {entry.compress_type}; "
                           f"use {' or '.join(ZIP_METHODS.values())} (any zip tool's default)")
        if entry.file_size > MAX_ZIP_RATIO * max(entry.compress_size, 1024):
            raise Rejected(f"the zip entry {name!r} is compressed more than {MAX_ZIP_RATIO}:1 (a zip bomb?)")
        total += entry.file_size
    if total > MAX_ZIP_BYTES:
        raise Rejected(f"the zip unpacks to {total / 2**20:.0f} MiB; at most {MAX_ZIP_BYTES / 2**20:.0f} MiB are accepted")


def read_batch(results_dir: Path, *, option: str = "--out") -> dict | None:
    """The batch record (``batch.json``) of ``results_dir``, or ``None`` when it has none.

    Raises:
      BatchError: the file is not a batch file of :data:`BATCH_SCHEMA` (named with ``option``).
    """
    if not (results_dir / BATCH_FILE).is_file():
        return None
    try:
        return layout.read_batch(results_dir)
    except ValueError as error:
        raise BatchError(f"{option}: {error}") from None


def batch_record(*, grader_version: str, seed: int, exercises: Sequence[str], started: str,
                 shard: tuple[int, int] | None = None) -> dict:
    """A results folder's ``batch.json``; a shard's (``shard=(index, count)``) also names its shard."""
    record = {"schema": BATCH_SCHEMA, "grader_version": grader_version, "seed": seed, "exercises": list(exercises),
              "started": started}
    return record if shard is None else {**record, "shard": list(shard)}


def prepare_results_dir(results_dir: Path, *, seed: int | None, exercises: Sequence[str], force: bool,
                        shard: tuple[int, int] | None = None) -> dict:
    """Checks ``results_dir`` against this run and writes its ``batch.json``; returns the batch record.

    A folder graded before keeps its seed unless another is asked for, so a
    re-run can skip unchanged submissions.

    Raises:
      BatchError: the folder is not empty and not a results folder, or was graded by another grader version, seed,
        exercises or shard (without ``force``).
    """
    version = grader_version()
    previous = read_batch(results_dir)
    if previous is not None:
        changes = [f"{what} {previous.get(key)!r} (this run: {now!r})" for what, key, now in (
            ("grader version", "grader_version", version),
            ("seed", "seed", seed if seed is not None else previous.get("seed")),
            ("exercises", "exercises", list(exercises)),
            ("shard", "shard", list(shard) if shard is not None else None),
        ) if previous.get(key) != now]
        if changes and not force:
            raise BatchError(f"--out: {results_dir} was graded with " + ", ".join(changes)
                             + "; use --force to regrade every submission, or another --out")
    elif results_dir.is_dir() and any(results_dir.iterdir()):
        raise BatchError(f"--out: {results_dir} is not empty and holds no {BATCH_FILE}: not a results folder of course grade-all")
    if seed is None:
        seed = previous["seed"] if previous else draw_seed()
    record = batch_record(grader_version=version, seed=seed, exercises=exercises, shard=shard,
                          started=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    results_dir.mkdir(parents=True, exist_ok=True, mode=0o700)  # grades and the seed: the course staff's only
    tidy(results_dir)
    write_json(results_dir / BATCH_FILE, record)
    return record


def skip_key(source: Path, batch: dict) -> dict:
    """What a recorded grade of ``source`` must match to be kept: its content hash and the batch's grader version,
    seed and exercises."""
    return {"content_hash": content_hash(source), "grader_version": batch["grader_version"], "seed": batch["seed"],
            "exercises": batch["exercises"]}


def recorded_outcome(out: Path, student: str, key: dict) -> Outcome | None:
    """The outcome recorded in ``out`` when it still holds for ``key`` (:func:`skip_key`), else ``None``.

    A grader error is the grader's fault, never final: only graded or rejected submissions are kept.
    """
    try:
        record = layout.read_student(out)
    except ValueError:  # none, or damaged: graded again
        return None
    final = record["status"] in (SubmissionStatus.GRADED, SubmissionStatus.REJECTED)
    return _recorded(record, student) if final and all(record.get(k) == v for k, v in key.items()) else None


def grade_one(student: str, source: Path, results_dir: Path, batch: dict, *, limits: sandbox.Limits | None,
              force: bool, isolation: str = "auto", open_interpreter_path: bool = False,
              cores: Sequence[int] | None = None, server: PytestServer | None = None,
              stop: threading.Event | None = None) -> Outcome:
    """Grades one student's submission into ``results_dir/<student>/`` on ``cores`` (in the job's pytest ``server``),
    or skips it when nothing changed; ``stop``: as for :func:`grade_into`."""
    key = skip_key(source, batch)
    out = results_dir / student
    recorded = None if force else recorded_outcome(out, student, key)
    if recorded is not None:
        return recorded
    return grade_into(out, student, source, key, limits=limits, isolation=isolation, open_interpreter_path=open_interpreter_path,
                      cores=cores, server=server, stop=stop)


def grade_into(out: Path, student: str, source: Path, key: dict, *, limits: sandbox.Limits | None, isolation: str,
               open_interpreter_path: bool, cores: Sequence[int] | None = None,
               server: PytestServer | None = None, stop: threading.Event | None = None) -> Outcome:
    """Grades ``source`` into the folder ``out``: the score files and ``submission.json`` (``key`` and the outcome),
    which replace what ``out`` held only once complete (:func:`replacing`).

    Raises:
      Stopped: ``stop`` was set (the class run was interrupted) before the grading ended; ``out`` is left as it was.
    """
    started = time.monotonic()
    with replacing(out) as folder:
        try:
            with unpacked(source) as submission:
                result = grading.grade(submission, exercises=key["exercises"], out=folder, seed=key["seed"], limits=limits,
                                       isolation=isolation, open_interpreter_path=open_interpreter_path, cores=cores,
                                       server=server)
        except (Rejected, ValueError) as error:  # the submission's own faults: a bad zip, a link, graders.grade's refusals
            outcome = Outcome(student, SubmissionStatus.REJECTED, reason=str(error), seconds=time.monotonic() - started)
        except Exception as error:  # the grader's side failed (a read-only cache, a full disk): never final, regraded next run
            outcome = Outcome(student, SubmissionStatus.GRADER_ERROR, reason=f"grading this submission failed: {error!r}",
                              seconds=time.monotonic() - started)
        else:
            status = SubmissionStatus.GRADED if result.status == RunStatus.OK else SubmissionStatus.GRADER_ERROR
            outcome = Outcome(student, status, result.score, result.max_score, _reason(result), time.monotonic() - started)
        if stop is not None and stop.is_set():
            raise Stopped(student)
        write_json(folder / STUDENT_FILE, {**key, "student": student, "source": source.name, **asdict(outcome), "skipped": False})
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
    scheduler: str | None = None,
    shard: tuple[int, int] | None = None,
    on_start: Callable[[int], None] | None = None,
    on_done: Callable[[Outcome], None] | None = None,
) -> BatchResult:
    """Grades every submission of ``submissions_dir`` into ``results_dir``, ``jobs`` at a time or on a Dask cluster.

    Args:
      submissions_dir: one folder or ``.zip`` per student, named by the student id.
      results_dir: the results folder (created; see the module docstring).
      jobs: submissions graded at once on this machine (default: one per core); not with ``scheduler``.
      force: regrade every submission, and accept a results folder of another
        grader version, seed, exercises or shard.
      seed: the seed of every student's inputs (default: the results folder's, or random; required with ``shard``).
      exercises: the exercises to grade (default: every one with a suite).
      limits: each worker's limits (default :class:`graders.Limits()`).
      isolation, open_interpreter_path: as for :func:`graders.grade`; checked once, before any grading.
      scheduler: the address of a Dask scheduler (``tcp://host:8786``) whose workers grade the submissions
        (:mod:`graders.cluster`); ``None`` grades on this machine.
      shard: ``(index, count)``: grade only the students of that shard (:func:`shard_of`), for ``count`` plain
        processes whose results folders :func:`merge_results` joins.
      on_start: called with the number of submissions before grading starts.
      on_done: called with each :class:`Outcome` as it completes (from this thread).

    Raises:
      BatchError: see :func:`discover` and :func:`prepare_results_dir`; ``jobs`` with ``scheduler``, ``shard``
        without ``seed``; and, with ``scheduler``, see :func:`graders.cluster.grade_on_cluster`.
      ValueError: ``jobs``, ``seed`` or ``shard`` out of range, or an unknown ``isolation``; KeyError: an unknown
        exercise, or one without a grader suite.
      SandboxUnavailable: the isolation asked for cannot be had (see :func:`graders.engine.grading.isolation_level`).
    """
    started = time.monotonic()
    names = _checked_arguments(jobs, seed, exercises, scheduler=scheduler, shard=shard)
    grading.isolation_level(isolation, open_interpreter_path=open_interpreter_path)
    root = Path(submissions_dir).absolute()  # the path each score file records, on this machine or a worker
    submissions = discover(root)
    if shard is not None:
        submissions = {s: p for s, p in submissions.items() if shard_of(s, shard[1]) == shard[0]}
    out = Path(results_dir)
    if out.resolve().is_relative_to(root.resolve()):
        raise BatchError(f"--out: {out} lies inside SUBMISSIONS_DIR, where its folders would be graded as students; "
                         "choose a folder outside it")
    options = {"limits": limits, "isolation": isolation, "open_interpreter_path": open_interpreter_path}
    if scheduler is None:
        batch = prepare_results_dir(out, seed=seed, exercises=names, force=force, shard=shard)
        if on_start is not None:
            on_start(len(submissions))
        grade = functools.partial(grade_one, force=force, **options)
        outcomes = _grade_in_pool(submissions, out, batch, grade, jobs=jobs or os.cpu_count() or 1, on_done=on_done)
    else:
        from graders.cluster import connect, grade_on_cluster  # Dask is an optional extra

        with connect(scheduler, root) as client:  # before the results folder is touched
            batch = prepare_results_dir(out, seed=seed, exercises=names, force=force, shard=shard)
            if on_start is not None:
                on_start(len(submissions))
            outcomes = grade_on_cluster(client, submissions, out, batch, options, force=force, on_done=on_done)
    return BatchResult(out, batch["seed"], batch["grader_version"], tuple(names),
                       tuple(sorted(outcomes, key=lambda o: o.student)), time.monotonic() - started)


def shard_of(student: str, count: int) -> int:
    """The shard, ``0 <= shard < count``, that grades ``student``: from a hash of the id alone, so a student keeps
    their shard (and their skip) when the class changes."""
    return int.from_bytes(hashlib.sha256(student.encode()).digest()[:8], "big") % count


def parse_shard(text: str) -> tuple[int, int]:
    """``"I/N"`` (``0 <= I < N``) as ``(I, N)``.

    Raises:
      ValueError: not two integers ``I/N`` with ``0 <= I < N``.
    """
    match = re.fullmatch(r"(\d+)/(\d+)", text.strip())
    if match is None or not int(match[1]) < int(match[2]):
        raise ValueError(f"expected I/N with 0 <= I < N (shard I of N, from 0), got {text!r}")
    return int(match[1]), int(match[2])


def _checked_arguments(jobs: int | None, seed: int | None, exercises: Sequence[str] | None, *, scheduler: str | None,
                       shard: tuple[int, int] | None) -> list[str]:
    """The exercises to grade (default: every one with a suite), once the other arguments are checked.

    Raises:
      BatchError: ``jobs`` with ``scheduler``, or ``shard`` without ``seed``.
      ValueError: ``jobs``, ``seed`` or ``shard`` out of range; KeyError: an exercise without a grader suite.
    """
    if jobs is not None and not (isinstance(jobs, int) and jobs >= 1):
        raise ValueError(f"jobs: expected a positive int, got {jobs!r}")
    if jobs is not None and scheduler is not None:
        raise BatchError("--jobs: the cluster's workers set how many submissions are graded at once; leave it out with --scheduler")
    if seed is not None:
        check_seed(seed)
    if shard is not None:
        parse_shard(f"{shard[0]}/{shard[1]}")
        if seed is None:
            raise BatchError("--shard: give --seed too, so that every shard grades with the same inputs")
    names = grading.to_grade(exercises)
    return names


def _grade_in_pool(submissions: dict[str, Path], out: Path, batch: dict, grade: Callable[..., Outcome], *, jobs: int,
                   on_done: Callable[[Outcome], None] | None) -> list[Outcome]:
    """Grades every submission with ``grade`` (:func:`grade_one`), ``jobs`` at a time, each job on its own slice of
    this machine's cores (:func:`sandbox.core_slices`) with its own pytest server (:mod:`graders.engine.pytest_server`:
    the trusted side's start-up once per job), and tells ``on_done`` of each outcome as it completes."""
    free = queue.SimpleQueue()
    servers = []
    for cores in sandbox.core_slices(jobs, sandbox.check_cores(None)):
        servers.append(grading.pytest_server())
        free.put((cores, servers[-1]))
    stop = threading.Event()

    def on_a_free_slice(*args):
        cores, server = free.get()  # never waits: at most `jobs` gradings run at once, and there are `jobs` slices
        try:
            return grade(*args, cores=cores, server=server, stop=stop)
        finally:
            free.put((cores, server))

    outcomes = []
    pool = ThreadPoolExecutor(max_workers=jobs)  # threads suffice: each grading is its own processes
    try:
        futures = {pool.submit(on_a_free_slice, s, p, out, batch): s for s, p in submissions.items()}
        for future in as_completed(futures):
            outcome = outcome_of(future, futures[future], out)
            outcomes.append(outcome)
            if on_done is not None:
                on_done(outcome)
    except BaseException:  # Ctrl-C: nothing more starts, the gradings under way end now, and their students keep their grades
        stop.set()
        pool.shutdown(wait=False, cancel_futures=True)
        for server in servers:
            server.stop()
        raise
    finally:
        pool.shutdown(wait=True)
        for server in servers:
            server.close()
    return outcomes


def outcome_of(future, student: str, out: Path, finish: Callable[..., Outcome] = lambda result: result) -> Outcome:
    """The outcome of ``finish(future.result())`` (a cluster's writes the returned files); an unexpected error of the
    batch code, the cluster or ``finish`` becomes that student's grader_error, recorded."""
    try:
        return finish(future.result())
    except Exception as error:
        detail = "".join(traceback.format_exception(error))
        outcome = Outcome(student, SubmissionStatus.GRADER_ERROR, reason=f"grading this submission failed: {error!r}")
        (out / student).mkdir(parents=True, exist_ok=True)
        write_json(out / student / STUDENT_FILE, {"student": student, **asdict(outcome), "detail": detail})
        return outcome


def merge_results(shard_dirs: Sequence[str | os.PathLike[str]], results_dir: str | os.PathLike[str]) -> BatchResult:
    """Joins the results folders of every shard of a class run into ``results_dir``: the folder the unsharded run writes.

    Each shard folder's ``batch.json`` names its shard (``--shard I/N``); together they must be shards ``0 .. N-1``
    of one grader version, seed and exercises. Every student's folder is copied as it is; ``batch.json`` is the
    unsharded run's, started when the first shard started.

    Returns:
      The merged run: its outcomes read from the students' records (``skipped``: none was graded here).

    Raises:
      BatchError: ``results_dir`` is not new or empty; a shard folder is not a shard's results folder, disagrees
        with the others, repeats a shard or a student, or a shard is missing.
    """
    started = time.monotonic()
    out = Path(results_dir)
    if not shard_dirs:
        raise BatchError("SHARD_DIR: give the --out folder of every shard")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise BatchError(f"--out: {out} is not an empty folder; merge into a new one")
    shards = {}
    for folder in map(Path, shard_dirs):
        record = read_batch(folder, option="SHARD_DIR")
        if record is None or "shard" not in record:
            raise BatchError(f"SHARD_DIR: {folder} holds no {BATCH_FILE} of a shard; expected the --out of course grade-all --shard I/N")
        index, count = record["shard"]
        if (index, count) in shards:
            raise BatchError(f"SHARD_DIR: {folder} and {shards[index, count][0]} are both shard {index}/{count}")
        shards[index, count] = (folder, record)
    (_, first), *_ = shards.values()
    same = ("grader_version", "seed", "exercises")
    for folder, record in shards.values():
        differs = [f"{key} {record[key]!r} (not {first[key]!r})" for key in same if record[key] != first[key]]
        if differs or record["shard"][1] != first["shard"][1]:
            raise BatchError(f"SHARD_DIR: {folder} is of another run: " + ", ".join(differs or [f"shard {record['shard']}"]))
    count = first["shard"][1]
    missing = [f"{i}/{count}" for i in range(count) if (i, count) not in shards]
    if missing:
        raise BatchError(f"SHARD_DIR: shard {', '.join(missing)} missing; give the --out folder of every shard")
    students: dict[str, Path] = {}
    for folder, _ in shards.values():
        for entry in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
            if entry.name in students:
                raise BatchError(f"SHARD_DIR: student {entry.name!r} is in both {students[entry.name].parent} and {folder}")
            students[entry.name] = entry
    records = {}
    for student, entry in students.items():
        try:
            records[student] = layout.read_student(entry)
        except ValueError as error:
            raise BatchError(f"SHARD_DIR: {entry} holds no readable {STUDENT_FILE} ({error}): not a student's finished "
                             "results; grade it again with course grade-all, or remove it") from None
    merged = batch_record(started=min(record["started"] for _, record in shards.values()), **{k: first[k] for k in same})
    with replacing(out) as new:  # out appears whole, or not at all
        for student, entry in students.items():
            shutil.copytree(entry, new / student, ignore=shutil.ignore_patterns(".*"))
        write_json(new / BATCH_FILE, merged)
    outcomes = tuple(_recorded(records[s], s) for s in sorted(students))
    return BatchResult(out, merged["seed"], merged["grader_version"], tuple(merged["exercises"]), outcomes,
                       time.monotonic() - started)


def _recorded(record: dict, student: str) -> Outcome:
    """The outcome a student's ``submission.json`` (``record``) holds, as one not graded in this run."""
    return Outcome(student, SubmissionStatus(record["status"]), record["score"], record["max_score"], record["reason"], skipped=True)
