"""Each exercise graded on its own: dependent exercises run over the reference's building blocks, exported as programs.

``graders.engine.known_good`` exports the reference's attention, loss and
positional encoding functions and its transformer modules (as functions of
their weights; no source, no file names); ``graders.runtime.known_good``
turns them into the worker's stand-in modules. The stand-ins must compute
what the reference computes, under the transformations a student's module may
apply, and a mistake in a building block must cost points in its own exercise
and in the labelled integration case of the dependent exercise only.
"""

import re
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.conftest import ROOT, copy_with_edits
from tests.conftest import Mutation as M

import graders
from graders.engine import known_good
from graders.runtime import known_good as stand_in

# The integration cases of the dependent exercises: (exercise, case, the exercise its message names).
INTEGRATION = {"transformer": ("test_with_your_own_attention", "fix exercises/attention first"),
               "training": ("test_with_your_own_loss", "fix exercises/loss first"),
               "encoder_decoder": ("test_with_your_own_building_blocks", "fix the exercises it builds on first")}


@pytest.fixture(scope="module")
def programs():
    """The serialized programs of attention (``d_k`` 4, float32 and bfloat16), of the loss (float32, with and without
    masks), of the transformer's modules (``d_model`` 8: 2 heads, ``d_ff`` 12) and of the positional encoding."""
    from course import submission

    with submission.active(ROOT / "reference"), jax.default_matmul_precision("highest"):
        return {**known_good.attention(d_k=(4,)), **known_good.loss(masked=(False, True)),
                **known_good.transformer(multi_head_attention=((8, 2),), feed_forward=((8, 12),)),
                **known_good.positional_encoding(d_model=(8,))}


def test_programs_hold_no_source_and_no_file_name(programs):
    # Every line of code of the reference's building blocks (a solution line, not a docstring or a comment).
    lines = [line.strip() for name in ("attention", "loss", "transformer", "positional_encoding")
             for line in (ROOT / "reference" / name / f"{name}.py").read_text().splitlines()]
    code = [line for line in lines if len(line) > 12 and not line.startswith(("#", '"', "``", "Args", "Raises", "Returns"))
            and re.search(r"[=(]", line)]
    assert len(code) > 20, code  # the check itself reads the reference
    for key, program in programs.items():
        data = program.tobytes()
        found = [line for line in code if line.encode() in data]
        assert found == [], (key, found)
        assert not re.search(rb"[\w/.-]+\.py\b", data), (key, re.findall(rb"[\w/.-]+\.py\b", data)[:3])
        assert b"reference" not in data and str(ROOT).encode() not in data, key


def test_stand_ins_compute_the_reference_under_jit_vjp_and_vmap(programs, reference_module):
    attention, loss = reference_module("attention"), reference_module("loss")
    modules = stand_in.stand_ins(programs)
    good, good_loss = modules["exercises.attention.attention"], modules["exercises.loss.loss"]
    rng = np.random.default_rng(0)
    q, k, v = (rng.standard_normal(shape).astype(np.float32) for shape in ((2, 3, 5, 4), (2, 3, 6, 4), (2, 3, 6, 7)))
    mask = (rng.random((2, 1, 5, 6)) < 0.6) | (np.arange(6) == 0)  # per batch, every query sees key 0

    def objective(fn):
        return lambda q, k, v: sum(jnp.sum(out * np.cos(np.arange(out.size).reshape(out.shape)))
                                   for out in fn(q, k, v, mask))

    with jax.default_matmul_precision("highest"):
        for got, want in [(good.scaled_dot_product_attention(q, k, v, mask), attention.scaled_dot_product_attention(q, k, v, mask)),
                          (jax.jit(jax.grad(objective(good.scaled_dot_product_attention), (0, 1, 2)))(q, k, v),
                           jax.grad(objective(attention.scaled_dot_product_attention), (0, 1, 2))(q, k, v)),
                          # vmap over the heads (axis 1), and the gradient through it
                          (jax.vmap(good.scaled_dot_product_attention, (1, 1, 1, None))(q, k, v, mask[:, 0]),
                           jax.vmap(attention.scaled_dot_product_attention, (1, 1, 1, None))(q, k, v, mask[:, 0])),
                          (jax.grad(lambda q: jnp.sum(jax.vmap(good.scaled_dot_product_attention, (1, 1, 1))(q, k, v)[0] ** 3))(q),
                           jax.grad(lambda q: jnp.sum(jax.vmap(attention.scaled_dot_product_attention, (1, 1, 1))(q, k, v)[0] ** 3))(q)),
                          (good.causal_mask(5), attention.causal_mask(5))]:
            for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
                assert a.dtype == b.dtype and a.shape == b.shape
                np.testing.assert_allclose(np.asarray(a, np.float32), np.asarray(b, np.float32), rtol=1e-5, atol=1e-6)
        logits, tokens = rng.standard_normal((3, 5, 7)).astype(np.float32), rng.integers(0, 7, (3, 5)).astype(np.int32)
        for pad_id in (None, 2):
            got = jax.jit(jax.value_and_grad(lambda z: good_loss.next_token_loss(z, tokens, pad_id)))(logits)
            want = jax.value_and_grad(lambda z: loss.next_token_loss(z, tokens, pad_id))(logits)
            for a, b in zip(got, want):
                np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    with pytest.raises(ValueError, match="d_k must match"):
        good.scaled_dot_product_attention(q[..., :3], k, v)
    with pytest.raises(TypeError, match=r"does not cover .*float32/3"):  # only this run's head width is exported
        good.scaled_dot_product_attention(q[..., :3], k[..., :3], v)


