"""The grader's static scan (graders/engine/scan.py): forbidden routines and tampering found in the source, never run."""

import importlib
import textwrap

import pytest

from course import catalog
from course.submission import repo_root
from graders.engine import scan
from graders.engine.client import Student
from graders.engine.failures import ForbiddenRoutine, Tampering

ROOT = repo_root()
ROUTINES = ("jax.nn.dot_product_attention", "flax.nnx.dot_product_attention", "flax.nnx.MultiHeadAttention",
            "optax.softmax_cross_entropy", "optax.softmax_cross_entropy_with_integer_labels")


def _found(tmp_path, source: str, relpath: str = "attention/attention.py", routines=ROUTINES) -> list[tuple[int, str]]:
    """``(line, routine)`` of each finding of one file, written at ``relpath`` of a submission, for the attention exercise."""
    path = tmp_path / relpath
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(source))
    return [(f.line, f.routine) for f in scan.scan(tmp_path, {"attention": routines})["attention"]]


@pytest.mark.parametrize("source, expected", [
    ("from jax.nn import dot_product_attention as f\ny = f(q, k, v)\n",
     [(1, "jax.nn.dot_product_attention"), (2, "jax.nn.dot_product_attention")]),
    ("import optax as o\nloss = o.softmax_cross_entropy(z, y)\n", [(2, "optax.softmax_cross_entropy")]),
    ("from flax import nnx\nout = nnx.dot_product_attention(q, k, v)\n", [(2, "flax.nnx.dot_product_attention")]),
    ("import jax\nnn = jax.nn\nout = nn.dot_product_attention(q, k, v)\n", [(3, "jax.nn.dot_product_attention")]),
    # the module that defines it, found by its top-level package and its name
    ("import flax.nnx.nn.attention as a\nout = a.dot_product_attention(q, k, v)\n", [(2, "flax.nnx.dot_product_attention")]),
    ("import optax\nf = optax.losses.softmax_cross_entropy_with_integer_labels\n",
     [(2, "optax.softmax_cross_entropy_with_integer_labels")]),
    ("import jax\nf = getattr(jax.nn, 'dot_product_attention')\n", [(2, "jax.nn.dot_product_attention")]),
    ("import importlib\noptax = importlib.import_module('optax')\nf = optax.softmax_cross_entropy\n",
     [(3, "optax.softmax_cross_entropy")]),
    ("f = __import__('optax').softmax_cross_entropy\n", [(1, "optax.softmax_cross_entropy")]),
    ("import sys\nf = sys.modules['jax.nn'].dot_product_attention\n", [(2, "jax.nn.dot_product_attention")]),
    ("import optax\nf = vars(optax)['softmax_cross_entropy']\n", [(2, "optax.softmax_cross_entropy")]),
    ("from flax.nnx import *\nlayer = MultiHeadAttention(4, 8, rngs=rngs)\n", [(2, "flax.nnx.MultiHeadAttention")]),
    ("import jax\nclass A:\n    def __init__(self):\n        self.ops = jax.nn\n    def f(self, q):\n"
     "        return self.ops.dot_product_attention(q, q, q)\n", [(6, "jax.nn.dot_product_attention")]),
])
def test_a_routine_is_found_under_any_alias_or_path(tmp_path, source, expected):
    assert _found(tmp_path, source) == expected


@pytest.mark.parametrize("source", [
    # the student's own routines of the same names, even beside a star import
    "def dot_product_attention(q, k, v):\n    return q\nout = dot_product_attention(1, 2, 3)\n",
    "from flax import nnx\nclass MultiHeadAttention(nnx.Module):\n    pass\nlayer = MultiHeadAttention()\n",
    "from jax.nn import *\ndef dot_product_attention(q):\n    return softmax(q)\nout = dot_product_attention(1)\n",
    # a docstring, the routines the exercise may use, and sys.modules by the module's own name
    '"""Unlike jax.nn.dot_product_attention, this returns the weights."""\nimport jax\nw = jax.nn.softmax(s)\n',
    "import sys\nthis = sys.modules[__name__]\n",
])
def test_honest_code_is_not_flagged(tmp_path, source):
    assert _found(tmp_path, source) == []


def test_the_reference_and_the_exercises_are_not_flagged():
    forbidden = {e.name: e.forbidden for e in catalog.EXERCISES}
    for submission in (ROOT / "reference", ROOT / "exercises"):
        assert all(found == () for found in scan.scan(submission, forbidden).values()), submission


