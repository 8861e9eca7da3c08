"""Grader suite for exercises/transformer: ``MultiHeadAttention``, ``FeedForward`` and ``DecoderBlock`` (Flax NNX).

Each case builds the student's module in the worker and the reference's here,
checks that the parameter structure (paths, shapes, dtypes) is the
reference's, copies the reference's weights into the student's module, and
compares the outputs and the VJP for a random cotangent with respect to the
floating inputs and every parameter.

Sizes (drawn once per grading seed, shared by the cases): heads ``H`` in 2..3,
head width ``d_head`` in 2..8 (``d_model = H * d_head``; ``H, d_head >= 2`` so
that heads split in the wrong order show), batch ``B`` in
1..2, length ``T`` in 2..8, context length ``T_ctx`` in 2..8, ``d_ff`` in
4..32; standard normal float32 inputs.
"""

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from course.params import param_arrays
from graders.engine.compare import check, expect_dtype, known_mistakes
from graders.engine.failures import Mismatch, StudentError
from graders.runtime import transforms


@pytest.fixture(scope="module")
def dims(suite_rng):
    """``(B, T, T_ctx, H, d_head, d_ff)`` of this grading run."""
    B, T, T_ctx = int(suite_rng.integers(1, 3)), int(suite_rng.integers(2, 9)), int(suite_rng.integers(2, 9))
    H, d_head, d_ff = int(suite_rng.integers(2, 4)), int(suite_rng.integers(2, 9)), int(suite_rng.integers(4, 33))
    return B, T, T_ctx, H, d_head, d_ff


def _normal(rng, *shape, dtype=np.float32):
    return rng.standard_normal(shape).astype(dtype)


def _kwargs(name, H, d_model, d_ff):
    return {"MultiHeadAttention": {"d_model": d_model, "num_heads": H}, "FeedForward": {"d_model": d_model, "d_ff": d_ff},
            "DecoderBlock": {"d_model": d_model, "num_heads": H, "d_ff": d_ff}}[name]


def _build(student, reference, name, kwargs, seed):
    """The student's module (weights copied from the reference's) and the reference's module."""
    ref = getattr(reference, name)(**kwargs, rngs=nnx.Rngs(seed))
    weights = param_arrays(ref)
    module = student.construct(name, kwargs=kwargs, rngs_seed=seed)
    want = {k: (np.dtype(v.dtype).name, tuple(v.shape)) for k, v in weights.items()}
    got = {k: (d, tuple(s)) for k, (d, s) in module.params.items()}  # the worker's dtype names, compared as text
    if got != want:
        missing, extra = sorted(set(want) - set(got)), sorted(set(got) - set(want))
        differ = sorted(k for k in set(want) & set(got) if want[k] != got[k])
        raise Mismatch(f"{name}({', '.join(f'{k}={v}' for k, v in kwargs.items())}): the parameter structure differs "
                       f"from the specification (missing: {missing}, unexpected: {extra}, other shape or dtype: {differ}); "
                       "keep the submodule names and nnx.Linear / nnx.LayerNorm layers of the docstring")
    module.set_params(weights)
    return module, ref


def _compare(module, ref, name, args, kwargs, rng, mistakes, *, tolerance_of=None):
    """Outputs and the VJP (inputs and parameters) of the student's module against the reference's."""
    args = tuple(args)
    cotangent = _normal(rng, *args[0].shape)  # every module maps [..., d_model] to [..., d_model]
    waiting = module.submit(*args, kwargs=kwargs, transform="vjp", cotangent=cotangent)  # the worker computes meanwhile
    want, (want_arg_grads, want_param_grads) = transforms.apply_module(ref, "__call__", args, kwargs, transform="vjp",
                                                                        cotangent=cotangent, compile=True)
    got, (got_arg_grads, got_param_grads) = waiting()
    check(got, want, what=f"{name}: output", mistakes=mistakes, mistake_args=args, mistake_kwargs=kwargs, tolerance_of=tolerance_of)
    names = ("x", "context")
    for i, want_grad in enumerate(want_arg_grads):
        if want_grad is not None:
            got_grad = got_arg_grads[i] if isinstance(got_arg_grads, tuple | list) and i < len(got_arg_grads) else None
            check(got_grad, want_grad, what=f"{name}: gradient with respect to {names[i]}", kind="gradient", tolerance_of=tolerance_of)
    if not isinstance(got_param_grads, dict) or set(got_param_grads) != set(want_param_grads):
        raise Mismatch(f"{name}: the parameter gradients do not have the specification's parameters")
    for path in sorted(want_param_grads):
        check(got_param_grads[path], want_param_grads[path], what=f"{name}: gradient with respect to parameter {path}",
              kind="gradient", tolerance_of=tolerance_of)
    return got, want


