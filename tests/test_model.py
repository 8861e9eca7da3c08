"""The course's TransformerLM, built from the reference, learns."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from course import data, submission, tokenizer
from course.model import CONFIGS, TransformerConfig, TransformerLM
from course.params import param_arrays

ROOT = submission.repo_root()


@pytest.fixture
def reference():
    """The reference submission's train_step and generate, with the reference active."""
    with submission.active(ROOT / "reference"):
        from exercises.generation.generation import generate
        from exercises.training.training import train_step

        yield train_step, generate


def train(model, train_step, batches, learning_rate=3e-3):
    optimizer = nnx.Optimizer(model, optax.adamw(learning_rate), wrt=nnx.Param)
    return [float(train_step(model, optimizer, jnp.asarray(b))) for b in batches]


def test_it_learns_to_reverse_a_sequence(reference):
    train_step, generate = reference
    config = CONFIGS["tiny"]
    model = TransformerLM(config, rngs=nnx.Rngs(0))
    rng = np.random.default_rng(0)
    train(model, train_step, (data.synthetic_batch("reverse", rng, 32, 8, config.vocab_size) for _ in range(300)))
    test = data.synthetic_batch("reverse", np.random.default_rng(1), 256, 8, config.vocab_size)
    accuracy = data.synthetic_accuracy(model(jnp.asarray(test)), test)
    chance = 1 / (config.vocab_size - data.FIRST_SYMBOL)
    assert accuracy > 0.9, f"accuracy {accuracy:.3f} after 300 steps (chance: {chance:.3f})"
    continued = generate(model, jnp.asarray(test[:16, :9]), 8, jax.random.key(0), temperature=0.0)
    assert (np.asarray(continued)[:, 9:] == test[:16, 9:]).mean() > 0.9


def test_loss_on_the_stdlib_corpus_falls_below_the_unigram_entropy(reference):
    train_step, _ = reference
    corpus = data.stdlib_corpus()
    counts = np.bincount(corpus.train, minlength=tokenizer.VOCAB_SIZE)
    p = counts[counts > 0] / counts.sum()
    unigram_entropy = float(-(p * np.log(p)).sum())  # nats per byte of a model that ignores context
    config = TransformerConfig(max_seq_len=64, d_model=64, num_heads=4, num_layers=2, d_ff=256)
    model = TransformerLM(config, rngs=nnx.Rngs(0))
    rng = np.random.default_rng(0)
    train(model, train_step, (data.sample_batch(corpus.train, rng, 16, 64) for _ in range(150)), learning_rate=3e-3)
    val = data.sample_batch(corpus.val, np.random.default_rng(1), 64, 64)
    from exercises.loss.loss import next_token_loss

    val_loss = float(next_token_loss(model(jnp.asarray(val)), jnp.asarray(val)))
    assert val_loss < unigram_entropy - 0.2, f"validation loss {val_loss:.3f} vs unigram entropy {unigram_entropy:.3f}"


def test_the_model_is_built_from_the_active_submission(make_submission):
    # A submission whose DecoderBlock is the identity gives a model with no block parameters.
    identity = make_submission({"transformer/transformer.py": (
        "        x = x + self.attn(self.ln1(x), mask=mask)\n        return x + self.ffn(self.ln2(x))",
        "        return x")})
    with submission.active(identity):
        model = TransformerLM(CONFIGS["tiny"], rngs=nnx.Rngs(0))
        tokens = jnp.asarray(np.random.default_rng(0).integers(0, 16, (2, 5)))
        embedded = model.embed(tokens) * np.sqrt(32) + model.positions[:5]
        np.testing.assert_allclose(model(tokens), model.head(model.ln_f(embedded)), rtol=1e-5, atol=1e-5)


def test_the_stubs_cannot_build_a_model():
    with submission.active(ROOT / "exercises"), pytest.raises(NotImplementedError, match="not implemented yet"):
        TransformerLM(CONFIGS["tiny"], rngs=nnx.Rngs(0))


def test_causality_and_shapes(reference):
    model = TransformerLM(CONFIGS["tiny"], rngs=nnx.Rngs(0))
    tokens = jnp.asarray(np.random.default_rng(0).integers(0, 16, (2, 10)))
    logits = model(tokens)
    assert logits.shape == (2, 10, 16) and logits.dtype == jnp.float32
    changed = model(tokens.at[:, 6:].set(3))
    np.testing.assert_allclose(changed[:, :6], logits[:, :6], rtol=1e-5, atol=1e-5)
    assert len(param_arrays(model)) == 5 + 2 * 16  # embed, ln_f (2), head (2), then 16 per block


@pytest.mark.parametrize(
    ("changes", "name"),
    [({"d_model": 30, "num_heads": 4}, "d_model"), ({"num_layers": 0}, "num_layers"), ({"vocab_size": 2.5}, "vocab_size")],
)
def test_bad_configs_are_named(changes, name):
    with pytest.raises(ValueError, match=name):
        TransformerConfig(**changes)


def test_too_long_input_is_an_error(reference):
    model = TransformerLM(CONFIGS["tiny"], rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="max_seq_len=32"):
        model(jnp.zeros((1, 33), jnp.int32))
