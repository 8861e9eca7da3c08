# %% [markdown]
# JAX is NumPy with three extra powers: it **differentiates** your functions
# (`grad`), **compiles** them for CPU, GPU or TPU (`jit`), and **vectorizes** them
# over a batch (`vmap`); and it spreads arrays and work **over many devices**
# (sharding). Each is a *transformation*: it takes a Python function and returns
# a new function. They compose, so `jit(vmap(grad(f)))` is an ordinary thing to
# write.
#
# The one rule that makes this work: the functions you transform are **pure**.
# Their result depends only on their arguments, and they change nothing outside
# themselves. Model parameters are therefore passed in and returned, never
# updated in place.

# %% [markdown]
# ## 1. From NumPy to `jax.numpy`
#
# `jax.numpy` has NumPy's API. Two differences show at once: JAX computes in
# `float32` unless told otherwise (what accelerators are fast at), and a JAX
# array lives on a *device*.

# %%
import matplotlib.pyplot as plt
import numpy as np

import jax
import jax.numpy as jnp

from course.notebook_helpers import check_close

x_np = np.linspace(0.0, 1.0, 5)
x = jnp.linspace(0.0, 1.0, 5)
print("numpy:", x_np, x_np.dtype)
print("jax:  ", x, x.dtype, "on", x.devices())

# %% [markdown]
# JAX arrays are **immutable**: a function cannot change its input behind the
# caller's back. Instead of `x[0] = 10`, write `x.at[0].set(10)`, which returns a
# new array (under `jit`, XLA turns this into an in-place update when it is safe).

# %%
try:
    x[0] = 10.0
except TypeError as error:
    print("TypeError:", str(error).splitlines()[0])

y = x.at[0].set(10.0)
print("x =", x)
print("y =", y)

# %% [markdown]
# **Random numbers** are explicit too. There is no hidden global seed: a
# `key` goes in, and the same key always gives the same numbers. To get fresh
# numbers, `split` a key into new ones.

# %%
key = jax.random.key(0)
key_a, key_b = jax.random.split(key)
print(jax.random.normal(key_a, (3,)))
print(jax.random.normal(key_a, (3,)), "<- the same key, the same numbers")
print(jax.random.normal(key_b, (3,)), "<- another key")

# %% [markdown]
# ## 2. `grad`: derivatives of Python functions
#
# `jax.grad(f)` is a new function that computes the derivative of `f` (which
# must return a scalar). For $f(x) = x^2 \sin x$ the derivative is
# $f'(x) = 2x \sin x + x^2 \cos x$:

# %%
def f(x):
    return x**2 * jnp.sin(x)


df = jax.grad(f)
x0 = 1.5
print("jax.grad(f)(1.5) =", df(x0))
print("by hand          =", 2 * x0 * jnp.sin(x0) + x0**2 * jnp.cos(x0))

# %% [markdown]
# `grad` composes with itself: `grad(grad(f))` is the second derivative. (The
# plot applies each function to 200 values of $x$ at once with `jax.vmap`,
# which section 5 below explains.)

# %%
xs = jnp.linspace(-4.0, 4.0, 200)
fig, ax = plt.subplots(figsize=(8, 3.5))
ax.plot(xs, f(xs), label="f(x) = x² sin x")
ax.plot(xs, jax.vmap(jax.grad(f))(xs), label="grad(f)")
ax.plot(xs, jax.vmap(jax.grad(jax.grad(f)))(xs), "--", label="grad(grad(f))")
ax.axhline(0, color="gray", linewidth=0.5)
ax.set_xlabel("x")
ax.legend()
ax.grid(alpha=0.3)
plt.show()

# %% [markdown]
# A model has many parameters, kept in a **pytree**: nested lists, tuples and
# dicts of arrays. `grad` differentiates with respect to the whole first
# argument and returns gradients *of the same structure*.
# `jax.value_and_grad` returns the function's value too, which a training loop
# wants anyway.
#
# Here a linear model $\hat y = x \cdot w + b$ with the squared error
# $(\hat y - y)^2$. By hand, for $x = (3, 1)$, $w = (1, -2)$, $b = 0.5$, $y = 2$:
# $\hat y = 1.5$, the loss is $0.25$, and $\partial L / \partial w = 2(\hat y - y)\,x = (-3, -1)$,
# $\partial L / \partial b = 2(\hat y - y) = -1$.

# %%
def linear_loss(params, x, y):
    prediction = x @ params["w"] + params["b"]
    return (prediction - y) ** 2


