"""Student stubs, generated from the reference solutions.

``reference/`` is the single source of truth. In a reference module each
solution is a block of lines inside a function, between two marker comments::

    # BEGIN SOLUTION (hint: build a lower-triangular matrix with jnp.tril)
    ...
    # END SOLUTION

The stub is the same file with each block inside a function replaced by one
``raise NotImplementedError("not implemented yet: implement <function> in
exercises/<name>/<name>.py (hint: ...)")`` at the block's indentation. A block
at module level (a helper that only the solution needs) is removed with no
replacement, and takes no hint. Module docstrings, imports, signatures, type
hints and docstrings stay exactly as in the reference.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

from course import catalog

BEGIN = re.compile(r"^(?P<indent>\s*)# BEGIN SOLUTION(?: \(hint: (?P<hint>.*)\))?\s*$")
END = re.compile(r"^\s*# END SOLUTION\s*$")


class MarkerError(ValueError):
    """A reference module's solution markers are malformed."""


def not_implemented_message(function: str, relpath: str, hint: str | None) -> str:
    """The message a stub raises; shown to the student by the visible tests."""
    message = f"not implemented yet: implement {function} in exercises/{relpath}"
    return f"{message} (hint: {hint})" if hint else message


def _enclosing_functions(tree: ast.Module) -> list[tuple[int, int, str]]:
    """``(first_line, last_line, qualified_name)`` of every function, outermost first."""
    spans = []

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                name = f"{prefix}{child.name}"
                if not isinstance(child, ast.ClassDef):
                    spans.append((child.lineno, child.end_lineno, name))
                visit(child, f"{name}.")
            else:
                visit(child, prefix)

    visit(tree, "")
    return sorted(spans)


def make_stub(source: str, relpath: str) -> str:
    """Replaces every solution block of a reference module with a ``raise``.

    Args:
      source: the reference module's text.
      relpath: the module's path inside a submission, e.g. ``attention/attention.py``;
        named in the stub's message.

    Returns:
      The stub module's text.

    Raises:
      MarkerError: a block is unclosed or nested, a module-level block has a
        hint, or the module has no block at all.
    """
    functions = _enclosing_functions(ast.parse(source))
    lines = source.splitlines(keepends=True)
    out: list[str] = []
    block_start: int | None = None
    blocks = 0
    for number, line in enumerate(lines, start=1):
        begin, end = BEGIN.match(line), END.match(line)
        if begin:
            if block_start is not None:
                raise MarkerError(f"{relpath}:{number}: BEGIN SOLUTION inside the block opened at line {block_start}")
            owners = [name for first, last, name in functions if first < number <= last]
            if owners:
                message = not_implemented_message(owners[-1], relpath, begin["hint"])
                out.append(f"{begin['indent']}raise NotImplementedError({message!r})\n")
            elif begin["hint"]:
                raise MarkerError(f"{relpath}:{number}: a module-level block is removed from the stub, so its hint would never be shown")
            block_start, blocks = number, blocks + 1
        elif end:
            if block_start is None:
                raise MarkerError(f"{relpath}:{number}: END SOLUTION without a BEGIN SOLUTION")
            block_start = None
        elif block_start is None:
            out.append(line)
    if block_start is not None:
        raise MarkerError(f"{relpath}:{block_start}: BEGIN SOLUTION is never closed")
    if not blocks:
        raise MarkerError(f"{relpath}: no solution block; students would receive the solution")
    return "".join(out)


@dataclass(frozen=True)
class StubUpdate:
    path: Path  # the stub file
    changed: bool  # whether its committed text differs from the generated one


def sync(reference: Path, exercises: Path, *, write: bool) -> list[StubUpdate]:
    """Generates every exercise's stub from ``reference`` into ``exercises``.

    Args:
      reference: the reference submission directory.
      exercises: the student exercises directory.
      write: write the changed stubs; ``False`` only reports (``--check``).

    Returns:
      One :class:`StubUpdate` per exercise in :data:`course.catalog.EXERCISES`.
    """
    updates = []
    for exercise in catalog.EXERCISES:
        source_path = reference / exercise.relpath
        if not source_path.is_file():
            raise FileNotFoundError(f"reference: {source_path} is missing")
        stub = make_stub(source_path.read_text(encoding="utf-8"), exercise.relpath)
        target = exercises / exercise.relpath
        current = target.read_text(encoding="utf-8") if target.is_file() else None
        changed = current != stub
        if changed and write:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(stub, encoding="utf-8")
        updates.append(StubUpdate(target, changed))
    return updates
