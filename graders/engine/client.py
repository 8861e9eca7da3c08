"""The grader's side of the worker: requests, restarts, limits, and the suites' view of a submission.

:class:`Session` owns the worker of one grading run: it starts it (again after
a crash), sends requests, waits for answers within the per-call and
per-submission time limits while watching memory, and turns every way the
worker can fail into a :class:`~graders.engine.failures.SubmissionFailure`.
:class:`Student` is what a suite receives as its ``student`` fixture: one
exercise of the submission, whose functions run in the worker::

    out = student.causal_mask(5)                          # plain call
    out = student.call("predict", params, x, transform="jit")
    out, grads = student.vjp("predict", (params, x), cotangent=ct)

Answers come back as numpy arrays in plain containers (see
:mod:`graders.runtime.wire`), never as the submission's own objects.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from pathlib import Path

from graders.engine import sandbox, scan
from graders.engine.failures import ForbiddenRoutine, NotRun, StudentError, SubmissionFailure, Tampering, WorkerCrash
from graders.runtime import wire

# The most a worker may report for a duration (a day): more, NaN or a negative is a malformed answer.
MAX_REPORTED_SECONDS = 86400.0


@dataclass
class Timings:
    worker_starts: int = 0
    worker_start_seconds: float = 0.0  # spawn until the worker answered hello (its jax import included)
    worker_compile_seconds: float = 0.0  # the worker's JAX compilation, summed over its lives
    call_seconds: float = 0.0  # waiting for the worker's answers


@dataclass
class Session:
    """The worker of one grading run (one submission, one or more exercises)."""

    submission: Path
    limits: sandbox.Limits
    traps: list[str]
    pid_file: Path | None = None  # where each worker's process id is noted for the process that started the grading
    isolation: str = "none"  # one of sandbox.LEVELS
    uid: int | None = None  # the worker's user (its job slot's), or None for the grader's own
    timings: Timings = field(default_factory=Timings)
    info: dict = field(default_factory=dict)  # the worker's hello: versions, device, uid
    output_bytes: int = 0  # everything the submission printed, over all the worker's lives
    output_tail: str = ""

    def __post_init__(self):
        self.scratch = sandbox.make_scratch(self.submission, uid=self.uid if self.isolation == "user" else None)
        self.deadline = time.monotonic() + self.limits.submission_seconds
        self.process: sandbox.Process | None = None
        self.loaded: set[tuple[str, bool]] = set()  # (exercise, over its own building blocks)
        self.crashes: dict[str, list[str]] = {}
        self.compile_before = 0.0
        self.pending = None  # the answer still to be read, if any
        self.requests = 0  # numbers the requests; an answer must carry its request's number

    # -- the process ---------------------------------------------------------------------------
    def spawn(self) -> None:
        """Starts a worker process unless one is running; :meth:`start` waits for its hello."""
        if self.process is not None and self.process.alive():
            return
        self._stop_process()
        self.spawned = time.monotonic()
        self.process = sandbox.Process(self.scratch, limits=self.limits, traps=self.traps, isolation=self.isolation, uid=self.uid)
        if self.pid_file is not None:
            sandbox.record(self.pid_file, self.process.process)
        self.greeted, self.loaded = False, set()
        self.timings.worker_starts += 1

    def start(self) -> None:
        """Makes sure a worker is running and has answered its hello (versions, device, user)."""
        self.spawn()
        if self.greeted:
            return
        # No submission code has run before the hello: a failure here is the grader's (its machine's), not the student's.
        try:
            header, arrays = self._exchange({"op": "hello"}, {}, timeout=self.limits.startup_seconds, what="starting the worker")
        except WorkerCrash as crash:
            raise RuntimeError(f"the worker did not start: {crash}; its output: {self.output_tail[-2000:]}") from None
        if not header.get("ok"):
            raise RuntimeError(f"the worker did not start: {header.get('error', {}).get('message', '')}")
        self.info = wire.decode(header["result"], arrays)
        self.greeted = True
        self.timings.worker_start_seconds += time.monotonic() - self.spawned

    def _stop_process(self) -> None:
        if self.process is None:
            return
        self.process.stop()
        self.pending = None
        self.output_bytes += self.process.output.total
        self.output_tail = (self.output_tail + self.process.output.text())[-8192:]
        self.timings.worker_compile_seconds += self.compile_before
        self.compile_before = 0.0
        self.process = None

    def close(self) -> None:
        """Kills the worker and everything it started; removes the scratch directory."""
        self._stop_process()
        sandbox.kill_descendants()
        sandbox.remove_scratch(self.scratch)

    # -- one exchange --------------------------------------------------------------------------
    def _exchange(self, header: dict, arrays: dict, *, timeout: float, what: str):
        return self._send(header, arrays, timeout=timeout, what=what)()

    def _send(self, header: dict, arrays: dict, *, timeout: float, what: str):
        """Sends a request; returns the function that waits for its answer.

        The grader computes the reference between the two, while the worker
        computes the submission's outputs: the two processes run in parallel.
        """
        process = self.process
        started = time.monotonic()
        self.requests += 1
        header = {**header, "id": self.requests}
        try:
            wire.write_frame(process.request_w, wire.pack(header, arrays), deadline=started + timeout)
        except TimeoutError:
            raise self._crash(f"the worker did not read {what} within {timeout:.0f} s; the worker was stopped", started) from None
        except OSError:
            raise self._crash(f"the worker process died before {what} (exit status {process.popen.poll()})",
                              started) from None

        def answer():
            self.pending = None
            return self._receive(process, header["id"], started=started, timeout=timeout, what=what)

        self.pending = answer
        return answer

    def _receive(self, process: sandbox.Process, request_id: int, *, started: float, timeout: float, what: str):
        """The worker's answer to request ``request_id``, sent at ``started``: ``(header, arrays)``.

        Raises:
          WorkerCrash: no well-formed answer to that request came within
            ``timeout`` and the memory limit; the worker is stopped.
        """
        def watch_memory():
            if process.memory_mb() > self.limits.memory_mb:
                raise MemoryError

        try:
            answer = wire.read_frame(process.response_r, limit=self.limits.message_mb << 20,
                                     deadline=started + timeout, on_wait=watch_memory)
        except TimeoutError:
            reason = f"{what} took longer than {timeout:.0f} s (an infinite loop?); the worker was stopped"
        except MemoryError:
            reason = f"{what} used more than {self.limits.memory_mb} MiB of memory; the worker was stopped"
        except (EOFError, OSError):
            time.sleep(0.05)
            reason = (f"the worker process died during {what} (exit status {process.popen.poll()}); "
                      "did the code call os._exit or exit, or crash?")
        except wire.ProtocolError as error:
            reason = f"the worker sent an unreadable answer during {what} ({error})"
        else:
            if answer[0].get("id") != request_id:  # e.g. written by a process the submission forked
                raise self._crash(f"the worker answered out of turn during {what}; the worker was stopped", started)
            if not _well_formed(answer[0]):
                raise self._crash(f"the worker sent a malformed answer during {what}; the worker was stopped", started)
            self.timings.call_seconds += time.monotonic() - started
            self.compile_before = float(answer[0].get("compile_seconds", 0.0))
            return answer
        raise self._crash(reason, started)

    def _crash(self, reason: str, started: float) -> WorkerCrash:
        """Stops the worker after a failed exchange begun at ``started``; returns the crash to raise."""
        self.timings.call_seconds += time.monotonic() - started
        self._stop_process()
        return WorkerCrash(reason)

    def send(self, exercise: str, header: dict, arrays: dict, *, what: str, load: tuple[dict, dict] = ({}, {})):
        """Sends one request about ``exercise`` (loading it first if needed); returns a function that waits for the answer.

        ``load``: the fields and arrays of the ``load`` request beyond the
        exercise (known-good building blocks, ``own``); a load with other
        fields is another import of the exercise.

        Raises (here or from the returned function):
          NotRun: the submission's time is up, or the worker crashed too often on this exercise.
          WorkerCrash: the worker died, hung or ran out of memory on this request.
        """
        if self.pending is not None:  # an answer nobody waited for (the grader failed meanwhile): keep in step
            with contextlib.suppress(WorkerCrash):
                self.pending()
        crashes = self.crashes.setdefault(exercise, [])
        if len(crashes) >= self.limits.crashes:
            raise NotRun(f"not run: the worker failed {len(crashes)} times on this exercise (last: {crashes[-1]})")
        if self.deadline - time.monotonic() <= 0:
            raise NotRun(f"not run: the submission used up its {self.limits.submission_seconds:.0f} s")

        def counted(step):
            try:
                return step()
            except WorkerCrash as crash:
                crashes.append(str(crash))
                raise

        fields, load_arrays = load
        key = (exercise, bool(fields.get("own")))

        def load():
            self.start()
            if key not in self.loaded:
                answer, _ = self._exchange({"op": "load", "exercise": exercise, **fields}, load_arrays,
                                           timeout=self._timeout(), what=f"importing exercises/{exercise}/{exercise}.py")
                if not answer.get("ok"):
                    raise _student_error(answer, f"importing exercises/{exercise}/{exercise}.py")
                self.loaded.add(key)
            return self._send(header, arrays, timeout=self._timeout(), what=what)

        waiting = counted(load)
        return lambda: counted(waiting)

    def _timeout(self) -> float:
        return max(0.0, min(self.limits.call_seconds, self.deadline - time.monotonic()))


def _well_formed(answer: dict) -> bool:
    """Whether an answer has the fields and types the grader reads (the worker is untrusted)."""
    error = answer.get("error", {})
    return (
        isinstance(answer.get("ok"), bool)
        and all(isinstance(answer.get(key, []), list) and all(isinstance(n, str) for n in answer.get(key, []))
                for key in ("forbidden", "tampered"))
        and _is_seconds(answer.get("compile_seconds", 0.0))
        and isinstance(error, dict)
        and all(isinstance(error.get(k, ""), str) for k in ("type", "message", "where"))
        and isinstance(error.get("bases", []), list) and all(isinstance(b, str) for b in error.get("bases", []))
    )


def _is_seconds(value) -> bool:
    """Whether a duration the worker reports is a number the grader can add up and write to JSON.

    Compared, never converted: ``float(10**400)`` would raise in the grader; NaN fails both comparisons.
    """
    return isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value <= MAX_REPORTED_SECONDS


def _student_error(answer: dict, what: str) -> StudentError:
    error = answer.get("error", {})
    name, message, where = error.get("type", "Exception"), error.get("message", ""), error.get("where", "")
    located = f" at {where}" if where else ""
    return StudentError(f"{what} raised {name}{located}: {message}"[:2000], type_name=name, bases=error.get("bases", [name])[:50])


class Student:
    """One exercise of the submission, as a suite sees it (the ``student`` fixture).

    Attribute access gives a plain call: ``student.causal_mask(5)``.

    Args:
      forbidden: the exercise's forbidden routines.
      findings: the static scan's findings in the files that count for the
        exercise (:func:`graders.engine.scan.scan`); a use of one of its
        forbidden routines, or any tampering, fails every case unrun.
      known_good: serialized programs of the reference's building blocks
        (:mod:`graders.engine.known_good`), which the exercise's module is
        imported over instead of the submission's own.
      own: this is the exercise imported over the submission's own building
        blocks (:meth:`with_own_building_blocks`).

    Attributes:
      forbidden_called: what zeroes the exercise: the forbidden routines seen
        (in the source or called), and :attr:`Tampering.LABEL` once tampering is.
    """

    def __init__(self, session: Session, exercise: str, forbidden: tuple[str, ...] = (),
                 findings: tuple[scan.Finding, ...] = (), known_good: dict | None = None, own: bool = False):
        self._session, self._exercise, self._forbidden = session, exercise, tuple(forbidden)
        self._own = own
        self._load: tuple[dict, dict] = ({"own": True}, {}) if own else ({}, {})
        if known_good and not own:
            arrays: dict = {}
            self._load = ({"known_good": wire.encode(dict(known_good), arrays)}, arrays)
        self._findings = [f for f in findings if f.routine in self._forbidden or f.routine == scan.TAMPERING]
        self.forbidden_called: list[str] = sorted({Tampering.LABEL if f.routine == scan.TAMPERING else f.routine
                                                   for f in self._findings})

    def with_own_building_blocks(self) -> Student:
        """The exercise imported again, over the submission's own building blocks (an integration case).

        It checks no forbidden routine (the worker charges the calls of these
        requests to no exercise): the exercise's code is checked in its other
        cases, the building blocks' in their own exercises.
        """
        own = Student(self._session, self._exercise, (), (), own=True)
        own._findings = self._findings  # a submission refused by the static scan stays refused
        return own

    def __getattr__(self, function: str):
        if function.startswith("_"):
            raise AttributeError(function)
        return lambda *args, **kwargs: self.call(function, *args, kwargs=kwargs)

    def _ask(self, op: str, what: str, **fields):
        return self._submit(op, what, **fields)()

    def _refusal(self) -> SubmissionFailure:
        """The failure of every case of an exercise whose source the static scan caught (a new one per case)."""
        uses = [f for f in self._findings if f.routine != scan.TAMPERING]
        if uses:
            return ForbiddenRoutine(sorted({f.routine for f in uses}), where=[f"{f.where}: {f.seen}" for f in uses])
        return Tampering([f"{f.where}: {f.seen}" for f in self._findings])

    def _submit(self, op: str, what: str, **fields):
        """Sends a request; returns the function that waits for and checks its result."""
        if self._findings:
            raise self._refusal()
        arrays: dict = {}
        header = {"op": op, "exercise": self._exercise, **({"own": True} if self._own else {})}
        for key, value in fields.items():
            header[key] = wire.encode(value, arrays) if key in ("args", "kwargs", "cotangent", "params") else value
        waiting = self._session.send(self._exercise, header, arrays, what=what, load=self._load)

        def result():
            answer, answer_arrays = waiting()
            called = [name for name in answer.get("forbidden", []) if name in self._forbidden]
            tampered = answer.get("tampered", [])
            self.forbidden_called = sorted({*self.forbidden_called, *called, *([Tampering.LABEL] if tampered else [])})
            if called:
                raise ForbiddenRoutine(called)
            if tampered:
                raise Tampering([f"the grader's trap on {name} was undone" for name in tampered])
            if not answer.get("ok"):
                raise _student_error(answer, what)
            try:
                return wire.decode(answer.get("result"), answer_arrays)
            except wire.ProtocolError as error:
                raise WorkerCrash(f"{what}: unreadable answer ({error})") from None

        return result

    def call(self, function: str, *args, kwargs: dict | None = None, transform: str | None = None,
             in_axes=None, cotangent=None, precision: str | None = None):
        """``function(*args, **kwargs)`` in the worker, under ``transform`` (see ``graders.runtime.transforms.apply``).

        Returns:
          The outputs as numpy arrays in plain containers; for ``"vjp"``, ``(outputs, grads)``.

        Raises:
          StudentError: the function raised (its type is in ``type_name`` and ``bases``).
          ForbiddenRoutine, Tampering, WorkerCrash, NotRun: see :mod:`graders.engine.failures`.
        """
        return self.submit(function, *args, kwargs=kwargs, transform=transform, in_axes=in_axes,
                           cotangent=cotangent, precision=precision)()

    def submit(self, function: str, *args, kwargs: dict | None = None, transform: str | None = None,
               in_axes=None, cotangent=None, precision: str | None = None):
        """As :meth:`call`, but returns at once a function that waits for the result (compute the reference meanwhile).

        ``precision``: the worker's matrix-product precision, by default the course's (``course.testing.MATMUL_PRECISION``).
        """
        if precision is None:
            from course.testing import MATMUL_PRECISION  # imports jax: not before the worker has started (see Session)

            precision = MATMUL_PRECISION
        label = {None: "", "jit": " under jax.jit", "vmap": " under jax.vmap", "vjp": " (its vector-Jacobian product)"}[transform]
        return self._submit("call", f"{function}{label}", function=function, args=tuple(args), kwargs=dict(kwargs or {}),
                            transform=transform, in_axes=in_axes, cotangent=cotangent, precision=precision)

    def vjp(self, function: str, args: tuple, *, cotangent, kwargs: dict | None = None):
        """``(outputs, grads)``: the outputs and the VJP for ``cotangent`` with respect to every float argument."""
        return self.call(function, *args, kwargs=kwargs, transform="vjp", cotangent=cotangent)

    def info(self, function: str) -> dict:
        """``{"exists", "callable", "jitted"}`` for one of the exercise's names."""
        return self._ask("info", f"looking up {function}", function=function)

    def construct(self, name: str, *args, kwargs: dict | None = None, rngs_seed: int | None = None,
                  params_follow: bool = False) -> Module:
        """Builds ``name(*args, **kwargs)`` in the worker and keeps it there.

        Args:
          name: an exercise's class or function (``"MultiHeadAttention"``), or a
            library's by its dotted name (``"optax.sgd"``, ``"flax.nnx.Optimizer"``).
          args, kwargs: may name earlier objects (``module.ref``) and library
            attributes (``wire.Ref("flax.nnx.Param")``).
          rngs_seed: passes ``rngs=nnx.Rngs(rngs_seed)``.
          params_follow: the caller sets every parameter (:meth:`Module.set_params`)
            before any other use, so the initial ones need not be computed
            (:func:`graders.runtime.transforms.construct`).
        """
        result = self._ask("construct", f"constructing {name}", function=name, args=tuple(args), kwargs=dict(kwargs or {}),
                           rngs_seed=rngs_seed, params_follow=params_follow)
        return Module(self, name, int(result["handle"]), {k: (v[0], tuple(v[1])) for k, v in result["params"].items()})