linear = {"w": jnp.array([1.0, -2.0]), "b": jnp.array(0.5)}
value, grads = jax.value_and_grad(linear_loss)(linear, jnp.array([3.0, 1.0]), 2.0)
print("loss:", value)
print("grads:", grads)

# %% [markdown]
# ## 3. Exercise: a small neural network in plain JAX
#
# Open `exercises/jax_basics/jax_basics.py`. Its model is a multilayer
# perceptron whose parameters are a list of layers `[(W_1, b_1), ..., (W_L, b_L)]`;
# every layer but the last computes $\tanh(xW + b)$, the last one $xW + b$.
#
# We will fit it to noisy samples of $\sin 3x$. The data and the initial
# weights come from NumPy's seeded generator, so they are the same on every machine.

# %%
from exercises.jax_basics.jax_basics import loss_and_grad, mse_loss, per_example_grads, predict


def init_params(sizes, seed=0):
    """Layers [(W, b), ...] for sizes like [1, 32, 32, 1]; weights scaled by 1/sqrt(fan-in)."""
    rng = np.random.default_rng(seed)
    return [
        (jnp.asarray(rng.normal(0.0, 1.0 / np.sqrt(n_in), (n_in, n_out)), jnp.float32), jnp.zeros(n_out, jnp.float32))
        for n_in, n_out in zip(sizes[:-1], sizes[1:])
    ]


rng = np.random.default_rng(1)
inputs = jnp.asarray(rng.uniform(-1.0, 1.0, (128, 1)), jnp.float32)
targets = jnp.sin(3 * inputs) + 0.05 * jnp.asarray(rng.normal(size=(128, 1)), jnp.float32)
params = init_params([1, 32, 32, 1])
print([(W.shape, b.shape) for W, b in params])

# %% [markdown]
# **Exercise.** Implement `predict` and then `mse_loss` in
# `exercises/jax_basics/jax_basics.py` (their docstrings are the specification),
# and run the next two cells. The second checks a worked example: one hidden
# unit with $W_1 = 1$, $b_1 = 0$, then $W_2 = 2$, $b_2 = 0.5$, so
# $\text{predict}(1) = 2 \tanh(1) + 0.5 \approx 2.0232$, and against the target
# $2$ the squared error is $0.0232^2 \approx 0.00054$.

# %% tags=["exercise"]
outputs = predict(params, inputs)
print("outputs:", outputs.shape, outputs.dtype)
print("initial loss:", mse_loss(params, (inputs, targets)))

# %% tags=["exercise"]
tiny = [(jnp.array([[1.0]]), jnp.array([0.0])), (jnp.array([[2.0]]), jnp.array([0.5]))]
one = jnp.array([[1.0]])
check_close("predict(tiny, [[1.0]])", predict(tiny, one), [[2 * np.tanh(1.0) + 0.5]])
check_close("mse_loss(tiny, ([[1.0]], [[2.0]]))", mse_loss(tiny, (one, jnp.array([[2.0]]))), (2 * np.tanh(1.0) + 0.5 - 2.0) ** 2)

# %% [markdown]
# ## 4. `jit`: tracing and compiling
#
# `jax.jit(f)` does not run `f` right away. The first call **traces** it: JAX
# calls your Python function with *tracers*, placeholders that know a shape and
# a dtype but no values, and records every operation into a small program, a
# **jaxpr**. XLA compiles that program for the device; later calls with the same
# shapes and dtypes run the compiled code without touching Python.
#
# `jax.make_jaxpr` shows the recorded program. Here is one layer of our network:

# %%
def layer(W, b, x):
    return jnp.tanh(x @ W + b)


print(jax.make_jaxpr(layer)(jnp.ones((3, 2)), jnp.ones(2), jnp.ones((4, 3))))

# %% [markdown]
# Three consequences of tracing:
#
# - **Side effects happen once, at trace time.** A `print` inside a jitted
#   function prints a tracer, and only when JAX traces (the first call for each
#   new input shape). `jax.debug.print` prints the values on every call.
# - **Shapes are fixed, values are abstract.** A new shape means a new trace and
#   a new compilation; a new value of the same shape does not.
# - **Python control flow cannot depend on values.** `if x > 0` asks a tracer for
#   a `True` or `False` it does not have; write `jnp.where` (or `jax.lax.cond`).

# %%
@jax.jit
def double(x):
    print("  tracing, x is", x)
    jax.debug.print("  running, x = {}", x)
    return 2 * x


