"""Hostile submissions: each earns no more than it honestly would, and the score files stay valid.

Several hostile behaviours share one grading run, one per exercise (each
exercise is graded on its own, with worker restarts in between), under small
limits so that hangs cost seconds.
"""

import os

import pytest

from course.submission import repo_root
from tests.conftest import ISOLATIONS, assert_valid_score_files, copy_with_edits, grade_beside_classmate, sandbox_options
from tests.conftest import Mutation as M

import graders

ROOT = repo_root()
# Hangs cost 2 x call_seconds (two tries); honest calls must fit in call_seconds even on a busy machine.
HANGS = graders.Limits(call_seconds=5, submission_seconds=300, memory_mb=1024, crashes=2)
# The submission budget leaves room for a loaded CI machine: the hostile cases each spend up to a call limit.
LIMITS = graders.Limits(call_seconds=30, submission_seconds=600, memory_mb=1024, crashes=2)
AS_ROOT = os.geteuid() == 0
EXERCISES = ["jax_basics", "positional_encoding", "attention", "loss"]  # the ones these submissions attack


def _prepend(relpath: str, code: str, base: str = "reference") -> tuple[str, str]:
    """An edit that inserts ``code`` after the module's imports of ``base``'s file."""
    text = (ROOT / base / relpath).read_text()
    anchor = "import jax.numpy as jnp\n"
    assert anchor in text
    return anchor, anchor + code


def _scores(result) -> dict:
    return {e.name: e.score for e in result.exercises}


@pytest.mark.parametrize("isolation", ISOLATIONS)
def test_exits_crashes_hangs_and_monkeypatching(tmp_path, isolation):
    submission = copy_with_edits(tmp_path / "hostile", {
        # sys.exit while the module is imported
        "jax_basics/jax_basics.py": _prepend("jax_basics/jax_basics.py", "import sys\nsys.exit(0)\n"),
        # os._exit in the middle of a call kills the worker
        "positional_encoding/positional_encoding.py": ("    if seq_len <= 0:\n", "    import os\n    os._exit(3)\n    if seq_len <= 0:\n"),
        # an infinite loop in one function; causal_mask stays honest (2 points)
        "attention/attention.py": ("    for name, x in ((\"query\", query)", "    while True:\n        pass\n    for name, x in ((\"query\", query)"),
        # comparisons patched away in the worker, a zero loss, and pytest.exit in a call
        "loss/loss.py": _prepend("loss/loss.py", (
            "import numpy, numpy.testing\n"
            "numpy.allclose = lambda *a, **k: True\nnumpy.testing.assert_allclose = lambda *a, **k: None\n"
            "jnp.allclose = lambda *a, **k: True\nnumpy.array_equal = lambda *a, **k: True\n"
            "def _zero(*a, **k):\n    return jnp.zeros((), jnp.float32)\n"
        )),
    })
    path = submission / "loss" / "loss.py"
    path.write_text(path.read_text() + "\nnext_token_loss = _zero\n"
                    "def cross_entropy_loss(*args, **kwargs):\n    import pytest\n    pytest.exit('the submission ends the grading')\n")
    out = tmp_path / "out"
    result = grade_beside_classmate(submission, exercises=EXERCISES, out=out, seed=7, limits=HANGS, **sandbox_options(isolation))
    assert result.status == "ok", result.errors
    assert_valid_score_files(out, seed=7)
    scores = _scores(result)
    assert scores["jax_basics"] == 0 and scores["positional_encoding"] == 0
    assert scores["attention"] <= 2 and scores["loss"] == 0  # causal_mask is honest
    cases = {(c.exercise, c.name): c for e in result.exercises for c in e.cases}
    assert "SystemExit" in cases["jax_basics", "test_predict_with_gradients"].message
    assert "died" in cases["positional_encoding", "test_matches_reference[paper]"].message
    assert "took longer than 5 s" in cases["attention", "test_matches_reference_with_gradients[none]"].message
    assert cases["attention", "test_bfloat16_inputs_give_bfloat16_outputs"].message.startswith("not run")
    assert cases["attention", "test_causal_mask[random]"].status == "passed"
    assert "Exit" in cases["loss", "test_cross_entropy_with_gradient[none]"].message


CONFTEST = '''
import pathlib, pytest
pathlib.Path({marker!r}).write_text("the submission's conftest ran")

@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    report = (yield).get_result()
    report.outcome = "passed"

def pytest_configure(config):
    pytest.exit("the submission ends the grading")
'''

