"""``graders.grade``: grade one submission against the hidden suites and write the score files.

The grading runs in two trusted processes and one untrusted one:

1. this process (``course grade``, or any Python caller such as a batch
   grader) copies nothing of the submission's code into itself: it writes a
   settings file, runs pytest on the suites in a child process, converts the
   pytest-json-report output into the score model and writes every file;
2. the pytest process holds the reference and the suites (plugin
   :mod:`graders.engine.plugin`) and starts
3. the worker (:mod:`graders.engine.sandbox`), where the submission's code runs.

Whatever happens, a score file is written: a crash of the pytest process (a
grader bug, never the submission's doing) gives a result with status
``grader_error`` and the reason.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from course import catalog, submission as submissions
from course.pytest_child import run_pytest
from course.seeds import check_seed, draw_seed
from graders.engine import sandbox
from graders.engine.pytest_server import PytestServer
from graders.results import gradescope, pytest_report
from graders.results.scores import GradingResult, RunStatus, write_json

SUITES = Path(__file__).resolve().parents[1] / "suites"
# What a grade depends on: the grading engine and worker, the suites, the reference and the course runtime.
# The batch, report and bundle tools beside them never change a grade, so editing them keeps results folders valid.
_GRADING_SOURCES = ("course", "graders/engine", "graders/runtime", "graders/suites", "reference")
RESULTS_FILE, REPORT_FILE, SCORE_FILE = "results.json", "report.json", "score.json"
PID_FILE = "workers"  # beside the settings: where the pytest process notes each worker it starts


def suite_path(name: str) -> Path:
    """The grader suite of exercise ``name``."""
    return SUITES / f"test_{name}.py"


def graded_exercises() -> list[str]:
    """The exercises of the catalogue that have a grader suite, in catalogue order."""
    return [e.name for e in catalog.EXERCISES if suite_path(e.name).is_file()]


def to_grade(names: Sequence[str] | None) -> list[str]:
    """The exercises to grade: ``names`` (default: every one with a suite), checked, each once, in catalogue order,
    so that a repeated ``-e`` cannot count an exercise twice and the order given does not change a class run.

    Raises:
      KeyError: as :func:`check_graded`.
    """
    if not names:
        return graded_exercises()
    check_graded(names)
    return [name for name in graded_exercises() if name in names]


def check_graded(names: Sequence[str]) -> None:
    """Checks that every exercise of ``names`` is in the catalogue and has a grader suite.

    Raises:
      KeyError: an unknown exercise, or one without a grader suite; the message names it.
    """
    for name in names:
        catalog.get(name)
        if not suite_path(name).is_file():
            raise KeyError(f"exercise: {name!r} has no grader suite (graders/suites/test_{name}.py)")


def grader_version() -> str:
    """A hash of the Python code a grade depends on: the grading engine, suites, reference and course runtime."""
    root = Path(__file__).resolve().parents[2]
    digest = hashlib.sha256()
    for top in _GRADING_SOURCES:
        for path in sorted((root / top).rglob("*.py")):
            relative = path.relative_to(root)
            if not submissions.is_skipped(relative):
                digest.update(relative.as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def default_cache_dir() -> Path:
    """Where the reference side keeps JAX's persistent compilation cache (private to this user)."""
    from importlib.metadata import version  # not jax itself: this process never imports it

    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "jax-transformers-course" / f"jax-{version('jax')}"


