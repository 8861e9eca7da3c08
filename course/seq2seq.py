"""A synthetic sequence-to-sequence task for the encoder-decoder: reverse a string of digits.

No download: every example is drawn from a numpy generator. A source is 1 to
``max_len`` digits padded with ``PAD``; its target is ``BOS``, the digits in
reverse order, ``EOS``, then ``PAD``. Reversal needs cross-attention: target
token ``t`` is source digit ``length - 1 - t``, a position the decoder finds
only by looking at the source (its own tokens so far say nothing of it), and
the padding makes where to look differ per example.

    source  [5, 8, 3, PAD, PAD]          (digit d is token FIRST_DIGIT + d)
    target  [BOS, 3, 8, 5, EOS, PAD, PAD]

:func:`train` fits an ``EncoderDecoder`` (the active submission's) to it with
the model's own teacher-forced ``loss``; :func:`exact_match` scores
:func:`~exercises.encoder_decoder.encoder_decoder.greedy_decode`'s answers.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import numpy as np
import optax
from flax import nnx

PAD, BOS, EOS, FIRST_DIGIT = 0, 1, 2, 3
VOCAB_SIZE = FIRST_DIGIT + 10


def reversal_batch(rng: np.random.Generator, batch: int, max_len: int) -> tuple[np.ndarray, np.ndarray]:
    """``batch`` examples of lengths drawn uniformly from ``1..max_len``.

    Returns:
      ``(source int32[batch, max_len], target int32[batch, max_len + 2])``,
      padded with ``PAD`` (see the module's docstring).

    Raises:
      ValueError: ``batch`` or ``max_len`` is not positive.
    """
    if batch < 1 or max_len < 1:
        raise ValueError(f"batch and max_len: expected positive ints, got batch={batch} and max_len={max_len}")
    lengths = rng.integers(1, max_len + 1, batch)
    digits = rng.integers(FIRST_DIGIT, VOCAB_SIZE, (batch, max_len))
    position = np.arange(max_len)
    source = np.where(position < lengths[:, None], digits, PAD)
    # Reversed within each example: target position t holds source digit length - 1 - t.
    reversed_digits = np.take_along_axis(digits, np.clip(lengths[:, None] - 1 - position, 0, None), axis=1)
    answer = np.where(position < lengths[:, None], reversed_digits, PAD)
    target = np.concatenate([np.full((batch, 1), BOS), answer, np.full((batch, 1), PAD)], axis=1)
    target[np.arange(batch), lengths + 1] = EOS
    return source.astype(np.int32), target.astype(np.int32)


def exact_match(written: np.ndarray, target: np.ndarray) -> float:
    """The fraction of examples whose written tokens equal the target's up to and including its EOS.

    Args:
      written: ``int[B, L]``, tokens written after BOS (e.g. by ``greedy_decode``), ``L >= T - 1``.
      target: ``int[B, T]`` from :func:`reversal_batch`.
    """
    answer = target[:, 1:]
    counted = np.cumsum(answer == EOS, axis=1) - (answer == EOS) == 0  # positions up to the first EOS
    return float(np.mean(np.all((written[:, :answer.shape[1]] == answer) | ~counted, axis=1)))


def train(model: nnx.Module, rng: np.random.Generator, *, steps: int, batch: int, max_len: int,
          learning_rate: float = 3e-3, on_step: Callable[[int, float], None] | None = None) -> list[float]:
    """Fits ``model`` (an ``EncoderDecoder``) to the reversal task with Adam, in place.

    Args:
      on_step: called as ``on_step(step, loss)`` after every step (a progress bar, a live plot).

    Returns:
      The loss of every step.
    """
    optimizer = nnx.Optimizer(model, optax.adam(learning_rate), wrt=nnx.Param)

    @nnx.jit
    def step(model, optimizer, source, target):
        loss, grads = nnx.value_and_grad(lambda m: m.loss(source, target))(model)
        optimizer.update(model, grads)
        return loss

    losses = []
    for i in range(steps):
        source, target = (jax.device_put(a) for a in reversal_batch(rng, batch, max_len))
        losses.append(float(step(model, optimizer, source, target)))
        if on_step is not None:
            on_step(i, losses[-1])
    return losses
