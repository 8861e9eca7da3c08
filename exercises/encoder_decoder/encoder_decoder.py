"""The encoder-decoder transformer ("Attention Is All You Need", section 3.1), from your own pieces.

An *encoder* reads the whole source sequence (each position sees every other
real position: bidirectional) and a *decoder* writes the target one token at a
time: it sees the target tokens so far (causal self-attention) and, through
*cross-attention*, every real position of the encoder's output. Padding
positions of the source are hidden from both attentions by the source mask
(``source != pad_id``)::

    source -> embed + PE -> N x EncoderBlock(source mask) -> LayerNorm -> memory
    target -> embed + PE -> N x CrossAttentionDecoderBlock(causal; memory, source mask)
           -> LayerNorm -> Linear -> logits

Every block is pre-norm, as in :class:`exercises.transformer.transformer.DecoderBlock`,
and reuses your :class:`~exercises.transformer.transformer.MultiHeadAttention`
(its ``context=`` argument is cross-attention) and
:class:`~exercises.transformer.transformer.FeedForward`. The parameter structure
(the names of the submodules) is part of the contract: the grader copies
reference weights into your modules by these names, so keep them exactly.
"""

from __future__ import annotations

import math
from functools import partial

import jax
import jax.numpy as jnp
from flax import nnx

from exercises.attention.attention import causal_mask
from exercises.loss.loss import cross_entropy_loss
from exercises.positional_encoding.positional_encoding import sinusoidal_positional_encoding
from exercises.transformer.transformer import FeedForward, MultiHeadAttention


class EncoderBlock(nnx.Module):
    """A pre-norm transformer encoder block: bidirectional self-attention, then feed-forward.

    ``x + attn(ln1(x), mask=...)``, then ``+ ffn(ln2(.))``. Every position may
    attend to every *real* source position (before it or after it: no causal
    mask); padding positions are hidden as keys by ``source_mask``.
    Submodules: ``ln1`` and ``ln2`` (``nnx.LayerNorm(d_model)`` with its
    defaults), ``attn`` (your ``MultiHeadAttention``) and ``ffn`` (your
    ``FeedForward``).

    Args:
      d_model: model width, divisible by ``num_heads``.
      num_heads: number of attention heads.
      d_ff: the feed-forward network's hidden width.
      rngs: random streams for the initial weights (keyword-only).
    """

    def __init__(self, d_model: int, num_heads: int, d_ff: int, *, rngs: nnx.Rngs):
        raise NotImplementedError('not implemented yet: implement EncoderBlock.__init__ in exercises/encoder_decoder/encoder_decoder.py (hint: create ln1, attn, ln2, ffn in that order, as in DecoderBlock)')

    def __call__(self, x: jax.Array, source_mask: jax.Array | None = None) -> jax.Array:
        """Applies the block.

        Args:
          x: ``float[B, S, d_model]``.
          source_mask: optional ``bool[B, S]``, True at real positions and
            False at padding; ``None``: every position is real. It masks the
            *keys*: ``source_mask[b, j]`` False hides position ``j`` from every
            query of example ``b`` (reshape it to ``[B, 1, 1, S]``: every head
            and query alike).

        Returns:
          ``float[B, S, d_model]``.
        """
        raise NotImplementedError('not implemented yet: implement EncoderBlock.__call__ in exercises/encoder_decoder/encoder_decoder.py (hint: keys = source_mask[:, None, None, :] (None stays None); then the two residual updates of DecoderBlock with mask=keys)')