print("call 1, shape (3,)")
double(jnp.arange(3.0))
print("call 2, shape (3,), new values")
double(jnp.arange(3.0) + 1)
print("call 3, shape (4,)")
double(jnp.arange(4.0));

# %%
@jax.jit
def relu_with_if(x):
    if x > 0:
        return x
    return 0.0


try:
    relu_with_if(1.0)
except jax.errors.TracerBoolConversionError as error:
    print(type(error).__name__ + ":", str(error).splitlines()[0])


@jax.jit
def relu_with_where(x):
    return jnp.where(x > 0, x, 0.0)


print(relu_with_where(jnp.array([-1.0, 2.0])))

# %% [markdown]
# What `jit` buys: one compiled program instead of one Python call per
# operation. (`block_until_ready` waits for the result: JAX returns
# *before* the device has finished, so timing without it measures nothing.)

# %%
import time


def deep(x):
    for _ in range(20):
        x = jnp.tanh(x @ x.T @ x / x.shape[0])
    return x


deep_jit = jax.jit(deep)
a = jnp.asarray(np.random.default_rng(0).normal(size=(64, 64)), jnp.float32)
deep_jit(a).block_until_ready()  # the first call traces and compiles
for name, fn in [("eager", deep), ("jit", deep_jit)]:
    start = time.perf_counter()
    for _ in range(10):
        fn(a).block_until_ready()
    print(f"{name:>5}: {(time.perf_counter() - start) / 10 * 1e3:.2f} ms per call")

# %% [markdown]
# **Exercise.** Implement `loss_and_grad` in `exercises/jax_basics/jax_basics.py`:
# the loss and its gradient with respect to the parameters, in one
# jit-compiled function. The next cell trains the network with plain gradient
# descent, $\theta \leftarrow \theta - \eta \nabla_\theta L$, applied to every
# leaf of the parameter pytree with `jax.tree.map`.

# %% tags=["exercise"]
loss, grads = loss_and_grad(params, (inputs, targets))
print("loss:", loss)
print("gradient shapes:", [(dW.shape, db.shape) for dW, db in grads])

# %% tags=["exercise"]
learning_rate = 0.05
trained = params
history = []
for step in range(3000):
    loss, grads = loss_and_grad(trained, (inputs, targets))
    trained = jax.tree.map(lambda p, g: p - learning_rate * g, trained, grads)
    history.append(float(loss))

fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 3.5))
ax1.semilogy(history)
ax1.set(xlabel="step", ylabel="mean squared error", title="training loss")
ax1.grid(alpha=0.3)
grid = jnp.linspace(-1, 1, 200)[:, None]
ax2.scatter(inputs[:, 0], targets[:, 0], s=8, color="gray", label="data")
ax2.plot(grid[:, 0], jnp.sin(3 * grid[:, 0]), "--", color="black", label="sin 3x")
ax2.plot(grid[:, 0], predict(trained, grid)[:, 0], color="tab:red", label="your network")
ax2.set(xlabel="x", title="the fit after training")
ax2.legend()
plt.show()
print(f"final loss {history[-1]:.4f} (the noise alone costs 0.05² = 0.0025)")

# %% [markdown]
# ## 5. `vmap`: write it for one example, run it on a batch
#
# `jax.vmap(f)` maps `f` over a leading axis of its inputs, without a Python
# loop: JAX rewrites the function to work on the whole batch at once.
# `in_axes` says which axis of each argument to map over (`None`: do not map,
# pass it whole); `out_axes` says where the mapped axis goes in the output.

# %%
def dot(a, b):
    return jnp.sum(a * b)  # two vectors in, one number out


A = jnp.arange(12.0).reshape(4, 3)
v = jnp.array([1.0, 0.0, -1.0])
print("rows of A with v:   ", jax.vmap(dot, in_axes=(0, None))(A, v))
print("columns of A with A[:, 0]:", jax.vmap(dot, in_axes=(1, None))(A, A[:, 0]))
outer = jax.vmap(lambda row: row * v, in_axes=0, out_axes=1)(A)
print("out_axes=1 puts the mapped axis second:", outer.shape)

# vmap of vmap: every pair of rows, a [4, 4] matrix of dot products
pairs = jax.vmap(jax.vmap(dot, in_axes=(None, 0)), in_axes=(0, None))(A, A)
print(pairs)

