# %% [markdown]
# The language model of the previous sections reads one sequence and continues
# it. Translation, summarization or speech recognition map one sequence to
# *another*: the original transformer ("Attention Is All You Need") is an
# **encoder-decoder**. The encoder reads the whole source, every position
# seeing every other; the decoder writes the target one token at a time,
# looking at what it has written (causal self-attention) and, through
# **cross-attention**, at the encoder's output. This section builds it from
# your own attention, feed-forward network, positional encoding and loss, and
# trains it on a task that cannot be solved without cross-attention:
# reversing a string of digits.

# %%
import matplotlib.pyplot as plt
import numpy as np

import jax
import jax.numpy as jnp
from flax import nnx

from course import seq2seq
from course.notebook_helpers import LiveLossPlot, attention_heatmap, quick, recording_attention

QUICK = quick()  # the small setting: fewer steps, the same code

# %% [markdown]
# ## 1. The task: reverse a string of digits
#
# A source is 1 to 6 digits, padded with `PAD` to a fixed width; its target is
# `BOS`, the digits in reverse order, `EOS`, then padding. Nothing is
# downloaded: `course/seq2seq.py` draws every example from a numpy generator.
# Target token $t$ is source digit $n - 1 - t$ for a source of $n$ digits:
# where to look depends on each example's length, and only the source says it.

# %%
NAMES = {seq2seq.PAD: "·", seq2seq.BOS: "BOS", seq2seq.EOS: "EOS"}


def show(tokens) -> str:
    return " ".join(NAMES.get(int(t), str(int(t) - seq2seq.FIRST_DIGIT)) for t in tokens)


source, target = seq2seq.reversal_batch(np.random.default_rng(0), 4, max_len=6)
for s, t in zip(source, target):
    print(f"{show(s):<14} ->  {show(t)}")

# %% [markdown]
# ## 2. The blocks
#
# The **encoder block** is your pre-norm decoder block without the causal
# mask: every position attends to every *real* source position. Padding must
# not be attended to, so the attention gets a **source mask**, `source !=
# PAD`, of shape `[B, S]`, reshaped to `[B, 1, 1, S]`: it hides keys, for every
# head and every query alike.
#
# The **decoder block** has three sublayers: causal self-attention over the
# target so far, cross-attention whose queries come from the decoder and whose
# keys and values come from the encoder's output (your `MultiHeadAttention`'s
# `context=` argument, with the same source mask), and the feed-forward
# network; each a residual update.
#
# **Exercise.** Implement `EncoderBlock` and `CrossAttentionDecoderBlock` in
# `exercises/encoder_decoder/encoder_decoder.py`. The cell checks that padding
# changes nothing in the encoder and that the decoder ignores the future.

# %% tags=["exercise"]
from exercises.encoder_decoder.encoder_decoder import CrossAttentionDecoderBlock, EncoderBlock

encoder_block = EncoderBlock(16, 2, 32, rngs=nnx.Rngs(0))
decoder_block = CrossAttentionDecoderBlock(16, 2, 32, rngs=nnx.Rngs(1))
x = jax.random.normal(jax.random.key(0), (1, 5, 16))
mask = jnp.array([[True, True, True, False, False]])  # 3 real positions, 2 of padding
changed = x.at[:, 3:].set(jax.random.normal(jax.random.key(1), (1, 2, 16)))
print("encoder: padding changes the real positions by",
      float(jnp.abs(encoder_block(x, mask)[:, :3] - encoder_block(changed, mask)[:, :3]).max()))
memory = encoder_block(x, mask)
y = jax.random.normal(jax.random.key(2), (1, 4, 16))
later = y.at[:, 2:].add(5.0 * jnp.arange(16.0) / 16)
print("decoder: the future changes the past by",
      float(jnp.abs(decoder_block(y, memory, mask)[:, :2] - decoder_block(later, memory, mask)[:, :2]).max()))

# %% [markdown]
# ## 3. The model and its loss
#
# `EncoderDecoder` embeds both sides (`embed(tokens) * sqrt(d_model)` plus your
# sinusoidal positional encoding), runs the encoder once and normalizes its
# output, then runs the decoder over the target and projects to logits. It is
# trained with **teacher forcing**: the decoder reads the true target
# `target[:, :-1]` and is scored against `target[:, 1:]`, shifted by one as in
# the next-token loss, with padding left out of the mean.
#
# **Exercise.** Implement `EncoderDecoder` (its `embed`, `encode`, `decode`,
# `__call__` and `loss`) and `greedy_decode`, which runs the encoder once and
# then the decoder once per written token. Then train it.

# %% tags=["exercise"]
from exercises.encoder_decoder.encoder_decoder import EncoderDecoder, greedy_decode

MAX_LEN = 6
model = EncoderDecoder(seq2seq.VOCAB_SIZE, d_model=32, num_heads=2, d_ff=64, num_layers=1, rngs=nnx.Rngs(0))
plot = LiveLossPlot("reversing digits", every=20, reference=("uniform guess", float(np.log(seq2seq.VOCAB_SIZE))))
losses = seq2seq.train(model, np.random.default_rng(1), steps=40 if QUICK else 400, batch=64, max_len=MAX_LEN,
                       on_step=plot.add)
plot.draw()

# %% [markdown]
# ## 4. Greedy decoding
#
# The trained model writes its answers one token at a time, each the most
# likely next one. **Exact match** counts the answers that are right in every
# token up to `EOS`; guessing would get about one answer in a million right.

# %%
source, target = seq2seq.reversal_batch(np.random.default_rng(2), 512, MAX_LEN)
written = np.asarray(greedy_decode(model, jnp.asarray(source), target.shape[1] - 1, seq2seq.BOS))
print(f"exact match: {seq2seq.exact_match(written, target):.1%} of {len(source)} new examples")
for s, w in zip(source[:5], written[:5]):
    answer = w[: list(w).index(seq2seq.EOS) + 1] if seq2seq.EOS in w else w  # what follows EOS is not read
    print(f"{show(s):<14} ->  {show(answer)}")

# %% [markdown]
# ## 5. What the cross-attention learned
#
# Each target position should look at one source position: the digit it
# copies. The weights of the cross-attention (the third attention call: the
# encoder's self-attention, the decoder's, then the cross-attention) form an
# anti-diagonal over the real source positions, and none lands on padding.

# %%
example_source, example_target = jnp.asarray(source[:1]), jnp.asarray(target[:1, :-1])
with recording_attention() as calls:
    model(example_source, example_target)
cross = calls[2].weights[0]  # [H, T, S]
fig, axes = plt.subplots(1, cross.shape[0], figsize=(4 * cross.shape[0], 3.5))
for head, ax in enumerate(np.atleast_1d(axes)):
    attention_heatmap(ax, cross[head], [show([t]) for t in source[0]], f"cross-attention, head {head}")
    ax.set_yticks(range(example_target.shape[1]), [show([t]) for t in target[0, :-1]])
plt.show()
