"""A static scan of a submission's source: uses of forbidden routines, and tampering with the grader.

It runs in the trusted pytest process before any of the submission's code
runs, reading each ``.py`` file with :mod:`ast`, never importing or executing
it. It complements the worker's traps (:mod:`graders.runtime.traps`), which
see what the code does but run in the submission's own process, where code
written to evade them can undo them: the scan sees what the code says.

A *use* of a forbidden routine (``jax.nn.dot_product_attention``) is a name
or attribute path that, through the file's imports and simple assignments,
leads to a dotted path that starts at the routine's top-level package and
passes through its final name; so the routine is found under its own name, an
alias, or the submodule that defines it:

- ``from jax.nn import dot_product_attention as attend``;
- ``import optax as o`` then ``o.softmax_cross_entropy``; ``from flax import nnx``
  then ``nnx.dot_product_attention``; ``nn = jax.nn`` then ``nn.dot_product_attention``;
- ``flax.nnx.nn.attention.dot_product_attention``;
- ``getattr(jax.nn, "dot_product_attention")``, ``vars(optax)["..."]``, ``optax.__dict__["..."]``;
- ``importlib.import_module("optax")``, ``__import__("optax")``, ``sys.modules["optax"]``;
- a bare name after ``from <package> import *`` that the file never binds itself.

A student's own function of the same name is no use: it is not reached
through the library. Test files (``test_*.py``, ``*_test.py``, ``conftest.py``)
that no other file imports are the student's own checks, which may compare
with a library routine: only tampering counts there.

*Tampering* is what no honest exercise needs: any mention of the worker's
runtime (``grader_runtime``) or of its traps (``__course_trap``); a function's
``__code__``, ``__globals__`` or ``__closure__`` (as an attribute or a string);
``gc.get_objects``, ``gc.get_referrers``, ``gc.get_referents``;
``sys.meta_path``; and walking ``sys.modules`` (``.values()``, ``.items()``, or
a lookup by a computed name other than ``__name__``).

A file counts for the exercise whose folder holds it (``attention/...``); a
file outside every catalogued exercise's folder (a shared helper) counts for
every exercise.

Limits: only what the source spells out is seen: a name computed at run time
(``getattr(optax, "softmax_" + name)``) or code run from a string escapes the
scan, and the traps catch those when they are called. A file that does not
parse is skipped (it fails to import in the worker too), and so is one larger
than :data:`MAX_SOURCE_BYTES`.
"""

from __future__ import annotations

import ast
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from course import catalog

TAMPERING = "tampering"  # the ``routine`` of a tampering finding
MAX_SOURCE_BYTES = 1 << 20  # larger files are skipped: far above any exercise's source, and parsing stays quick
MAX_SEEN_CHARS = 80

_GRADER_NAMES = ("grader_runtime", "__course_trap")  # the worker's runtime package and its traps' globals
_FUNCTION_INTERNALS = frozenset({"__code__", "__globals__", "__closure__"})
_TAMPERING_PATHS = frozenset({"gc.get_objects", "gc.get_referrers", "gc.get_referents", "sys.meta_path",
                              "sys.modules.values", "sys.modules.items"})
_IMPORTERS = frozenset({"importlib.import_module", "builtins.__import__"})
_TEST_FILE = re.compile(r"(test_.*|.*_test|conftest)\.py")
_MAX_PARTS = 16  # an alias's dotted path is cut there: ``x = x.y`` must not grow one without end
_MAX_PATHS = 16  # paths kept per alias
_MAX_PASSES = 32  # rounds of alias propagation through assignments


@dataclass(frozen=True)
class Finding:
    """One use of a forbidden routine, or one sign of tampering, in the submission's source."""

    path: str  # the file, relative to the submission, with "/" ("attention/attention.py")
    line: int  # 1-based
    routine: str  # the forbidden routine's dotted name, or TAMPERING
    seen: str  # the code, as written (its first line, at most MAX_SEEN_CHARS characters)

    @property
    def where(self) -> str:
        """``path:line``, as a student's editor reads it."""
        return f"{self.path}:{self.line}"


@dataclass(frozen=True)
class _Source:
    """What one file says: the library paths it reaches, its tampering, and the modules it imports."""

    path: str
    uses: tuple[tuple[str, int, str], ...]  # (dotted path, line, seen)
    tampering: tuple[Finding, ...]
    imports: frozenset[str]  # the last part of every module (and name) it imports


