"""The encoder-decoder's catalogue of wrong and of correct-but-different submissions, graded by its hidden suite.

As tests/test_grade_catalogue.py (whose structure this follows) for the other exercises: each round edits a
copy of ``reference/`` and grades ``encoder_decoder`` alone. The blocks' cases each build one block, so a round
holds one mistake of ``EncoderBlock`` and one of ``CrossAttentionDecoderBlock``; a mistake of the model has a round
of its own (every block runs inside it): the model's mistakes are named by the visible tests
(tests/test_mistakes.py), which cost less than a grading. The other exercises stay the reference's: the suite runs on the
submission's own attention, loss and positional encoding.
"""

import ast

import pytest

from tests.conftest import ROOT, copy_with_edits, mutate
from tests.conftest import Mutation as M

import graders

PATH = "encoder_decoder/encoder_decoder.py"

# One round: [(the mutation(s), the case that must fail, the hint it must name or None)], and cases that must pass.
MISTAKES = [
    (
        [
            # A causal mask on the encoder, as in the decoder-only model.
            (M("EncoderBlock.__call__", "keys = None if source_mask is None else source_mask[:, None, None, :]",
               "keys = causal_mask(x.shape[-2]) if source_mask is None else source_mask[:, None, None, :] & causal_mask(x.shape[-2])"),
             "test_encoder_block_with_gradients[no_mask]", "the encoder looks causal"),
            # Cross-attention over the decoder's own (normalized) states; the source mask no longer fits and is dropped.
            (M("CrossAttentionDecoderBlock.__call__", "self.cross_attn(self.ln2(x), context=memory, mask=padding)",
               "self.cross_attn(self.ln2(x))"),
             "test_decoder_block_with_gradients[padded]", "attends over the decoder's own states"),
        ],
        (),
    ),
    (
        [
            # The padding mask read the wrong way round: True taken for padding.
            (M("EncoderBlock.__call__", "source_mask[:, None, None, :]", "~source_mask[:, None, None, :]"),
             "test_encoder_block_with_gradients[padded]", "the source mask looks inverted"),
            # The source mask never reaches the cross-attention.
            (M("CrossAttentionDecoderBlock.__call__", "self.cross_attn(self.ln2(x), context=memory, mask=padding)",
               "self.cross_attn(self.ln2(x), context=memory)"),
             "test_decoder_block_with_gradients[padded]", "the source mask is not applied"),
        ],
        ("test_encoder_block_with_gradients[no_mask]", "test_decoder_block_with_gradients[no_mask]"),
    ),
]


def _edits(round_) -> dict:
    return {PATH: [mutation for mutation, _, _ in round_[0]]}


@pytest.mark.parametrize("number", range(len(MISTAKES)))
def test_each_mistake_loses_points_on_its_case_with_its_hint(tmp_path, number):
    round_ = MISTAKES[number]
    result = graders.grade(copy_with_edits(tmp_path / "wrong", _edits(round_)), exercises=["encoder_decoder"],
                           seed=300 + number)
    assert result.status == "ok", result.errors
    (exercise,) = result.exercises
    cases = {c.name: c for c in exercise.cases}
    for _, case_name, hint in round_[0]:
        case = cases[case_name]
        assert case.status == "failed" and case.points == 0, case
        if hint is not None:
            assert case.hint is not None and hint in case.hint, case
            assert hint in case.message
    for case_name in round_[1]:
        assert cases[case_name].status == "passed", cases[case_name]
    assert exercise.score < exercise.max_score


# Correct implementations written differently from the reference: the round must earn full marks.
CORRECT = [
    # The causal mask written out, the padding mask by jnp.expand_dims.
    M("CrossAttentionDecoderBlock.__call__",
      """
      padding = None if source_mask is None else source_mask[:, None, None, :]
      x = x + self.self_attn(self.ln1(x), mask=causal_mask(x.shape[-2]))
      """,
      """
      padding = None if source_mask is None else jnp.expand_dims(source_mask, (1, 2))
      T = x.shape[-2]
      x = x + self.self_attn(self.ln1(x), mask=jnp.arange(T)[:, None] >= jnp.arange(T)[None, :])
      """),
    # The loss's mask as float weights.
    M("EncoderDecoder.loss", "labels != self.pad_id", "(labels != self.pad_id).astype(jnp.float32)"),
    # The decoding loop as a jax.lax.scan over the steps.
    M("_greedy_decode", "return jax.lax.fori_loop(0, length, step, buffer)[:, 1:]",
      """
      buffer, _ = jax.lax.scan(lambda b, t: (step(t, b), None), buffer, jnp.arange(length))
      return buffer[:, 1:]
      """),
]


def test_correct_but_different_submission_earns_full_marks(tmp_path):
    result = graders.grade(copy_with_edits(tmp_path / "different", {PATH: CORRECT}), exercises=["encoder_decoder"],
                           seed=400)
    failures = [(c.name, c.message) for e in result.exercises for c in e.cases if c.status != "passed"]
    assert result.status == "ok" and not failures, failures
    assert result.score == result.max_score


def test_mutations_survive_a_reformatted_reference():
    # ast.unparse drops every comment, rewraps every line and requotes every string: no anchor may move.
    source = (ROOT / "reference" / PATH).read_text()
    reformatted = ast.unparse(ast.parse(source))
    for mutations in [[m for m, _, _ in round_[0]] for round_ in MISTAKES] + [CORRECT]:
        mutated = [source, reformatted]
        for mutation in mutations:
            mutated = [mutate(text, mutation, PATH) for text in mutated]
        assert ast.dump(ast.parse(mutated[0])) == ast.dump(ast.parse(mutated[1])), mutations
