"""JAX basics: a small multilayer perceptron, its loss, and its gradients.

The model is a list of layers ``params = [(W_1, b_1), ..., (W_L, b_L)]`` with
``W_l: float[d_{l-1}, d_l]`` and ``b_l: float[d_l]``. Inputs are row vectors:
a layer computes ``x @ W + b``. Every function here is pure, so ``jax.grad``,
``jax.jit`` and ``jax.vmap`` apply to it directly.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

Params = list[tuple[jax.Array, jax.Array]]
Batch = tuple[jax.Array, jax.Array]


def predict(params: Params, inputs: jax.Array) -> jax.Array:
    """Runs the multilayer perceptron.

    Every layer but the last applies ``tanh(x @ W + b)``; the last is linear,
    ``x @ W + b``, with no activation.

    Args:
      params: ``[(W_1, b_1), ..., (W_L, b_L)]``, ``W_l: float[d_{l-1}, d_l]``,
        ``b_l: float[d_l]``; at least one layer.
      inputs: ``float[..., d_0]``, any number of leading batch dimensions.

    Returns:
      ``float[..., d_L]``, the last layer's outputs, in the inputs' dtype.
    """
    raise NotImplementedError('not implemented yet: implement predict in exercises/jax_basics/jax_basics.py (hint: loop over params[:-1] applying jnp.tanh(x @ W + b), then apply the last layer without tanh)')


def mse_loss(params: Params, batch: Batch) -> jax.Array:
    """Mean squared error of :func:`predict` on a batch.

    Args:
      params: as for :func:`predict`.
      batch: ``(inputs, targets)``, ``inputs: float[..., d_0]`` and
        ``targets: float[..., d_L]`` with the same leading dimensions.

    Returns:
      A scalar: the mean of ``(predict(params, inputs) - targets) ** 2`` over
      every element (every example and every output unit).
    """
    raise NotImplementedError('not implemented yet: implement mse_loss in exercises/jax_basics/jax_basics.py (hint: jnp.mean of the squared difference between predict(params, inputs) and targets)')


@jax.jit
def loss_and_grad(params: Params, batch: Batch) -> tuple[jax.Array, Params]:
    """The loss and its gradient with respect to ``params``, jit-compiled.

    Args:
      params: as for :func:`predict`.
      batch: as for :func:`mse_loss`.

    Returns:
      ``(loss, grads)``: the scalar :func:`mse_loss` and a list of ``(dW, db)``
      with exactly the structure, shapes and dtypes of ``params``.
    """
    raise NotImplementedError('not implemented yet: implement loss_and_grad in exercises/jax_basics/jax_basics.py (hint: one call to jax.value_and_grad(mse_loss); the decorator above already compiles it)')


def per_example_grads(params: Params, batch: Batch) -> Params:
    """The gradient of the loss of each example on its own.

    Example ``n`` is ``(inputs[n], targets[n])``; its loss is :func:`mse_loss`
    on that single example. Computed with ``jax.vmap`` over ``jax.grad``, not a
    Python loop.

    Args:
      params: as for :func:`predict`.
      batch: ``(inputs: float[N, d_0], targets: float[N, d_L])``.

    Returns:
      The structure of ``params`` where every leaf gains a leading axis of
      size ``N``: ``dW_l: float[N, d_{l-1}, d_l]``, ``db_l: float[N, d_l]``.
    """
    raise NotImplementedError('not implemented yet: implement per_example_grads in exercises/jax_basics/jax_basics.py (hint: jax.vmap(jax.grad(mse_loss), in_axes=(None, 0)) maps over the batch but not over params)')