class CrossAttentionDecoderBlock(nnx.Module):
    """A pre-norm decoder block with cross-attention: three residual updates.

    ::

        x = x + self_attn(ln1(x), mask=causal)                          # the target so far
        x = x + cross_attn(ln2(x), context=memory, mask=source padding)  # the encoder's output
        x = x + ffn(ln3(x))

    Submodules: ``ln1``, ``ln2``, ``ln3`` (``nnx.LayerNorm(d_model)``),
    ``self_attn`` and ``cross_attn`` (your ``MultiHeadAttention``) and ``ffn``
    (your ``FeedForward``). The causal mask comes from your
    :func:`exercises.attention.attention.causal_mask`.

    Args:
      d_model: model width, divisible by ``num_heads``.
      num_heads: number of attention heads.
      d_ff: the feed-forward network's hidden width.
      rngs: random streams for the initial weights (keyword-only).
    """

    def __init__(self, d_model: int, num_heads: int, d_ff: int, *, rngs: nnx.Rngs):
        raise NotImplementedError('not implemented yet: implement CrossAttentionDecoderBlock.__init__ in exercises/encoder_decoder/encoder_decoder.py (hint: create ln1, self_attn, ln2, cross_attn, ln3, ffn in that order)')

    def __call__(self, x: jax.Array, memory: jax.Array, source_mask: jax.Array | None = None) -> jax.Array:
        """Applies the block.

        Args:
          x: ``float[B, T, d_model]``, the target positions.
          memory: ``float[B, S, d_model]``, the encoder's output (the keys and
            values of the cross-attention).
          source_mask: optional ``bool[B, S]``, True at the source's real
            positions, as for :class:`EncoderBlock`; ``None``: every position is real.

        Returns:
          ``float[B, T, d_model]``.
        """
        raise NotImplementedError('not implemented yet: implement CrossAttentionDecoderBlock.__call__ in exercises/encoder_decoder/encoder_decoder.py (hint: causal self-attention with causal_mask(T), then cross-attention with context=memory and the source mask reshaped to [B, 1, 1, S], then the feed-forward; each a residual update)')


