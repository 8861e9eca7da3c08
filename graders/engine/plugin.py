"""The grader's pytest plugin: points and visibility markers, the suites' fixtures, grading records.

Loaded with ``-p graders.engine.plugin`` by :func:`graders.grade` (which passes
``--grader-config FILE``); the suites are ordinary pytest modules named
``graders/suites/test_<exercise>.py``.

Markers (registered in ``pytest_configure``):

- ``@pytest.mark.points(n)``: what the case is worth, a positive number; required.
- ``@pytest.mark.visibility(name)``: who sees the case's result, one of
  Gradescope's ``visible`` (default), ``hidden``, ``after_due_date``, ``after_published``.

- ``@pytest.mark.values(function)``: the case compares ``function``'s outputs
  (or gradients) with the reference's on drawn inputs: the exercise's evidence
  that the submission computes something.
- ``@pytest.mark.requires_values(function)``: any other case (bad arguments
  raise, dtypes are kept, it works under ``jit``, ...) counts only once every
  ``values`` case of ``function`` passes, so that constants of the right shape
  behind the right argument checks earn nothing. The score model applies this
  gate (:func:`graders.results.pytest_report.convert`).

Every case carries ``points`` and exactly one of ``values`` and
``requires_values``, naming a function of the exercise (``course.catalog``);
a ``requires_values`` function needs a ``values`` case in the same suite.
Anything else stops the run with a usage error naming the case.

Fixtures:

- ``student``: the submission's exercise (:class:`graders.engine.client.Student`);
  its functions run in the worker, over the known-good ``building_blocks``
  (module scope; none unless the suite overrides the fixture).
- ``reference``: the reference's exercise module, imported in this trusted process.
- ``rng``: a ``numpy.random.Generator`` seeded by the grading seed and the
  case's id, so a case draws the same inputs whenever the seed is the same.
- ``suite_rng`` (module scope): seeded by the grading seed and the exercise,
  for sizes shared by every case of the run (fewer shapes, fewer compilations).
- ``grading_seed``: the seed itself.
- ``leaderboard``: ``leaderboard(name, value, order="desc")`` records an
  entry of Gradescope's leaderboard (an outcome worth ranking, e.g. a
  training exercise's final validation loss, with ``order="asc"``).

Each case's record (``user_properties["grader"]`` in the pytest-json-report
output) holds its exercise, points, visibility, its ``values`` or
``requires_values`` function, status (``passed``,
``failed``: the submission's fault, or ``grader_error``), the student-facing
message, the hint of a recognised mistake, the forbidden routines it saw, its
leaderboard entries and, for grader errors, the traceback for the instructor. The report's top-level
``grader`` entry holds the seed, devices, versions, timings and the worker's
output tail.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import time
import traceback
import zlib
from pathlib import Path

import psutil
import pytest

from course import catalog
from graders.engine.pytest_server import STARTED_VAR
from graders.results.scores import CaseStatus

VISIBILITIES = ("visible", "hidden", "after_due_date", "after_published")
MESSAGE_CHARS = 4000  # a case's message is cut there: the submission controls part of it
GRADER_ERROR_MESSAGE = "the grader failed on this case; this is not your fault and has been reported to the course staff"


def pytest_addoption(parser):
    group = parser.getgroup("grader", "course grader")
    group.addoption("--grader-config", metavar="FILE", help="JSON settings of a grading run, written by graders.grade")


class Grading:
    """The state of one grading run inside the pytest process."""

    def __init__(self, settings: dict):
        from graders.engine import reference_store, scan
        from graders.engine.client import Session  # no jax: the worker starts before this process imports it
        from graders.engine.sandbox import Limits, pin

        self.seed = int(settings["seed"])
        self.forbidden = {name: tuple(routines) for name, routines in settings["forbidden"].items()}
        traps = sorted({r for routines in self.forbidden.values() for r in routines})
        pid_file = Path(settings["pid_file"]) if settings.get("pid_file") else None
        self.session = Session(Path(settings["submission"]), Limits(**settings["limits"]), traps, pid_file,
                               isolation=settings["isolation"], uid=settings["worker_uid"])
        self.made_searchable = list(settings["made_searchable"])
        pin(settings["cores"])  # before the worker starts and this process's XLA sizes its thread pools
        self.session.spawn()  # the worker imports jax while this process does and collects the suites
        # Read before any of the submission's code runs (the worker imports it only when asked).
        self.findings = scan.scan(self.session.scratch / "submission", self.forbidden)
        import jax

        from course import submission
        from course.testing import use_full_float32_matmuls
        from course.testing.compilation_cache import persist_compilations

        use_full_float32_matmuls()  # the reference's side; the worker's is each request's precision
        if settings.get("cache_dir"):
            persist_compilations(settings["cache_dir"])
        self.compile_seconds = 0.0
        jax.monitoring.register_event_duration_secs_listener(self._on_event)
        submission.activate(settings["reference"])  # this process only ever imports the reference's exercises
        self.store = None
        if settings.get("reference_store"):  # the platform's outputs differ in rounding: a store per platform
            seed_folder = Path(settings["reference_store"])  # <stores>/<grading code>/seed-<n>
            reference_store.prune(seed_folder.parents[1], seed_folder)
            self.store = reference_store.ReferenceStore(seed_folder / jax.default_backend())
        reference_store.activate(self.store)
        self.students: dict = {}
        self.references: dict = {}
        # From this process's creation (or, in a batch job's pytest server, from the request): pytest, jax, the plugin.
        started = float(os.environ.get(STARTED_VAR) or psutil.Process().create_time())
        self.start_seconds = time.time() - started

    def _on_event(self, event: str, duration: float, **_) -> None:
        if event.startswith("/jax/core/compile/"):
            self.compile_seconds += duration

    def student(self, exercise: str, building_blocks: dict):
        from graders.engine.client import Student

        if exercise not in self.students:
            self.students[exercise] = Student(self.session, exercise, self.forbidden.get(exercise, ()),
                                              self.findings.get(exercise, ()), known_good=building_blocks)
        return self.students[exercise]

    def reference(self, exercise: str):
        if exercise not in self.references:
            self.references[exercise] = importlib.import_module(f"exercises.{exercise}.{exercise}")
        return self.references[exercise]

    def summary(self) -> dict:
        import jax
        import numpy

        import course

        session = self.session
        timings = session.timings
        return {
            "seed": self.seed,
            "device": {"grader": [str(d) for d in jax.devices()], "worker": session.info.get("devices", []),
                       "worker_platform": session.info.get("platform")},
            "versions": {"course": course.__version__, "python": sys.version.split()[0], "jax": jax.__version__,
                         "numpy": numpy.__version__, "worker": {k: session.info.get(k) for k in ("python", "jax")}},
            "worker": {"isolation": session.isolation, "uid": session.info.get("uid"), "starts": timings.worker_starts,
                       "made_searchable": self.made_searchable,
                       "output_bytes": session.output_bytes, "output_tail": session.output_tail},
            "reference_store": {"used": self.store is not None, "hits": getattr(self.store, "hits", 0),
                                "misses": getattr(self.store, "misses", 0)},
            "timings": {
                "grader_start": round(self.start_seconds, 3),
                "grader_compile": round(self.compile_seconds, 3),
                "worker_start": round(timings.worker_start_seconds, 3),
                "worker_compile": round(timings.worker_compile_seconds, 3),
                "worker_calls": round(timings.call_seconds, 3),
            },
        }


_KEY = pytest.StashKey[Grading]()
_CONFIG: list = []  # pytest_json_modifyreport receives no config: the current one is kept here


def pytest_configure(config):
    config.addinivalue_line("markers", "points(n): what the case is worth (a positive number); required in grader suites")
    config.addinivalue_line("markers", f"visibility(name): who sees the case's result: {', '.join(VISIBILITIES)}")
    config.addinivalue_line("markers", "values(function): the case compares the function's values with the reference's")
    config.addinivalue_line("markers", "requires_values(function): the case counts only once the function's values cases pass")
    _CONFIG[:] = [config]
    path = config.getoption("grader_config")
    if path:
        config.stash[_KEY] = Grading(json.loads(Path(path).read_text()))


def pytest_unconfigure(config):
    grading = config.stash.get(_KEY, None)
    if grading is not None:
        grading.session.close()
        import jax

        jax.monitoring.unregister_event_duration_listener(grading._on_event)  # a pytest server runs more gradings


def exercise_of(item) -> str:
    """The exercise a case grades: its module is ``test_<exercise>.py``."""
    return Path(str(item.fspath)).stem.removeprefix("test_")


def _marker_value(item, name: str, default=None):
    marker = item.get_closest_marker(name)
    if marker is None:
        return default
    if len(marker.args) != 1 or marker.kwargs:
        raise pytest.UsageError(f"{item.nodeid}: @pytest.mark.{name} takes exactly one value, got {marker.args} {marker.kwargs}")
    return marker.args[0]


def _functions(item) -> tuple[str, ...]:
    """The functions of the case's exercise (``course.catalog``)."""
    try:
        return catalog.get(exercise_of(item)).functions
    except KeyError as error:
        raise pytest.UsageError(f"{item.nodeid}: a grader suite is named test_<exercise>.py; {error.args[0]}") from None


