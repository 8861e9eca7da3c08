"""Grader suite for exercises/encoder_decoder: ``EncoderBlock``, ``CrossAttentionDecoderBlock``, ``EncoderDecoder``
and ``greedy_decode``.

As for the transformer (whose helpers this suite reuses: ``graders/suites/test_transformer.py``), each case
builds the student's module in the worker and the reference's here, checks the parameter structure, draws every
parameter at random with numpy, loads them into both modules, and compares outputs and the VJP with respect to
the floating inputs and every parameter. The submission's modules are imported over the reference's causal mask,
cross-entropy, positional encoding, ``MultiHeadAttention`` and ``FeedForward`` (``building_blocks``: exported
programs, no source), so a mistake in the exercises it builds on costs points there, and here only in the
integration case that runs the student's model over their own building blocks.

The input space of the contract (the reference's docstrings): block inputs ``float[B, T, d_model]``, memory
``float[B, S, d_model]``, ``source_mask`` ``None`` or ``bool[B, S]``; tokens ``int[B, S]`` and ``int[B, T]``
right-padded with ``pad_id`` (0, or another id: the model must use the one it was given). Every grading seed
covers padding masks that hide a different number of source positions in each example (one example none),
blocks with and without a mask, targets padded to different lengths, and a nonzero ``pad_id``.

Sizes (drawn once per grading seed, shared by the cases): batch ``B`` in 2..3, source length ``S`` in 4..8
(``>= B + 1``: distinct lengths, one of them ``S``), target length ``T`` in 3..6, heads ``H`` in 2..3, head width
``d_head`` in {2, 4} (``d_model = H * d_head``, even for the positional encoding), ``d_ff`` in 4..16, vocabulary
``V`` in 6..12, layers in 1..2.
"""

import numpy as np
import pytest

from course.params import param_arrays
from graders.engine import known_good, reference_store
from graders.engine.compare import check, expect_array, expect_raises, known_mistakes
from graders.engine.failures import Mismatch, SubmissionFailure
from graders.suites.test_transformer import _build, _compare, _normal


@pytest.fixture(scope="module")
def dims(suite_rng):
    """``(B, S, T, H, d_head, d_ff, V, layers)`` of this grading run."""
    B, S, T = int(suite_rng.integers(2, 4)), int(suite_rng.integers(4, 9)), int(suite_rng.integers(3, 7))
    H, d_head, d_ff = int(suite_rng.integers(2, 4)), int(suite_rng.choice([2, 4])), int(suite_rng.integers(4, 17))
    return B, S, T, H, d_head, d_ff, int(suite_rng.integers(6, 13)), int(suite_rng.integers(1, 3))


@pytest.fixture(scope="module")
def building_blocks(dims):
    """The reference's causal mask, loss, positional encoding and transformer modules (this run's sizes), which the
    student's modules are imported over: a mistake there costs points in its own exercise only."""
    _, _, _, H, d_head, d_ff, _, _ = dims
    return {**known_good.attention(d_k=()), **known_good.loss(masked=(False, True)),
            **known_good.positional_encoding(d_model=(H * d_head,)),
            **known_good.transformer(multi_head_attention=((H * d_head, H),), feed_forward=((H * d_head, d_ff),))}


def _lengths(rng, B: int, S: int) -> np.ndarray:
    """``int[B]``: distinct real lengths, the first ``S`` (no padding), the others in ``1..S - 1``."""
    return np.concatenate([[S], rng.choice(np.arange(1, S), B - 1, replace=False)])


def _source_mask(rng, B: int, S: int) -> np.ndarray:
    """``bool[B, S]``: True at the real positions, each example hiding another number of positions."""
    return np.arange(S) < _lengths(rng, B, S)[:, None]


