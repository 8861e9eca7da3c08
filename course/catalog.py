"""The exercises of the course: their names, levels and public functions.

One list, read by every tool that walks a submission (``course check``, stub and
fixture generation, and the grader), so adding an exercise is one entry here.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Exercise:
    name: str  # folder and module name: exercises/<name>/<name>.py
    title: str
    level: str  # beginner, intermediate or advanced
    functions: tuple[str, ...]  # what the student implements, in teaching order
    # Library routines that would do the exercise for the student: the grader
    # gives the exercise no points when one is called (public dotted names).
    forbidden: tuple[str, ...] = ()

    @property
    def module(self) -> str:
        """The import name of the exercise module."""
        return f"exercises.{self.name}.{self.name}"

    @property
    def relpath(self) -> str:
        """The module's path inside a submission."""
        return f"{self.name}/{self.name}.py"


# Every library routine that computes attention: a function of queries, keys and values,
# or a module built on one (its own weights set to the identity would do). Names that
# an installed version lacks are harmless: the traps and the static scan skip them.
# One name per object: the traps and the scan find each routine under any other path
# (optax.losses.softmax_cross_entropy is optax.softmax_cross_entropy).
ATTENTION_ROUTINES = (
    "jax.nn.dot_product_attention",
    "flax.nnx.dot_product_attention",
    "flax.nnx.nn.attention.dot_product_attention_weights",  # not exported by flax.nnx itself
    "flax.nnx.MultiHeadAttention",
    "flax.linen.dot_product_attention",
    "flax.linen.dot_product_attention_weights",
    "flax.linen.MultiHeadDotProductAttention",
    "flax.linen.MultiHeadAttention",  # a subclass with its own __init__: trapped apart
    "flax.linen.SelfAttention",  # likewise
)

EXERCISES: tuple[Exercise, ...] = (
    Exercise(
        "jax_basics",
        "JAX basics: grad, jit and vmap",
        "beginner",
        ("predict", "mse_loss", "loss_and_grad", "per_example_grads"),
    ),
    Exercise(
        "positional_encoding",
        "Sinusoidal positional encoding",
        "beginner",
        ("sinusoidal_positional_encoding",),
    ),
    Exercise(
        "attention",
        "Scaled dot-product attention and the causal mask",
        "intermediate",
        ("causal_mask", "scaled_dot_product_attention"),
        forbidden=ATTENTION_ROUTINES,
    ),
    Exercise(
        "loss",
        "Cross-entropy and next-token loss",
        "intermediate",
        ("cross_entropy_loss", "next_token_loss"),
        forbidden=(
            "optax.softmax_cross_entropy",
            "optax.softmax_cross_entropy_with_integer_labels",
            "optax.safe_softmax_cross_entropy",
            "optax.losses.poly_loss_cross_entropy",  # cross-entropy plus epsilon * (1 - p_target): at epsilon=0, cross-entropy
        ),
    ),
    Exercise(
        "transformer",
        "Multi-head attention, feed-forward and the decoder block (Flax NNX)",
        "intermediate",
        ("MultiHeadAttention", "FeedForward", "DecoderBlock"),
        forbidden=ATTENTION_ROUTINES,
    ),
    Exercise(
        "training",
        "The train step, on one device and data-parallel",
        "advanced",
        ("train_step", "shard_batch"),
    ),
    Exercise(
        "generation",
        "Sampling and autoregressive generation",
        "intermediate",
        ("sample_next_token", "generate"),
    ),
    Exercise(
        "encoder_decoder",
        "The encoder-decoder transformer: encoder and cross-attention blocks, the seq2seq model, greedy decoding",
        "advanced",
        ("EncoderBlock", "CrossAttentionDecoderBlock", "EncoderDecoder", "greedy_decode"),
        forbidden=ATTENTION_ROUTINES,
    ),
)


def get(name: str) -> Exercise:
    """The exercise called ``name``.

    Raises:
      KeyError: no exercise has that name; the message lists those that do.
    """
    for exercise in EXERCISES:
        if exercise.name == name:
            return exercise
    known = ", ".join(e.name for e in EXERCISES)
    raise KeyError(f"exercise: no exercise named {name!r} (known: {known})")
