"""Visible tests for exercises/generation: run them with ``pytest exercises/generation``.

Sampling is random, so beyond exact greedy checks the tests count samples and
compare them with the intended distribution: a chi-square test whose false
alarm rate is 1e-6 per test.
"""

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from course.params import arrays_under, module_with_params
from course.testing import assert_close, assert_samples_follow, assert_shape_dtype, load_fixtures, mistaken_distributions, sampling_distribution
from course.testing.toy_model import TOY, BigramMLP
from exercises.generation.generation import generate, sample_next_token

FX = load_fixtures(__file__)
# NumPy arrays go to the device with jax.device_put: jnp.asarray would compile a program for each.
# LOGITS stays in NumPy: the compiled draw() takes it as it is, the other tests copy it over.
LOGITS = np.asarray([[2.0, 0.5, -1.0, 1.0, 0.0], [0.0, 3.0, 1.0, -2.0, 0.3]], np.float32)
PROMPT = jax.device_put(FX["prompt"])  # int32[3, 4]
FALSE_ALARM = 1e-6
TRACES = []  # one entry each time JAX traces WindowSum (Python runs only while tracing)


def toy_model():
    return module_with_params(lambda: BigramMLP(**TOY, rngs=nnx.Rngs(0)), arrays_under(FX, "params."))


@partial(jax.jit, static_argnums=(2, 3, 4))
def draw(logits, key, n, temperature, top_k):
    """``n`` calls of ``sample_next_token(logits, k, temperature, top_k)``, one per key of ``split(key, n)``.

    Compiled as one program; run eagerly, every operation would be one.
    """
    return jax.vmap(lambda k: sample_next_token(logits, k, temperature, top_k))(jax.random.split(key, n))


class WindowSum(nnx.Module):
    """Predicts (sum of the tokens it reads up to t) mod V: its answers depend on its context window."""

    def __init__(self, vocab_size=7, max_seq_len=4):
        self.vocab_size, self.max_seq_len = vocab_size, max_seq_len

    def __call__(self, tokens):
        TRACES.append(tokens.shape)
        return 10.0 * jax.nn.one_hot(jnp.cumsum(tokens, axis=-1) % self.vocab_size, self.vocab_size)


def test_temperature_zero_is_argmax():
    tokens = sample_next_token(jax.device_put(LOGITS), jax.random.key(0), temperature=0.0)
    assert_shape_dtype(tokens, (2,), jnp.int32, what="sample_next_token(logits [2, 5])")
    greedy = tokens.tolist()
    assert greedy == [0, 1], f"greedy tokens: expected [0, 1], got {greedy}"


def test_top_k_one_is_argmax():
    tokens = draw(LOGITS, jax.random.key(1), 50, 5.0, 1)
    largest = bool((np.asarray(tokens) == [0, 1]).all())
    assert largest, "top_k=1 must always return the largest logit"


@pytest.mark.parametrize(("temperature", "top_k"), [(1.0, None), (2.0, None), (0.5, 3)])
def test_samples_follow_the_distribution(temperature, top_k):
    tokens = np.asarray(draw(LOGITS[0], jax.random.key(2), 20000, temperature, top_k))
    assert_samples_follow(tokens, sampling_distribution(LOGITS[0], temperature, top_k), false_alarm=FALSE_ALARM,
                          what=f"sample_next_token(temperature={temperature}, top_k={top_k})",
                          mistakes=mistaken_distributions(LOGITS[0], temperature, top_k))


def test_bad_arguments_raise_value_error():
    with pytest.raises(ValueError, match="temperature"):
        sample_next_token(jax.device_put(LOGITS), jax.random.key(0), temperature=-1.0)
    with pytest.raises(ValueError, match="top_k"):
        sample_next_token(jax.device_put(LOGITS), jax.random.key(0), top_k=6)


def test_greedy_generation_matches_reference():
    out = generate(toy_model(), PROMPT, 10, jax.random.key(0), temperature=0.0)
    assert_shape_dtype(out, FX["greedy"].shape, jnp.int32, what="generate(prompt [3, 4], max_new_tokens=10)")
    assert_close(out, FX["greedy"], what="greedy continuation")


def test_the_context_window_slides():
    model = WindowSum()
    prompt = jax.device_put(np.asarray([[1, 2, 3]], np.int32))
    out = np.asarray(generate(model, prompt, 6, jax.random.key(0), temperature=0.0))[0].tolist()
    expected = [1, 2, 3]
    while len(expected) < 9:
        expected.append(sum(expected[-model.max_seq_len:]) % model.vocab_size)
    assert out == expected, f"expected {expected} (each token = sum of the last {model.max_seq_len} tokens mod 7), got {out}"


def test_generation_compiles_once():
    TRACES.clear()
    generate(WindowSum(max_seq_len=32), jax.device_put(np.asarray([[1, 2]], np.int32)), 20, jax.random.key(0), temperature=0.0)
    traces = len(TRACES)
    assert traces <= 2, f"the model was traced {len(TRACES)} times for 20 new tokens: use a fixed-size buffer and a jax.lax loop"


def test_sampled_generation_keeps_the_prompt_and_vocabulary():
    out = np.asarray(generate(toy_model(), PROMPT, 8, jax.random.key(3), temperature=1.0, top_k=4))
    prompt_kept = bool((out[:, :4] == FX["prompt"]).all())
    assert prompt_kept, "generate must return the prompt unchanged in front of the new tokens"
    outside = sorted(set(out[(out < 0) | (out >= TOY["vocab_size"])].tolist()))
    assert not outside, f"generate wrote token ids outside the vocabulary [0, {TOY['vocab_size']}): {outside}"


def test_prompt_longer_than_the_context_raises():
    with pytest.raises(ValueError, match="prompt"):
        generate(toy_model(), jax.device_put(np.zeros((1, TOY["max_seq_len"] + 1), np.int32)), 2, jax.random.key(0))