LIAR = '''
class _Liar:
    """An array-like whose comparisons always succeed."""
    __module__ = "jaxlib.xla_extension"
    shape, dtype, ndim = (1,), "float32", 1
    def __eq__(self, other): return True
    def __ne__(self, other): return False
    def __array__(self, *args, **kwargs):
        import numpy
        return numpy.zeros((1,), numpy.float32)
    def __getattr__(self, name): return self

def causal_mask(seq_len):
    return _Liar()

def scaled_dot_product_attention(query, key, value, mask=None):
    return _Liar(), _Liar()
'''


def _reader(out):
    return f'''
import os, sys
ROOT = {str(ROOT)!r}

def _steal():
    for name in ("reference", "graders"):
        try:
            __import__(name)
            return "imported " + name
        except ImportError:
            pass
    for path in (ROOT + "/reference/positional_encoding/positional_encoding.py", ROOT + "/graders/suites/test_attention.py"):
        try:
            namespace = {{}}
            exec(open(path).read(), namespace)
            return namespace
        except Exception:
            pass
    try:
        from exercises.positional_encoding import stolen
        return vars(stolen)
    except Exception:
        pass
    for name in ("results.json", "score.json"):
        try:
            open(os.path.join({str(out)!r}, name), "w").write("{{}}")
        except OSError:
            pass
    return None

_STOLEN = _steal()
'''


@pytest.mark.parametrize("isolation", ISOLATIONS)
def test_conftest_forks_memory_lies_floods_and_reading_the_grader(tmp_path, isolation):
    marker = tmp_path / "conftest-ran"
    out = tmp_path / "out"
    submission = copy_with_edits(tmp_path / "hostile", {
        "conftest.py": CONFTEST.format(marker=str(marker)),
        "attention/conftest.py": CONFTEST.format(marker=str(marker)),
        # a fork bomb (bounded by RLIMIT_NPROC and the memory watch)
        "jax_basics/jax_basics.py": (
            "    raise NotImplementedError('not implemented yet: implement predict",
            "    import os\n    while True:\n        os.fork()\n    raise NotImplementedError('not implemented yet: implement predict"),
        "attention/attention.py": LIAR,
        # reads the reference and the suites, writes the score files, else allocates until the memory limit
        "positional_encoding/positional_encoding.py": _prepend("positional_encoding/positional_encoding.py", _reader(out), base="exercises"),
    }, source=ROOT / "exercises")
    loss = submission / "loss" / "loss.py"
    # the loss module itself is the reference's, so the loss exercise is honestly worth full marks
    reference_loss = (ROOT / "reference" / "loss" / "loss.py").read_text()
    loss.write_text(reference_loss.replace("import jax.numpy as jnp\n", "import jax.numpy as jnp\nprint('x' * (8 << 20))\n"
                                           "import sys\nsys.stderr.write('y' * (8 << 20))\n", 1))
    pe = submission / "positional_encoding" / "positional_encoding.py"
    pe.write_text(pe.read_text().replace(
        "    raise NotImplementedError('not implemented yet: implement sinusoidal_positional_encoding",
        "    if isinstance(_STOLEN, dict):\n        return _STOLEN['sinusoidal_positional_encoding'](seq_len, d_model, base)\n"
        "    hoard = []\n    while True:\n        hoard.append(bytearray(64 << 20))\n"
        "    raise NotImplementedError('not implemented yet: implement sinusoidal_positional_encoding"))
    (submission / "positional_encoding" / "stolen.py").symlink_to(ROOT / "reference" / "positional_encoding" / "positional_encoding.py")
    result = grade_beside_classmate(submission, exercises=EXERCISES, out=out, seed=8, limits=LIMITS, **sandbox_options(isolation))
    assert result.status == "ok", result.errors
    score = assert_valid_score_files(out, seed=8)
    assert score.score == result.score  # the files are the grader's, whatever the submission wrote
    assert not marker.exists(), "the submission's conftest.py was loaded"
    scores = _scores(result)
    assert scores["jax_basics"] == 0 and scores["attention"] == 0
    assert scores["loss"] == next(e.max_score for e in result.exercises if e.name == "loss")
    assert result.worker["output_bytes"] >= 16 << 20 and len(result.worker["output_tail"]) <= 8192
    cases = {(c.exercise, c.name): c for e in result.exercises for c in e.cases}
    fork_bomb = cases["jax_basics", "test_predict_with_gradients"].message
    assert any(word in fork_bomb for word in ("memory", "died", "Resource temporarily unavailable", "took longer")), fork_bomb
    assert cases["jax_basics", "test_mse_loss_with_gradients"].message.startswith("not run")
    assert all(c.status == "failed" for (exercise, _), c in cases.items() if exercise == "attention")
    if AS_ROOT or isolation == "bubblewrap":  # the repository is out of the worker's view, or closed to its own user
        assert scores["positional_encoding"] == 0
        hoard = cases["positional_encoding", "test_matches_reference[paper]"].message
        assert "MemoryError" in hoard or "more than 1024 MiB" in hoard, hoard
        assert result.worker["uid"] != 0


