"""Grader suite for exercises/transformer: ``MultiHeadAttention``, ``FeedForward`` and ``DecoderBlock`` (Flax NNX).

Each case builds the student's module in the worker and the reference's here,
checks that the parameter structure (paths, shapes, dtypes) is the
reference's, draws every parameter at random with numpy (not as initialised:
LayerNorm scales of one and zero biases would hide a block that reuses one
norm for both sublayers, or a bias left out), loads them into both modules,
and compares the outputs and the VJP for a random cotangent with respect to
the floating inputs and every parameter.

The input space of the contract (the reference's docstrings): ``x``
``float[..., T, d_model]`` with any leading dimensions (float32, or bfloat16
promoted by the float32 weights), ``context`` ``None`` or ``float[..., T_k,
d_model]``, and ``mask`` ``None`` or ``bool`` broadcastable to ``[...,
num_heads, T_q, T_k]``: shared ``[T, T]``, per batch ``[B, 1, T, T]``, per head
``[H, T, T]`` (a 3-D mask is per head: numpy's broadcasting aligns from the
right), per batch and head ``[B, H, T, T]``. LayerNorm's epsilon is
``nnx.LayerNorm``'s default, which shows only for inputs of small variance.
Every grading seed covers each mask shape for ``MultiHeadAttention`` and
``DecoderBlock``, inputs of standard and of small (``1e-3``) spread (outputs
only: there the gradients are ill-conditioned), one and three leading dimensions.

Each exercise is graded on its own: the student's module is imported over the
reference's ``scaled_dot_product_attention`` and ``causal_mask``, exported as
programs without source (``graders.engine.known_good``), so a mistake in
``exercises/attention`` costs no point here but the one of
``test_with_your_own_attention``, the integration case that runs the decoder
block over the student's own attention and names the exercise to fix first.

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

from course.params import abstract_module, load_param_arrays, param_specs
from graders.engine import known_good, reference_store
from graders.engine.compare import check, expect_dtype, known_mistakes
from graders.engine.failures import Mismatch, StudentError, SubmissionFailure


@pytest.fixture(scope="module")
def dims(suite_rng):
    """``(B, T, T_ctx, H, d_head, d_ff)`` of this grading run."""
    B, T, T_ctx = int(suite_rng.integers(1, 3)), int(suite_rng.integers(2, 9)), int(suite_rng.integers(2, 9))
    H, d_head, d_ff = int(suite_rng.integers(2, 4)), int(suite_rng.integers(2, 9)), int(suite_rng.integers(4, 33))
    return B, T, T_ctx, H, d_head, d_ff


@pytest.fixture(scope="module")
def building_blocks(dims):
    """The reference's attention for this run's head width, which the student's modules are imported over."""
    return known_good.attention(d_k=(dims[4],))


def _normal(rng, *shape, dtype=np.float32):
    return rng.standard_normal(shape).astype(dtype)


def _kwargs(name, H, d_model, d_ff):
    return {"MultiHeadAttention": {"d_model": d_model, "num_heads": H}, "FeedForward": {"d_model": d_model, "d_ff": d_ff},
            "DecoderBlock": {"d_model": d_model, "num_heads": H, "d_ff": d_ff}}[name]


def _random_params(rng, like: dict) -> dict:
    """Parameters shaped as ``like``'s, drawn at random: kernels scaled by their fan-in, biases and scales off 0 and 1."""
    def draw(path, array):
        noise = rng.standard_normal(array.shape)
        if path.endswith("kernel"):
            return noise / np.sqrt(array.shape[0])
        return 1 + 0.5 * noise if path.endswith("scale") else 0.5 * noise
    return {path: draw(path, array).astype(array.dtype) for path, array in like.items()}


def _build(student, reference, name, kwargs, rng):
    """The student's module and the reference's, both holding the same randomly drawn parameters."""
    ref = abstract_module(lambda: getattr(reference, name)(**kwargs, rngs=nnx.Rngs(0)))  # drawn next: nothing to compile
    weights = _random_params(rng, param_specs(ref))
    load_param_arrays(ref, weights)
    module = student.construct(name, kwargs=kwargs, rngs_seed=0, params_follow=True)
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


