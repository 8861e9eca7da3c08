# %% [markdown]
# Attention is how the tokens of a transformer exchange information. Each
# token asks a question, a **query** vector $q$; each token offers a **key**
# $k$, describing what it holds, and a **value** $v$, what it will pass on if
# chosen. A query is compared with every key; the better the match, the larger
# the share of that key's value in the query's answer. It is a dictionary
# lookup made soft and differentiable:
#
# $$\text{Attention}(Q, K, V) = \text{softmax}\!\left(\frac{Q K^\top}{\sqrt{d_k}}\right) V$$
#
# With $T_q$ queries and $T_k$ keys, $Q$ is $[T_q, d_k]$, $K$ is $[T_k, d_k]$ and
# $V$ is $[T_k, d_v]$. The **scores** $QK^\top/\sqrt{d_k}$ are $[T_q, T_k]$, the
# softmax turns each row into **weights** that are positive and sum to one,
# and the output, $[T_q, d_v]$, is each query's weighted average of the values.

# %%
import matplotlib.pyplot as plt
import numpy as np

import jax
import jax.numpy as jnp

from course import tokenizer
from course.notebook_helpers import attention_heatmap, check_close, token_labels

# %% [markdown]
# ## 1. Why divide by $\sqrt{d_k}$
#
# If the entries of $q$ and $k$ are independent with mean 0 and variance 1, their
# dot product $q \cdot k = \sum_{j=1}^{d_k} q_j k_j$ has variance $d_k$: the wider
# the vectors, the larger the scores. Large scores push the softmax towards
# one-hot, where almost all of the weight sits on one key and the gradients
# of the others vanish. Dividing by $\sqrt{d_k}$ brings the variance back to 1,
# whatever the width:

# %%
rng = np.random.default_rng(0)
widths = [4, 16, 64, 256, 1024]
largest = {"q·k": [], "q·k / sqrt(d_k)": []}
for d_k in widths:
    q = rng.normal(size=(1000, 1, d_k))
    k = rng.normal(size=(1000, 16, d_k))  # 1000 queries, each with 16 keys
    scores = (q * k).sum(-1)  # [1000, 16]
    largest["q·k"].append(np.asarray(jax.nn.softmax(scores, axis=-1)).max(-1).mean())
    largest["q·k / sqrt(d_k)"].append(np.asarray(jax.nn.softmax(scores / np.sqrt(d_k), axis=-1)).max(-1).mean())
    print(f"d_k = {d_k:4}: std of q·k = {scores.std():6.2f}, of q·k/sqrt(d_k) = {(scores / np.sqrt(d_k)).std():.2f}")

fig, ax = plt.subplots(figsize=(7, 3.2))
for label, values in largest.items():
    ax.semilogx(widths, values, "o-", label=label, base=2)
ax.axhline(1 / 16, color="gray", linestyle=":", label="uniform over 16 keys")
ax.set(xlabel="d_k", ylabel="mean largest weight", title="softmax over 16 random keys")
ax.legend()
ax.grid(alpha=0.3)
plt.show()

# %% [markdown]
# ## 2. Exercise: scaled dot-product attention
#
# **Exercise.** Implement `scaled_dot_product_attention` in
# `exercises/attention/attention.py`. It returns both the output and the
# weights (we want to look at them), works for any leading batch and head
# dimensions `[..., T, d]`, and takes an optional boolean `mask` (`True`: may
# attend) that gives masked keys a weight of exactly zero. Leave the mask for
# now; part 4 needs it.
#
# The worked example has one query $q = (1, 0)$, two keys $k_1 = (1, 0)$ and
# $k_2 = (0, 1)$, and values $v_1 = (1, 2)$, $v_2 = (3, 4)$. The scores are
# $(1, 0)/\sqrt 2 = (0.7071, 0)$, the weights
# $\big(e^{0.7071}, 1\big)/(e^{0.7071} + 1) = (0.6698, 0.3302)$, and the output
# $0.6698\,v_1 + 0.3302\,v_2 = (1.6604, 2.6604)$.

# %% tags=["exercise"]
from exercises.attention.attention import causal_mask, scaled_dot_product_attention

q = jnp.array([[1.0, 0.0]])
k = jnp.array([[1.0, 0.0], [0.0, 1.0]])
v = jnp.array([[1.0, 2.0], [3.0, 4.0]])
output, weights = scaled_dot_product_attention(q, k, v)
check_close("weights", weights, [[0.6698, 0.3302]])
check_close("output", output, [[1.6604, 2.6604]])

# a batch of 2 sequences and 3 heads: [B, H, T, d]
x = jnp.asarray(rng.normal(size=(2, 3, 5, 8)), jnp.float32)
output, weights = scaled_dot_product_attention(x, x, x)
print("batched:", output.shape, weights.shape, "- every row of weights sums to one:", bool(jnp.allclose(weights.sum(-1), 1.0)))

# %% [markdown]
# ## 3. Attention over real text
#
# In a trained transformer, learned projections make the queries, keys and
# values out of the token vectors (section 6). We can build two kinds of
# attention **heads** by hand, over the bytes of a real sentence, and see what
# their weights look like.
#
# **A content head.** Let the query and the key of a token be its one-hot
# vector (times a strength that sharpens the softmax). Then a query matches
# exactly the keys of the *same* byte: every `t` attends to all the `t`s.