def test_module_stand_ins_compute_the_reference_with_parameter_gradients(programs, reference_module):
    """The transformer's modules and the positional encoding as stand-ins: the reference's outputs, and its gradients
    with respect to every weight and input, for self- and cross-attention with the masks a model passes."""
    from flax import nnx

    from course.params import param_arrays

    D, H, F = 8, 2, 12
    assert {"positional_encoding/sinusoidal_positional_encoding/8", "transformer/feed_forward/float32/8/12",
            "transformer/multi_head_attention/float32/8/2"} <= set(programs)
    modules = stand_in.stand_ins(programs)
    good, good_pe = modules["exercises.transformer.transformer"], modules["exercises.positional_encoding.positional_encoding"]
    ref, ref_pe = reference_module("transformer"), reference_module("positional_encoding")
    rng = np.random.default_rng(3)
    x, memory = rng.standard_normal((2, 4, D)).astype(np.float32), rng.standard_normal((2, 5, D)).astype(np.float32)
    padding = np.arange(5) < np.array([5, 3])[:, None]  # [B, S]: the second example hides two positions
    calls = {  # name: (class, constructor arguments, call)
        "causal self-attention": ("MultiHeadAttention", (D, H), lambda m, x: m(x, mask=np.tril(np.ones((4, 4), bool)))),
        "self-attention": ("MultiHeadAttention", (D, H), lambda m, x: m(x)),
        "padded cross-attention": ("MultiHeadAttention", (D, H),
                                   lambda m, x: m(x, context=x[:, :1] + memory, mask=padding[:, None, None, :])),
        "feed-forward": ("FeedForward", (D, F), lambda m, x: m(x)),
    }
    stacked = rng.standard_normal((3, *x.shape)).astype(np.float32)  # under vmap: three batches, one at a time
    for name, (cls, sizes, call) in calls.items():
        mine, theirs = getattr(good, cls)(*sizes, rngs=nnx.Rngs(0)), getattr(ref, cls)(*sizes, rngs=nnx.Rngs(1))
        assert jax.tree.map(np.shape, param_arrays(mine)) == jax.tree.map(np.shape, param_arrays(theirs)), name
        nnx.update(theirs, nnx.state(mine, nnx.Param))  # the same weights in both

        def objective(module, x, call=call):
            out = call(module, x)
            return jnp.sum(out * np.cos(np.arange(out.size).reshape(out.shape)))

        def mapped(module, xs, call=call):  # a submission may vmap its call over examples
            return jnp.sum(nnx.vmap(call, in_axes=(None, 0))(module, xs) ** 3)

        for f, inputs in ((objective, x), (mapped, stacked)):
            with jax.default_matmul_precision("highest"):
                got = nnx.jit(nnx.value_and_grad(f, argnums=(0, 1)))(mine, inputs)
                want = nnx.value_and_grad(f, argnums=(0, 1))(theirs, inputs)
            got, want = jax.tree.leaves(jax.tree.map(np.asarray, got)), jax.tree.leaves(jax.tree.map(np.asarray, want))
            assert len(got) == len(want) == len(jax.tree.leaves(param_arrays(mine))) + 2, name
            for a, b in zip(got, want):
                np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-4, err_msg=f"{name}, {f.__name__}")
    np.testing.assert_allclose(good_pe.sinusoidal_positional_encoding(7, D), ref_pe.sinusoidal_positional_encoding(7, D),
                               rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="divisible"):
        good.MultiHeadAttention(D, 3, rngs=nnx.Rngs(0))
    with pytest.raises(TypeError, match=r"does not cover .*float32/8/4"):  # only this run's sizes are exported
        good.MultiHeadAttention(D, 4, rngs=nnx.Rngs(0))(x)
    with pytest.raises(TypeError, match="float32 inputs"):
        good.FeedForward(D, F, rngs=nnx.Rngs(0))(x.astype(jnp.bfloat16))
    with pytest.raises(ValueError, match="d_model: expected an even number"):
        good_pe.sinusoidal_positional_encoding(4, 7)