def _compare(module, ref, name, args, kwargs, rng, mistakes, *, tolerance_of=None, gradients=True):
    """Outputs and the VJP (inputs and parameters) of the student's module against the reference's; outputs only
    without ``gradients``."""
    args = tuple(args)
    cotangent = _normal(rng, *args[0].shape)  # every module maps [..., d_model] to [..., d_model]
    if not gradients:
        waiting = module.submit(*args, kwargs=kwargs)
        want = reference_store.module_outputs(ref, "__call__", args, kwargs, compile=True)
        got = waiting()
        check(got, want, what=f"{name}: output", mistakes=mistakes, mistake_args=args, mistake_kwargs=kwargs,
              tolerance_of=tolerance_of)
        return got, want
    waiting = module.submit(*args, kwargs=kwargs, transform="vjp", cotangent=cotangent)  # the worker computes meanwhile
    want, (want_arg_grads, want_param_grads) = reference_store.module_outputs(ref, "__call__", args, kwargs, transform="vjp",
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


def _mask(rng, shape: str, B: int, H: int, T: int):
    """A random ``bool`` mask of self-attention over ``T`` positions, of the named lead shape (see MASK_LEADS).

    Each query sees itself and about half of the other keys, so no row is entirely masked.
    """
    lead = MASK_LEADS[shape](B, H)
    return (rng.random((*lead, T, T)) < 0.5) | np.eye(T, dtype=bool)


# The mask shapes of the contract, broadcast against [B, H, T_q, T_k] from the right.
MASK_LEADS = {"shared": lambda B, H: (), "per_batch": lambda B, H: (B, 1), "per_head": lambda B, H: (H,),
              "per_batch_and_head": lambda B, H: (B, H)}


@pytest.mark.points(3)
@pytest.mark.values("MultiHeadAttention")
@pytest.mark.parametrize("case", ["self", "causal", "cross"])
def test_multi_head_attention_with_gradients(student, reference, rng, dims, case):
    B, T, T_ctx, H, d_head, _ = dims
    kwargs = _kwargs("MultiHeadAttention", H, H * d_head, 0)
    module, ref = _build(student, reference, "MultiHeadAttention", kwargs, rng)
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
    module, ref = _build(student, reference, "MultiHeadAttention", _kwargs("MultiHeadAttention", H, H * d_head, 0), rng)
    # Three leading dimensions and a [T, T] mask broadcast over them, the whole call under jax.jit: one compilation.
    x, mask = _normal(rng, 2, 1, 2, T, H * d_head), np.tril(np.ones((T, T), bool))
    waiting = module.submit(x, kwargs={"mask": mask}, transform="jit")
    want = reference_store.module_outputs(ref, "__call__", (x,), {"mask": mask}, transform="jit")
    check(waiting(), want, what=f"MultiHeadAttention under jax.jit: output for x of shape {list(x.shape)}")


@pytest.mark.points(1)
@pytest.mark.requires_values("MultiHeadAttention")
@pytest.mark.parametrize("shape", list(MASK_LEADS))
def test_multi_head_attention_every_mask_shape(student, reference, rng, dims, shape):
    B, T, _, H, d_head, _ = dims
    module, ref = _build(student, reference, "MultiHeadAttention", _kwargs("MultiHeadAttention", H, H * d_head, 0), rng)
    x, mask = _normal(rng, B, T, H * d_head), _mask(rng, shape, B, H, T)
    waiting = module.submit(x, kwargs={"mask": mask})
    want = reference_store.module_outputs(ref, "__call__", (x,), {"mask": mask}, compile=True)
    check(waiting(), want, what=f"MultiHeadAttention: output for a mask of shape {list(mask.shape)}",
          mistakes=known_mistakes(reference, "MultiHeadAttention", ref), mistake_args=(x,), mistake_kwargs={"mask": mask})


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
    module, ref = _build(student, reference, "FeedForward", _kwargs("FeedForward", H, H * d_head, d_ff), rng)
    # Scaled up so that the activation's negative side (relu against gelu) matters.
    x = _normal(rng, B, T, H * d_head) * 2
    _compare(module, ref, "FeedForward", (x,), {}, rng, known_mistakes(reference, "FeedForward", ref))


@pytest.mark.points(3)
@pytest.mark.values("DecoderBlock")
@pytest.mark.parametrize("case", ["causal", "none", "per_batch_mask", "per_head_mask", "small_variance"])
def test_decoder_block_with_gradients(student, reference, rng, dims, case):
    B, T, _, H, d_head, d_ff = dims
    module, ref = _build(student, reference, "DecoderBlock", _kwargs("DecoderBlock", H, H * d_head, d_ff), rng)
    # Not standard scale, so that a missing or misplaced LayerNorm changes the output; a spread of 1e-3 (variance
    # 1e-6, nnx.LayerNorm's epsilon) so that another epsilon does.
    x = _normal(rng, B, T, H * d_head) * (1e-3 if case == "small_variance" else 3) + 1
    mask = _mask(rng, {"per_batch_mask": "per_batch", "per_head_mask": "per_head"}.get(case, "shared"), B, H, T)
    kwargs = {} if case == "none" else {"mask": np.tril(np.ones((T, T), bool)) if case in ("causal", "small_variance") else mask}
    # Outputs only at small variance: LayerNorm's backward multiplies rounding by 1/std (about 700) there, so correct
    # blocks that round otherwise (any but the reference's own code, e.g. over the exported attention) differ by more
    # than the tolerance in gradients near zero; the gradients are graded at standard scale.
    _compare(module, ref, "DecoderBlock", (x,), kwargs, rng, known_mistakes(reference, "DecoderBlock", ref),
             gradients=case != "small_variance")


@pytest.mark.points(2)
@pytest.mark.requires_values("DecoderBlock")
def test_decoder_block_bfloat16_inputs(student, reference, rng, dims):
    B, T, _, H, d_head, d_ff = dims
    module, ref = _build(student, reference, "DecoderBlock", _kwargs("DecoderBlock", H, H * d_head, d_ff), rng)
    x = _normal(rng, B, T, H * d_head).astype(jnp.bfloat16)
    kwargs = {"mask": np.tril(np.ones((T, T), bool))}
    # Outputs only: the bfloat16 case checks mixed precision, the float32 cases the gradients.
    waiting = module.submit(x, kwargs=kwargs)
    want = reference_store.module_outputs(ref, "__call__", (x,), kwargs, compile=True)
    got = waiting()
    check(got, want, what="DecoderBlock: output for a bfloat16 input", tolerance_of=jnp.bfloat16)
    # The specification's layers promote a bfloat16 input with float32 weights: the output dtype is the reference's.
    expect_dtype(got, np.asarray(want).dtype, what="DecoderBlock: output for a bfloat16 input")


@pytest.mark.points(1)
@pytest.mark.requires_values("DecoderBlock")
def test_with_your_own_attention(student, reference, rng, dims):
    """Integration: the decoder block over the student's own ``scaled_dot_product_attention`` (the other cases use the reference's)."""
    B, T, _, H, d_head, d_ff = dims
    x, kwargs = _normal(rng, B, T, H * d_head) * 3 + 1, {"mask": np.tril(np.ones((T, T), bool))}
    try:  # outputs only: the gradients are graded in the other cases, and attention's in its own exercise
        module, ref = _build(student.with_own_building_blocks(), reference, "DecoderBlock",
                             _kwargs("DecoderBlock", H, H * d_head, d_ff), rng)
        waiting = module.submit(x, kwargs=kwargs)
        check(waiting(), reference_store.module_outputs(ref, "__call__", (x,), kwargs, compile=True), what="DecoderBlock: output")
    except SubmissionFailure as failure:
        raise Mismatch(f"with your own attention: {failure}. Where the other DecoderBlock cases pass, your attention makes "
                       "the difference: fix exercises/attention first") from None
