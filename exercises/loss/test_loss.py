"""Visible tests for exercises/loss: run them with ``pytest exercises/loss``."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from course.testing import assert_close, load_fixtures, stored_mistakes
from exercises.loss.loss import cross_entropy_loss, next_token_loss

FX = load_fixtures(__file__)
# jax.device_put, unlike jnp.asarray, copies a NumPy array to the device without compiling a program.
LOGITS, TARGETS, MASK, TOKENS = (jax.device_put(FX[n]) for n in ("logits", "targets", "mask", "tokens"))

CASES = {
    "cross_entropy": lambda z: cross_entropy_loss(z, TARGETS),
    "cross_entropy_masked": lambda z: cross_entropy_loss(z, TARGETS, MASK),
    "next_token": lambda z: next_token_loss(z, TOKENS),
    "next_token_pad0": lambda z: next_token_loss(z, TOKENS, pad_id=0),
}


@pytest.mark.parametrize("case", list(CASES))
def test_matches_reference(case):
    value, grad = jax.jit(jax.value_and_grad(CASES[case]))(LOGITS)  # one program, not one per operation
    assert_close(value, FX[f"{case}.output"], what=f"loss ({case})", mistakes=stored_mistakes(FX, f"{case}.output"))
    assert_close(grad, FX[f"{case}.grad_logits"], what=f"gradient with respect to the logits ({case})",
                 mistakes=stored_mistakes(FX, f"{case}.grad_logits"))


def test_returns_a_float32_scalar_for_bfloat16_logits():
    loss = cross_entropy_loss(jax.device_put(FX["logits"].astype(jnp.bfloat16)), TARGETS)
    float32_scalar = loss.shape == () and loss.dtype == jnp.float32
    assert float32_scalar, f"loss: expected a float32 scalar, got {loss.dtype}{list(loss.shape)}"
    assert_close(loss, FX["cross_entropy.output"], rtol=2e-2, atol=2e-2, what="loss for bfloat16 logits",
                 mistakes=stored_mistakes(FX, "cross_entropy.output"))


def test_large_logits_are_stable():
    logits = jax.device_put(FX["large.logits"])  # [[1e4, 0, -1e4], [0, 1e4, 1e4]]
    loss = cross_entropy_loss(logits, jax.device_put(FX["large.targets"]))  # [1, 2]
    # Example 0: -log softmax = 1e4 exactly; example 1: log 2. Subtract the maximum before exp.
    assert_close(loss, np.float32((1e4 + np.log(2.0)) / 2), what="loss for logits of magnitude 1e4",
                 mistakes=stored_mistakes(FX, "large.output"))


def test_mask_weights_count():
    all_true = cross_entropy_loss(LOGITS, TARGETS, jax.device_put(np.ones(TARGETS.shape, bool)))
    assert_close(all_true, FX["cross_entropy.output"], what="loss with a mask of all True",
                 mistakes=stored_mistakes(FX, "cross_entropy.output"))
    none = cross_entropy_loss(LOGITS, TARGETS, jax.device_put(np.zeros(TARGETS.shape, bool)))
    assert_close(none, np.float32(0.0), what="loss with nothing counted (sum / max(count, 1))")


def test_float_targets_raise_type_error():
    with pytest.raises(TypeError):
        cross_entropy_loss(LOGITS, jax.device_put(FX["targets"].astype(np.float32)))


def test_next_token_loss_never_scores_the_last_logits():
    # The prediction after the final token has no target.
    grad = np.asarray(jax.jit(jax.grad(lambda z: next_token_loss(z, TOKENS)))(LOGITS))
    assert_close(grad[:, -1], np.zeros_like(FX["logits"][:, -1]), what="gradient at the last position")


def test_next_token_loss_ignores_pad_targets():
    # Compared with your own loss before the change, not the reference's: only a pad target that counts fails here.
    pads = FX["tokens"][:, 1:] == 0
    changed = FX["logits"].copy()
    # Not a constant, which the softmax would remove: the logits move apart, so every pad target's -log p changes.
    spread = np.linspace(-50.0, 50.0, changed.shape[-1], dtype=np.float32)
    changed[:, :-1] += np.where(pads[..., None], spread, np.float32(0.0))
    loss = jax.jit(lambda z: next_token_loss(z, TOKENS, pad_id=0))
    assert_close(loss(jax.device_put(changed)), loss(LOGITS), what="loss after changing the logits that predict pad tokens "
                 "(compared with your loss before the change)")
