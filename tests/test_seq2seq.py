"""The encoder-decoder's synthetic task (course/seq2seq.py): its examples, its score, and that the reference learns it."""

import time

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from course import seq2seq, submission

ROOT = submission.repo_root()


def test_examples_are_padded_reversals_of_distinct_lengths():
    source, target = seq2seq.reversal_batch(np.random.default_rng(0), 64, 5)
    assert source.shape == (64, 5) and target.shape == (64, 7) and source.dtype == target.dtype == np.int32
    lengths = (source != seq2seq.PAD).sum(axis=1)
    assert set(lengths) == {1, 2, 3, 4, 5}
    for s, t, n in zip(source, target, lengths):
        assert (s[n:] == seq2seq.PAD).all() and (s[:n] >= seq2seq.FIRST_DIGIT).all()
        assert t.tolist() == [seq2seq.BOS, *s[:n][::-1], seq2seq.EOS] + [seq2seq.PAD] * (5 - n)
    with pytest.raises(ValueError, match="max_len"):
        seq2seq.reversal_batch(np.random.default_rng(0), 4, 0)


def test_exact_match_counts_answers_right_up_to_eos():
    _, target = seq2seq.reversal_batch(np.random.default_rng(1), 8, 4)
    written = target[:, 1:].copy()
    assert seq2seq.exact_match(written, target) == 1.0
    lengths = (target != seq2seq.PAD).sum(axis=1) - 2  # digits of each answer; EOS at index lengths
    # Tokens written after EOS are not scored.
    assert seq2seq.exact_match(np.where(np.arange(5) > lengths[:, None], 7, written), target) == 1.0
    wrong = written.copy()
    wrong[0, 0] = seq2seq.EOS if wrong[0, 0] != seq2seq.EOS else seq2seq.FIRST_DIGIT
    assert seq2seq.exact_match(wrong, target) == 7 / 8


def test_reference_learns_to_reverse_within_a_minute():
    with submission.active(ROOT / "reference"):
        module = submission.exercise_module("encoder_decoder")
        start = time.process_time()  # CPU seconds: the machine's other load does not count
        model = module.EncoderDecoder(seq2seq.VOCAB_SIZE, 32, 2, 64, 1, rngs=nnx.Rngs(0))
        losses = seq2seq.train(model, np.random.default_rng(1), steps=300, batch=64, max_len=6)
        source, target = seq2seq.reversal_batch(np.random.default_rng(2), 256, 6)
        written = np.asarray(module.greedy_decode(model, jnp.asarray(source), target.shape[1] - 1, seq2seq.BOS))
        seconds = time.process_time() - start
    accuracy = seq2seq.exact_match(written, target)
    # Guessing uniformly, an answer of n digits is right with probability 13 ** -(n + 1), under 1%; trained, 89%.
    assert losses[-1] < losses[0] / 5 and accuracy > 0.6, (losses[0], losses[-1], accuracy)
    # CPU time over every thread: on an idle 2-core machine the wall time is at most this (16 s measured).
    assert seconds < 60, f"training took {seconds:.0f} CPU seconds"