def grade(
    submission: str | os.PathLike[str],
    *,
    exercises: Sequence[str] | None = None,
    out: str | os.PathLike[str] | None = None,
    seed: int | None = None,
    limits: sandbox.Limits | None = None,
    forbidden: Mapping[str, Sequence[str]] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    isolation: str = "auto",
    open_interpreter_path: bool = False,
    cores: Sequence[int] | None = None,
    server: PytestServer | None = None,
) -> GradingResult:
    """Grades ``submission`` and, when ``out`` is given, writes its score files there.

    Args:
      submission: a folder shaped like ``exercises/``.
      exercises: the exercises to grade (default: every one with a suite).
      out: the folder for ``results.json`` (Gradescope), ``report.json`` (raw
        pytest-json-report) and ``score.json`` (the project's score file);
        created if missing. ``None`` writes nothing.
      seed: the seed of the inputs, ``0 <= seed < 2**32``; random when ``None``.
        The same seed and submission give the same grade.
      limits: the worker's limits (default :class:`graders.engine.sandbox.Limits()`).
      forbidden: per exercise, the forbidden routines (default: the catalogue's).
      cache_dir: JAX's persistent compilation cache for the reference side
        (default :func:`default_cache_dir`).
      isolation: how the worker is isolated: ``"auto"`` (bubblewrap where it
        runs, else the fallback), ``"bubblewrap"`` (refuse without it) or
        ``"fallback"``; the level used is recorded in the result (see
        :mod:`graders.engine.sandbox`).
      open_interpreter_path: on the fallback as root, add search permission for
        other users to the folders above this Python when the worker's user
        cannot reach it (otherwise that is refused with what to change).
      cores: the CPU cores the grading's processes run on (default: this
        process's); XLA sizes its thread pools to them, so parallel jobs given
        disjoint slices (:func:`graders.engine.sandbox.core_slices`) do not
        oversubscribe the machine.
      server: run the suites in this batch job's pytest server (made by
        :func:`pytest_server`) instead of a new pytest process: the same
        grading without paying the process's start-up again.

    Returns:
      The :class:`~graders.results.scores.GradingResult`; its ``status`` is
      ``grader_error`` when the grading itself failed.

    Raises:
      FileNotFoundError, NotADirectoryError: ``submission`` is not a folder.
      KeyError: an unknown exercise, or one without a grader suite.
      ValueError: ``seed`` out of range, a submission too large to copy, or one
        that is not what it says (see :func:`check_submission`), an unknown ``isolation``, or ``cores`` not
        a non-empty set of this process's cores.
      SandboxUnavailable: the isolation asked for cannot be had (see :func:`isolation_level`).
    """
    started = time.monotonic()
    plan = _plan(submission, exercises=exercises, seed=seed, limits=limits, forbidden=forbidden, cache_dir=cache_dir,
                 isolation=isolation, open_interpreter_path=open_interpreter_path, cores=cores)
    out_dir = Path(out) if out is not None else None
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    sandbox.remove_stale_scratch()
    with sandbox.claim_slot() as slot:
        uid = sandbox.slot_uid(slot)
        sandbox.kill_user(uid)  # whatever an earlier grading in this slot left behind (its grader was killed)
        try:
            report, log, pytest_seconds = _run_child(plan, uid, server)
        finally:
            sandbox.kill_user(uid)
            sandbox.remove_files_of(uid)
    result = _result(report, log, submission=str(submission), seed=plan.seed, exercises=plan.exercises)
    total = time.monotonic() - started
    result = replace(result, isolation=plan.isolation,
                     timings={**result.timings, "pytest_process": round(pytest_seconds, 3), "total": round(total, 3)})
    if out_dir is not None:
        _write_files(out_dir, result, report, execution_time=total)
    return result


def check_submission(submission: str | os.PathLike[str]) -> Path:
    """The resolved folder of ``submission``, refused unless it is what its path says.

    A path that is or passes through a symbolic link, or that resolves inside
    the course repository (which holds the reference) other than its own
    ``exercises/`` and ``reference/``, could grade the grader's own files as
    the student's.

    Raises:
      FileNotFoundError, NotADirectoryError: ``submission`` is not a folder.
      ValueError: a symbolic link on the way, or a folder inside the repository.
    """
    root = submissions.resolve(submission)
    given = Path(os.path.abspath(Path(submission).expanduser()))
    if os.path.lexists(given):  # else a bare name that resolve took to the repository's folder
        link = next((p for p in (given, *given.parents) if p.is_symlink()), None)
        if link is not None:
            raise ValueError(f"submission: {str(submission)!r} passes through the symbolic link {link}; give the folder itself")
    repo = submissions.repo_root()
    if root.is_relative_to(repo) and not any(root.is_relative_to(repo / f) for f in submissions.REPOSITORY_FOLDERS):
        raise ValueError(f"submission: {str(submission)!r} is inside the course repository ({repo}), not a submission")
    return root


