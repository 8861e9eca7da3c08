"""The worker: runs one submission's functions for the grader, one request at a time.

Started by :mod:`graders.engine.sandbox` as ``python -I -B -c ...`` in a scratch
directory, with a minimal environment and, under root, as an unprivileged
user. ``main`` sets the resource limits, imports jax, installs the traps on
forbidden routines and the finder that maps ``exercises.*`` to the submission
and ``course.*`` to a copy of the course's public package (``graders`` and
``reference`` are refused), then answers requests
read from one pipe on another (:mod:`wire` frames). Whatever the submission
prints goes to stdout/stderr, which the grader drains and keeps a tail of.

Requests (``op``) and their results:

- ``load {exercise, known_good, own}``: imports ``exercises.<exercise>.<exercise>``; the
  exercise's record of forbidden calls starts empty. ``known_good``: serialized
  programs of the reference's building blocks (:mod:`known_good`), imported in
  place of the submission's (``exercises.attention.attention`` for the
  transformer). ``own``: a second import of the exercise over the submission's
  own building blocks (``"own": true`` in later requests names it); its
  requests charge no forbidden call to the exercise (the building blocks' own
  exercises are graded apart).
- ``call {exercise, function | handle+method, args, kwargs, transform, in_axes,
  cotangent, precision, compile}``: the outputs (see :mod:`transforms`; by
  default compiled as a whole when the function allows it).
- ``info {exercise, function}``: whether it exists, is callable, is jitted.
- ``construct {exercise, function, args, kwargs, rngs_seed, params_follow}``: builds an
  object, an exercise's (``"MultiHeadAttention"``) or a library's
  (``"optax.sgd"``, ``"flax.nnx.Optimizer"``), and keeps it under a handle that
  later arguments can name; returns an NNX module's parameter shapes.
  ``params_follow``: a ``set_params`` comes next, so the initial parameters
  need not be computed (``transforms.construct``).
- ``get_params {handle}`` / ``set_params {handle, params}``.

Every answer is ``{"ok": true, "result": ...}`` or ``{"ok": false, "error":
{type, bases, message, where}}``, plus the request's ``id``, ``forbidden`` (the trapped routines the
current exercise has called), ``tampered`` (the routines whose trap is no longer in place, checked
after every request: see :meth:`traps.Traps.tampered`) and ``compile_seconds`` (time spent compiling).
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import json
import os
import resource
import sys
import time
import traceback

BLOCKED = ("graders", "reference")  # trusted packages a submission must not import


class SubmissionFinder(importlib.abc.MetaPathFinder):
    """Where ``exercises.*`` and ``course.*`` come from in the worker, before any other finder.

    ``exercises`` is the submission folder and ``course`` the copy of the
    course's public package beside this runtime; nothing else may provide them
    (an editable install of the course would otherwise map them to the
    repository). ``graders`` and ``reference`` do not exist.
    """

    def __init__(self, submission: str, course: str):
        self.roots = {"exercises": submission, "course": course}

    def find_spec(self, fullname, path=None, target=None):
        top = fullname.partition(".")[0]
        if top in BLOCKED:
            raise ModuleNotFoundError(f"No module named {fullname!r} (a submission may import only its own exercises.*)", name=fullname)
        if top not in self.roots:
            return None
        if fullname == "exercises":
            spec = importlib.machinery.ModuleSpec("exercises", None, is_package=True)
            spec.submodule_search_locations = [self.roots["exercises"]]
            return spec
        search = [os.path.dirname(self.roots["course"])] if fullname == "course" else path
        spec = importlib.machinery.PathFinder.find_spec(fullname, search)
        if spec is None:
            where = "the submission has no " + "/".join(fullname.split(".")[1:]) + " (folder or .py file)" if top == "exercises" else "not in the course"
            raise ModuleNotFoundError(f"No module named {fullname!r}: {where}", name=fullname)
        return spec


def _set_limit(which: int, value: int | None) -> None:
    if value is not None:
        resource.setrlimit(which, (value, value))


class Worker:
    """Answers the grader's requests; ``wire``, ``transforms``, ``known_good``: the runtime's modules; ``traps``: the installed :class:`traps.Traps`."""

    def __init__(self, config: dict, wire, transforms, traps, known_good):
        self.config, self.wire, self.transforms, self.traps, self.known_good = config, wire, transforms, traps, known_good
        self.modules: dict = {}
        self.handles: list = []
        self.compile_seconds = 0.0
        self.pid = os.getpid()

    def on_event(self, event: str, duration: float, **_) -> None:
        if event.startswith("/jax/core/compile/"):
            self.compile_seconds += duration

    def target(self, request: dict):
        if "handle" in request:
            return self.handles[int(request["handle"])]
        module = self.modules.get((request["exercise"], bool(request.get("own"))))
        if module is None:
            raise LookupError(f"exercise {request['exercise']!r} is not loaded")
        name = request["function"]
        if not hasattr(module, name):
            raise AttributeError(f"exercises/{request['exercise']}/{request['exercise']}.py defines no {name}")
        return getattr(module, name)

    def resolve(self, reference):
        """The object behind a :class:`wire.Handle` (built earlier) or :class:`wire.Ref` (a library attribute)."""
        if isinstance(reference, self.wire.Handle):
            return self.handles[reference.number]
        module, _, attr = reference.name.rpartition(".")
        return getattr(importlib.import_module(module), attr)

    def handle(self, request: dict, arrays: dict):
        import jax

        op = request.get("op")

        def decode(tree):
            return self.wire.decode(tree, arrays, self.resolve)

        if op == "hello":
            return {"pid": os.getpid(), "python": sys.version.split()[0], "jax": jax.__version__,
                    "devices": [str(d) for d in jax.devices()], "platform": jax.default_backend(),
                    "uid": os.getuid(), "startup_seconds": self.config["startup_seconds"]}
        if op == "load":
            name, own = request["exercise"], bool(request.get("own"))
            stand_ins = self.known_good.stand_ins(decode(request.get("known_good", {"$dict": {}})))
            if not own:
                self.traps.reset()
            if stand_ins or own:  # an import of its own, bound to the stand-ins or to the submission's modules
                self.modules[name, own] = self.known_good.import_module(name, stand_ins)
            else:
                self.modules[name, own] = importlib.import_module(f"exercises.{name}.{name}")
            return None
        if op == "info":
            module = self.modules.get((request["exercise"], bool(request.get("own"))))
            fn = getattr(module, request["function"], None)
            return {"exists": fn is not None, "callable": callable(fn), "jitted": hasattr(fn, "lower") and hasattr(fn, "trace")}
        args = tuple(decode(request.get("args", {"$tuple": []})))
        kwargs = decode(request.get("kwargs", {"$dict": {}}))
        if op == "construct":
            name, seed = request["function"], request.get("rngs_seed")
            build = self.resolve(self.wire.Ref(name)) if "." in name else self.target(request)

            def make(*a, **k):  # the Rngs made inside: nnx.eval_shape may trace the construction
                if seed is not None:
                    from flax import nnx

                    k["rngs"] = nnx.Rngs(int(seed))
                return build(*a, **k)

            self.handles.append(self.transforms.construct(make, args, kwargs, params_follow=bool(request.get("params_follow"))))
            params = self.transforms.get_params(self.handles[-1]) if self.transforms.is_module(self.handles[-1]) else {}
            return {"handle": len(self.handles) - 1, "params": {k: [str(v.dtype), list(v.shape)] for k, v in params.items()}}
        if op == "get_params":
            return self.transforms.get_params(self.handles[int(request["handle"])])
        if op == "set_params":
            self.transforms.set_params(self.handles[int(request["handle"])], decode(request["params"]))
            return None
        if op == "call":
            # Objects in the arguments (modules, optimizers) are changed in place: never traced as a whole.
            compile = bool(request.get("compile", True)) and not self.transforms.holds_objects((args, kwargs))
            options = dict(transform=request.get("transform"), in_axes=request.get("in_axes"),
                           cotangent=decode(request.get("cotangent")), compile=compile)
            with jax.default_matmul_precision(request.get("precision") or "highest"):
                if "handle" in request:
                    result = self.transforms.apply_module(self.target(request), request["method"], args, kwargs, **options)
                else:
                    result = self.transforms.apply(self.target(request), args, kwargs, **options)
                return jax.block_until_ready(result)
        raise ValueError(f"unknown op {op!r}")

    def answer(self, request: dict, arrays: dict) -> bytes | None:
        """The answer frame; ``None`` in a process the submission forked (only the worker itself answers)."""
        charged = set(self.traps.calls)
        try:
            result = self.handle(request, arrays)
            out: dict = {}
            header = {"ok": True, "result": self.wire.encode(result, out, strict=False)}
        except BaseException as error:  # SystemExit, pytest.exit and the like are the submission's failures too
            out, header = {}, {"ok": False, "error": describe(error, self.config["submission"])}
        if os.getpid() != self.pid:
            return None
        if request.get("own"):  # the submission's own building blocks: their calls count in their own exercises
            self.traps.restore(charged)
        header["id"] = request.get("id")
        header["forbidden"] = self.traps.called()
        header["tampered"] = self.traps.tampered()
        header["compile_seconds"] = self.compile_seconds
        return self.wire.pack(header, out)


def describe(error: BaseException, root: str) -> dict:
    """The type, base classes, message and innermost submission frame of an exception."""
    where = ""
    for frame in traceback.extract_tb(error.__traceback__):
        if frame.filename.startswith(root):
            where = f"{os.path.relpath(frame.filename, root)}:{frame.lineno} in {frame.name}"
    return {"type": type(error).__name__, "bases": [c.__name__ for c in type(error).__mro__],
            "message": str(error)[:2000], "where": where}


def main() -> None:
    start = time.monotonic()
    config = json.loads(sys.argv[1])
    _set_limit(resource.RLIMIT_CORE, 0)
    _set_limit(resource.RLIMIT_FSIZE, config.get("file_bytes"))
    _set_limit(resource.RLIMIT_NPROC, config.get("processes"))
    request_fd, response_fd = config["request_fd"], config["response_fd"]
    from . import known_good, traps, transforms, wire  # imports jax and numpy

    import jax

    if jax.default_backend() == "cpu":  # XLA's GPU allocator reserves address space that RLIMIT_DATA would count
        _set_limit(resource.RLIMIT_DATA, config.get("memory_bytes"))
    trapped = traps.Traps(config.get("traps", []))
    trapped.install()
    sys.meta_path.insert(0, SubmissionFinder(config["submission"], config["course"]))
    config["startup_seconds"] = time.monotonic() - start
    worker = Worker(config, wire, transforms, trapped, known_good)
    jax.monitoring.register_event_duration_secs_listener(worker.on_event)
    while True:
        try:
            request, arrays = wire.read_frame(request_fd, limit=config["message_bytes"])
        except EOFError:
            return
        frame = worker.answer(request, arrays)
        if frame is None:
            os._exit(0)
        wire.write_frame(response_fd, frame)
