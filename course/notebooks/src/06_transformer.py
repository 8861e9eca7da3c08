# %% [markdown]
# Sections 4 and 5 gave us positions and attention. A **transformer** wraps
# attention in a few more ideas that make it trainable at depth: learned
# projections and several **heads**, a **feed-forward** network applied to
# each position, **residual connections** and **normalization**. This
# section builds them as Flax NNX modules in `exercises/transformer/transformer.py`,
# and the course's language model, `TransformerLM`, is assembled from them.

# %%
import matplotlib.pyplot as plt
import numpy as np

import jax
import jax.numpy as jnp
from flax import nnx

from course.model import CONFIGS, TransformerLM
from course.notebook_helpers import recording_attention, transformer_diagram

# %% [markdown]
# ## 1. The architecture at a glance
#
# The original transformer (Vaswani et al., 2017) translated text. Its
# **encoder** reads the source sentence with unmasked self-attention, every
# token seeing every other; its **decoder** writes the translation one token at
# a time with *masked* self-attention over what it has written so far, plus
# **cross-attention**, whose queries come from the decoder and whose keys and
# values come from the encoder's output.
#
# A language model such as GPT has no source sentence: it keeps only the
# decoder, without cross-attention. This course's `TransformerLM` is of that
# kind, in the **pre-norm** arrangement of GPT-2, where each sublayer reads a
# normalized copy of the residual stream and adds its result back.

# %%
transformer_diagram()
plt.show()

# %% [markdown]
# ## 2. Multi-head attention
#
# Attention in a transformer does not compare the token vectors directly: it
# compares learned **projections** of them. With $X$ the $[T, d_\text{model}]$ input,
#
# $$Q = XW_Q + b_Q, \quad K = XW_K + b_K, \quad V = XW_V + b_V$$
#
# and $H$ heads attend side by side, each on its own slice of $d_\text{head} = d_\text{model}/H$ features:
#
# $$\text{head}_h = \text{Attention}(Q_h, K_h, V_h), \qquad \text{MultiHead}(X) = \text{Concat}(\text{head}_1, \dots, \text{head}_H)\, W_O + b_O$$
#
# One head's weights can do one thing (find copies, look one step back, as in
# section 5); several heads do several at once at the cost of one. In shapes,
# for a batch of $B$ sequences:
#
# | step | shape |
# | --- | --- |
# | input $x$ | `[B, T, d_model]` |
# | `query(x)`, `key(x)`, `value(x)` | `[B, T, d_model]` each |
# | split the last axis into heads, move heads forward | `[B, H, T, d_head]` |
# | attention weights | `[B, H, T, T]` |
# | attention output | `[B, H, T, d_head]` |
# | move heads back, merge them | `[B, T, d_model]` |
# | `out(...)` | `[B, T, d_model]` |
#
# **Exercise.** Implement `MultiHeadAttention` (its `__init__` and
# `__call__`) in `exercises/transformer/transformer.py`. Its attention is your
# `scaled_dot_product_attention` from section 5, and its `context` argument
# (keys and values from another sequence) makes it cross-attention too.

# %% tags=["exercise"]
from exercises.attention.attention import causal_mask
from exercises.transformer.transformer import DecoderBlock, FeedForward, MultiHeadAttention

B, T, d_model, H = 2, 10, 32, 4
x = jnp.asarray(np.random.default_rng(0).normal(size=(B, T, d_model)), jnp.float32)
mha = MultiHeadAttention(d_model, H, rngs=nnx.Rngs(0))
print("output:", mha(x).shape)
for path, variable in nnx.to_flat_state(nnx.state(mha, nnx.Param)):
    print(f"  {'.'.join(map(str, path)):14} {variable.get_value().shape}")

# %% [markdown]
# The recorder below wraps the attention function your module calls, so we can
# see the shapes inside it: the heads have their own axis, and each head has
# its own $[T, T]$ map of weights.