class EncoderDecoder(nnx.Module):
    """A sequence-to-sequence transformer: encoder, decoder, output projection.

    Submodules: ``source_embed`` and ``target_embed`` (``nnx.Embed(vocab_size,
    d_model)``), ``encoder`` and ``decoder`` (``nnx.List`` of ``num_layers``
    :class:`EncoderBlock` and :class:`CrossAttentionDecoderBlock`),
    ``encoder_norm`` and ``decoder_norm`` (``nnx.LayerNorm(d_model)``) and
    ``head`` (``nnx.Linear(d_model, vocab_size)``). Both sides embed their
    tokens as ``embed(tokens) * sqrt(d_model) + PE[:length]`` with your
    :func:`~exercises.positional_encoding.positional_encoding.sinusoidal_positional_encoding`,
    as the course's ``TransformerLM`` does. Token ``pad_id`` is padding: source
    positions holding it are hidden from the attentions, target positions
    holding it are not scored by the loss.

    Args:
      vocab_size: tokens of source and target alike.
      d_model: model width, even and divisible by ``num_heads``.
      num_heads: number of attention heads.
      d_ff: the feed-forward networks' hidden width.
      num_layers: blocks on each side.
      pad_id: the padding token (keyword-only).
      rngs: random streams for the initial weights (keyword-only).
    """

    def __init__(self, vocab_size: int, d_model: int, num_heads: int, d_ff: int, num_layers: int, *,
                 pad_id: int = 0, rngs: nnx.Rngs):
        raise NotImplementedError('not implemented yet: implement EncoderDecoder.__init__ in exercises/encoder_decoder/encoder_decoder.py (hint: keep d_model and pad_id; create source_embed, target_embed, encoder, decoder (nnx.List of blocks), encoder_norm, decoder_norm, head)')

    def embed(self, embed: nnx.Embed, tokens: jax.Array) -> jax.Array:
        """``embed(tokens) * sqrt(d_model) + PE[:T]``: ``int[B, T]`` to ``float32[B, T, d_model]``."""
        raise NotImplementedError('not implemented yet: implement EncoderDecoder.embed in exercises/encoder_decoder/encoder_decoder.py (hint: scale the embeddings by math.sqrt(self.d_model), add sinusoidal_positional_encoding(T, self.d_model))')

    def encode(self, source: jax.Array) -> jax.Array:
        """The encoder's output (the decoder's *memory*).

        Args:
          source: ``int[B, S]``, padded with ``pad_id``.

        Returns:
          ``float32[B, S, d_model]``: after the last block and ``encoder_norm``.
        """
        raise NotImplementedError('not implemented yet: implement EncoderDecoder.encode in exercises/encoder_decoder/encoder_decoder.py (hint: the source mask is source != self.pad_id; embed with source_embed, run every encoder block, then encoder_norm)')

    def decode(self, target_in: jax.Array, memory: jax.Array, source_mask: jax.Array) -> jax.Array:
        """Next-token logits of the target, given the encoder's output.

        Args:
          target_in: ``int[B, T]``, the target tokens read so far (starting with BOS).
          memory: ``float[B, S, d_model]``, from :meth:`encode`.
          source_mask: ``bool[B, S]``, ``source != pad_id``.

        Returns:
          ``float32[B, T, vocab_size]``: ``logits[:, t]`` predicts target token
          ``t + 1`` from ``target_in[:, :t + 1]`` and the whole source.
        """
        raise NotImplementedError('not implemented yet: implement EncoderDecoder.decode in exercises/encoder_decoder/encoder_decoder.py (hint: embed with target_embed, run every decoder block with memory and source_mask, then decoder_norm and head)')

    def __call__(self, source: jax.Array, target_in: jax.Array) -> jax.Array:
        """``decode(target_in, encode(source), source != pad_id)``: logits ``float32[B, T, vocab_size]``."""
        raise NotImplementedError('not implemented yet: implement EncoderDecoder.__call__ in exercises/encoder_decoder/encoder_decoder.py (hint: encode, then decode)')

    def loss(self, source: jax.Array, target: jax.Array) -> jax.Array:
        """The teacher-forced loss: each target token predicted from the tokens before it.

        The decoder reads ``target[:, :-1]`` and its logits are scored against
        ``target[:, 1:]`` (shifted by one, as in ``next_token_loss``) with your
        :func:`~exercises.loss.loss.cross_entropy_loss`; targets equal to
        ``pad_id`` are not counted.

        Args:
          source: ``int[B, S]``, padded with ``pad_id``.
          target: ``int[B, T]``, ``T >= 2``: BOS, the answer, EOS, then ``pad_id``.

        Returns:
          A float32 scalar: the mean cross-entropy over the target's real tokens.
        """
        raise NotImplementedError('not implemented yet: implement EncoderDecoder.loss in exercises/encoder_decoder/encoder_decoder.py (hint: logits = self(source, target[:, :-1]); labels = target[:, 1:]; mask = labels != self.pad_id)')


def greedy_decode(model: EncoderDecoder, source: jax.Array, length: int, bos_id: int) -> jax.Array:
    """Writes ``length`` target tokens for each source, each the most likely next one.

    The encoder runs once (``model.encode``); each step runs the decoder
    (``model.decode``) on the tokens so far and appends the argmax of the last
    position's logits. The tokens live in one buffer ``int32[B, length + 1]``
    (BOS, then the tokens written so far, then ``pad_id``) updated inside a
    ``jax.lax`` loop, so the loop compiles once, not once per token.

    Args:
      model: an :class:`EncoderDecoder` (or a module with its ``encode``,
        ``decode`` and ``pad_id``).
      source: ``int[B, S]``, padded with ``model.pad_id``.
      length: how many tokens to write, ``>= 1`` (static).
      bos_id: the token the decoder starts from (static).

    Returns:
      ``int32[B, length]``: the tokens written, BOS left out.

    Raises:
      ValueError: ``source`` is not ``[B, S]`` or ``length < 1``.
    """
    raise NotImplementedError('not implemented yet: implement greedy_decode in exercises/encoder_decoder/encoder_decoder.py (hint: nnx.split the model and jit a function that nnx.merges it; memory = model.encode(source) once; fill a buffer with jax.lax.fori_loop, where step t decodes the buffer and writes the argmax of logits[:, t] at t + 1)')


