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
        forbidden=("jax.nn.dot_product_attention", "flax.nnx.dot_product_attention", "flax.linen.dot_product_attention"),
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
        ),
    ),
    Exercise(
        "transformer",
        "Multi-head attention, feed-forward and the decoder block (Flax NNX)",
        "intermediate",
        ("MultiHeadAttention", "FeedForward", "DecoderBlock"),
        forbidden=(
            "flax.nnx.MultiHeadAttention",
            "flax.nnx.dot_product_attention",
            "jax.nn.dot_product_attention",
            "flax.linen.MultiHeadDotProductAttention",
        ),
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
