"""Traps on forbidden library routines: a call to one is recorded, whatever name reached it.

A routine is named by its public dotted path (``"jax.nn.dot_product_attention"``,
``"flax.nnx.MultiHeadAttention"``). When its module is imported (now, if it is
already, or later through an import hook), the object itself is changed, so
aliases (``from jax.nn import dot_product_attention as f``), ``getattr`` with a
computed name, ``functools.partial`` and references kept in containers all
reach the trap:

- a plain Python function gets a new ``__code__`` that records the call, then
  runs a copy of the original function;
- a class gets an ``__init__`` that records, then runs the original;
- any other object (a jitted function, a builtin) is replaced, by identity,
  wherever a loaded module holds it; only this case misses references kept
  elsewhere.

An object reached under several names (``optax.softmax_cross_entropy`` is
``optax.losses.softmax_cross_entropy``) gets one trap, which records every name.

:meth:`Traps.tampered` says which traps are no longer in place: a function's
``__code__`` or its entry in the module's globals changed, a class's
``__init__`` changed, a replaced object put back, the recorder or its record
replaced, the import hook taken off ``sys.meta_path`` or passed by (a module
loaded while its routines still wait for their trap). The worker asks after
every request and reports the answer.

Limits: the traps run in the submission's own process. They catch honest
shortcuts, and the tamper check catches a submission that undoes a trap and
leaves it undone; one that undoes a trap, calls the routine and puts the trap
back within one request, empties the record in place, or patches this module's
checks themselves, is not seen here (the grader's static scan,
``graders.engine.scan``, reads the source for such code). The trap names what
was called, it does not judge whether the call mattered.
"""

from __future__ import annotations

import importlib.abc
import sys
import types
from collections.abc import Callable

CALLED: set[str] = set()  # the dotted names called since the last reset


def _record(name: str) -> None:
    CALLED.add(name)


def _trap_function(fn: types.FunctionType, name: str) -> Callable[[], bool] | None:
    """Traps ``fn`` in place; returns whether the trap still holds, or ``None`` when ``fn`` cannot be trapped so."""
    if fn.__closure__:  # a new __code__ must have the same free variables: give up, replace by identity
        return None
    original = types.FunctionType(fn.__code__, fn.__globals__, fn.__name__, fn.__defaults__, None)
    original.__kwdefaults__ = fn.__kwdefaults__
    key = f"__course_trap_{id(fn)}__"
    entry = fn.__globals__[key] = (_record, name, original)
    source = f"def trap(*args, **kwargs):\n    record, name, original = {key}\n    record(name)\n    return original(*args, **kwargs)\n"
    namespace: dict = {}
    exec(source, fn.__globals__, namespace)
    code = fn.__code__ = namespace["trap"].__code__
    return lambda: fn.__code__ is code and fn.__globals__.get(key) is entry


def _trap_class(cls: type, name: str) -> Callable[[], bool]:
    """Traps ``cls``'s ``__init__``; returns whether the trap still holds."""
    original = cls.__init__

    def __init__(self, *args, **kwargs):
        _record(name)
        original(self, *args, **kwargs)

    cls.__init__ = __init__
    return lambda: cls.__dict__.get("__init__") is __init__


def _replace_everywhere(obj, name: str) -> tuple[Callable, Callable[[], bool]]:
    """Replaces ``obj`` in every loaded module; returns the replacement and whether every replacement still holds."""
    def trap(*args, **kwargs):
        _record(name)
        return obj(*args, **kwargs)

    places = []
    for module in list(sys.modules.values()):
        namespace = getattr(module, "__dict__", None)
        if not isinstance(namespace, dict):
            continue
        for key, value in list(namespace.items()):
            if value is obj:
                namespace[key] = trap
                places.append((namespace, key))
    return trap, lambda: all(namespace.get(key) is trap for namespace, key in places)


class Traps(importlib.abc.MetaPathFinder):
    """Installs traps on ``names`` now and when their modules are first imported, and checks that they stay."""

    def __init__(self, names):
        self.pending: dict[str, list[str]] = {}
        for name in names:
            module, _, attr = name.rpartition(".")
            self.pending.setdefault(module, []).append(attr)
        self.trapped: list[str] = []
        self.calls = CALLED  # the record this instance reads, even should the module's name be rebound
        self._recorder = (_record, _record.__code__)
        self._holds: dict[str, Callable[[], bool]] = {}  # per name that a trap records: whether the trap holds
        self._objects: dict[int, tuple[object, str]] = {}  # id of each trapped object (and replacement) -> it, its name
        self._aliases: dict[str, list[str]] = {}  # a recorded name -> the other names of its object

    def install(self) -> None:
        for module in list(self.pending):
            if module in sys.modules:
                self._trap_module(module)
        sys.meta_path.insert(0, self)

    def reset(self) -> None:
        """Forgets the calls recorded so far (a new exercise starts)."""
        self.calls.clear()

    def restore(self, calls: set[str]) -> None:
        """Forgets the calls recorded since ``calls`` (a copy of :attr:`calls`) was taken."""
        self.calls.intersection_update(calls)

    def called(self) -> list[str]:
        """The trapped names called since the last reset, with their objects' other names, sorted."""
        return self._with_aliases(self.calls)

    def tampered(self) -> list[str]:
        """The trapped names whose trap is no longer in place (see the module's docstring), sorted; empty while all hold."""
        waiting = [f"{module}.{attr}" for module, attrs in self.pending.items() for attr in attrs]
        record, code = self._recorder
        if not (globals().get("_record") is record and record.__code__ is code and globals().get("CALLED") is self.calls):
            return self._with_aliases([*self._holds, *waiting])
        broken = [name for name, holds in self._holds.items() if not holds()]
        if self not in sys.meta_path:
            broken += waiting
        else:
            broken += [f"{module}.{attr}" for module, attrs in self.pending.items() if module in sys.modules for attr in attrs]
        return self._with_aliases(broken)

    def _with_aliases(self, names) -> list[str]:
        return sorted({alias for name in names for alias in (name, *self._aliases.get(name, ()))})

    def _trap_module(self, module_name: str) -> None:
        module = sys.modules[module_name]
        for attr in self.pending.pop(module_name, []):
            obj = getattr(module, attr, None)
            name = f"{module_name}.{attr}"
            if obj is None:
                continue
            if id(obj) in self._objects:  # trapped already under another name: a second trap would call the first forever
                self._aliases.setdefault(self._objects[id(obj)][1], []).append(name)
            elif isinstance(obj, type):
                self._holds[name] = _trap_class(obj, name)
            elif isinstance(obj, types.FunctionType) and (holds := _trap_function(obj, name)) is not None:
                self._holds[name] = holds
            else:
                trap, self._holds[name] = _replace_everywhere(obj, name)
                self._objects[id(trap)] = (trap, name)
            self._objects.setdefault(id(obj), (obj, name))
            self.trapped.append(name)

    def find_spec(self, fullname, path=None, target=None):
        if fullname not in self.pending:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None and spec.loader is not None and hasattr(spec.loader, "exec_module"):
                spec.loader = _AfterLoad(spec.loader, lambda: self._trap_module(fullname))
                return spec
        return None


class _AfterLoad(importlib.abc.Loader):
    """A loader that runs a callback once the real loader has executed the module."""

    def __init__(self, loader, callback):
        self.loader, self.callback = loader, callback

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        module.__spec__.loader = self.loader
        self.loader.exec_module(module)
        self.callback()
