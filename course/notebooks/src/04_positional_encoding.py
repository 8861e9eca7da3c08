# %% [markdown]
# "The dog bit the man" and "the man bit the dog" contain the same tokens.
# Only their **order** tells who bit whom, and attention, the transformer's
# way of mixing tokens (section 5), cannot see order at all: it compares
# every token with every other one, as members of a set. Permute the input
# and the output is permuted the same way, nothing else changes.
#
# A transformer therefore adds to each token's embedding a vector that
# depends on its *position*. This section builds the original one, the
# **sinusoidal positional encoding** of "Attention Is All You Need" (section 3.5).

# %%
import matplotlib.pyplot as plt
import numpy as np

import jax
import jax.numpy as jnp
from flax import nnx

from course import tokenizer
from course.notebook_helpers import check_close

# %% [markdown]
# ## 1. Without positions, order is invisible
#
# Below, each token's vector becomes a similarity-weighted average of all
# token vectors, $\text{softmax}(XX^\top)X$: the core of attention, without its
# learned parts. The two sentences are the same bytes in a different order,
# and so are their outputs: the same set of rows, shuffled.

# %%
embed = nnx.Embed(tokenizer.VOCAB_SIZE, 32, rngs=nnx.Rngs(0))


def mix(x):
    return jax.nn.softmax(x @ x.T / np.sqrt(x.shape[-1]), axis=-1) @ x


dog_bites_man = embed(jnp.asarray(tokenizer.encode("dog bites man")))
man_bites_dog = embed(jnp.asarray(tokenizer.encode("man bites dog")))
a, b = mix(dog_bites_man), mix(man_bites_dog)
same_rows = np.allclose(np.sort(np.asarray(a), axis=0), np.sort(np.asarray(b), axis=0), atol=1e-5)
print("the same rows in a different order:", same_rows)
print("the sentences' mean vectors differ by", float(jnp.abs(a.mean(0) - b.mean(0)).max()))

# %% [markdown]
# ## 2. The sinusoidal encoding
#
# For position $p$ and each pair of dimensions $(2i, 2i+1)$, $0 \le i < d/2$:
#
# $$PE_{p,\,2i} = \sin\!\left(\frac{p}{10000^{2i/d}}\right), \qquad PE_{p,\,2i+1} = \cos\!\left(\frac{p}{10000^{2i/d}}\right)$$
#
# Each pair is a point going round a circle as $p$ grows, at the angular
# frequency $\omega_i = 10000^{-2i/d}$. The first pair turns fast (one radian
# per position, a full turn every $2\pi \approx 6.3$ positions); the
# frequencies fall geometrically, and the last pair takes about
# $2\pi \cdot 10000$ positions for a turn. Like the hands of a clock, the fast
# pairs tell nearby positions apart and the slow ones tell far ones apart,
# and every position gets a different vector.
#
# Sines and cosines are **interleaved**: even columns hold sines, odd
# columns cosines.
#
# **Exercise.** Implement `sinusoidal_positional_encoding` in
# `exercises/positional_encoding/positional_encoding.py`, then run the next
# cell. It checks a worked example. At $p = 0$ every angle is 0, so the row
# is $(0, 1, 0, 1, \dots)$. At $p = 1$ with $d = 32$: $PE_{1,0} = \sin 1 \approx 0.8415$,
# $PE_{1,1} = \cos 1 \approx 0.5403$, and the second pair turns at
# $\omega_1 = 10000^{-2/32} = 10^{-1/4} \approx 0.5623$, so
# $PE_{1,2} = \sin 0.5623 \approx 0.5332$ and $PE_{1,3} = \cos 0.5623 \approx 0.8460$.

# %% tags=["exercise"]
from exercises.positional_encoding.positional_encoding import sinusoidal_positional_encoding

pe = sinusoidal_positional_encoding(128, 32)
print("shape", pe.shape, "dtype", pe.dtype)
omega_1 = 10000 ** (-2 / 32)
check_close("PE[0, :6]", pe[0, :6], [0, 1, 0, 1, 0, 1])
check_close("PE[1, :4]", pe[1, :4], [np.sin(1), np.cos(1), np.sin(omega_1), np.cos(omega_1)])

# %% [markdown]
# ## 3. The encoding as a picture
#
# Rows are positions, columns dimensions. On the left the fast pairs
# alternate quickly down the rows; to the right they change ever more slowly.

# %% tags=["exercise"]
fig, ax = plt.subplots(figsize=(9, 5))
image = ax.imshow(pe, cmap="RdBu_r", aspect="auto", vmin=-1, vmax=1)
ax.set(xlabel="dimension", ylabel="position", title="sinusoidal positional encoding, 128 positions x 32 dimensions")
fig.colorbar(image, ax=ax)
plt.show()

