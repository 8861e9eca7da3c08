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

Limits: this catches honest shortcuts, not a submission that sets out to
evade it (it runs in the same process and could restore the originals); the
trap names what was called, it does not judge whether the call mattered.
"""

from __future__ import annotations

import importlib.abc
import sys
import types

CALLED: set[str] = set()  # the dotted names called since the last reset


def _record(name: str) -> None:
    CALLED.add(name)


def _trap_function(fn: types.FunctionType, name: str) -> bool:
    if fn.__closure__:  # a new __code__ must have the same free variables: give up, replace by identity
        return False
    original = types.FunctionType(fn.__code__, fn.__globals__, fn.__name__, fn.__defaults__, None)
    original.__kwdefaults__ = fn.__kwdefaults__
    key = f"__course_trap_{id(fn)}__"
    fn.__globals__[key] = (_record, name, original)
    source = f"def trap(*args, **kwargs):\n    record, name, original = {key}\n    record(name)\n    return original(*args, **kwargs)\n"
    namespace: dict = {}
    exec(source, fn.__globals__, namespace)
    fn.__code__ = namespace["trap"].__code__
    return True


def _trap_class(cls: type, name: str) -> None:
    original = cls.__init__

    def __init__(self, *args, **kwargs):
        _record(name)
        original(self, *args, **kwargs)

    cls.__init__ = __init__


def _replace_everywhere(obj, name: str) -> None:
    def trap(*args, **kwargs):
        _record(name)
        return obj(*args, **kwargs)

    for module in list(sys.modules.values()):
        namespace = getattr(module, "__dict__", None)
        if not isinstance(namespace, dict):
            continue
        for key, value in list(namespace.items()):
            if value is obj:
                namespace[key] = trap


class Traps(importlib.abc.MetaPathFinder):
    """Installs traps on ``names`` now and when their modules are first imported."""

    def __init__(self, names):
        self.pending: dict[str, list[str]] = {}
        for name in names:
            module, _, attr = name.rpartition(".")
            self.pending.setdefault(module, []).append(attr)
        self.trapped: list[str] = []

    def install(self) -> None:
        for module in list(self.pending):
            if module in sys.modules:
                self._trap_module(module)
        sys.meta_path.insert(0, self)

    def _trap_module(self, module_name: str) -> None:
        module = sys.modules[module_name]
        for attr in self.pending.pop(module_name, []):
            obj = getattr(module, attr, None)
            name = f"{module_name}.{attr}"
            if obj is None:
                continue
            if isinstance(obj, type):
                _trap_class(obj, name)
            elif not (isinstance(obj, types.FunctionType) and _trap_function(obj, name)):
                _replace_everywhere(obj, name)
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