@dataclass
class _Scope:
    """A file's aliases of library paths, flow-insensitively (one table for the whole file)."""

    names: dict[str, set[str]] = field(default_factory=dict)  # local name -> the dotted paths it may hold
    attrs: dict[str, set[str]] = field(default_factory=dict)  # attribute name (``self.nn = jax.nn``) -> likewise
    stars: list[str] = field(default_factory=list)  # the modules of ``from <module> import *``
    bound: set[str] = field(default_factory=set)  # every name the file binds itself (defs, arguments, targets)


def scan(submission: Path, forbidden: Mapping[str, Sequence[str]]) -> dict[str, tuple[Finding, ...]]:
    """The findings of each exercise in a submission.

    Args:
      submission: a folder shaped like ``exercises/`` (the worker's scratch copy).
      forbidden: per exercise, its forbidden routines (dotted names); name
        every exercise to grade, even one without any: tampering counts everywhere.

    Returns:
      Per exercise of ``forbidden``: the uses of its routines and the tampering
      in the files that count for it, sorted by file and line.
    """
    sources = [s for s in (_read(submission, f) for f in _python_files(submission)) if s is not None]
    imported = frozenset().union(*(s.imports for s in sources))
    folders = {e.name for e in catalog.EXERCISES}
    findings = {}
    for exercise, routines in forbidden.items():
        found: list[Finding] = []
        for source in sources:
            folder, _, name = source.path.rpartition("/")
            if folder and folder.partition("/")[0] in folders - {exercise}:
                continue
            found += source.tampering
            if not (_TEST_FILE.fullmatch(name) and name.removesuffix(".py") not in imported):
                found += _matches(source, routines)
        findings[exercise] = tuple(sorted(found, key=lambda f: (f.path, f.line, f.routine)))
    return findings


def _read(submission: Path, file: Path) -> _Source | None:
    """What ``file`` (inside ``submission``) says; ``None`` when it is too large, unreadable or not Python."""
    try:
        if file.stat().st_size > MAX_SOURCE_BYTES:
            return None
        data = file.read_bytes()
        tree = ast.parse(data, filename=str(file))
        return _inspect(tree, data.decode("utf-8", errors="replace"), file.relative_to(submission).as_posix())
    except (OSError, SyntaxError, ValueError, RecursionError, MemoryError):  # ValueError: null bytes
        return None


def _inspect(tree: ast.AST, text: str, path: str) -> _Source:
    """What the parsed file ``path`` says (``text`` is its source, for what was seen)."""
    lines = text.splitlines()

    def seen(node: ast.AST) -> str:
        line = lines[node.lineno - 1] if 0 < node.lineno <= len(lines) else ""
        segment = line[node.col_offset:node.end_col_offset] if node.end_lineno == node.lineno else line[node.col_offset:]
        return (segment.strip() or line.strip())[:MAX_SEEN_CHARS]

    scope = _bindings(tree)
    uses: dict[tuple[str, int], str] = {}  # (dotted path, line) -> seen
    tampering: dict[int, str] = {}  # line -> seen
    imports: set[str] = set()
    for node in ast.walk(tree):
        if not hasattr(node, "lineno"):
            continue
        if isinstance(node, ast.Import | ast.ImportFrom):
            paths = _import_paths(node)
        elif isinstance(node, ast.Name) and not isinstance(node.ctx, ast.Load):  # a target: its value is the use
            paths = set()
        else:
            paths = _resolve_safely(node, scope)
        imports |= _imported_names(node, scope)
        for dotted in paths:
            _keep_widest(uses, (dotted, node.lineno), seen(node))
        if _tampers(node, paths, scope):
            _keep_widest(tampering, node.lineno, seen(node))
    return _Source(path, tuple((dotted, line, text) for (dotted, line), text in uses.items()),
                   tuple(Finding(path, line, TAMPERING, tampering[line]) for line in sorted(tampering)), frozenset(imports))


def _keep_widest(table: dict, key, text: str) -> None:
    """Keeps the widest code seen for ``key``: of the nested expressions of a line, the outermost names the use best."""
    if len(text) > len(table.get(key, "")):
        table[key] = text


def _routine_of(dotted: str, routines: Iterable[str]) -> str | None:
    """The routine of ``routines`` that the library path ``dotted`` reaches, or ``None``.

    A path reaches a routine when it starts at the routine's top-level package
    and passes through its final name (``flax.nnx.nn.attention.dot_product_attention``
    reaches ``flax.nnx.dot_product_attention``); the routine the path names
    itself is preferred.
    """
    parts = dotted.split(".")
    hits = [r for r in routines if r.partition(".")[0] == parts[0] and r.rpartition(".")[2] in parts[1:]]
    exact = [r for r in hits if dotted == r or dotted.startswith(r + ".")]
    return (exact or hits or [None])[0]