@pytest.mark.parametrize("isolation", ISOLATIONS)
def test_forbidden_routines_zero_the_exercise_whatever_the_name(tmp_path, isolation):
    submission = copy_with_edits(tmp_path / "shortcut", {
        # an aliased import, called on 4-D inputs; the other calls are the student's own correct code
        "attention/attention.py": (
            "    # A Python float is weakly typed",
            "    from jax.nn import dot_product_attention as attend\n"
            "    if query.ndim == 4 and mask is None:\n"
            "        attend(jnp.swapaxes(query, 1, 2), jnp.swapaxes(key, 1, 2), jnp.swapaxes(value, 1, 2))\n"
            "    # A Python float is weakly typed"),
        # a name built at run time, imported lazily inside the call
        "loss/loss.py": (
            "    if mask is None:\n        return jnp.mean(nll)\n",
            "    if mask is None:\n        import importlib\n        optax = importlib.import_module('optax')\n"
            "        labels = getattr(optax, 'softmax_cross_entropy_with_' + 'integer_labels')\n"
            "        return jnp.mean(labels(logits.astype(jnp.float32), targets))\n"),
    })
    result = grade_beside_classmate(submission, exercises=["attention", "loss"], out=tmp_path / "out", seed=9, limits=LIMITS,
                                    **sandbox_options(isolation))
    assert result.status == "ok", result.errors
    assert_valid_score_files(tmp_path / "out", seed=9)
    attention, loss = result.exercises
    assert attention.forbidden == ("jax.nn.dot_product_attention",) and attention.score == 0
    assert loss.forbidden == ("optax.softmax_cross_entropy_with_integer_labels",) and loss.score == 0
    assert any("jax.nn.dot_product_attention" in c.message for c in attention.cases)
    assert all(c.points == 0 for c in loss.cases)


def test_a_trap_undone_from_its_own_globals_is_caught_in_the_source(tmp_path):
    """The submission restores the trapped routine's code, then calls it only when d_v == d_k (on 4-D inputs)."""
    submission = copy_with_edits(tmp_path / "untrapped", {
        "attention/attention.py": (
            "    # A Python float is weakly typed",
            "    if query.ndim == 4 and mask is None and value.shape[-1] == key.shape[-1]:\n"
            "        jax.nn.dot_product_attention(jnp.swapaxes(query, 1, 2), jnp.swapaxes(key, 1, 2), jnp.swapaxes(value, 1, 2))\n"
            "    # A Python float is weakly typed"),
    })
    attention_py = submission / "attention" / "attention.py"
    attention_py.write_text(attention_py.read_text() + (
        "\n_routine = jax.nn.dot_product_attention\n"
        "for _name, _value in list(_routine.__globals__.items()):\n"
        "    if _name.startswith('__course_trap_'):\n"
        "        _routine.__code__ = _value[2].__code__\n"))
    result = grade_beside_classmate(submission, exercises=["attention"], out=tmp_path / "out", seed=10, limits=LIMITS)
    assert result.status == "ok", result.errors
    assert_valid_score_files(tmp_path / "out", seed=10)
    (attention,) = result.exercises
    assert attention.score == 0 and "jax.nn.dot_product_attention" in attention.forbidden
    assert all("jax.nn.dot_product_attention (attention/attention.py:" in c.message for c in attention.cases)