# %% tags=["exercise"]
with recording_attention() as calls:
    mha(x, mask=causal_mask(T))
call = calls[0]
print("queries, keys, values:", call.query.shape, call.key.shape, call.value.shape, "(B, H, T, d_head)")
print("weights:", call.weights.shape, "(B, H, T_q, T_k)")

fig, axes = plt.subplots(1, H, figsize=(14, 3.2))
for h, ax in enumerate(axes):
    ax.imshow(call.weights[0, h], cmap="viridis", vmin=0)
    ax.set_title(f"head {h + 1}")
    ax.set_xlabel("key")
axes[0].set_ylabel("query")
fig.suptitle("the causal attention weights of 4 heads (untrained: random projections, random patterns)", y=1.05)
plt.show()

# %% [markdown]
# With the causal mask, no position reads the future. Changing the last three
# positions of the input must leave the outputs of the first seven untouched:

# %% tags=["exercise"]
changed = x.at[:, 7:].set(0.0)
before, after = mha(x, mask=causal_mask(T)), mha(changed, mask=causal_mask(T))
print("change at positions 0..6:", float(jnp.abs(before[:, :7] - after[:, :7]).max()))
print("change at positions 7..9:", float(jnp.abs(before[:, 7:] - after[:, 7:]).max()))

# %% [markdown]
# ## 3. Residual connections and layer normalization
#
# A deep stack of layers is hard to train when every layer must *replace* its
# input: the signal, and the gradient on its way back, shrink or grow at each
# layer. A **residual connection** lets each sublayer add a correction to its
# input instead, $x \leftarrow x + f(x)$; the identity path carries the
# gradient unchanged through any depth. The picture below measures the
# gradient that reaches the input of random stacks of tanh layers:

# %%
rng = np.random.default_rng(0)
weights = [jnp.asarray(rng.normal(0, 0.5 / np.sqrt(64), (64, 64)), jnp.float32) for _ in range(48)]
x0 = jnp.asarray(rng.normal(size=64), jnp.float32)


def plain(x, depth):
    for W in weights[:depth]:
        x = jnp.tanh(x @ W)
    return jnp.sum(x)


def residual(x, depth):
    for W in weights[:depth]:
        x = x + jnp.tanh(x @ W)
    return jnp.sum(x)


depths = [1, 2, 4, 8, 16, 32, 48]
fig, ax = plt.subplots(figsize=(7, 3.4))
for f, name in [(plain, "x ← tanh(xW)"), (residual, "x ← x + tanh(xW)")]:
    ax.semilogy(depths, [float(jnp.linalg.norm(jax.grad(f)(x0, d))) for d in depths], "o-", label=name)
ax.set(xlabel="depth (layers)", ylabel="|gradient at the input|", title="the gradient through a deep stack")
ax.legend()
ax.grid(alpha=0.3)
plt.show()

# %% [markdown]
# **Layer normalization** keeps the scale of the residual stream in check. For
# each position's vector separately (not over the batch, unlike BatchNorm in
# section 2) it subtracts the mean and divides by the standard deviation, then
# applies a learned scale $\gamma$ and shift $\beta$:
#
# $$\text{LayerNorm}(x) = \gamma \odot \frac{x - \mu(x)}{\sqrt{\sigma^2(x) + \epsilon}} + \beta$$
#
# It works the same in training and at generation, for a batch of one.

# %%
norm = nnx.LayerNorm(d_model, rngs=nnx.Rngs(0))
raw = 3.0 + 5.0 * x  # positions with a large mean and spread
print("before: mean %.2f, std %.2f" % (raw[0, 0].mean(), raw[0, 0].std()))
print("after:  mean %.2f, std %.2f" % (norm(raw)[0, 0].mean(), norm(raw)[0, 0].std()))