@dataclass(frozen=True)
class _Plan:
    """One grading's checked arguments and the folders it uses."""

    submission: Path  # resolved
    exercises: list[str]
    forbidden: dict[str, list[str]]  # per exercise
    seed: int
    limits: sandbox.Limits
    repo: Path
    cache: Path
    isolation: str  # one of sandbox.LEVELS
    made_searchable: list[str]  # folders given o+x so that the worker's user can run Python
    cores: list[int]  # the CPU cores of the pytest process and its workers


def _plan(
    submission: str | os.PathLike[str],
    *,
    exercises: Sequence[str] | None,
    seed: int | None,
    limits: sandbox.Limits | None,
    forbidden: Mapping[str, Sequence[str]] | None,
    cache_dir: str | os.PathLike[str] | None,
    isolation: str,
    open_interpreter_path: bool,
    cores: Sequence[int] | None,
) -> _Plan:
    """Checks :func:`grade`'s arguments (raising as it documents) and fills in their defaults; chooses the
    isolation level and makes the compilation cache's folder."""
    root = check_submission(submission)
    names = to_grade(exercises)
    seed = draw_seed() if seed is None else check_seed(seed)
    cores = sandbox.check_cores(cores)
    routines = {name: list((forbidden or {}).get(name, catalog.get(name).forbidden)) for name in names}
    level, made_searchable = isolation_level(isolation, open_interpreter_path=open_interpreter_path)
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    cache.mkdir(parents=True, exist_ok=True, mode=0o700)
    return _Plan(root, names, routines, seed, limits or sandbox.Limits(), submissions.repo_root(), cache, level, made_searchable,
                 cores)


def isolation_level(requested: str = "auto", *, open_interpreter_path: bool = False) -> tuple[str, list[str]]:
    """The isolation level a grading gets (:func:`graders.engine.sandbox.choose_isolation`) and the folders opened for it.

    On the ``user`` fallback (root without bubblewrap) the worker's user must
    reach this Python (opened only when ``open_interpreter_path``) and the
    repository is closed to other users; bubblewrap shows the worker neither.

    Raises:
      ValueError: an unknown ``requested``.
      SandboxUnavailable: bubblewrap was required and cannot run, or the fallback's user cannot reach this Python.
    """
    level = sandbox.choose_isolation(requested)
    if level != "user":
        return level, []
    made_searchable = sandbox.open_interpreter(allowed=open_interpreter_path)
    sandbox.lock_repository(submissions.repo_root())
    return level, made_searchable


def _run_child(plan: _Plan, uid: int | None, server: PytestServer | None) -> tuple[dict | None, str, float]:
    """Runs the suites in a pytest child (or ``server``) whose worker runs as ``uid``; returns its report (``None``
    when it wrote none), output and seconds."""
    with tempfile.TemporaryDirectory(prefix="course-grade-") as tmp:
        settings = _write_settings(Path(tmp), plan, uid)
        pytest_started = time.monotonic()
        try:
            report, log = _run_suites(plan, settings, server)
            pytest_seconds = time.monotonic() - pytest_started
        finally:
            sandbox.kill_recorded(Path(tmp) / PID_FILE)  # the pytest process kills its workers; this covers its own death
    return report, log, pytest_seconds


