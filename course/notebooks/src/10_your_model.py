# %% [markdown]
# Your model writes. First the one you trained in section 9, then the
# course's pretrained demo model (section 0 ran it compiled): the `demo`
# configuration of your `TransformerLM` (4 decoder blocks of width 128, about
# 860,000 parameters) trained for 3000 steps on Python's standard library.
# Both are built from *your* modules and sampled by *your* `generate`, so this
# section is also the final test of everything you wrote.
#
# You will use the pretrained one to see what the two knobs of sampling,
# **temperature** and **top-k**, actually do to a model's text, and take a
# look inside it.

# %%
import json

import matplotlib.pyplot as plt
import numpy as np

import jax
import jax.numpy as jnp

from course import tokenizer
from course.checkpoint import DEMO_CHECKPOINT, load_checkpoint
from course.submission import repo_root
from course.notebook_helpers import attention_heatmap, recording_attention, token_labels

# %% [markdown]
# ## 1. Loading the model
#
# `load_checkpoint` builds a `TransformerLM` from the active submission (your
# exercises) and loads the shipped weights into it. It also returns the
# checkpoint's record of how it was trained.

# %% tags=["exercise"]
from exercises.generation.generation import generate, sample_next_token

model, info = load_checkpoint(DEMO_CHECKPOINT)
print(model.config)
print(f"trained {info['step']} steps on {info['train_config']['corpus']}, "
      f"validation loss {info['val_loss']:.3f} nats per byte, in {info['train_seconds'] / 60:.0f} minutes on {info['platform']}")

# %% [markdown]
# **Your own model.** Section 9 saved the model you trained; if you ran its
# training, here is what it writes (after the full run, plausible Python; after
# the quick setting's few steps, noise).

# %% tags=["exercise"]
YOUR_RUN = repo_root() / "runs" / "notebook"
if (YOUR_RUN / "model.npz").is_file():
    yours, record = load_checkpoint(YOUR_RUN)
    written = generate(yours, jnp.asarray(tokenizer.encode("def "))[None], 200, jax.random.key(0), temperature=0.8, top_k=20)
    print(f"your model, trained {record['step']} steps in section 9 (validation loss {record['val_loss']:.3f}):")
    print(tokenizer.decode(np.asarray(written[0])))
else:
    print(f"no model in {YOUR_RUN} yet: run the training of section 9 first. Below, the pretrained weights.")

# %% [markdown]
# The record of its training run, next to the reference points of section 7:

# %%
history = json.loads((DEMO_CHECKPOINT / "metrics.json").read_text())["history"]
fig, ax = plt.subplots(figsize=(8, 3.5))
ax.plot(*zip(*[(s, loss) for s, loss in history["train"]]), label="training loss", alpha=0.7)
ax.plot(*zip(*[(v[0], v[1]) for v in history["val"]]), "o-", label="validation loss")
ax.axhline(np.log(256), color="gray", linestyle=":", label="uniform over bytes")
ax.set(xlabel="step", ylabel="nats per byte", title="how the demo model was trained", ylim=(0, 6))
ax.legend()
ax.grid(alpha=0.3)
plt.show()

# %% [markdown]
# ## 2. The model writes Python
#
# Greedy decoding first: always the most likely next byte.

# %% tags=["exercise"]
NEW_TOKENS = 100  # the model reads at most its last 128 bytes (its context)


def continuations(prompt, temperature, top_k=None, copies=1, seed=0):
    """`copies` continuations of `prompt` by your generate, as text (the prompt included)."""
    tokens = jnp.asarray(np.tile(tokenizer.encode(prompt), (copies, 1)))
    out = generate(model, tokens, NEW_TOKENS, jax.random.key(seed), temperature=temperature, top_k=top_k)
    return [tokenizer.decode(row) for row in np.asarray(out)]


for prompt in ["class Stack:\n    def __init__(self):\n        self.", "def fibonacci(n):\n    if ",
               "import os\nimport sys\n\n", "def read_config(path):\n"]:
    print(continuations(prompt, temperature=0.0)[0])
    print("-" * 60)

