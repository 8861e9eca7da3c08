# %% [markdown]
# In section 1 the parameters were a list of `(W, b)` pairs that we created,
# passed around and updated by hand. That is fine for three layers, and tedious
# for a transformer. **Flax NNX** keeps JAX's transformations but lets a model be
# an ordinary Python object: a `nnx.Module` whose attributes are its layers and
# whose arrays are **Variables** (`nnx.Param` for what training learns,
# `nnx.BatchStat` for running statistics, `nnx.RngState` for random streams).
#
# NNX's own transformations (`nnx.jit`, `nnx.grad`, `nnx.value_and_grad`) take
# and return modules: they pull the state out, run a pure JAX function on it,
# and write the new state back into your objects.
#
# This section builds a small classifier with the three layers every deep
# learning course meets early: `Linear`, `BatchNorm` and `Dropout`.

# %%
import matplotlib.pyplot as plt
import numpy as np

import jax
import jax.numpy as jnp
import optax
from flax import nnx

# %% [markdown]
# ## 1. The data: two interleaving half moons
#
# Two classes of 2-D points that no straight line separates, drawn with a
# seeded NumPy generator.

# %%
def two_moons(n, noise, rng):
    """n points of two half moons, float32[n, 2], and their labels int32[n] (0 or 1)."""
    angle = rng.uniform(0.0, np.pi, n)
    label = rng.integers(0, 2, n)
    upper = np.stack([np.cos(angle), np.sin(angle)], axis=1)
    lower = np.stack([1.0 - np.cos(angle), 0.5 - np.sin(angle)], axis=1)
    points = np.where(label[:, None] == 0, upper, lower) + noise * rng.normal(size=(n, 2))
    return points.astype(np.float32), label.astype(np.int32)


rng = np.random.default_rng(0)
points, labels = two_moons(512, 0.15, rng)
fig, ax = plt.subplots(figsize=(5, 3.5))
ax.scatter(points[:, 0], points[:, 1], c=labels, cmap="coolwarm", s=8)
ax.set_title("two moons: 512 points, 2 classes")
plt.show()

# %% [markdown]
# ## 2. A module
#
# A module's `__init__` creates its layers; each layer creates its Variables
# from the random streams in `rngs` (passed by keyword, as everywhere in NNX).
# `__call__` is the forward pass:
#
# $$\text{logits} = W_2\,\text{dropout}(\text{relu}(\text{BatchNorm}(W_1 x + b_1))) + b_2$$
#
# - **BatchNorm** normalizes each feature over the batch to mean 0 and
#   variance 1, then scales and shifts it with learned parameters; it keeps a
#   running average of the batch statistics (`BatchStat` variables) to use at
#   evaluation time, when there may be no batch to average over.
# - **Dropout** zeroes a random fraction `rate` of its inputs during training
#   (and scales the rest by $1/(1-\text{rate})$), so the network cannot rely on any
#   single unit; at evaluation time it does nothing.

# %%
class Classifier(nnx.Module):
    def __init__(self, d_in, d_hidden, n_classes, *, rngs: nnx.Rngs):
        self.linear1 = nnx.Linear(d_in, d_hidden, rngs=rngs)
        self.norm = nnx.BatchNorm(d_hidden, rngs=rngs)
        self.dropout = nnx.Dropout(0.1, rngs=rngs)
        self.linear2 = nnx.Linear(d_hidden, n_classes, rngs=rngs)

    def __call__(self, x):
        x = nnx.relu(self.norm(self.linear1(x)))
        return self.linear2(self.dropout(x))


model = Classifier(2, 64, 2, rngs=nnx.Rngs(0))
print(repr(model).splitlines()[0])  # the summary line: how many variables of each kind

# %% [markdown]
# ## 3. State and filters
#
# `nnx.state(model)` collects every Variable of the module tree into a
# `State`, a pytree; a **filter** (a Variable type, or `...` for everything)
# picks a subset. Every Variable has a path, the attribute names that lead to it.

# %%
for path, variable in nnx.to_flat_state(nnx.state(model)):
    value = variable.get_value()
    print(f"{'.'.join(map(str, path)):28} {type(variable).__name__:10} {value.dtype} {value.shape}")

params = nnx.state(model, nnx.Param)
n_params = sum(x.size for x in jax.tree.leaves(params))
print("\ntrainable numbers (nnx.Param):", n_params)
print("BatchNorm's running mean starts at", nnx.state(model, nnx.BatchStat)["norm"]["mean"].get_value()[:4], "...")

# %% [markdown]
# `nnx.split` takes a module apart into a static **graph definition** (its
# structure) and one `State` per filter; `nnx.merge` puts them back together.
# This is the bridge to plain JAX: a `State` is a pytree that `jax.jit`,
# `jax.grad` or `jax.tree.map` accept, and NNX's own transformations do exactly
# this split and merge for you.