# %% [markdown]
# ## 4. The feed-forward network
#
# Attention moves information *between* positions; the feed-forward network
# then processes each position *on its own*, with the same weights everywhere:
# a layer that widens the vector to $d_\text{ff}$ (usually $4\,d_\text{model}$),
# a nonlinearity, and a layer back down:
#
# $$\text{FFN}(x) = W_\text{down}\,\text{GELU}(W_\text{up} x + b_\text{up}) + b_\text{down}$$
#
# GELU, $x\,\Phi(x)$ with $\Phi$ the standard normal's distribution function, is
# a smooth ReLU that GPT-2 made standard:

# %%
xs = jnp.linspace(-4, 4, 200)
fig, ax = plt.subplots(figsize=(6, 3.2))
ax.plot(xs, jax.nn.relu(xs), label="ReLU")
ax.plot(xs, jax.nn.gelu(xs), label="GELU")
ax.legend()
ax.grid(alpha=0.3)
ax.set_title("GELU is a smooth ReLU")
plt.show()

# %% [markdown]
# **Exercise.** Implement `FeedForward` in `exercises/transformer/transformer.py`.
# The cell checks that it really is position-wise: running it on the whole
# sequence gives the same as running it on each position alone.

# %% tags=["exercise"]
ffn = FeedForward(d_model, 4 * d_model, rngs=nnx.Rngs(0))
whole = ffn(x)
one_by_one = jnp.stack([ffn(x[:, t]) for t in range(T)], axis=1)
print("output:", whole.shape, "| hidden width:", ffn.up.kernel.shape)
print("position-wise:", bool(jnp.allclose(whole, one_by_one, atol=1e-5)))

# %% [markdown]
# ## 5. The decoder block
#
# A pre-norm decoder block applies the two sublayers, each to a normalized
# copy of the residual stream, each added back:
#
# ```
# x = x + attn(ln1(x), mask)    # positions exchange information
# x = x + ffn(ln2(x))           # each position computes on its own
# ```
#
# **Exercise.** Implement `DecoderBlock` in `exercises/transformer/transformer.py`.
# The cell walks one batch through your block's pieces and prints the shape at every step.

# %% tags=["exercise"]
block = DecoderBlock(d_model, H, 4 * d_model, rngs=nnx.Rngs(0))
mask = causal_mask(T)
steps = [("x", x)]
with recording_attention() as calls:
    attended = block.attn(block.ln1(x), mask=mask)
steps += [
    ("ln1(x)", block.ln1(x)),
    ("  attention weights, per head", calls[0].weights),
    ("attn(ln1(x), mask)", attended),
    ("x + attn(...)  (residual)", x + attended),
]
h = x + attended
steps += [
    ("ln2(x)", block.ln2(h)),
    ("  ffn.up(ln2(x))", block.ffn.up(block.ln2(h))),
    ("ffn(ln2(x))", block.ffn(block.ln2(h))),
    ("x + ffn(...)  (residual)", h + block.ffn(block.ln2(h))),
    ("block(x, mask)", block(x, mask)),
]
for name, value in steps:
    print(f"{name:32} {tuple(value.shape)}")
print("the block is the sum of its parts:", bool(jnp.allclose(steps[-1][1], steps[-2][1], atol=1e-5)))

# %% [markdown]
# ## 6. Encoder blocks and cross-attention
#
# The same pieces build the other branch of the family. An **encoder block** is
# a decoder block without the causal mask: every source token sees all the
# others. A **decoder block with cross-attention** (for translation,
# summarization or speech recognition) inserts a third sublayer between the
# two: attention whose queries come from the decoder's stream $x$ and whose
# keys and values come from the encoder's output, the *memory*. The target
# and source lengths may differ, and cross-attention is never causally masked:
# the whole source is known before decoding starts.