def _gate_markers(item) -> tuple[str | None, str | None]:
    """The case's ``(values, requires_values)`` functions: exactly one is set, to a function of its exercise."""
    values, requires = _marker_value(item, "values"), _marker_value(item, "requires_values")
    if (values is None) == (requires is None):
        raise pytest.UsageError(f"{item.nodeid}: expected exactly one of @pytest.mark.values(function) (the case "
                                "compares the function's values) and @pytest.mark.requires_values(function) (it counts "
                                "once they are right)")
    marker, function = ("values", values) if values is not None else ("requires_values", requires)
    functions = _functions(item)
    if function not in functions:
        raise pytest.UsageError(f"{item.nodeid}: @pytest.mark.{marker} names {function!r}, which is not a function of "
                                f"exercise {exercise_of(item)} ({', '.join(functions)})")
    return values, requires


def pytest_collection_modifyitems(config, items):
    gates = {}
    for item in items:
        points = _marker_value(item, "points")
        if isinstance(points, bool) or not isinstance(points, int | float) or not points > 0:
            raise pytest.UsageError(f"{item.nodeid}: expected @pytest.mark.points(n) with a positive number, got {points!r}")
        visibility = _marker_value(item, "visibility", "visible")
        if visibility not in VISIBILITIES:
            raise pytest.UsageError(f"{item.nodeid}: @pytest.mark.visibility must be one of {VISIBILITIES}, got {visibility!r}")
        gates[item] = _gate_markers(item)
        item.user_properties.append(("grader", {
            "exercise": exercise_of(item), "points": points, "visibility": visibility,
            "values": gates[item][0], "requires_values": gates[item][1],
            "status": CaseStatus.PASSED, "message": "", "hint": None, "forbidden": [], "detail": "", "leaderboard": [],
        }))
    computed = {(exercise_of(item), values) for item, (values, _) in gates.items() if values is not None}
    for item, (_, requires) in gates.items():
        if requires is not None and (exercise_of(item), requires) not in computed:
            raise pytest.UsageError(f"{item.nodeid}: @pytest.mark.requires_values({requires!r}) waits for a case that "
                                    f"does not exist: no case of test_{exercise_of(item)}.py carries "
                                    f"@pytest.mark.values({requires!r})")