def _write_settings(folder: Path, plan: _Plan, uid: int | None) -> Path:
    """Writes the settings the pytest process reads (plugin ``--grader-config``) into ``folder``; returns their path."""
    settings = folder / "settings.json"
    settings.write_text(json.dumps({
        "submission": str(plan.submission), "seed": plan.seed, "limits": asdict(plan.limits), "forbidden": plan.forbidden,
        "reference": str(plan.repo / "reference"), "cache_dir": str(plan.cache), "pid_file": str(folder / PID_FILE),
        "isolation": plan.isolation, "worker_uid": uid, "made_searchable": plan.made_searchable,
        "cores": plan.cores, "reference_store": _reference_store(plan),
    }))
    return settings


def _reference_store(plan: _Plan) -> str | None:
    """The folder of the reference's stored outputs for this grading code and seed (:mod:`graders.engine.reference_store`).

    None when the worker runs as the grader's own user (isolation ``none``): it could write there.
    """
    if plan.isolation == "none":
        return None
    return str(plan.cache / "reference-outputs" / grader_version() / f"seed-{plan.seed}")


def _run_suites(plan: _Plan, settings: Path, server: PytestServer | None) -> tuple[dict | None, str]:
    """``run_pytest`` on the suites, with the grader's plugin and settings, in a session of its own (or in ``server``)."""
    limits = plan.limits
    args = [
        "-p", "graders.engine.plugin", f"--rootdir={plan.repo}", "-o", "addopts=", "-o", "python_files=test_*.py",
        f"--timeout={limits.call_seconds * 4 + limits.startup_seconds}", f"--grader-config={settings}",
        *(str(suite_path(n)) for n in plan.exercises),
    ]
    budget = limits.submission_seconds + limits.startup_seconds + 120
    if server is not None:
        return server.run(args, timeout=budget)
    return run_pytest(args, cwd=plan.repo, env=_suites_environment(plan.repo), timeout=budget, new_session=True)


def _suites_environment(repo: Path) -> dict[str, str]:
    """The pytest process's environment: this one's, with the repository to import from and the grading's XLA flags."""
    env = {k: v for k, v in os.environ.items() if k != submissions.ENV_VAR}
    return env | {"PYTHONPATH": os.pathsep.join([str(repo), *filter(None, [os.environ.get("PYTHONPATH")])]),
                  "XLA_PYTHON_CLIENT_PREALLOCATE": "false", "PYTHONDONTWRITEBYTECODE": "1",
                  "XLA_FLAGS": sandbox.xla_flags(os.environ)}  # the workers' CPU devices in the grader's process too


def pytest_server() -> PytestServer:
    """A pytest server for a batch job's gradings (:mod:`graders.engine.pytest_server`); close it when done."""
    repo = submissions.repo_root()
    return PytestServer(cwd=repo, env=_suites_environment(repo))


def _result(report: dict | None, log: str, *, submission: str, seed: int, exercises: list[str]) -> GradingResult:
    """The score model of a pytest report; a ``grader_error`` one, with the output, when there is no report."""
    if report is None:
        return GradingResult(submission=submission, seed=seed, exercises=(), status=RunStatus.GRADER_ERROR,
                             errors=(f"the grader's pytest run wrote no report:\n{log}",))
    result = pytest_report.convert(report, submission=submission, seed=seed, exercises=exercises)
    if result.status != RunStatus.OK:
        result = replace(result, errors=(*result.errors, f"pytest output:\n{log}"))
    return result


def _write_files(out_dir: Path, result: GradingResult, report: dict | None, *, execution_time: float) -> None:
    """Writes ``report.json`` (when there is a report), ``results.json`` (Gradescope) and ``score.json`` into ``out_dir``."""
    if report is not None:
        write_json(out_dir / REPORT_FILE, report)
    write_json(out_dir / RESULTS_FILE, gradescope.results(result, execution_time=execution_time))
    write_json(out_dir / SCORE_FILE, result.to_json())