def test_a_mistake_in_attention_or_loss_costs_only_the_integration_case_elsewhere(tmp_path):
    submission = copy_with_edits(tmp_path / "wrong", {
        "attention/attention.py": M("scaled_dot_product_attention",
                                    "query @ jnp.swapaxes(key, -1, -2) / math.sqrt(query.shape[-1])",
                                    "query @ jnp.swapaxes(key, -1, -2)"),
        "loss/loss.py": M("next_token_loss", "return cross_entropy_loss(logits[:, :-1], targets, mask)",
                          "return cross_entropy_loss(logits[:, :-1], targets, mask) * 2"),
    })
    result = graders.grade(submission, exercises=["attention", "loss", "transformer", "training", "encoder_decoder"], seed=5)
    assert result.status == "ok", result.errors
    scores = {e.name: e for e in result.exercises}
    assert scores["attention"].score < scores["attention"].max_score
    assert scores["loss"].score < scores["loss"].max_score
    for name in INTEGRATION:
        _only_the_integration_case_failed(scores[name])


def test_a_mistake_in_the_transformer_or_positional_encoding_costs_only_the_integration_case_elsewhere(tmp_path):
    submission = copy_with_edits(tmp_path / "wrong", {
        "positional_encoding/positional_encoding.py": ("jnp.arange(seq_len, dtype=jnp.float32)",
                                                       "jnp.arange(1, seq_len + 1, dtype=jnp.float32)"),
        "transformer/transformer.py": M("FeedForward.__call__", "return self.down(jax.nn.gelu(self.up(x)))",
                                        "return self.down(jax.nn.relu(self.up(x)))"),
    })
    result = graders.grade(submission, exercises=["positional_encoding", "transformer", "encoder_decoder"], seed=5)
    assert result.status == "ok", result.errors
    scores = {e.name: e for e in result.exercises}
    assert scores["positional_encoding"].score < scores["positional_encoding"].max_score
    assert scores["transformer"].score < scores["transformer"].max_score
    _only_the_integration_case_failed(scores["encoder_decoder"])


def _only_the_integration_case_failed(exercise) -> None:
    """``exercise`` lost the points of its integration case (:data:`INTEGRATION`), a small share, and no others."""
    case_name, fix_first = INTEGRATION[exercise.name]
    failed = [c for c in exercise.cases if c.status != "passed"]
    assert [c.name for c in failed] == [case_name], (exercise.name, failed)
    case = failed[0]
    assert case.max_points <= 2 and case.max_points <= exercise.max_score / 10, case
    assert exercise.score == exercise.max_score - case.max_points
    assert fix_first in case.message, case.message


def test_the_module_binds_the_stand_ins_however_it_imports_them(tmp_path):
    from course import submission

    files = {"attention/attention.py": "def scaled_dot_product_attention(*args):\n    return 'own'\n",
             "transformer/transformer.py": ("import exercises.attention.attention as by_alias\n"
                                            "from exercises.attention import attention as from_package\n"
                                            "from exercises.attention.attention import scaled_dot_product_attention\n"),
             # an exercise that reaches attention through another exercise's module
             "encoder_decoder/encoder_decoder.py": "from exercises.transformer.transformer import scaled_dot_product_attention\n"}
    for relpath, text in files.items():
        (tmp_path / relpath).parent.mkdir(parents=True)
        (tmp_path / relpath).write_text(text)
    with submission.active(tmp_path):
        import exercises.attention.attention as own  # graded before the transformer, as in a grading run

        stand_ins = stand_in.stand_ins({"attention/causal_mask": np.zeros(1, np.uint8)})
        for given, expected in [(stand_ins, stand_ins["exercises.attention.attention"]), ({}, own)]:
            module = stand_in.import_module("transformer", given)
            assert module.by_alias is expected and module.from_package is expected, given
            assert module.scaled_dot_product_attention is expected.scaled_dot_product_attention, given
            # Afterwards every other import sees the submission's own modules again.
            assert sys.modules["exercises.attention.attention"] is own and sys.modules["exercises"].attention.attention is own
            assert "exercises.transformer.transformer" not in sys.modules
            module = stand_in.import_module("encoder_decoder", given)
            assert module.scaled_dot_product_attention is expected.scaled_dot_product_attention, given
            left = sys.modules.get("exercises.transformer.transformer")  # never left bound to the stand-ins
            assert left is None or left.scaled_dot_product_attention is own.scaled_dot_product_attention, given