def _tokens(rng, B: int, length: int, V: int, pad_id: int, *, bos: bool = False) -> np.ndarray:
    """``int32[B, length]``: tokens other than ``pad_id``, right-padded with it to distinct lengths (BOS first when ``bos``)."""
    tokens = rng.integers(1, V, (B, length))
    tokens = np.where(tokens == pad_id, 0, tokens) if pad_id else tokens  # never pad_id inside a sequence
    if bos:
        tokens[:, 0] = 1 if pad_id != 1 else 2
    padded = np.where(_source_mask(rng, B, length), tokens, pad_id)
    return padded.astype(np.int32)


def _block_kwargs(H, d_head, d_ff):
    return {"d_model": H * d_head, "num_heads": H, "d_ff": d_ff}


def _model_kwargs(dims, pad_id=0):
    _, _, _, H, d_head, d_ff, V, layers = dims
    return {"vocab_size": V, "d_model": H * d_head, "num_heads": H, "d_ff": d_ff, "num_layers": layers, "pad_id": pad_id}


@pytest.mark.points(3)
@pytest.mark.values("EncoderBlock")
@pytest.mark.parametrize("case", ["padded", "no_mask"])
def test_encoder_block_with_gradients(student, reference, rng, dims, case):
    B, S, _, H, d_head, d_ff, _, _ = dims
    module, ref = _build(student, reference, "EncoderBlock", _block_kwargs(H, d_head, d_ff), rng)
    x = _normal(rng, B, S, H * d_head) * 3 + 1  # off standard scale, so that a misplaced LayerNorm shows
    kwargs = {"source_mask": _source_mask(rng, B, S)} if case == "padded" else {}
    _compare(module, ref, "EncoderBlock", (x,), kwargs, rng, known_mistakes(reference, "EncoderBlock", ref))


@pytest.mark.points(3)
@pytest.mark.values("CrossAttentionDecoderBlock")
@pytest.mark.parametrize("case", ["padded", "no_mask"])
def test_decoder_block_with_gradients(student, reference, rng, dims, case):
    # The gradient "with respect to context" of the messages is the one with respect to memory.
    B, S, T, H, d_head, d_ff, _, _ = dims
    module, ref = _build(student, reference, "CrossAttentionDecoderBlock", _block_kwargs(H, d_head, d_ff), rng)
    x, memory = _normal(rng, B, T, H * d_head) * 3 + 1, _normal(rng, B, S, H * d_head)
    kwargs = {"source_mask": _source_mask(rng, B, S)} if case == "padded" else {}
    _compare(module, ref, "CrossAttentionDecoderBlock", (x, memory), kwargs, rng,
             known_mistakes(reference, "CrossAttentionDecoderBlock", ref))


@pytest.mark.points(2)
@pytest.mark.values("EncoderDecoder")
def test_model_logits(student, reference, rng, dims):
    B, S, T, *_ = dims
    module, ref = _build(student, reference, "EncoderDecoder", _model_kwargs(dims), rng)
    V = dims[6]
    source, target_in = _tokens(rng, B, S, V, 0), _tokens(rng, B, T, V, 0, bos=True)
    waiting = module.submit(source, target_in, transform="jit")
    want = reference_store.module_outputs(ref, "__call__", (source, target_in), transform="jit")
    check(waiting(), want, what="EncoderDecoder: logits")


def _compare_loss(module, ref, source, target, reference, *, what: str):
    """The loss and its gradient with respect to every parameter, the student's against the reference's."""
    one = np.float32(1.0)
    waiting = module.submit(source, target, method="loss", transform="vjp", cotangent=one)
    want, (_, want_grads) = reference_store.module_outputs(ref, "loss", (source, target), transform="vjp", cotangent=one,
                                                           compile=True)
    got, (_, got_grads) = waiting()
    check(got, want, what=f"{what}: loss", mistakes=known_mistakes(reference, "EncoderDecoder", ref),
          mistake_args=(source, target))
    if not isinstance(got_grads, dict) or set(got_grads) != set(want_grads):
        raise Mismatch(f"{what}: the gradients of the loss do not have the specification's parameters")
    for path in sorted(want_grads):
        check(got_grads[path], want_grads[path], what=f"{what}: gradient of the loss with respect to parameter {path}",
              kind="gradient")