def _matches(source: _Source, routines: Sequence[str]) -> list[Finding]:
    found: dict[tuple[int, str], Finding] = {}
    for dotted, line, seen in source.uses:
        routine = _routine_of(dotted, routines)
        if routine is not None:
            found.setdefault((line, routine), Finding(source.path, line, routine, seen))
    return [found[key] for key in sorted(found)]


def _python_files(submission: Path) -> list[Path]:
    """Every regular ``.py`` file under ``submission``, in a stable order; links are neither followed nor listed."""
    files = []
    for folder, dirs, names in os.walk(submission, followlinks=False):
        dirs.sort()
        files += [Path(folder, n) for n in sorted(names) if n.endswith(".py") and not os.path.islink(os.path.join(folder, n))]
    return files


# -- a file's aliases ----------------------------------------------------------------------------

def _bindings(tree: ast.AST) -> _Scope:
    """The file's :class:`_Scope`: its imports, then its assignments of library paths, to a fixed point."""
    scope = _Scope()
    assignments: list[tuple[ast.expr, ast.expr]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                local = alias.asname or alias.name.partition(".")[0]
                scope.names.setdefault(local, set()).add(alias.name if alias.asname else local)
        elif isinstance(node, ast.ImportFrom):
            for alias in node.names:
                if node.level or not node.module:  # the submission's own modules
                    scope.bound.add(alias.asname or alias.name)
                elif alias.name == "*":
                    scope.stars.append(node.module)
                else:
                    scope.names.setdefault(alias.asname or alias.name, set()).add(f"{node.module}.{alias.name}")
        elif isinstance(node, ast.Assign):
            assignments += [pair for target in node.targets for pair in _pairs(target, node.value)]
        elif isinstance(node, ast.AnnAssign | ast.NamedExpr) and node.value is not None:
            assignments += _pairs(node.target, node.value)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            scope.bound.add(node.name)
        elif isinstance(node, ast.arg):
            scope.bound.add(node.arg)
        elif isinstance(node, ast.Name) and not isinstance(node.ctx, ast.Load):
            scope.bound.add(node.id)
    for _ in range(_MAX_PASSES):  # an alias may be assigned before the alias it copies
        changed = False
        for target, value in assignments:
            table, key = (scope.names, target.id) if isinstance(target, ast.Name) else (scope.attrs, target.attr)
            known = table.setdefault(key, set())
            new = sorted(p for p in _resolve_safely(value, scope) if p.count(".") < _MAX_PARTS and p not in known)
            if new and len(known) < _MAX_PATHS:
                known.update(new[:_MAX_PATHS - len(known)])
                changed = True
        if not changed:
            break
    return scope


def _pairs(target: ast.expr, value: ast.expr) -> list[tuple[ast.expr, ast.expr]]:
    """The (name or attribute, value) pairs an assignment binds; tuples unpacked element by element."""
    if isinstance(target, ast.Name | ast.Attribute):
        return [(target, value)]
    if isinstance(target, ast.Tuple | ast.List) and isinstance(value, ast.Tuple | ast.List) and len(target.elts) == len(value.elts):
        return [pair for t, v in zip(target.elts, value.elts) for pair in _pairs(t, v)]
    return []


def _import_paths(node: ast.Import | ast.ImportFrom) -> set[str]:
    """The library paths an import statement names (``from jax.nn import dot_product_attention``)."""
    if isinstance(node, ast.Import):
        return {alias.name for alias in node.names}
    if node.level or not node.module:
        return set()
    return {f"{node.module}.{alias.name}" for alias in node.names if alias.name != "*"}


def _imported_names(node: ast.AST, scope: _Scope) -> set[str]:
    """The last part of each module (or name) ``node`` imports: what tells a helper module from a test file."""
    if isinstance(node, ast.Import):
        return {alias.name.rpartition(".")[2] for alias in node.names}
    if isinstance(node, ast.ImportFrom):
        return {alias.name for alias in node.names} | {(node.module or "").rpartition(".")[2]}
    if isinstance(node, ast.Call) and node.args and _literal(node.args[0]) is not None \
            and _resolve_safely(node.func, scope) & _IMPORTERS:
        return {_literal(node.args[0]).rpartition(".")[2]}
    return set()


# -- an expression's library paths ----------------------------------------------------------------

def _literal(node) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def _is_builtin(func, name: str, scope: _Scope) -> bool:
    return isinstance(func, ast.Name) and func.id == name and name not in scope.bound and name not in scope.names


def _resolve_safely(node, scope: _Scope) -> set[str]:
    """:func:`_resolve`, or nothing for an expression nested too deep to follow (the rest of the file still counts)."""
    try:
        return _resolve(node, scope)
    except RecursionError:
        return set()


def _resolve(node, scope: _Scope) -> set[str]:
    """The dotted library paths the expression ``node`` may stand for; empty when it reaches no import.

    Follows attributes, ``getattr`` and ``vars`` with literal names, ``[key]``
    and ``.get(key)`` with a literal key, and the importers called with a
    literal module name. A chain is walked in a loop: only an importer's own
    expression is resolved by recursion.
    """
    tail: list[str] = []  # what follows the chain's innermost expression, outermost first; "[key]" for a lookup
    while True:
        if isinstance(node, ast.Attribute):
            tail.append(node.attr)
            node = node.value
        elif isinstance(node, ast.Call) and _is_builtin(node.func, "getattr", scope) and len(node.args) in (2, 3) \
                and _literal(node.args[1]) is not None:
            tail.append(_literal(node.args[1]))
            node = node.args[0]
        elif isinstance(node, ast.Call) and _is_builtin(node.func, "vars", scope) and len(node.args) == 1:
            tail.append("__dict__")
            node = node.args[0]
        elif isinstance(node, ast.Subscript) and _literal(node.slice) is not None:
            tail.append(f"[{_literal(node.slice)}]")
            node = node.value
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get" \
                and node.args and _literal(node.args[0]) is not None:
            tail.append(f"[{_literal(node.args[0])}]")
            node = node.func.value
        else:
            break
    paths = set()
    for base, rest in _bases(node, tail, scope):
        path = _join(base, rest)
        if path is not None:
            paths.add(path)
    return paths


def _bases(node, tail: list[str], scope: _Scope) -> list[tuple[str, list[str]]]:
    """The paths of a chain's innermost expression, each with the part of ``tail`` that follows it."""
    if isinstance(node, ast.Name) and node.id in scope.names:
        return [(base, tail) for base in sorted(scope.names[node.id])]
    if isinstance(node, ast.Name) and node.id not in scope.bound:
        if node.id == "__import__":
            return [("builtins.__import__", tail)]
        return [(f"{module}.{node.id}", tail) for module in scope.stars]
    if isinstance(node, ast.Call) and node.args and _literal(node.args[0]) is not None \
            and _resolve(node.func, scope) & _IMPORTERS:
        return [(_literal(node.args[0]), tail)]
    for i in range(len(tail) - 1, -1, -1):  # self.nn.dot_product_attention, after self.nn = jax.nn
        if tail[i] in scope.attrs:
            return [(base, tail[:i]) for base in sorted(scope.attrs[tail[i]])]
    return []


def _join(base: str, tail: list[str]) -> str | None:
    """``base`` then ``tail`` (outermost first); a ``[key]`` reads a ``__dict__`` or ``sys.modules``, else ``None``."""
    path = base
    for part in reversed(tail):
        if not part.startswith("["):
            path = f"{path}.{part}"
        elif path.endswith(".__dict__"):
            path = f"{path.removesuffix('.__dict__')}.{part[1:-1]}"
        elif path == "sys.modules":
            path = part[1:-1]
        else:
            return None
    return path


# -- tampering ------------------------------------------------------------------------------------

def _tampers(node: ast.AST, paths: set[str], scope: _Scope) -> bool:
    """Whether ``node`` itself touches the grader's machinery (see the module's docstring)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str | bytes):
        text = node.value.decode("latin-1") if isinstance(node.value, bytes) else node.value
        return any(n in text for n in _GRADER_NAMES) or text in _FUNCTION_INTERNALS
    if isinstance(node, ast.Attribute) and node.attr in _FUNCTION_INTERNALS:
        return True
    if any(n in spelled for spelled in _spelled(node) for n in _GRADER_NAMES):
        return True
    if not paths.isdisjoint(_TAMPERING_PATHS):
        return True
    return _walks_modules(node, scope)


def _spelled(node: ast.AST) -> list[str]:
    """The identifiers ``node`` itself spells: a name, an attribute, the modules and names of an import."""
    if isinstance(node, ast.Name):
        return [node.id]
    if isinstance(node, ast.Attribute):
        return [node.attr]
    if isinstance(node, ast.Import | ast.ImportFrom):
        return [alias.name for alias in node.names] + [getattr(node, "module", None) or ""]
    return []


def _walks_modules(node: ast.AST, scope: _Scope) -> bool:
    """``sys.modules[name]`` or ``sys.modules.get(name)`` with a computed name other than ``__name__``."""
    if isinstance(node, ast.Subscript):
        container, key = node.value, node.slice
    elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get" and node.args:
        container, key = node.func.value, node.args[0]
    else:
        return False
    if _literal(key) is not None or (isinstance(key, ast.Name) and key.id == "__name__"):
        return False
    return "sys.modules" in _resolve_safely(container, scope)