def _grading(request) -> Grading:
    grading = request.config.stash.get(_KEY, None)
    if grading is None:
        raise pytest.UsageError("the grader suites run through `course grade` (graders.grade), which passes --grader-config")
    return grading


@pytest.fixture(scope="module")
def building_blocks() -> dict:
    """The known-good building blocks the exercise's module is imported over (``graders.engine.known_good``): none.

    A suite whose exercise builds on another overrides this fixture, e.g. with
    ``known_good.attention(d_k=...)``; its cases then run the submission's
    exercise over the reference's building blocks, exported as programs.
    """
    return {}


@pytest.fixture
def student(request, building_blocks):
    """The submission's exercise graded by this module; its functions run in the worker."""
    return _grading(request).student(exercise_of(request.node), building_blocks)


@pytest.fixture
def reference(request):
    """The reference's module for this module's exercise."""
    return _grading(request).reference(exercise_of(request.node))


@pytest.fixture
def grading_seed(request) -> int:
    return _grading(request).seed


@pytest.fixture
def rng(request, grading_seed):
    """A generator seeded by the grading seed and the case id (the same inputs for the same seed)."""
    import numpy as np

    return np.random.default_rng([grading_seed, zlib.crc32(request.node.nodeid.encode())])


@pytest.fixture
def leaderboard(request):
    """``leaderboard(name, value, order="desc")``: adds an entry to Gradescope's leaderboard (``order``: which way is better)."""
    def add(name: str, value: float, order: str = "desc") -> None:
        if order not in ("asc", "desc"):
            raise ValueError(f"order: expected 'asc' or 'desc', got {order!r}")
        _record(request.node)["leaderboard"].append({"name": name, "value": float(value), "order": order})
    return add