# %% [markdown]
# **Per-example gradients** are the classic use. `grad` of the mean loss gives
# one gradient for the whole batch; sometimes you want each example's own (to
# clip them one by one, as differentially private training does, or to find
# the examples the model finds hardest). Mapping `grad` over the examples with
# `vmap` computes all of them in one vectorized pass.
#
# **Exercise.** Implement `per_example_grads` in
# `exercises/jax_basics/jax_basics.py`. The cell checks a property you can
# prove: the loss is a mean over examples, so the batch gradient is the mean of
# the per-example gradients.

# %% tags=["exercise"]
example_grads = per_example_grads(trained, (inputs, targets))
print("per-example gradient shapes:", [(dW.shape, db.shape) for dW, db in example_grads])
_, batch_grads = loss_and_grad(trained, (inputs, targets))
check_close("mean of per-example gradients of W_1", example_grads[0][0].mean(axis=0), batch_grads[0][0], atol=1e-5)

# each example's gradient norm, over all parameters
norms = jnp.sqrt(sum(jnp.sum(g.reshape(len(inputs), -1) ** 2, axis=1) for g in jax.tree.leaves(example_grads)))
residuals = jnp.abs(predict(trained, inputs) - targets)[:, 0]
fig, ax = plt.subplots(figsize=(6, 3.5))
ax.scatter(residuals, norms, s=10)
ax.set(xlabel="|prediction - target| of the example", ylabel="its gradient norm",
       title="the worst-fit examples pull hardest")
ax.grid(alpha=0.3)
plt.show()

# %% [markdown]
# ## 6. Many devices: `pmap`, and sharding
#
# A machine may have several accelerators. This notebook's setup cell asked
# XLA to split the CPU into **8 virtual devices**, so the same code can show how
# work is spread over devices on any computer (on a GPU or TPU machine the
# devices would be real).

# %%
devices = jax.devices("cpu")
print(len(devices), "devices:", devices[:3], "...")

# %% [markdown]
# The first tool was `jax.pmap`: like `vmap`, but each slice of the mapped
# axis runs on its own device, and *collectives* such as `jax.lax.psum` (a sum
# across devices) let the copies talk. It maps exactly one axis onto exactly
# one row of devices.

# %%
chunks = jnp.arange(8 * 3.0).reshape(8, 3)  # one row per device


def normalize(row):
    total = jax.lax.psum(jnp.sum(row), axis_name="devices")  # the sum over all 8 devices
    return row / total


normalized = jax.pmap(normalize, axis_name="devices", devices=devices)(chunks)
print("on", len(normalized.sharding.device_set), "devices; sums to", float(normalized.sum()))

# %% [markdown]
# Its modern successor is **sharding**: you describe how an array is laid out
# over a `Mesh` of devices (a `NamedSharding` with a `PartitionSpec` saying
# which array axis is split along which mesh axis), and `jax.jit` compiles
# one program for all of them. XLA's partitioner decides where data must move
# and inserts the communication itself. The same function works unchanged on
# one device or many; only the placement of its inputs changes. This is how the
# course trains data-parallel in section 9.

# %%
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

mesh = Mesh(np.array(devices), ("data",))
batch = jnp.arange(16 * 4.0).reshape(16, 4)
sharded = jax.device_put(batch, NamedSharding(mesh, P("data")))  # rows split over the 8 devices
jax.debug.visualize_array_sharding(sharded)


@jax.jit
def column_means(x):
    return x.mean(axis=0)  # a reduction across devices: XLA adds the communication


means = column_means(sharded)
print("column means:", means, "- placed on", len(means.sharding.device_set), "devices")

# %% [markdown]
# When you want to write the per-device program yourself, as with `pmap`,
# `jax.shard_map` runs a function on each device's block of a sharded array,
# with the same collectives:

# %%
def local_then_global_sum(block):
    return jax.lax.psum(jnp.sum(block, axis=0), axis_name="data")


total = jax.shard_map(local_then_global_sum, mesh=mesh, in_specs=P("data"), out_specs=P())(sharded)
print("shard_map sum:", total, "= jnp.sum:", batch.sum(axis=0))

# %% [markdown]
# ## What you have learned
#
# - `jax.numpy` is NumPy on devices, with immutable arrays and explicit random keys.
# - `grad` and `value_and_grad` differentiate pure functions of pytrees.
# - `jit` traces a function to a jaxpr and compiles it; shapes are static, values abstract.
# - `vmap` batches a function written for one example, per-example gradients included.
# - `pmap` and, today, sharding with `jit` (or `shard_map`) spread work over devices.
#
# Run `pytest exercises/jax_basics` to check your functions against the tests.
# Next, section 2 builds neural networks the convenient way, with Flax NNX.
