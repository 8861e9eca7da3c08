"""The visible tests' own asserts read as their message alone, without pytest's assertion-rewrite explanation.

pytest explains a failed ``assert`` by every call and attribute in its test
(``assert np.False_ + where np.False_ = <built-in method all ...>``): noise
under the message. So each assert of ``exercises/*/test_*.py`` carries a
message and tests only names, constants, subscripts and comparisons of them
(the value computed on the line before, into a name that says what it checks).
"""

import ast

import pytest

from tests.conftest import ROOT

VISIBLE_TESTS = sorted((ROOT / "exercises").glob("*/test_*.py"))
PLAIN = (ast.Name, ast.Constant, ast.Compare, ast.BoolOp, ast.UnaryOp, ast.Subscript, ast.Slice, ast.Tuple, ast.List,
         ast.Load, ast.cmpop, ast.boolop, ast.unaryop)


def noisy_asserts(source: str) -> list[str]:
    """``line: source`` of each assert without a message or whose test holds more than plain names and comparisons."""
    return [f"{node.lineno}: {ast.unparse(node)}" for node in ast.walk(ast.parse(source)) if isinstance(node, ast.Assert)
            and (node.msg is None or not all(isinstance(part, PLAIN) for part in ast.walk(node.test)))]


def test_noise_is_found():
    assert noisy_asserts("assert (x == 0).all(), 'm'\nassert bool(x), 'm'\nassert y.dtype == z, 'm'\nassert ok\n") == [
        "1: assert (x == 0).all(), 'm'", "2: assert bool(x), 'm'", "3: assert y.dtype == z, 'm'", "4: assert ok"]
    assert noisy_asserts("assert ok, 'm'\nassert not found, f'{found}'\nassert a[0] >= 1 and b == [0], 'm'\n") == []


@pytest.mark.parametrize("path", VISIBLE_TESTS, ids=lambda p: p.parent.name)
def test_visible_asserts_have_a_message_and_no_explained_calls(path):
    assert noisy_asserts(path.read_text()) == [], path