# %% tags=["exercise"]
class CrossAttentionDecoderBlock(nnx.Module):
    """A pre-norm decoder block of an encoder-decoder transformer."""

    def __init__(self, d_model, num_heads, d_ff, *, rngs: nnx.Rngs):
        self.ln_self = nnx.LayerNorm(d_model, rngs=rngs)
        self.self_attention = MultiHeadAttention(d_model, num_heads, rngs=rngs)
        self.ln_cross = nnx.LayerNorm(d_model, rngs=rngs)
        self.cross_attention = MultiHeadAttention(d_model, num_heads, rngs=rngs)
        self.ln_ffn = nnx.LayerNorm(d_model, rngs=rngs)
        self.feed_forward = FeedForward(d_model, d_ff, rngs=rngs)

    def __call__(self, x, memory, mask):
        x = x + self.self_attention(self.ln_self(x), mask=mask)  # [B, T, d], causal
        x = x + self.cross_attention(self.ln_cross(x), context=memory)  # queries from x, keys and values from memory
        return x + self.feed_forward(self.ln_ffn(x))


S = 7  # source length
source = jnp.asarray(np.random.default_rng(1).normal(size=(B, S, d_model)), jnp.float32)
encoder = DecoderBlock(d_model, H, 4 * d_model, rngs=nnx.Rngs(1))
memory = encoder(source, mask=None)  # no mask: an encoder block
decoder = CrossAttentionDecoderBlock(d_model, H, 4 * d_model, rngs=nnx.Rngs(2))
with recording_attention() as calls:
    out = decoder(x, memory, causal_mask(T))
print("memory (encoder output):", memory.shape, "| decoder output:", out.shape)
print("self-attention weights: ", calls[0].weights.shape, "(B, H, T, T)")
print("cross-attention weights:", calls[1].weights.shape, "(B, H, T, S): each target position reads the whole source")

# %% [markdown]
# ## 7. The whole language model
#
# `TransformerLM` (in `course/model.py`, a page of code) stacks your blocks:
#
# ```
# tokens [B, T] -> embed * sqrt(d) + PE[:T] -> N x DecoderBlock(causal mask) -> LayerNorm -> Linear -> logits [B, T, V]
# ```
#
# Building it runs your `sinusoidal_positional_encoding`, `causal_mask` and
# `DecoderBlock`. Here is the `small` configuration and where its parameters
# are: per block about $4d^2$ in attention and $2 d\, d_\text{ff} = 8d^2$ in the
# feed-forward network, so $12 d^2$ per layer, plus the embedding and output tables.

# %% tags=["exercise"]
config = CONFIGS["small"]
print(config)
model = TransformerLM(config, rngs=nnx.Rngs(0))
counts = {}
for path, variable in nnx.to_flat_state(nnx.state(model, nnx.Param)):
    part = ".".join(str(p) for p in path[:3] if not str(p).isdigit()) if path[0] == "blocks" else str(path[0])
    counts[part] = counts.get(part, 0) + variable.get_value().size
for part, count in counts.items():
    print(f"  {part:24} {count:9,}")
total = sum(counts.values())
print(f"  {'total':24} {total:9,}   (12 d² N = {12 * config.d_model**2 * config.num_layers:,})")

tokens = jnp.asarray(np.random.default_rng(2).integers(0, config.vocab_size, (2, 16)))
logits = model(tokens)
print("tokens", tokens.shape, "-> logits", logits.shape)
later_changed = model(tokens.at[:, 10:].set(0))
print("causal: logits before position 10 unchanged:", bool(jnp.allclose(logits[:, :10], later_changed[:, :10], atol=1e-4)))

# %% [markdown]
# ## What you have learned
#
# - Multi-head attention projects the input to queries, keys and values and
#   runs $H$ attentions of width $d/H$ side by side.
# - Residual connections keep gradients alive through depth; LayerNorm keeps
#   each position's vector at a steady scale.
# - The feed-forward network works on each position alone.
# - Encoders attend without a mask; decoders of translation models add
#   cross-attention to the encoder's output; a language model is a stack of
#   causal decoder blocks.
#
# Check your modules with `pytest exercises/transformer`. The model can now
# compute logits; section 7 says what makes them good.
