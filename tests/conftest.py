"""Shared fixtures of the project's own tests."""

import ast
import importlib
import re
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

from course import submission
from graders.engine import sandbox

ROOT = submission.repo_root()


BUBBLEWRAP_PROBLEM = sandbox.bubblewrap_problem()  # why bubblewrap cannot run on this machine, or None
# The grader's two isolation paths: bubblewrap (skipped where it cannot run) and the fallback.
ISOLATIONS = [
    pytest.param("bubblewrap", marks=pytest.mark.skipif(BUBBLEWRAP_PROBLEM is not None,
                                                        reason=f"bubblewrap cannot run here: {BUBBLEWRAP_PROBLEM}")),
    "fallback",
]


def sandbox_options(isolation: str) -> dict:
    """``graders.grade``'s sandbox arguments for one of :data:`ISOLATIONS`; the fallback may open the folders above
    this Python (a test machine's pyenv under /root), as an instructor would be asked to."""
    return {"isolation": isolation, "open_interpreter_path": isolation == "fallback"}


@pytest.fixture
def reference_module():
    """Imports an exercise module of ``reference/``: ``reference_module("attention")``."""
    with submission.active(ROOT / "reference"):
        yield lambda name: importlib.import_module(f"exercises.{name}.{name}")


@dataclass(frozen=True)
class Mutation:
    """One edit of a function, found by the structure of its code rather than by its text.

    ``function`` is the dotted path of a function, method or nested function
    (``"predict"``, ``"MultiHeadAttention.__call__.split_heads"``). ``old`` is
    Python source inside it: one or more consecutive statements, an
    expression, or a decorator of the function itself (``"@jax.jit"``). It
    matches code that parses to the same tree, whatever its layout, line breaks
    and comments, and must match exactly once. ``new`` replaces it (statements
    and decorators line by line, at their indentation; an expression in
    place, in parentheses); ``""`` deletes statements or a decorator.
    """

    function: str
    old: str
    new: str


def mutate(source: str, mutation: Mutation, where: str = "<source>") -> str:
    """``source`` with ``mutation`` applied.

    Fails, naming ``where`` (the file), when the function or ``old`` is not
    found, when ``old`` matches more than once, or when the result is not Python.
    """
    scope = _definition(ast.parse(source), mutation.function, where)
    old, new = textwrap.dedent(mutation.old).strip(), textwrap.dedent(mutation.new).strip()
    anchors = _anchors(scope, old)
    assert len(anchors) == 1, (
        f"{where}: {old!r} matches {len(anchors)} times in {mutation.function}, expected once; "
        "the reference changed: update this mutation"
    )
    first, last, whole_lines = anchors[0]
    lines = source.splitlines(keepends=True)
    if whole_lines:
        indent = re.match(r"[ \t]*", lines[first.lineno - 1]).group()
        mutated = "".join([*lines[:first.lineno - 1], textwrap.indent(new + "\n", indent) if new else "", *lines[last.end_lineno:]])
    else:
        assert new, f"{where}: {mutation.function}: an expression cannot be deleted, only replaced ({old!r})"
        start, end = _offset(lines, first.lineno, first.col_offset), _offset(lines, last.end_lineno, last.end_col_offset)
        mutated = f"{source[:start]}({new}){source[end:]}"
    try:
        ast.parse(mutated)
    except SyntaxError as error:
        raise AssertionError(f"{where}: replacing {old!r} in {mutation.function} by {new!r} is not Python: {error}") from None
    return mutated


def _definition(tree: ast.Module, dotted: str, where: str) -> ast.AST:
    node = tree
    for name in dotted.split("."):
        found = [n for n in node.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) and n.name == name]
        assert found, f"{where}: no function or class {name!r} on the path {dotted!r}; the reference changed: update this mutation"
        node = found[-1]  # the last definition of a name is the one Python keeps
    return node


def _anchors(scope: ast.AST, old: str) -> list[tuple[ast.AST, ast.AST, bool]]:
    """Where ``old`` occurs in ``scope``: (first node, last node, whether whole lines are replaced) per match."""
    if old.startswith("@"):
        decorator = ast.dump(ast.parse(old[1:], mode="eval").body)
        return [(d, d, True) for d in scope.decorator_list if ast.dump(d) == decorator]
    statements = [ast.dump(s) for s in ast.parse(old).body]
    n = len(statements)
    runs = [
        (body[i], body[i + n - 1], True)
        for node in ast.walk(scope) for field in ("body", "orelse", "finalbody")
        if isinstance(body := getattr(node, field, None), list)
        for i in range(len(body) - n + 1) if [ast.dump(s) for s in body[i:i + n]] == statements
    ]
    if runs or n != 1 or not statements[0].startswith("Expr("):
        return runs
    expression = ast.dump(ast.parse(old, mode="eval").body)
    return [(e, e, False) for e in ast.walk(scope) if isinstance(e, ast.expr) and ast.dump(e) == expression]