@pytest.mark.points(4)
@pytest.mark.values("EncoderDecoder")
def test_model_loss_with_parameter_gradients(student, reference, rng, dims):
    B, S, T, *_ = dims
    module, ref = _build(student, reference, "EncoderDecoder", _model_kwargs(dims), rng)
    V = dims[6]
    source, target = _tokens(rng, B, S, V, 0), _tokens(rng, B, T + 1, V, 0, bos=True)
    _compare_loss(module, ref, source, target, reference, what="EncoderDecoder")


@pytest.mark.points(2)
@pytest.mark.requires_values("EncoderDecoder")
def test_model_uses_its_pad_id(student, reference, rng, dims):
    B, S, T, *_ = dims
    V = dims[6]
    pad_id = V - 1  # not 0: a model that hard-codes 0 hides the wrong positions and counts pad targets
    module, ref = _build(student, reference, "EncoderDecoder", _model_kwargs(dims, pad_id), rng)
    source, target = _tokens(rng, B, S, V, pad_id), _tokens(rng, B, T + 1, V, pad_id, bos=True)
    _compare_loss(module, ref, source, target, reference, what=f"EncoderDecoder(pad_id={pad_id})")


@pytest.mark.points(1)
@pytest.mark.requires_values("EncoderDecoder")
def test_with_your_own_building_blocks(student, reference, rng, dims):
    """Integration: the model over the student's own attention, loss, positional encoding and transformer modules
    (the other cases use the reference's)."""
    B, S, T, *_ = dims
    V = dims[6]
    source, target_in = _tokens(rng, B, S, V, 0), _tokens(rng, B, T, V, 0, bos=True)
    try:  # outputs only: the gradients are graded in the other cases, the building blocks' in their own exercises
        module, ref = _build(student.with_own_building_blocks(), reference, "EncoderDecoder", _model_kwargs(dims), rng)
        waiting = module.submit(source, target_in, transform="jit")
        check(waiting(), reference_store.module_outputs(ref, "__call__", (source, target_in), transform="jit"),
              what="EncoderDecoder: logits")
    except SubmissionFailure as failure:
        raise Mismatch(f"with your own building blocks: {failure}. Where the other EncoderDecoder cases pass, your building "
                       "blocks make the difference: fix the exercises it builds on first (attention, loss, "
                       "positional_encoding, transformer: those losing points)") from None


@pytest.mark.points(3)
@pytest.mark.values("greedy_decode")
def test_greedy_decode_matches_reference(student, reference, rng, dims):
    B, S, T, *_ = dims
    V = dims[6]
    pad_id, bos_id = V - 1, V - 2  # neither is a default: a decoder that hard-codes 0 or 1 writes other tokens
    module, ref = _build(student, reference, "EncoderDecoder", _model_kwargs(dims, pad_id), rng)
    source, length = _tokens(rng, B, S, V, pad_id), T + 2
    got = student.greedy_decode(module.ref, source, length, bos_id)
    want = reference_store.outputs("greedy_decode", (param_arrays(ref), source, length, bos_id),
                                   lambda: np.asarray(reference.greedy_decode(ref, source, length, bos_id)))
    what = f"greedy_decode(bos_id={bos_id}) of a model with pad_id={pad_id}: tokens"
    got = expect_array(got, dtype=np.int32, shape=want.shape, what=what)
    differ = np.argwhere(got != want)
    if differ.size:
        check(got, want, what=f"{what} (first difference at example, step {differ[0].tolist()})")


@pytest.mark.points(1)
@pytest.mark.requires_values("greedy_decode")
def test_greedy_decode_rejects_a_bad_length(student, reference, rng, dims):
    B, S, *_ = dims
    module, _ = _build(student, reference, "EncoderDecoder", _model_kwargs(dims), rng)
    expect_raises(student, "greedy_decode", (module.ref, _tokens(rng, B, S, dims[6], 0), 0, 1), error="ValueError",
                  why="length=0")