@pytest.fixture(scope="module")
def suite_rng(request):
    """A generator for the whole suite module, seeded by the grading seed and the exercise.

    Draw the run's sizes from it once (in a module-scoped fixture): every case
    then shares them, and so do the compiled computations of both processes.
    """
    import numpy as np

    grading = request.config.stash.get(_KEY, None)
    if grading is None:
        raise pytest.UsageError("the grader suites run through `course grade` (graders.grade), which passes --grader-config")
    return np.random.default_rng([grading.seed, zlib.crc32(exercise_of(request.node).encode())])


def _record(item) -> dict:
    return next(value for key, value in item.user_properties if key == "grader")


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    grading = item.config.stash.get(_KEY, None)
    if grading is not None and grading.store is not None:
        grading.store.case = item.nodeid  # the reference's stored outputs are the case's


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    from graders.engine.failures import SubmissionFailure

    record = _record(item)
    excinfo = call.excinfo
    failure = excinfo is not None and record["status"] == CaseStatus.PASSED
    if failure and excinfo.errisinstance(pytest.skip.Exception):
        record.update(status=CaseStatus.GRADER_ERROR, message=GRADER_ERROR_MESSAGE, detail=f"skipped: {excinfo.value}")
    elif failure and excinfo.errisinstance(AssertionError):
        error = excinfo.value
        message = str(error) if isinstance(error, SubmissionFailure) else _first_line(error)
        record.update(status=CaseStatus.FAILED, message=message[:MESSAGE_CHARS], hint=getattr(error, "hint", None))
    elif failure:
        detail = "".join(traceback.format_exception(excinfo.value))[-20000:]
        record.update(status=CaseStatus.GRADER_ERROR, message=GRADER_ERROR_MESSAGE, detail=detail)
    student = item.funcargs.get("student") if hasattr(item, "funcargs") else None
    if student is not None and student.forbidden_called:
        record["forbidden"] = list(student.forbidden_called)
    report = yield
    if failure and record["status"] == CaseStatus.FAILED:
        report.longrepr = record["message"]  # never the suite's source or locals
    return report


@pytest.hookimpl(optionalhook=True)
def pytest_json_modifyreport(json_report):
    config = _CONFIG[0] if _CONFIG else None
    grading = config.stash.get(_KEY, None) if config is not None else None
    if grading is not None:
        grading.session._stop_process()  # so the output tail and compile time are complete
        json_report["grader"] = grading.summary()