def _offset(lines: list[str], lineno: int, col: int) -> int:
    """The string offset of an AST position (1-based line, column in UTF-8 bytes)."""
    return sum(map(len, lines[:lineno - 1])) + len(lines[lineno - 1].encode()[:col].decode())


def copy_with_edits(
    target: Path,
    edits: dict[str, tuple[str, str] | str | Mutation | list[Mutation]] | None = None,
    *,
    source: Path = ROOT / "reference",
) -> Path:
    """Copies ``source`` (default ``reference/``) to ``target`` and applies ``edits``.

    ``{"attention/attention.py": (old, new)}`` replaces the text ``old`` by
    ``new`` in that file (failing if ``old`` is absent); a :class:`Mutation`
    or a list of them edits the file by its structure (see :func:`mutate`); a
    plain string writes the file.
    """
    import shutil

    shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
    for relpath, edit in (edits or {}).items():
        path = target / relpath
        if isinstance(edit, str):
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(edit)
            continue
        text = path.read_text()
        if isinstance(edit, tuple):
            old, new = edit
            assert old in text, f"{relpath} has no {old!r} to replace"
            text = text.replace(old, new)
        else:
            for mutation in [edit] if isinstance(edit, Mutation) else edit:
                text = mutate(text, mutation, relpath)
        path.write_text(text)
    return target


@pytest.fixture
def make_submission(tmp_path):
    """Copies ``reference/`` into a temporary submission and applies edits to it (see :func:`copy_with_edits`)."""
    return lambda edits=None: copy_with_edits(tmp_path / "submission", edits)


def assert_valid_score_files(out: Path, *, seed: int | None = None):
    """The three files of ``course grade`` exist and are well formed; returns the loaded score file."""
    import json

    import graders

    results = json.loads((out / "results.json").read_text())
    assert isinstance(results["score"], int | float) and isinstance(results["execution_time"], int | float)
    for test in results["tests"]:
        assert set(test) >= {"name", "score", "max_score", "status", "output", "visibility"}, test
        assert test["status"] in ("passed", "failed") and 0 <= test["score"] <= test["max_score"]
    assert isinstance(json.loads((out / "report.json").read_text())["tests"], list)
    result = graders.load(out / "score.json")
    assert results["score"] == result.score
    if seed is not None:
        assert result.seed == seed
    return result


def grade_beside_classmate(submission: Path, **kwargs):
    """``graders.grade(submission, **kwargs)`` while an honest classmate (the reference) is graded at the same time.

    The two jobs run on disjoint slices of the machine's cores (one each on two
    cores), as ``grade-all``'s jobs do. Asserts that the classmate earns full marks, as alone, and that nothing of
    the submission's worker is left: no process of its user, no file of its
    user in the machine's shared writable folders (checked where the worker
    ran as a user of its own, i.e. as root). Returns the submission's result.
    """
    import os
    from concurrent.futures import ThreadPoolExecutor

    import psutil

    import graders

    honest = {k: v for k, v in kwargs.items() if k in ("exercises", "seed", "isolation", "open_interpreter_path")}
    theirs, ours = sandbox.core_slices(2, sandbox.check_cores(None))
    with ThreadPoolExecutor(1) as pool:
        classmate = pool.submit(graders.grade, ROOT / "reference", **honest, cores=theirs)
        result = graders.grade(submission, **{"cores": ours, **kwargs})
        alone = classmate.result()
    assert alone.status == "ok" and alone.score == alone.max_score > 0, (alone.score, alone.errors)
    uid = result.worker.get("uid")
    if isinstance(uid, int) and uid != os.getuid():
        alive = [p.pid for p in psutil.process_iter(["uids", "status"])
                 if p.info["uids"] and uid in p.info["uids"] and p.info["status"] != psutil.STATUS_ZOMBIE]
        assert alive == [], f"processes of the worker's user {uid} outlived the grading: {alive}"
        for folder in sandbox.SHARED_WRITABLE:
            left = [e.path for e in os.scandir(folder) if e.stat(follow_symlinks=False).st_uid == uid] if os.path.isdir(folder) else []
            assert left == [], f"files of the worker's user {uid} left in {folder}: {left}"
    return result
