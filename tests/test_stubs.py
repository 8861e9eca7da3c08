"""Stub generation: markers, the committed stubs, and what stubs keep of the reference."""

import ast

import pytest

from course import catalog, stubs
from course.submission import repo_root

ROOT = repo_root()

SOURCE = '''"""Module doc."""
import jax.numpy as jnp


def double(x: jnp.ndarray) -> jnp.ndarray:
    """Doubles x."""
    y = x  # kept: outside the block
    # BEGIN SOLUTION (hint: multiply by 2)
    return 2 * y
    # END SOLUTION
'''


def test_make_stub_replaces_the_block_with_a_raise():
    stub = stubs.make_stub(SOURCE, "demo/demo.py")
    assert "return 2 * y" not in stub and "BEGIN SOLUTION" not in stub
    assert "    y = x  # kept: outside the block\n" in stub
    expected = "not implemented yet: implement double in exercises/demo/demo.py (hint: multiply by 2)"
    assert f"    raise NotImplementedError({expected!r})\n" in stub
    namespace = {}
    exec(compile(stub, "demo.py", "exec"), namespace)
    with pytest.raises(NotImplementedError, match="implement double"):
        namespace["double"](1)


@pytest.mark.parametrize(
    ("source", "problem"),
    [
        (SOURCE.replace("    # END SOLUTION\n", ""), "never closed"),
        (SOURCE.replace("    # BEGIN SOLUTION (hint: multiply by 2)\n", ""), "without a BEGIN"),
        (SOURCE.replace("    # BEGIN SOLUTION (hint: multiply by 2)\n", "").replace("    # END SOLUTION\n", ""), "no solution block"),
        ("# BEGIN SOLUTION\nx = 1\n# END SOLUTION\n", "inside a function"),
        (SOURCE.replace("    return 2 * y\n", "    # BEGIN SOLUTION\n    return 2 * y\n"), "inside the block"),
    ],
)
def test_malformed_markers_are_errors(source, problem):
    with pytest.raises(stubs.MarkerError, match=problem):
        stubs.make_stub(source, "demo/demo.py")


def test_committed_stubs_are_generated_from_the_reference():
    stale = [str(u.path) for u in stubs.sync(ROOT / "reference", ROOT / "exercises", write=False) if u.changed]
    assert not stale, f"stale stubs (run `course stubs`): {stale}"


def _api(path):
    """Signatures, decorators and docstrings of a module's functions, plus its docstring."""
    tree = ast.parse(path.read_text())
    functions = {
        node.name: (ast.unparse(node.args), ast.unparse(node.returns) if node.returns else None,
                    [ast.unparse(d) for d in node.decorator_list], ast.get_docstring(node))
        for node in tree.body
        if isinstance(node, ast.FunctionDef)
    }
    return ast.get_docstring(tree), functions


@pytest.mark.parametrize("exercise", catalog.EXERCISES, ids=lambda e: e.name)
def test_stubs_keep_the_reference_api_and_hide_the_solution(exercise):
    reference, stub = ROOT / "reference" / exercise.relpath, ROOT / "exercises" / exercise.relpath
    assert _api(stub) == _api(reference)
    assert set(exercise.functions) <= set(_api(stub)[1]), "the catalogue names functions the module lacks"
    solution_lines = {line.strip() for line in reference.read_text().splitlines()} - {line.strip() for line in stub.read_text().splitlines()}
    assert solution_lines, "the stub holds every line of the reference"
    assert stub.read_text().count("raise NotImplementedError") >= len(exercise.functions)
