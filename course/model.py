"""The course's language model: a decoder-only transformer built from your own code.

``TransformerLM`` takes its pieces from the *active submission* (see
``course/submission.py``): your ``DecoderBlock`` (and through it your
multi-head attention and scaled dot-product attention), your causal mask and
your sinusoidal positional encoding. With the stubs it cannot be built; with
``COURSE_SUBMISSION=reference`` it is the instructor's model.

    tokens [B, T] -> embed * sqrt(d_model) + PE[:T] -> N x DecoderBlock(causal mask)
                  -> LayerNorm -> Linear -> logits [B, T, V]
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import jax
from flax import nnx

from course.submission import exercise_module


@dataclass(frozen=True)
class TransformerConfig:
    vocab_size: int = 256  # the byte tokenizer's vocabulary
    max_seq_len: int = 128  # the context: the longest input the model reads
    d_model: int = 128  # width of the residual stream
    num_heads: int = 4  # d_model / num_heads = 32 features per head
    num_layers: int = 2  # decoder blocks
    d_ff: int = 512  # feed-forward hidden width, 4 * d_model as in the paper

    def __post_init__(self):
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"{field.name}: expected a positive int, got {value!r}")
        if self.d_model % self.num_heads or self.d_model % 2:
            raise ValueError(
                f"d_model: expected an even multiple of num_heads={self.num_heads}, got {self.d_model}"
            )


# Named configurations. `tiny` is for tests and synthetic tasks: it trains in seconds on a CPU.
CONFIGS: dict[str, TransformerConfig] = {
    "tiny": TransformerConfig(vocab_size=16, max_seq_len=32, d_model=32, num_heads=2, num_layers=2, d_ff=64),
    "small": TransformerConfig(),
    # The shipped demo model: twice the depth of `small`; `course train --config demo` trains it on a CPU.
    "demo": TransformerConfig(max_seq_len=128, d_model=128, num_heads=4, num_layers=4, d_ff=512),
}


class Buffer(nnx.Variable):
    """A constant array of the model (not a parameter, so the optimizer leaves it alone)."""


class TransformerLM(nnx.Module):
    """A decoder-only transformer language model.

    Submodules: ``embed`` (``nnx.Embed(vocab_size, d_model)``), ``blocks`` (a
    list of the active submission's ``DecoderBlock``), ``ln_f``
    (``nnx.LayerNorm``) and ``head`` (``nnx.Linear(d_model, vocab_size)``).
    The positional encoding and causal mask are computed once, by the active
    submission's functions, and kept as constants.

    Args:
      config: the sizes.
      rngs: random streams for the initial weights (keyword-only).
    """

    def __init__(self, config: TransformerConfig, *, rngs: nnx.Rngs):
        DecoderBlock = exercise_module("transformer").DecoderBlock
        attention = exercise_module("attention")
        pe = exercise_module("positional_encoding").sinusoidal_positional_encoding
        self.config = config
        self.max_seq_len = config.max_seq_len
        self.embed = nnx.Embed(config.vocab_size, config.d_model, rngs=rngs)
        self.blocks = nnx.List(
            [DecoderBlock(config.d_model, config.num_heads, config.d_ff, rngs=rngs) for _ in range(config.num_layers)]
        )
        self.ln_f = nnx.LayerNorm(config.d_model, rngs=rngs)
        self.head = nnx.Linear(config.d_model, config.vocab_size, rngs=rngs)
        self.positions = Buffer(pe(config.max_seq_len, config.d_model))  # [max_seq_len, d_model]
        self.mask = Buffer(attention.causal_mask(config.max_seq_len))  # [max_seq_len, max_seq_len]

    def __call__(self, tokens: jax.Array) -> jax.Array:
        """Next-token logits for every position.

        Args:
          tokens: ``int[B, T]``, ``T <= config.max_seq_len``.

        Returns:
          ``float32[B, T, vocab_size]``: ``logits[:, t]`` predicts token ``t + 1``
          from tokens ``0..t``.
        """
        T = tokens.shape[-1]
        if T > self.max_seq_len:
            raise ValueError(f"tokens: {T} positions exceed the model's max_seq_len={self.max_seq_len}")
        # Scaling the embeddings keeps them from being drowned by the unit-size encoding (paper, 3.4).
        x = self.embed(tokens) * math.sqrt(self.config.d_model) + self.positions[:T]  # [B, T, d_model]
        mask = self.mask[:T, :T]  # [T, T], shared by every batch entry and head
        for block in self.blocks:
            x = block(x, mask)
        return self.head(self.ln_f(x))  # [B, T, V]
