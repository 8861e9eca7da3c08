"""Visible tests for exercises/jax_basics: run them with ``pytest exercises/jax_basics``."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from course.params import unflatten_params
from course.testing import assert_close, load_fixtures, stored_mistakes
from exercises.jax_basics.jax_basics import loss_and_grad, mse_loss, per_example_grads, predict

FX = load_fixtures(__file__)
# jax.device_put, unlike jnp.asarray, copies a NumPy array to the device without compiling a program.
PARAMS = unflatten_params(FX, "params")
BATCH = (jax.device_put(FX["inputs"]), jax.device_put(FX["targets"]))


# One program, shared by the two tests; run eagerly, every operation of vmap(grad) is a program of its own.
per_example_grads_compiled = jax.jit(per_example_grads)


def assert_params_close(actual, key, what):
    """``actual`` (a list of (dW, db)) against the fixture's ``key``, naming the known mistakes stored with it."""
    __tracebackhide__ = True
    expected = unflatten_params(FX, key)
    if not isinstance(actual, list | tuple) or len(actual) != len(expected):
        raise AssertionError(f"{what}: expected a list of {len(expected)} (dW, db) pairs like params, got {type(actual).__name__}")
    for layer, (got, want) in enumerate(zip(actual, expected)):
        for part, got_part, want_part in (("W", got[0], want[0]), ("b", got[1], want[1])):
            assert_close(got_part, want_part, what=f"{what}[{layer}] (d{part})", mistakes=stored_mistakes(FX, f"{key}.{layer}.{part}"))


def test_predict_matches_reference():
    assert_close(predict(PARAMS, BATCH[0]), FX["predict.output"], what="predict(params, inputs)",
                 mistakes=stored_mistakes(FX, "predict.output"))


def test_predict_last_layer_is_linear():
    # Scaling the last layer scales a linear output exactly; tanh would squash it.
    scaled = PARAMS[:-1] + [tuple(jax.device_put(np.asarray(p) * 3.0) for p in PARAMS[-1])]
    assert_close(predict(scaled, BATCH[0]), 3.0 * FX["predict.output"], what="predict with the last layer scaled by 3")


def test_predict_leading_batch_dimensions():
    inputs = jax.device_put(FX["inputs"].reshape(2, 3, -1))
    # Compiled as one program (run eagerly, every operation is one); predict runs under jit in loss_and_grad too.
    assert_close(jax.jit(predict)(PARAMS, inputs), FX["predict.output"].reshape(2, 3, -1), what="predict on inputs [2, 3, d_0]")


def test_mse_loss_matches_reference():
    assert_close(mse_loss(PARAMS, BATCH), FX["mse_loss.output"], what="mse_loss(params, batch)",
                 mistakes=stored_mistakes(FX, "mse_loss.output"))


def test_mse_loss_is_a_mean():
    doubled = (jax.device_put(np.concatenate([FX["inputs"]] * 2)), jax.device_put(np.concatenate([FX["targets"]] * 2)))
    assert_close(jax.jit(mse_loss)(PARAMS, doubled), FX["mse_loss.output"], what="mse_loss on the batch repeated twice (a mean does not change)")


def test_loss_and_grad_matches_reference():
    loss, grads = loss_and_grad(PARAMS, BATCH)
    assert_close(loss, FX["loss_and_grad.loss"], what="loss", mistakes=stored_mistakes(FX, "loss_and_grad.loss"))
    assert_params_close(grads, "loss_and_grad.grads", "grads")


def test_loss_and_grad_is_jit_compiled():
    jitted = hasattr(loss_and_grad, "lower")
    assert jitted, "loss_and_grad should be wrapped in jax.jit (decorate it with @jax.jit)"
    loss_and_grad(PARAMS, BATCH)  # the stub must still fail here as not implemented


def test_per_example_grads_matches_reference():
    assert_params_close(per_example_grads_compiled(PARAMS, BATCH), "per_example_grads.grads", "per_example_grads")


def test_per_example_grads_average_to_the_batch_gradient():
    # The batch loss is the mean of the per-example losses, so its gradient is their mean. Compared with the gradient of
    # your own mse_loss, not the reference's: a mistake in predict fails the tests of predict, not this one.
    per_example = per_example_grads_compiled(PARAMS, BATCH)
    n = BATCH[0].shape[0]
    for layer, (dW, db) in enumerate(per_example):
        for what, got, param in (("dW", dW, PARAMS[layer][0]), ("db", db, PARAMS[layer][1])):
            shape, expected = tuple(got.shape), (n, *param.shape)
            assert shape == expected, f"per_example_grads[{layer}] {what}: expected shape {expected}, got {shape}"
    batch = jax.jit(jax.grad(mse_loss))(PARAMS, BATCH)
    for layer, ((dW, db), (batch_dW, batch_db)) in enumerate(zip(per_example, batch)):
        for part, got, want in (("W", dW, batch_dW), ("b", db, batch_db)):
            assert_close(np.asarray(got).mean(0), np.asarray(want),
                         what=f"mean of per_example_grads[{layer}] (d{part}), against jax.grad of your mse_loss on the batch")


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16], ids=["float32", "bfloat16"])
def test_predict_keeps_the_dtype(dtype):
    params = jax.tree.map(lambda x: jax.device_put(np.asarray(x).astype(dtype)), PARAMS)  # cast on the host: no program
    out = predict(params, jax.device_put(FX["inputs"].astype(dtype)))
    got = jnp.dtype(out.dtype)
    assert got == dtype, f"predict on {jnp.dtype(dtype)} inputs: expected a {jnp.dtype(dtype)} output, got {out.dtype}"
    assert_close(out, FX["predict.output"], what=f"predict in {jnp.dtype(dtype)}", mistakes=stored_mistakes(FX, "predict.output"), dtype=dtype)