# %% tags=["exercise"]
fig, ax = plt.subplots(figsize=(9, 3.2))
for column in (0, 2, 6, 14):
    ax.plot(pe[:, column], label=f"dimension {column}: wavelength {2 * np.pi * 10000 ** (column / 32):.0f}")
ax.set(xlabel="position", ylabel="value", title="a few sine columns: one frequency each")
ax.legend(loc="lower left", fontsize=8)
ax.grid(alpha=0.3)
plt.show()

# %% [markdown]
# ## 4. What the encoding says about distance
#
# The dot product of two positions' encodings is a sum over the pairs,
# $\sin a \sin b + \cos a \cos b = \cos(a - b)$, so it depends on the
# positions only through their **offset**:
#
# $$PE_p \cdot PE_q = \sum_{i} \cos\big((p - q)\,\omega_i\big)$$
#
# It is largest ($d/2 = 16$) for $p = q$ and falls off, not quite
# monotonically, as $|p - q|$ grows: nearby positions look alike.

# %% tags=["exercise"]
similarity = pe @ pe.T  # [128, 128]
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.2))
image = ax1.imshow(similarity, cmap="viridis")
ax1.set(xlabel="position q", ylabel="position p", title="PE_p · PE_q")
fig.colorbar(image, ax=ax1)
for p in (16, 64):
    ax2.plot(similarity[p], label=f"p = {p}")
ax2.set(xlabel="position q", ylabel="PE_p · PE_q", title="similarity of one position to all others")
ax2.legend()
ax2.grid(alpha=0.3)
plt.show()

offsets = np.array([np.diagonal(np.asarray(similarity), offset=k).std() for k in range(1, 64)])
print(f"along each diagonal (fixed offset q - p) the similarity varies by at most {offsets.max():.1e}: it depends on the offset only")

# %% [markdown]
# The offset is also a *linear* function of the encoding: rotating each pair
# by the angle $k\,\omega_i$ moves every position $k$ steps forward,
#
# $$\begin{pmatrix} \sin((p+k)\omega) \\ \cos((p+k)\omega) \end{pmatrix} = \begin{pmatrix} \cos k\omega & \sin k\omega \\ -\sin k\omega & \cos k\omega \end{pmatrix} \begin{pmatrix} \sin p\omega \\ \cos p\omega \end{pmatrix}$$
#
# so one fixed matrix $M_k$ maps $PE_p$ to $PE_{p+k}$ for *every* $p$. The
# authors chose sinusoids hoping the model could use this to attend by relative position.

# %% tags=["exercise"]
k = 5
omegas = 10000 ** (-np.arange(0, 32, 2) / 32)
M = np.zeros((32, 32))
for i, omega in enumerate(omegas):
    c, s = np.cos(k * omega), np.sin(k * omega)
    M[2 * i : 2 * i + 2, 2 * i : 2 * i + 2] = [[c, s], [-s, c]]
shifted = np.asarray(pe[:-k]) @ M.T  # every row p rotated by M
check_close(f"PE[p] rotated by M_{k}, for all p, versus PE[p + {k}]", shifted, pe[k:], atol=1e-3)

# %% [markdown]
# ## 5. In the model
#
# The course's `TransformerLM` (in `course/model.py`) adds your encoding to the
# token embeddings before the first block:
#
# $$x = \sqrt{d_\text{model}}\; E[\text{tokens}] + PE_{[0, T)}$$
#
# (the $\sqrt{d_\text{model}}$ keeps the embeddings from being drowned by the
# encoding, whose entries are of size 1). With positions added, the two
# sentences of the start are no longer a reordering of each other:

# %% tags=["exercise"]
positions = sinusoidal_positional_encoding(13, 32)
a = mix(dog_bites_man * np.sqrt(32) + positions)
b = mix(man_bites_dog * np.sqrt(32) + positions)
same_rows = np.allclose(np.sort(np.asarray(a), axis=0), np.sort(np.asarray(b), axis=0), atol=1e-5)
print("the same rows in a different order:", same_rows)

# %% [markdown]
# ## What you have learned
#
# - Attention sees a set; positions must be added to the input.
# - The sinusoidal encoding gives each pair of dimensions its own frequency,
#   from one radian per position down to almost $2\pi \cdot 10000$ positions per turn.
# - The similarity of two positions depends only on their offset, and a shift
#   by $k$ is the same rotation for every position.
#
# Check your function with `pytest exercises/positional_encoding`. Next, in
# section 5, attention itself.