@pytest.mark.parametrize("source, line", [
    ("import grader_runtime.traps\n", 1),
    ("import sys\nsys.modules['grader_runtime.traps'].CALLED.clear()\n", 2),
    ("import jax\nf = jax.nn.softmax\nkeys = [k for k in f.__globals__ if k.startswith('__course_trap_')]\n", 3),
    ("def f():\n    pass\nf.__code__ = (lambda: 0).__code__\n", 3),
    ("def f():\n    pass\ncode = getattr(f, '__code__')\n", 3),
    ("import gc as g\nobjects = g.get_objects()\n", 2),
    ("from gc import get_referrers\n", 1),
    ("import sys\nsys.meta_path.pop(0)\n", 2),
    ("import sys\nfor name in list(sys.modules):\n    module = sys.modules[name]\n", 3),
])
def test_tampering_is_found(tmp_path, source, line):
    assert _found(tmp_path, source, routines=()) == [(line, scan.TAMPERING)]


def test_a_file_counts_for_its_exercise_a_shared_helper_for_all_and_an_unimported_test_for_tampering_only(tmp_path):
    files = {
        "attention/attention.py": "import optax\nf = optax.softmax_cross_entropy\n",
        "helpers.py": "from jax.nn import dot_product_attention\n",
        "loss/test_mine.py": "import optax\ndef test_it():\n    assert optax.softmax_cross_entropy\n",
        "loss/test_tricks.py": "import optax\nf = optax.softmax_cross_entropy_with_integer_labels\n",  # imported below
        "loss/loss.py": "from exercises.loss import test_tricks\nimport gc\ngc.get_objects()\n",
    }
    for relpath, source in files.items():
        (tmp_path / relpath).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relpath).write_text(source)
    found = scan.scan(tmp_path, {"attention": ROUTINES, "loss": ROUTINES})
    assert [(f.where, f.routine) for f in found["attention"]] == [
        ("attention/attention.py:2", "optax.softmax_cross_entropy"), ("helpers.py:1", "jax.nn.dot_product_attention")]
    assert [(f.where, f.routine) for f in found["loss"]] == [
        ("helpers.py:1", "jax.nn.dot_product_attention"), ("loss/loss.py:3", scan.TAMPERING),
        ("loss/test_tricks.py:2", "optax.softmax_cross_entropy_with_integer_labels")]
    assert found["loss"][1].seen == "gc.get_objects"


def test_files_that_do_not_parse_or_are_huge_are_skipped(tmp_path):
    files = {
        "attention/broken.py": "import optax\noptax.softmax_cross_entropy(\n",
        "attention/nulls.py": "import optax\x00\n",
        "attention/deep.py": "x = " + "(" * 5000 + ")" * 5000 + "\n",
        "attention/huge.py": "import optax\noptax.softmax_cross_entropy\n" + "#" * scan.MAX_SOURCE_BYTES,
        "attention/attention.py": "import optax\nf = optax.softmax_cross_entropy\n",
    }
    for relpath, source in files.items():
        (tmp_path / relpath).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relpath).write_text(source)
    # parses, but too deep to resolve: that expression is passed over, not the file
    (tmp_path / "attention" / "calls.py").write_text("import optax\nf = optax.softmax_cross_entropy\ng = h" + "('a')" * 900 + "\n")
    found = scan.scan(tmp_path, {"attention": ROUTINES})["attention"]
    assert [f.where for f in found] == ["attention/attention.py:2", "attention/calls.py:2"]


def test_every_catalogued_routine_exists_in_the_installed_libraries():
    for routine in sorted({r for e in catalog.EXERCISES for r in e.forbidden}):
        module, _, name = routine.rpartition(".")
        assert hasattr(importlib.import_module(module), name), routine


def test_a_static_finding_fails_every_case_unrun_and_names_the_place():
    finding = scan.Finding("attention/attention.py", 12, "jax.nn.dot_product_attention", "attend(q, k, v)")
    elsewhere = scan.Finding("attention/attention.py", 14, "optax.softmax_cross_entropy", "optax.softmax_cross_entropy")
    student = Student(None, "attention", ("jax.nn.dot_product_attention",), (finding, elsewhere))  # no session: nothing runs
    with pytest.raises(ForbiddenRoutine, match=r"jax.nn.dot_product_attention \(attention/attention.py:12: attend\(q, k, v\)\)"):
        student.causal_mask(3)
    assert student.forbidden_called == ["jax.nn.dot_product_attention"]
    tampering = scan.Finding("helpers.py", 3, scan.TAMPERING, "f.__code__ = g.__code__")
    student = Student(None, "attention", (), (tampering, elsewhere))
    with pytest.raises(Tampering, match=r"helpers.py:3: f.__code__ = g.__code__"):
        student.causal_mask(3)
    assert student.forbidden_called == [Tampering.LABEL]