# %% [markdown]
# Greedy text is plausible and dull, and it falls into loops: once a line is
# the likeliest thing to write, writing it makes the same line the likeliest
# next thing again (the imports). After the last prompt's newline the
# likeliest byte is a space (indentation), and after a space, in the deeply
# indented standard library, another space, forever. Sampling breaks such loops.
#
# ## 3. The controls
#
# Change these and run the cell again. `TEMPERATURE = 0` is greedy; `TOP_K =
# None` keeps all 256 bytes.

# %% tags=["exercise"]
PROMPT = "class Stack:\n    def push(self, item):\n"
TEMPERATURE = 0.8  # try 0.2, 0.5, 1.0, 1.5
TOP_K = 20  # try 1, 5, None
SEED = 0  # another seed, another sample

for text in continuations(PROMPT, TEMPERATURE, TOP_K, copies=2, seed=SEED):
    print(text)
    print("-" * 60)

# %% [markdown]
# ## 4. What temperature changes
#
# Sampling at temperature $\tau$ draws the next token from
#
# $$p_\tau(w) = \frac{e^{z_w / \tau}}{\sum_v e^{z_v / \tau}}$$
#
# Dividing the logits by $\tau < 1$ stretches their differences, so the
# likeliest tokens take even more of the probability; $\tau \to 0$ is greedy.
# $\tau > 1$ shrinks the differences, flattening the distribution towards
# uniform. Here is the model's distribution over the byte that follows a prompt:

# %% tags=["exercise"]
prompt = "    for i in range("
logits = model(jnp.asarray(tokenizer.encode(prompt))[None])[0, -1]  # the last position predicts the next byte
order = np.argsort(np.asarray(logits))[::-1][:15]
fig, axes = plt.subplots(1, 3, figsize=(15, 3.2), sharey=True)
for ax, tau in zip(axes, (0.5, 1.0, 2.0)):
    probs = np.asarray(jax.nn.softmax(logits / tau))
    ax.bar(range(15), probs[order])
    ax.set_xticks(range(15), token_labels(order))
    entropy = -(probs * np.log(np.maximum(probs, 1e-30))).sum()
    ax.set_title(f"τ = {tau}: entropy {entropy:.2f} nats")
axes[0].set_ylabel("probability")
fig.suptitle(f"the next byte after {prompt!r}", y=1.05)
plt.show()

# %% [markdown]
# Text sampled at a low temperature is what the model finds most likely,
# which for a small model means repetitive; at a high temperature it makes
# mistakes that compound, since every wrong byte becomes context for the next.
# One way to see it: score each sample with the model itself, the mean
# log-probability per byte that the model (at $\tau = 1$) gives the text it wrote.

# %% tags=["exercise"]
prompt = "def fibonacci(n):\n    if "  # 25 bytes + 100 new ones fit the 128-byte context, so one pass scores them
prompt_length = len(tokenizer.encode(prompt))
temperatures = [0.2, 0.5, 0.8, 1.0, 1.5]
scores = []
for tau in temperatures:
    tokens = jnp.asarray(tokenizer.encode(prompt))[None]
    out = generate(model, tokens, NEW_TOKENS, jax.random.key(1), temperature=tau)  # [1, prompt + NEW_TOKENS]
    log_probs = jax.nn.log_softmax(model(out[:, :-1]), axis=-1)  # what the model predicted at each position
    written = jnp.take_along_axis(log_probs, out[:, 1:, None], axis=-1)[0, prompt_length - 1 :, 0]
    scores.append(float(written.mean()))
    if tau in (0.2, 1.5):
        print(f"===== τ = {tau} =====")
        print(tokenizer.decode(out[0]))

fig, ax = plt.subplots(figsize=(6, 3.2))
ax.plot(temperatures, scores, "o-")
ax.set(xlabel="temperature", ylabel="mean log p per byte", title="how likely the model finds its own text")
ax.grid(alpha=0.3)
plt.show()

# %% [markdown]
# ## 5. What top-k changes
#
# Top-k sampling keeps only the $k$ likeliest tokens and renormalizes over
# them: every other token gets probability zero, however high the
# temperature. It cuts off the long tail of unlikely bytes, where most of the
# mistakes of high-temperature sampling come from. $k = 1$ is greedy.
#
# Below, the distribution after `"    for i in range("` at $\tau = 1.5$, all
# bytes and the top 5, measured by drawing 2000 samples with your
# `sample_next_token`:

