# %% [markdown]
# Everything is in place: your positional encoding, attention, decoder blocks
# and loss make the course's `TransformerLM`. This section writes the last
# pieces, the **train step** and **generation**, and trains a language model
# from scratch on Python's standard library, then asks it to write code.
#
# **Time.** The full training run below (1500 steps) takes about 5 minutes on
# a 2-core CPU and well under a minute on a Colab GPU. The course's tests run this notebook
# in its *quick setting* (`COURSE_QUICK=1`), which runs the same code for a
# handful of steps.

# %%
import time

import numpy as np
from tqdm.auto import tqdm

import jax
import jax.numpy as jnp
from flax import nnx

from course import data, sharding, tokenizer
from course.model import CONFIGS, TransformerLM
from course.notebook_helpers import LiveLossPlot, check_close, quick
from course.train import TrainConfig, optimizer_for

QUICK = quick()  # the small setting: fewer steps, the same code
print("JAX computes on:", jax.devices()[0].platform, "| quick setting:", QUICK)

# %% [markdown]
# ## 1. The train step
#
# Section 2 trained a classifier with a step of a fixed shape: an inner
# `loss_fn(model)`, `nnx.value_and_grad` for the loss and the gradients, and
# `optimizer.update(model, grads)`, all under `nnx.jit`. A language model's
# step has the same shape; only the loss changes. For a batch of token
# sequences it is your `next_token_loss` (section 7) of the logits that the
# model computes from the same tokens.
#
# **Exercise.** Implement `train_step` in `exercises/training/training.py`.
# It returns the loss *before* the update. The cell takes ten steps on one
# small batch: a working step drives that batch's loss down.

# %% tags=["exercise"]
from exercises.generation.generation import generate, sample_next_token
from exercises.loss.loss import next_token_loss
from exercises.training.training import shard_batch, train_step

tiny = CONFIGS["tiny"]  # vocabulary 16, context 32, 2 layers of width 32
model = TransformerLM(tiny, rngs=nnx.Rngs(0))
optimizer = nnx.Optimizer(model, optimizer_for(TrainConfig(model="tiny", learning_rate=3e-3, warmup_steps=0)), wrt=nnx.Param)
batch = jnp.asarray(data.synthetic_batch("reverse", np.random.default_rng(0), 8, 8, tiny.vocab_size))
losses = [float(train_step(model, optimizer, batch)) for _ in range(10)]
print("loss on the same batch, step by step:", np.round(losses, 3))
if not losses[-1] < losses[0]:
    raise AssertionError("train_step: ten steps on one batch did not lower its loss; does it apply optimizer.update?")

# %% [markdown]
# The optimizer is the course's recipe (`course.train.optimizer_for`), the
# usual one for transformers: **AdamW** (Adam with weight decay), a learning
# rate that warms up linearly and then decays along a cosine, and gradients
# clipped to norm 1 so that one bad batch cannot throw the model off.

# %% [markdown]
# ## 2. A sanity check in seconds: learning to reverse
#
# Before spending minutes on real text, check that the model can learn at
# all, on a task it masters in seconds. Each sequence is 8 random symbols,
# a separator, and the same symbols reversed; after the separator every token
# is predictable, so the accuracy there measures learning directly.

# %% tags=["exercise"]
example = data.synthetic_batch("reverse", np.random.default_rng(1), 1, 8, tiny.vocab_size)[0]
print("a sequence:", example[:8], "| separator", example[8], "|", example[9:])

model = TransformerLM(tiny, rngs=nnx.Rngs(0))
optimizer = nnx.Optimizer(model, optimizer_for(TrainConfig(model="tiny", steps=300, learning_rate=3e-3, warmup_steps=30)), wrt=nnx.Param)
rng = np.random.default_rng(0)
start = time.perf_counter()
for step in range(300):
    train_step(model, optimizer, jnp.asarray(data.synthetic_batch("reverse", rng, 32, 8, tiny.vocab_size)))
test = data.synthetic_batch("reverse", np.random.default_rng(2), 256, 8, tiny.vocab_size)
accuracy = data.synthetic_accuracy(model(jnp.asarray(test)), test)
print(f"300 steps in {time.perf_counter() - start:.1f} s: accuracy after the separator {accuracy:.1%} "
      f"(guessing: {1 / (tiny.vocab_size - data.FIRST_SYMBOL):.1%})")

# %% [markdown]
# ## 3. Training on Python's source code
#
# Now the real thing: the `small` model (2 layers, width 128, about 460,000
# parameters) on the standard library corpus of section 3, reading windows of
# 128 bytes. Every few steps the loop reads the loss back from the device (which
# waits for it: reading it every step would slow training down) and updates a
# progress bar and a live loss curve; every `EVAL_EVERY` steps it measures the
# loss on held-out files, the **validation loss**. The dashed line is the
# unigram entropy of section 7: below it, the model is using context.

