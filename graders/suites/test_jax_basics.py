"""Grader suite for exercises/jax_basics: ``predict``, ``mse_loss``, ``loss_and_grad``, ``per_example_grads``.

Sizes (drawn once per grading seed): 2..3 layers, widths 1..8, batch ``N``
in 2..8. Weights are standard normal scaled by ``1/sqrt(fan_in)``, biases
by 0.5, inputs and targets standard normal.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from graders.engine.compare import expect_dtype, expect_like_reference, known_mistakes
from graders.engine.failures import Mismatch


@pytest.fixture(scope="module")
def sizes(suite_rng):
    """``(widths, N)``: layer widths ``d_0..d_L`` and the batch size of this run."""
    layers = int(suite_rng.integers(2, 4))
    return tuple(int(w) for w in suite_rng.integers(1, 9, layers + 1)), int(suite_rng.integers(2, 9))


def _params(rng, widths):
    return [
        ((rng.standard_normal((a, b)) / np.sqrt(a)).astype(np.float32), (rng.standard_normal(b) * 0.5).astype(np.float32))
        for a, b in zip(widths[:-1], widths[1:])
    ]


def _batch(rng, widths, n):
    return rng.standard_normal((n, widths[0])).astype(np.float32), rng.standard_normal((n, widths[-1])).astype(np.float32)


@pytest.mark.points(3)
@pytest.mark.values("predict")
def test_predict_with_gradients(student, reference, rng, sizes):
    widths, n = sizes
    params, (x, _) = _params(rng, widths), _batch(rng, widths, n)
    expect_like_reference(student, reference.predict, "predict", (params, x),
                          cotangent=rng.standard_normal((n, widths[-1])).astype(np.float32),
                          outputs=("predictions",), inputs=("params", "inputs"), mistakes=known_mistakes(reference, "predict"))


@pytest.mark.points(1)
@pytest.mark.requires_values("predict")
@pytest.mark.parametrize("batch", ["no_batch_dimension", "two_batch_dimensions"])
def test_predict_leading_dimensions(student, reference, rng, sizes, batch):
    widths, _ = sizes
    x = rng.standard_normal((widths[0],) if batch == "no_batch_dimension" else (2, 3, widths[0])).astype(np.float32)
    expect_like_reference(student, reference.predict, "predict", (_params(rng, widths), x), outputs=(f"predictions for inputs {list(x.shape)}",))


@pytest.mark.points(1)
@pytest.mark.requires_values("predict")
def test_predict_bfloat16(student, reference, rng, sizes):
    widths, n = sizes
    params = jax.tree.map(lambda a: a.astype(jnp.bfloat16), _params(rng, widths))
    x = _batch(rng, widths, n)[0].astype(jnp.bfloat16)
    got, _ = expect_like_reference(student, reference.predict, "predict", (params, x), outputs=("bfloat16 predictions",))
    expect_dtype(got, jnp.bfloat16, what="predictions for bfloat16 parameters and inputs")


@pytest.mark.points(3)
@pytest.mark.values("mse_loss")
def test_mse_loss_with_gradients(student, reference, rng, sizes):
    widths, n = sizes
    params, batch = _params(rng, widths), _batch(rng, widths, n)
    expect_like_reference(student, reference.mse_loss, "mse_loss", (params, batch), cotangent=np.float32(rng.standard_normal()),
                          outputs=("loss",), inputs=("params", "batch"), mistakes=known_mistakes(reference, "mse_loss"))


@pytest.mark.points(3)
@pytest.mark.values("loss_and_grad")
def test_loss_and_grad(student, reference, rng, sizes):
    widths, n = sizes
    params, batch = _params(rng, widths), _batch(rng, widths, n)
    expect_like_reference(student, reference.loss_and_grad, "loss_and_grad", (params, batch),
                          outputs=("loss", *(f"grads[{i}] ({part})" for i in range(len(params)) for part in ("dW", "db"))),
                          mistakes=known_mistakes(reference, "loss_and_grad"))


@pytest.mark.points(1)
@pytest.mark.requires_values("loss_and_grad")
def test_loss_and_grad_is_jit_compiled(student, reference, rng, sizes):
    widths, n = sizes
    expect_like_reference(student, reference.loss_and_grad, "loss_and_grad", (_params(rng, widths), _batch(rng, widths, n)),
                          outputs=("loss", *(f"grads[{i}] ({part})" for i in range(len(widths) - 1) for part in ("dW", "db"))))
    if not student.info("loss_and_grad")["jitted"]:
        raise Mismatch("loss_and_grad: expected a function wrapped in jax.jit (decorate it with @jax.jit)")


@pytest.mark.points(3)
@pytest.mark.values("per_example_grads")
def test_per_example_grads(student, reference, rng, sizes):
    widths, n = sizes
    params, batch = _params(rng, widths), _batch(rng, widths, n)
    expect_like_reference(student, reference.per_example_grads, "per_example_grads", (params, batch),
                          outputs=tuple(f"grads[{i}] ({part})" for i in range(len(params)) for part in ("dW", "db")),
                          mistakes=known_mistakes(reference, "per_example_grads"))


@pytest.mark.points(1)
@pytest.mark.requires_values("predict")
@pytest.mark.parametrize("transform", ["jit", "vmap"])
def test_predict_under_transformations(student, reference, rng, sizes, transform):
    widths, n = sizes
    params, (x, _) = _params(rng, widths), _batch(rng, widths, n)
    expect_like_reference(student, reference.predict, "predict", (params, x), transform=transform, in_axes=(None, 0),
                          outputs=(f"predictions under jax.{transform}",))