@pytest.mark.points(3)
@pytest.mark.values("MultiHeadAttention")
@pytest.mark.parametrize("case", ["self", "causal", "cross"])
def test_multi_head_attention_with_gradients(student, reference, rng, dims, case):
    B, T, T_ctx, H, d_head, _ = dims
    kwargs = _kwargs("MultiHeadAttention", H, H * d_head, 0)
    module, ref = _build(student, reference, "MultiHeadAttention", kwargs, seed=int(rng.integers(2**31)))
    x = _normal(rng, B, T, H * d_head)
    args, call_kwargs = (x,), {}
    if case == "causal":
        call_kwargs = {"mask": np.tril(np.ones((T, T), bool))}
    elif case == "cross":
        args = (x, _normal(rng, B, T_ctx, H * d_head))
    _compare(module, ref, "MultiHeadAttention", args, call_kwargs, rng, known_mistakes(reference, "MultiHeadAttention", ref))


@pytest.mark.points(2)
@pytest.mark.requires_values("MultiHeadAttention")
def test_multi_head_attention_leading_dimensions_under_jit(student, reference, rng, dims):
    _, T, _, H, d_head, _ = dims
    module, ref = _build(student, reference, "MultiHeadAttention", _kwargs("MultiHeadAttention", H, H * d_head, 0), seed=1)
    # Three leading dimensions and a [T, T] mask broadcast over them, the whole call under jax.jit: one compilation.
    x, mask = _normal(rng, 2, 1, 2, T, H * d_head), np.tril(np.ones((T, T), bool))
    waiting = module.submit(x, kwargs={"mask": mask}, transform="jit")
    want = transforms.apply_module(ref, "__call__", (x,), {"mask": mask}, transform="jit")
    check(waiting(), want, what=f"MultiHeadAttention under jax.jit: output for x of shape {list(x.shape)}")


@pytest.mark.points(1)
@pytest.mark.requires_values("MultiHeadAttention")
def test_num_heads_must_divide_d_model(student, dims):
    _, _, _, H, d_head, _ = dims
    kwargs = {"d_model": (H + 1) * d_head + 1, "num_heads": H + 1}  # d_model % num_heads == 1
    try:
        student.construct("MultiHeadAttention", kwargs=kwargs, rngs_seed=0)
    except StudentError as raised:
        if "ValueError" not in raised.bases:
            raise Mismatch(f"MultiHeadAttention({kwargs}): should raise ValueError; instead {raised}") from None
        return
    raise Mismatch(f"MultiHeadAttention(d_model={kwargs['d_model']}, num_heads={kwargs['num_heads']}): "
                   "num_heads does not divide d_model, which should raise ValueError; it built a module")


@pytest.mark.points(2)
@pytest.mark.values("FeedForward")
def test_feed_forward_with_gradients(student, reference, rng, dims):
    B, T, _, H, d_head, d_ff = dims
    module, ref = _build(student, reference, "FeedForward", _kwargs("FeedForward", H, H * d_head, d_ff), seed=int(rng.integers(2**31)))
    # Scaled up so that the activation's negative side (relu against gelu) matters.
    x = _normal(rng, B, T, H * d_head) * 2
    _compare(module, ref, "FeedForward", (x,), {}, rng, known_mistakes(reference, "FeedForward", ref))


@pytest.mark.points(3)
@pytest.mark.values("DecoderBlock")
@pytest.mark.parametrize("masking", ["causal", "none"])
def test_decoder_block_with_gradients(student, reference, rng, dims, masking):
    B, T, _, H, d_head, d_ff = dims
    module, ref = _build(student, reference, "DecoderBlock", _kwargs("DecoderBlock", H, H * d_head, d_ff), seed=int(rng.integers(2**31)))
    # Not standard scale, so that a missing or misplaced LayerNorm changes the output.
    x = _normal(rng, B, T, H * d_head) * 3 + 1
    kwargs = {"mask": np.tril(np.ones((T, T), bool))} if masking == "causal" else {}
    _compare(module, ref, "DecoderBlock", (x,), kwargs, rng, known_mistakes(reference, "DecoderBlock", ref))


@pytest.mark.points(2)
@pytest.mark.requires_values("DecoderBlock")
def test_decoder_block_bfloat16_inputs(student, reference, rng, dims):
    B, T, _, H, d_head, d_ff = dims
    module, ref = _build(student, reference, "DecoderBlock", _kwargs("DecoderBlock", H, H * d_head, d_ff), seed=3)
    x = _normal(rng, B, T, H * d_head).astype(jnp.bfloat16)
    kwargs = {"mask": np.tril(np.ones((T, T), bool))}
    # Outputs only: the bfloat16 case checks mixed precision, the float32 cases the gradients.
    waiting = module.submit(x, kwargs=kwargs)
    want = transforms.apply_module(ref, "__call__", (x,), kwargs, compile=True)
    got = waiting()
    check(got, want, what="DecoderBlock: output for a bfloat16 input", tolerance_of=jnp.bfloat16)
    # The specification's layers promote a bfloat16 input with float32 weights: the output dtype is the reference's.
    expect_dtype(got, np.asarray(want).dtype, what="DecoderBlock: output for a bfloat16 input")
