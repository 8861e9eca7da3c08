"""Stub generation: markers, the committed stubs, and what stubs keep of the reference."""

import ast

import pytest

from authoring import stubs
from course import catalog
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


CLASS_AND_HELPER = """

class Doubler:
    def __call__(self, x):
        # BEGIN SOLUTION
        return _helper(x)
        # END SOLUTION


# BEGIN SOLUTION
def _helper(x):
    return 2 * x
# END SOLUTION
"""


def test_module_level_blocks_are_removed_and_methods_are_named_with_their_class():
    stub = stubs.make_stub(SOURCE + CLASS_AND_HELPER, "demo/demo.py")
    assert "_helper" not in stub
    assert "implement Doubler.__call__ in exercises/demo/demo.py')" in stub


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
        ("# BEGIN SOLUTION (hint: h)\nx = 1\n# END SOLUTION\n", "module-level block"),
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
    """The module docstring, and the signature, decorators and docstring of every public
    function, class and method (solution-only private helpers are left out)."""
    tree = ast.parse(path.read_text())
    api = {}

    def visit(nodes, prefix):
        for node in nodes:
            if isinstance(node, ast.FunctionDef) and (prefix or not node.name.startswith("_")):
                api[prefix + node.name] = (
                    ast.unparse(node.args), ast.unparse(node.returns) if node.returns else None,
                    [ast.unparse(d) for d in node.decorator_list], ast.get_docstring(node))
            elif isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
                api[prefix + node.name] = ([ast.unparse(b) for b in node.bases], ast.get_docstring(node))
                visit(node.body, f"{prefix}{node.name}.")

    visit(tree.body, "")
    return ast.get_docstring(tree), api


@pytest.mark.parametrize("exercise", catalog.EXERCISES, ids=lambda e: e.name)
def test_stubs_keep_the_reference_api_and_hide_the_solution(exercise):
    reference, stub = ROOT / "reference" / exercise.relpath, ROOT / "exercises" / exercise.relpath
    assert _api(stub) == _api(reference)
    assert set(exercise.functions) <= set(_api(stub)[1]), "the catalogue names functions the module lacks"
    solution_lines = {line.strip() for line in reference.read_text().splitlines()} - {line.strip() for line in stub.read_text().splitlines()}
    assert solution_lines, "the stub holds every line of the reference"
    assert stub.read_text().count("raise NotImplementedError") >= len(exercise.functions)
