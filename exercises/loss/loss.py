"""Cross-entropy, the training objective of a language model.

A model outputs *logits* ``z`` over a vocabulary of ``V`` tokens; the predicted
distribution is ``softmax(z)``. For a one-hot target ``y`` the cross-entropy is
``Loss = -sum_w y_w log softmax(z)_w = -log softmax(z)[target]``. Computing
``log softmax`` as ``z - logsumexp(z)``, with the maximum subtracted first,
keeps it finite for logits of any size.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def cross_entropy_loss(
    logits: jax.Array, targets: jax.Array, mask: jax.Array | None = None
) -> jax.Array:
    """Mean cross-entropy of integer targets under logits.

    Args:
      logits: ``float[..., V]``, float32 or bfloat16.
      targets: ``int[...]``, the leading shape of ``logits``, values in ``[0, V)``.
      mask: optional ``[...]`` of bools or weights (same shape as ``targets``);
        ``True`` or ``1`` counts a position, ``False`` or ``0`` drops it.
        ``None`` counts every position.

    Returns:
      A float32 scalar: ``sum(mask * -log softmax(logits)[target]) / max(sum(mask), 1)``,
      the mean over counted positions (zero when none is counted). Computed in
      float32 and numerically stable: finite and correct for logits of
      magnitude 1e4.

    Raises:
      TypeError: ``targets`` is not an integer array.
      ValueError: ``targets`` or ``mask`` does not have the leading shape of ``logits``.
    """
    raise NotImplementedError("not implemented yet: implement cross_entropy_loss in exercises/loss/loss.py (hint: jax.nn.log_softmax in float32, pick the target's entry with jnp.take_along_axis, then a masked mean)")


def next_token_loss(
    logits: jax.Array, tokens: jax.Array, pad_id: int | None = None
) -> jax.Array:
    """The language-modelling loss: predict each token from those before it.

    ``logits[:, t]`` is the model's prediction after reading ``tokens[:, :t+1]``,
    so it is scored against the *next* token ``tokens[:, t+1]``: the loss of
    ``logits[:, :-1]`` against ``tokens[:, 1:]``. Targets equal to ``pad_id``
    are not counted; token id 0 is an ordinary token unless it is ``pad_id``.

    Args:
      logits: ``float[B, T, V]``, computed by the model from ``tokens``.
      tokens: ``int[B, T]``, ``T >= 2``.
      pad_id: the padding token id, or ``None`` when nothing is padding.

    Returns:
      A float32 scalar: the mean cross-entropy over the counted targets.

    Raises:
      TypeError: ``tokens`` is not an integer array.
      ValueError: the shapes are not ``[B, T, V]`` and ``[B, T]``, or ``T < 2``.
    """
    raise NotImplementedError('not implemented yet: implement next_token_loss in exercises/loss/loss.py (hint: shift by one: logits[:, :-1] predict tokens[:, 1:]; build the mask from tokens[:, 1:] != pad_id; reuse cross_entropy_loss)')