# %% tags=["exercise"]
text = "the cat sat on the mat"
ids = jnp.asarray(tokenizer.encode(text))
labels = token_labels(ids)
one_hot = jax.nn.one_hot(ids, tokenizer.VOCAB_SIZE) * 8.0  # strength 8: a score of 8²/sqrt(256) = 4 for a match
_, content_weights = scaled_dot_product_attention(one_hot, one_hot, one_hot)

fig, ax = plt.subplots(figsize=(7, 6))
attention_heatmap(ax, content_weights, labels, "a content head: each byte looks for copies of itself")
plt.show()

# %% [markdown]
# **A position head.** Section 4 showed that shifting a position is a linear
# map of its encoding, which a learned projection can perform. So let the
# query of position $p$ be the encoding of $p - 1$ and the key of position $q$
# be the encoding of $q$: the best match of each query is the *previous*
# token. Heads like this one, that look a fixed distance back, appear in real
# trained language models.

# %% tags=["exercise"]
from exercises.positional_encoding.positional_encoding import sinusoidal_positional_encoding

T = len(ids)
pe = sinusoidal_positional_encoding(T, 64)
previous = jnp.concatenate([pe[:1], pe[:-1]])  # the encoding of p - 1 (of 0 for the first token)
_, position_weights = scaled_dot_product_attention(5.0 * previous, 5.0 * pe, pe)

fig, ax = plt.subplots(figsize=(7, 6))
attention_heatmap(ax, position_weights, labels, "a position head: each token looks one step back")
plt.show()

# %% [markdown]
# ## 4. Language is causal: the mask
#
# A language model predicts each token from the ones *before* it. If position
# $t$ could attend to position $t + 1$, training would be trivial (copy the
# answer from the next position) and useless (at generation time, the next
# token does not exist yet). The **causal mask** forbids it: query $i$ may
# attend to key $j$ only when $j \le i$,
#
# $$\text{mask}_{ij} = [\,j \le i\,], \qquad \text{weights} = \text{softmax}\big(\text{scores with } -\infty \text{ where the mask is False}\big)$$
#
# A score of $-\infty$ becomes a weight of exactly $e^{-\infty} = 0$, and each
# row of the softmax renormalizes over the keys that are left.
#
# **Exercise.** Implement `causal_mask` in `exercises/attention/attention.py`,
# and make sure your attention honours its `mask` argument. For 4 positions
# the mask is the lower triangle:
#
# ```
# 1 0 0 0
# 1 1 0 0
# 1 1 1 0
# 1 1 1 1
# ```

# %% tags=["exercise"]
mask = causal_mask(4)
print(mask.astype(int), mask.dtype)
check_close("causal_mask(4)", mask, np.tril(np.ones((4, 4))))

# %% [markdown]
# Here is the content head again, without and with the mask. Above the
# diagonal everything is now zero: the second `t` of "the" can see the first
# one, but the first cannot see the second. The first token has only itself to
# attend to, so its row is a single 1.

# %% tags=["exercise"]
_, masked_weights = scaled_dot_product_attention(one_hot, one_hot, one_hot, causal_mask(T))
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(14, 6))
attention_heatmap(ax1, content_weights, labels, "no mask: every token sees the whole sentence")
attention_heatmap(ax2, masked_weights, labels, "causal mask: every token sees only the past")
plt.show()
print("weights above the diagonal:", float(jnp.triu(masked_weights, k=1).sum()))
print("each row still sums to one:", bool(jnp.allclose(masked_weights.sum(-1), 1.0)))

# %% [markdown]
# The mask is what makes the model's output at position $t$ depend only on
# tokens $0..t$. Change the last word, and with the mask nothing before it
# changes; without it, every position does:

# %% tags=["exercise"]
other = jnp.asarray(tokenizer.encode("the cat sat on the hat"))  # the last word differs
other_hot = jax.nn.one_hot(other, tokenizer.VOCAB_SIZE) * 8.0
first = text.index("mat")  # the first position that differs
for name, mask in [("without the mask", None), ("with the causal mask", causal_mask(T))]:
    before, _ = scaled_dot_product_attention(one_hot, one_hot, one_hot, mask)
    after, _ = scaled_dot_product_attention(other_hot, other_hot, other_hot, mask)
    change = float(jnp.abs(before[:first] - after[:first]).max())
    print(f"{name:>22}: the outputs of positions 0..{first - 1} change by up to {change:.4f}")

# %% [markdown]
# ## What you have learned
#
# - Attention is a soft lookup: $\text{softmax}(QK^\top/\sqrt{d_k})\,V$, the
#   $\sqrt{d_k}$ keeping the softmax from saturating as vectors widen.
# - Its weights are a $[T_q, T_k]$ picture of who reads whom; heads can match
#   by content or by position.
# - The causal mask zeroes every weight on the future, so a position's output
#   depends only on the tokens up to it.
#
# Check your functions with `pytest exercises/attention`. Next, section 6
# builds the transformer around them: learned projections, several heads,
# residual connections, normalization and a feed-forward network.