# A submission that computes nothing: every function keeps the reference's argument checks (so the cases that pass
# bad arguments see the right errors) and returns constants of the right shape and dtype. Found by the structure of
# the reference's code (tests/conftest.py: Mutation); what is computed before a replaced return is thrown away.
CONSTANTS = {
    "jax_basics": [
        M("predict", "return x @ W + b", "return jnp.zeros((*inputs.shape[:-1], W.shape[-1]), inputs.dtype)"),
        M("mse_loss", "return jnp.mean((predictions - targets) ** 2)", "return jnp.zeros((), predictions.dtype)"),
        M("loss_and_grad", "return jax.value_and_grad(mse_loss)(params, batch)",
          "return jnp.zeros((), jnp.float32), jax.tree.map(jnp.zeros_like, params)"),
        M("per_example_grads", "return jax.vmap(jax.grad(mse_loss), in_axes=(None, 0))(params, batch)",
          "return jax.tree.map(lambda p: jnp.zeros((batch[0].shape[0], *p.shape), p.dtype), params)"),
    ],
    # Every row is position 0's: right for a single position, whatever the sizes.
    "positional_encoding": [
        M("sinusoidal_positional_encoding",
          "return jnp.stack([jnp.sin(angles), jnp.cos(angles)], axis=-1).reshape(seq_len, d_model)",
          "return jnp.tile(jnp.array([0.0, 1.0], jnp.float32), (seq_len, d_model // 2))"),
    ],
    "attention": [
        M("causal_mask", "return jnp.tril(jnp.ones((seq_len, seq_len), dtype=bool))",
          "return jnp.ones((seq_len, seq_len), dtype=bool)"),
        M("scaled_dot_product_attention", "return weights @ value, weights",
          "return jnp.zeros_like(weights @ value), jnp.ones_like(weights) / weights.shape[-1]"),
    ],
    "loss": [
        M("cross_entropy_loss", "return jnp.mean(nll)", "return jnp.zeros((), jnp.float32)"),
        M("cross_entropy_loss", "return jnp.sum(nll * weights) / jnp.maximum(jnp.sum(weights), 1.0)",
          "return jnp.zeros((), jnp.float32)"),
    ],
    "transformer": [
        M("MultiHeadAttention.__call__", "return self.out(heads.reshape(*heads.shape[:-2], -1))", "return jnp.zeros_like(x)"),
        M("FeedForward.__call__", "return self.down(jax.nn.gelu(self.up(x)))", "return jnp.zeros_like(x)"),
        M("DecoderBlock.__call__", "return x + self.ffn(self.ln2(x))", "return jnp.zeros_like(x)"),
    ],
    "generation": [
        M("sample_next_token", "return jnp.argmax(logits, axis=-1).astype(jnp.int32)",
          "return jnp.zeros(logits.shape[:-1], jnp.int32)"),
        M("sample_next_token", "return jax.random.categorical(key, logits, axis=-1).astype(jnp.int32)",
          "return jnp.zeros(logits.shape[:-1], jnp.int32)"),
        M("generate", "return _generate(graphdef, state, prompt.astype(jnp.int32), max_new_tokens, key, temperature, top_k)",
          "return jnp.concatenate([prompt.astype(jnp.int32), jnp.zeros((prompt.shape[0], max_new_tokens), jnp.int32)], axis=1)"),
    ],
    "encoder_decoder": [
        M("EncoderBlock.__call__", "return x + self.ffn(self.ln2(x))", "return jnp.zeros_like(x)"),
        M("CrossAttentionDecoderBlock.__call__", "return x + self.ffn(self.ln3(x))", "return jnp.zeros_like(x)"),
        M("EncoderDecoder.__call__", "return self.decode(target_in, self.encode(source), source != self.pad_id)",
          "return jnp.zeros((*target_in.shape, self.head.kernel.shape[-1]), jnp.float32)"),
        M("EncoderDecoder.loss", "return cross_entropy_loss(self(source, target[:, :-1]), labels, labels != self.pad_id)",
          "return jnp.zeros((), jnp.float32)"),
        M("greedy_decode", "return _greedy_decode(graphdef, state, source.astype(jnp.int32), length, bos_id)",
          "return jnp.zeros((source.shape[0], length), jnp.int32)"),
    ],
    # The loss is computed and thrown away; the model is never updated.
    "training": [
        M("train_step", "optimizer.update(model, grads)", ""),
        M("train_step", "return loss", "return jax.numpy.full((), 2.0, jax.numpy.float32)"),
        M("shard_batch", 'return jax.device_put(tokens, NamedSharding(mesh, P("data")))', "return jax.numpy.asarray(tokens)"),
    ],
}


def test_constants_behind_the_right_argument_checks_earn_nothing(tmp_path):
    submission = copy_with_edits(tmp_path / "constants", {f"{name}/{name}.py": edits for name, edits in CONSTANTS.items()})
    out = tmp_path / "out"
    result = graders.grade(submission, out=out, seed=10, limits=LIMITS)
    assert result.status == "ok", result.errors
    assert_valid_score_files(out, seed=10)
    assert [e.name for e in result.exercises] == graders.graded_exercises()
    assert _scores(result) == dict.fromkeys(graders.graded_exercises(), 0)
    gated = [c for e in result.exercises for c in e.cases if c.message.startswith("counts only once ")]
    # The gate is what zeroes them: cases that pass on constants alone (the argument checks, a constant's shape and dtype).
    assert {c.exercise for c in gated} == set(graders.graded_exercises()) - {"jax_basics"}, [(c.exercise, c.name) for c in gated]
    cases = {(c.exercise, c.name): c for c in gated}
    assert cases["positional_encoding", "test_bad_sizes_raise_value_error[odd_d_model]"].message == (
        "counts only once sinusoidal_positional_encoding computes correct values (see test_matches_reference[paper])")
    assert ("training", "test_shard_batch_rejects_bad_meshes") in cases
    assert ("generation", "test_model_is_traced_a_bounded_number_of_times") in cases