# %%
graphdef, param_state, other_state = nnx.split(model, nnx.Param, ...)
print("Param leaves:", len(jax.tree.leaves(param_state)), "| everything else:", len(jax.tree.leaves(other_state)))
halved = jax.tree.map(lambda x: x / 2, param_state)  # any pytree function applies to a State
copy = nnx.merge(graphdef, halved, other_state)
print("the copy's first kernel entry is half the original's:",
      float(copy.linear1.kernel[0, 0]), "vs", float(model.linear1.kernel[0, 0]))

# %% [markdown]
# ## 4. Training mode and evaluation mode
#
# `model.train()` and `model.eval()` switch every layer that behaves
# differently: in training, BatchNorm normalizes with the current batch's
# statistics and updates its running averages, and Dropout drops; in
# evaluation, BatchNorm uses the running averages and Dropout lets everything
# through. Dropout draws its random mask from the module's own `RngState`, so
# two calls in training mode differ:

# %%
x = jnp.asarray(points[:4])
model.train()
print("train mode, twice:", model(x)[0], model(x)[0])
model.eval()
print("eval mode, twice: ", model(x)[0], model(x)[0])

# %% [markdown]
# ## 5. An optimizer and a jit-compiled train step
#
# `nnx.Optimizer(model, tx, wrt=nnx.Param)` pairs a model with an **optax**
# gradient transformation (here Adam) and keeps its state (Adam's moment
# estimates); `wrt=nnx.Param` says which variables it updates.
#
# A train step in NNX always has the same shape:
#
# 1. an inner `loss_fn(model)` that runs the model and returns the loss
#    (here also the logits, as an *auxiliary* output: `has_aux=True`);
# 2. `nnx.value_and_grad(loss_fn)` gives the loss and the gradients with
#    respect to the model's `nnx.Param`s, as a `State`;
# 3. `optimizer.update(model, grads)` applies them, in place.
#
# `@nnx.jit` compiles all of it, and writes back every change the step made to
# the model: the new parameters, the optimizer's state, BatchNorm's running
# averages and the advanced random streams.
#
# The loss is the cross-entropy of the class labels, which section 7 derives.

# %%
model = Classifier(2, 64, 2, rngs=nnx.Rngs(0))
optimizer = nnx.Optimizer(model, optax.adam(1e-2), wrt=nnx.Param)


@nnx.jit
def classifier_step(model, optimizer, x, y):
    def loss_fn(model):
        logits = model(x)
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), logits

    (loss, logits), grads = nnx.value_and_grad(loss_fn, has_aux=True)(model)
    optimizer.update(model, grads)
    return loss, jnp.mean(jnp.argmax(logits, axis=-1) == y)


model.train()
history = []
for step in range(300):
    batch = rng.integers(0, len(points), 64)  # 64 random examples
    loss, accuracy = classifier_step(model, optimizer, jnp.asarray(points[batch]), jnp.asarray(labels[batch]))
    history.append((float(loss), float(accuracy)))
print(f"after 300 steps: loss {history[-1][0]:.3f}, batch accuracy {history[-1][1]:.2f}")

# %% [markdown]
# In evaluation mode, the trained classifier draws its decision boundary:

# %%
model.eval()
accuracy = float(jnp.mean(jnp.argmax(model(jnp.asarray(points)), axis=-1) == labels))

grid_x, grid_y = np.meshgrid(np.linspace(-1.5, 2.5, 200), np.linspace(-1.0, 1.5, 200))
grid = jnp.asarray(np.stack([grid_x.ravel(), grid_y.ravel()], axis=1), jnp.float32)
p_class_1 = jax.nn.softmax(model(grid), axis=-1)[:, 1].reshape(grid_x.shape)

fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 3.8))
ax1.plot([h[0] for h in history], label="loss")
ax1.plot([h[1] for h in history], label="batch accuracy")
ax1.set(xlabel="step", title="training")
ax1.legend()
ax1.grid(alpha=0.3)
ax2.contourf(grid_x, grid_y, p_class_1, levels=20, cmap="coolwarm", alpha=0.6)
ax2.scatter(points[:, 0], points[:, 1], c=labels, cmap="coolwarm", s=6, edgecolors="k", linewidths=0.2)
ax2.set_title(f"P(class 1), evaluation mode: accuracy {accuracy:.1%}")
plt.show()

# %% [markdown]
# BatchNorm's running statistics moved during training, although no gradient
# touched them: `nnx.jit` carried the layer's updates out of the compiled step.

# %%
print("running mean now:", nnx.state(model, nnx.BatchStat)["norm"]["mean"].get_value()[:4], "...")

# %% [markdown]
# ## What you have learned
#
# - An `nnx.Module` is a Python object whose Variables are its state:
#   `nnx.Param`, `nnx.BatchStat`, `nnx.RngState`.
# - `nnx.state`, filters, `nnx.split` and `nnx.merge` turn a module into pytrees and back.
# - `model.train()` and `model.eval()` switch BatchNorm and Dropout.
# - A train step is `loss_fn(model)`, `nnx.value_and_grad`, `optimizer.update(model, grads)`, under `nnx.jit`.
#
# The transformer's modules in section 6 are NNX modules like this one, and the
# train step you write in section 9 has exactly this shape. Next, section 3
# turns text into the numbers a model reads.