@dataclass
class Module:
    """An object built in the worker (an NNX module, an optimizer): its parameter layout, and calls on it.

    ``params`` maps each ``nnx.Param`` path (``"blocks/0/kernel"``) to
    ``(dtype, shape)``; it is empty for objects that are not NNX modules.
    """

    student: Student
    name: str
    handle: int
    params: dict[str, tuple[str, tuple[int, ...]]]

    @property
    def ref(self) -> wire.Handle:
        """Names this object in the arguments of later calls: ``student.train_step(model.ref, optimizer.ref, batch)``."""
        return wire.Handle(self.handle)

    def set_params(self, params: dict) -> None:
        """Copies ``params`` (path to array, e.g. the reference's weights) into the module."""
        self.student._ask("set_params", f"copying parameters into {self.name}", handle=self.handle, params=params)

    def get_params(self) -> dict:
        return self.student._ask("get_params", f"reading the parameters of {self.name}", handle=self.handle)

    def call(self, *args, method: str = "__call__", kwargs: dict | None = None, transform: str | None = None, in_axes=None, cotangent=None):
        """As :meth:`Student.call`, on ``module.<method>``; the VJP's grads are ``(arg_grads, param_grads)``."""
        return self.submit(*args, method=method, kwargs=kwargs, transform=transform, in_axes=in_axes, cotangent=cotangent)()

    def submit(self, *args, method: str = "__call__", kwargs: dict | None = None, transform: str | None = None, in_axes=None,
               cotangent=None):
        """As :meth:`call`, but returns at once a function that waits for the result (compute the reference meanwhile)."""
        return self.student._submit("call", f"{self.name}.{method}", handle=self.handle, method=method, args=tuple(args),
                                    kwargs=dict(kwargs or {}), transform=transform, in_axes=in_axes, cotangent=cotangent)