# %%
STEPS = 30 if QUICK else 1500
BATCH_SIZE, SEQ_LEN = 32, 128
LOG_EVERY = 5 if QUICK else 10
EVAL_EVERY = 15 if QUICK else 250

corpus = data.stdlib_corpus()
counts = np.bincount(corpus.train, minlength=tokenizer.VOCAB_SIZE)
frequencies = counts[counts > 0] / counts.sum()
unigram_entropy = float(-(frequencies * np.log(frequencies)).sum())
val_batches = [jnp.asarray(data.sample_batch(corpus.val, np.random.default_rng(100 + i), BATCH_SIZE, SEQ_LEN)) for i in range(4)]


@nnx.jit
def batch_loss(model, batch):
    return next_token_loss(model(batch), batch)  # the loss alone, no update: for validation


def validation_loss(model):
    return float(np.mean([batch_loss(model, b) for b in val_batches]))


config = CONFIGS["small"]
train_config = TrainConfig(steps=STEPS, batch_size=BATCH_SIZE, learning_rate=3e-3, warmup_steps=min(100, STEPS // 10))
print(config)
print(train_config)

# %% tags=["exercise"]
model = TransformerLM(config, rngs=nnx.Rngs(0))
optimizer = nnx.Optimizer(model, optimizer_for(train_config), wrt=nnx.Param)
rng = np.random.default_rng(0)

plot = LiveLossPlot("TransformerLM on the standard library", every=5, reference=("unigram entropy", unigram_entropy))
plot.add(0, val_loss=validation_loss(model))
progress = tqdm(range(1, STEPS + 1), desc="training")
start = time.perf_counter()
for step in progress:
    loss = train_step(model, optimizer, jnp.asarray(data.sample_batch(corpus.train, rng, BATCH_SIZE, SEQ_LEN)))
    if step % LOG_EVERY == 0:
        val_loss = validation_loss(model) if step % EVAL_EVERY == 0 or step == STEPS else None
        plot.add(step, float(loss), val_loss)
        progress.set_postfix(loss=f"{float(loss):.3f}", tokens_per_s=f"{step * BATCH_SIZE * SEQ_LEN / (time.perf_counter() - start):,.0f}")
plot.draw()
print(f"{STEPS} steps in {time.perf_counter() - start:.0f} s; validation loss {plot.val[-1][1]:.3f} "
      f"(uniform {np.log(256):.3f}, unigram {unigram_entropy:.3f})")

# %% [markdown]
# The trained weights are saved for section 10, where your model writes again
# (`runs/` of the repository, which git ignores; `course generate --checkpoint
# runs/notebook` samples from it in a terminal).

# %% tags=["exercise"]
from course import checkpoint
from course.submission import repo_root

saved = checkpoint.save(repo_root() / "runs" / "notebook" / checkpoint.MODEL_FILE, model,
                        {"step": STEPS, "val_loss": plot.val[-1][1]})
print(f"saved {saved}")

# %% [markdown]
# ## 4. Generation
#
# A trained model gives, at the last position, logits for the next token.
# **Sampling** turns them into a choice:
#
# - **greedy** (`temperature = 0`): always the most likely token;
# - **temperature** $\tau > 0$: draw from $\text{softmax}(z / \tau)$. Below 1
#   the distribution sharpens towards greedy; above 1 it flattens towards uniform;
# - **top-k**: before drawing, keep only the $k$ most likely tokens.
#
# **Exercise.** Implement `sample_next_token` in
# `exercises/generation/generation.py`. For logits $(2, 1, 0.1)$ the greedy
# choice is token 0, top-1 is always token 0 too, and sampling at
# temperature 1 should pick the tokens about as often as their softmax
# probabilities $(0.659, 0.242, 0.099)$ from section 7.

# %% tags=["exercise"]
logits = jnp.array([2.0, 1.0, 0.1])
keys = jax.random.split(jax.random.key(0), 4000)
print("greedy:", sample_next_token(logits, keys[0], temperature=0.0))
top_1 = jax.vmap(lambda k: sample_next_token(logits, k, temperature=1.0, top_k=1))(keys)
print("top-1 picks token 0 every time:", bool((top_1 == 0).all()))
draws = jax.vmap(lambda k: sample_next_token(logits, k, temperature=1.0))(keys)
check_close("sampled frequencies", np.bincount(np.asarray(draws), minlength=3) / len(keys), [0.659, 0.242, 0.099], atol=0.03)

# %% [markdown]
# **Generation** repeats it: append the chosen token to the input and predict
# again. `generate` keeps the tokens in one fixed-size buffer and runs its
# loop with `jax.lax.fori_loop`, so it compiles once however many tokens it
# writes (a Python loop over a growing array would compile once per length).
#
# **Exercise.** Implement `generate` in `exercises/generation/generation.py`,
# then read what your model writes. The three continuations of each prompt
# are sampled together, as a batch of three.

# %% tags=["exercise"]
NEW_TOKENS = 200


def complete(model, prompt, temperature, top_k=None, copies=3, seed=0):
    """`copies` continuations of one prompt, as text."""
    tokens = jnp.asarray(np.tile(tokenizer.encode(prompt), (copies, 1)))
    out = generate(model, tokens, NEW_TOKENS, jax.random.key(seed), temperature=temperature, top_k=top_k)
    return [tokenizer.decode(row) for row in np.asarray(out)]


print("=" * 30, "greedy", "=" * 30)
print(complete(model, "def ", temperature=0.0, copies=1)[0])
for text in complete(model, "    def __init__(self", temperature=0.8, top_k=20):
    print("=" * 22, "temperature 0.8, top-20", "=" * 22)
    print(text)

# %% [markdown]
# After the full run the model has learned indentation, keywords, `self.`,
# matching brackets and plausible names, from a loss of about 5.5 down to
# about 1.2 nats per byte. It has no idea what the code means. Longer
# training and a bigger model help a lot: section 10 loads one the project
# trained for longer (`course train --config demo` reproduces it).

# %% [markdown]
# ## 5. Data parallelism: the same step on many devices
#
# With several devices, the simplest way to train faster is **data
# parallelism**: every device holds a copy of the model and works on its own
# slice of the batch; the gradients are averaged across devices before the
# update, so all copies stay identical. In JAX this needs no change to the
# train step at all (section 1): put the model on every device of a `data`
# mesh axis (`course.sharding.replicate`), split the batch along that axis,
# and XLA's partitioner compiles the same `train_step` into per-device
# programs that all-reduce the gradients.
#
# **Exercise.** Implement `shard_batch` in `exercises/training/training.py`:
# place a batch `[B, ...]` so that each of the $n$ devices of the mesh's
# `data` axis holds $B/n$ consecutive rows.

# %% tags=["exercise"]
mesh = sharding.data_mesh()  # every local device: the 8 virtual CPUs here, your GPUs elsewhere
n = mesh.shape["data"]
tokens = jnp.asarray(data.synthetic_batch("reverse", np.random.default_rng(3), 4 * n, 8, tiny.vocab_size))
sharded = shard_batch(tokens, mesh)
print(f"{n} devices; a batch of {tokens.shape} becomes per-device blocks of",
      sorted({shard.data.shape for shard in sharded.addressable_shards}))
jax.debug.visualize_array_sharding(sharded)

# %% tags=["exercise"]
DP_STEPS = 20 if QUICK else 200
model = TransformerLM(tiny, rngs=nnx.Rngs(0))
optimizer = nnx.Optimizer(model, optimizer_for(TrainConfig(model="tiny", steps=DP_STEPS, learning_rate=3e-3, warmup_steps=10)), wrt=nnx.Param)
sharding.replicate(mesh, model, optimizer)  # a full copy on every device
rng = np.random.default_rng(0)
losses = []
for step in range(DP_STEPS):
    batch = shard_batch(jnp.asarray(data.synthetic_batch("reverse", rng, 32, 8, tiny.vocab_size)), mesh)
    losses.append(float(train_step(model, optimizer, batch)))
print(f"data-parallel over {n} devices: loss {losses[0]:.3f} -> {losses[-1]:.3f} in {DP_STEPS} steps")
print("the model's weights are on", len(model.head.kernel.get_value().sharding.device_set), "devices")

# %% [markdown]
# On one machine's virtual CPU devices this is slower, not faster (they share
# the same cores); on 8 real GPUs the same code trains on 8 times the data per
# step. `course train` (see the README) runs this loop with checkpoints and
# resumption, data-parallel over every local device.
#
# ## What you have learned
#
# - A train step: `nnx.value_and_grad` of your loss, `optimizer.update`, `nnx.jit`.
# - Check learning on a task a model masters in seconds before a long run.
# - A real run: a progress bar, a loss curve, a validation loss below the unigram entropy.
# - Sampling (greedy, temperature, top-k) and generation in one compiled loop.
# - Data parallelism is a placement: a sharded batch and a replicated model.
#
# Check your functions with `pytest exercises/training` and
# `pytest exercises/generation`. Next, section 10: a bigger pretrained model,
# and what temperature and top-k change.