# %% tags=["exercise"]
logits = model(jnp.asarray(tokenizer.encode("    for i in range("))[None])[0, -1]
keys = jax.random.split(jax.random.key(0), 2000)
fig, axes = plt.subplots(1, 2, figsize=(13, 3.2), sharey=True)
for ax, k in zip(axes, (None, 5)):
    draws = np.asarray(jax.vmap(lambda key: sample_next_token(logits, key, temperature=1.5, top_k=k))(keys))
    frequencies = np.bincount(draws, minlength=tokenizer.VOCAB_SIZE) / len(draws)
    shown = np.argsort(np.asarray(logits))[::-1][:15]
    ax.bar(range(15), frequencies[shown])
    ax.set_xticks(range(15), token_labels(shown))
    outside = 1 - frequencies[shown].sum()
    ax.set_title(f"top_k = {k}: {(frequencies > 0).sum()} different bytes drawn,\n{outside:.0%} of the draws beyond these 15")
axes[0].set_ylabel("frequency in 2000 draws")
fig.suptitle("the next byte after '    for i in range(' at τ = 1.5", y=1.05)
plt.show()

# %% [markdown]
# And in text: the same prompt, seed and high temperature, with and without top-k.

# %% tags=["exercise"]
for k in (None, 10):
    print(f"===== τ = 1.5, top_k = {k} =====")
    print(continuations("def read_config(path):\n", 1.5, k, seed=3)[0])

# %% [markdown]
# ## 6. A look inside
#
# **Attention.** The recorder of section 6 collects the weights of every
# head of every layer as the model reads a line of code. Heads specialize. In
# the first layer they read the previous byte or two: the bright band just
# below the diagonal. In the last layer they pick out a few telling bytes
# further back, such as the opening bracket or the space before a word.

# %% tags=["exercise"]
code = "    if not os.path.isdir(path):"
ids = jnp.asarray(tokenizer.encode(code))[None]
with recording_attention() as calls:
    model(ids)
labels = token_labels(ids[0])
fig, axes = plt.subplots(2, 2, figsize=(14, 12))
for ax, (layer, head) in zip(axes.ravel(), [(0, 0), (0, 3), (3, 1), (3, 2)]):
    attention_heatmap(ax, calls[layer].weights[0, head], labels, f"layer {layer + 1}, head {head + 1}")
fig.tight_layout()
plt.show()

# %% [markdown]
# **Embeddings.** In section 3 the embedding table was random, and two
# different bytes had near-zero cosine similarity. After training, bytes that
# play the same role in Python have similar vectors: the digits form a block,
# opening brackets resemble opening brackets and closing ones closing ones,
# and quotes resemble quotes. Letters stay distinct: in code, which letter it
# is matters.

# %% tags=["exercise"]
chosen = "0123456789abcdefxyzABCDEFXYZ([{)]}+-*/=<>.,:'\" _"
table = model.embed.embedding.get_value()
vectors = table[jnp.asarray(tokenizer.encode(chosen))]
unit = vectors / jnp.linalg.norm(vectors, axis=1, keepdims=True)
fig, ax = plt.subplots(figsize=(10, 9))
image = ax.imshow(unit @ unit.T, cmap="RdBu_r", vmin=-1, vmax=1)
ax.set_xticks(range(len(chosen)), token_labels(tokenizer.encode(chosen)))
ax.set_yticks(range(len(chosen)), token_labels(tokenizer.encode(chosen)))
ax.set_title("cosine similarity of the trained byte embeddings")
fig.colorbar(image, ax=ax, fraction=0.046)
plt.show()

# %% [markdown]
# ## Where to go from here
#
# - `course generate --prompt "def fibonacci(n):"` writes with this model in
#   your terminal, token by token, with a key/value cache
#   (`course/generate.py`): each new token costs one position instead of a
#   pass over the whole context.
# - `course train --config demo` reproduces this model (see the README);
#   `course train --config small --out runs/mine` trains your own, and
#   `course generate --checkpoint runs/mine` samples from it.
# - Bigger steps: subword tokens (BPE) instead of bytes, a longer context,
#   more layers and data, and rotary positional encodings in place of the
#   sinusoidal ones, the choices of today's open language models.
#
# Well done: every piece of the model that wrote the text above is your code.
