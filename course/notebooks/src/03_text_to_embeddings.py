# %% [markdown]
# A neural network computes with numbers, and a language model reads text. In
# between are three steps, the same in every language model:
#
# 1. **tokenization** cuts the text into pieces, *tokens*;
# 2. **lookup** replaces each token by its *id*, its index in a vocabulary;
# 3. **embedding** replaces each id by a learned vector, a row of an embedding table.
#
# $$\text{"def f"} \;\to\; [\text{d}, \text{e}, \text{f}, \text{␣}, \text{f}] \;\to\; [100, 101, 102, 32, 102] \;\to\; \text{5 vectors of } d_\text{model} \text{ numbers}$$

# %%
from collections import Counter

import matplotlib.pyplot as plt
import numpy as np

import jax
import jax.numpy as jnp
from flax import nnx

from course import data, tokenizer
from course.notebook_helpers import token_labels

# %% [markdown]
# ## 1. Words and a vocabulary
#
# The most obvious tokens are words. The vocabulary is every word seen in a
# training text, and a word's id is its place in that list:

# %%
training_text = "the cat sat on the mat . the dog sat on the log ."
vocabulary = sorted(set(training_text.split())) + ["<unk>"]  # <unk> stands for any unseen word
word_to_id = {word: i for i, word in enumerate(vocabulary)}
print(word_to_id)


def encode_words(text):
    return [word_to_id.get(word, word_to_id["<unk>"]) for word in text.split()]


print(encode_words("the dog sat on the mat ."))
print(encode_words("the cow jumped over the moon ."), "<- every unseen word is <unk>")

# %% [markdown]
# Two problems show at once. A word the vocabulary lacks becomes `<unk>` and is
# lost, and real text has a great many words (names, numbers, typos,
# `snake_case_identifiers`): a vocabulary that covers them is huge, and most of
# its entries are rare, so the model sees them too seldom to learn them.

# %% [markdown]
# ## 2. Bytes: a vocabulary of 256, and nothing is unknown
#
# At the other extreme, every text is a sequence of bytes in its UTF-8
# encoding. The course's tokenizer (`course/tokenizer.py`) uses each byte as a
# token: the vocabulary is the 256 byte values, no vocabulary file is needed,
# and *any* text encodes and decodes exactly. An ASCII character is one byte;
# other characters take two to four.

# %%
text = "def naïve(x): return x ≥ 0  # 👍"
ids = tokenizer.encode(text)
print(f"{len(text)} characters -> {len(ids)} byte tokens")
print(ids)
print("decode(encode(text)) == text:", tokenizer.decode(ids) == text)

for char in ["d", "ï", "≥", "👍"]:
    print(f"{char!r}: {tokenizer.encode(char).tolist()}")

# %% [markdown]
# The price is length: a byte-level model reads (and must attend over) more
# tokens for the same text. Production models use **subword** tokens found by
# *byte-pair encoding* (BPE): start from bytes and repeatedly add the most
# frequent pair of adjacent tokens to the vocabulary as a new token. Here are
# the first merges BPE would make on a piece of Python:

# %%
textwrap_py = next(path for path in data.stdlib_files() if path.name == "textwrap.py")
sample = textwrap_py.read_text(encoding="utf-8")[:20000]
tokens = [bytes([b]) for b in sample.encode("utf-8")]
start = len(tokens)
for merge in range(8):
    pairs = Counter(zip(tokens, tokens[1:]))
    (left, right), count = pairs.most_common(1)[0]
    merged, i = [], 0
    while i < len(tokens):  # replace every occurrence of the pair, left to right
        if i + 1 < len(tokens) and tokens[i] == left and tokens[i + 1] == right:
            merged.append(left + right)
            i += 2
        else:
            merged.append(tokens[i])
            i += 1
    tokens = merged
    print(f"merge {merge + 1}: {left + right!r:12} seen {count:5} times -> {len(tokens)} tokens")
print(f"{start} bytes became {len(tokens)} tokens ({start / len(tokens):.2f} bytes per token)")

# %% [markdown]
# This course stays with bytes: the tokenizer is four lines, and a small model
# learns byte-level text well enough to write plausible Python (section 10).

# %% [markdown]
# ## 3. The course's corpus: Python's standard library
#
# The language model of section 9 learns from the `.py` files of Python's own
# standard library, which every Python installation has: no download.
# `course.data.stdlib_corpus()` encodes them with the byte tokenizer and holds
# every tenth file out for validation.

# %%
corpus = data.stdlib_corpus()
print(f"training: {len(corpus.train):,} tokens, validation: {len(corpus.val):,} tokens")
print("-" * 60)
print(tokenizer.decode(corpus.train[200_000:200_400]))

# %% [markdown]
# Not all bytes are equally common. The space, the newline and the lowercase
# letters dominate; a model that knew only these frequencies would already
# guess better than chance (section 7 measures how much better).

# %%
counts = np.bincount(corpus.train, minlength=tokenizer.VOCAB_SIZE)
top = np.argsort(counts)[::-1][:40]
fig, ax = plt.subplots(figsize=(11, 3.2))
ax.bar(range(len(top)), counts[top] / counts.sum())
ax.set_xticks(range(len(top)), token_labels(top))
ax.set(ylabel="frequency", title="the 40 most common bytes of the standard library (␣ space, ⏎ newline)")
plt.show()
print(f"{(counts > 0).sum()} of the 256 byte values occur at all")

# %% [markdown]
# A model trains on **batches**: windows of `seq_len` consecutive tokens at
# random places, stacked into an `int32[batch, seq_len]` array.
# `course.data.sample_batch` draws them with a seeded NumPy generator:

# %%
batch = data.sample_batch(corpus.train, np.random.default_rng(0), batch_size=4, seq_len=48)
print(batch.shape, batch.dtype)
for row in batch:
    print(repr(tokenizer.decode(row)))

# %% [markdown]
# ## 4. Embeddings
#
# An id is a name, not a quantity: byte 101 (`e`) is not "one more" than byte
# 100 (`d`). The model gives every token its own vector instead, a row of an
# **embedding table** $E \in \mathbb{R}^{V \times d}$. Looking up id $i$ is the
# same as multiplying its one-hot vector by $E$:
#
# $$\text{embed}(i) = E[i] = \text{onehot}(i)\, E$$
#
# but the lookup skips the multiplication by zeros. The table is a parameter:
# training moves the vectors so that tokens used alike end up alike.

# %%
embed = nnx.Embed(num_embeddings=tokenizer.VOCAB_SIZE, features=16, rngs=nnx.Rngs(0))
ids = jnp.asarray(tokenizer.encode("hello, world"))
vectors = embed(ids)  # [T] -> [T, d]
print("ids", ids.shape, "-> vectors", vectors.shape)

one_hot = jax.nn.one_hot(ids, tokenizer.VOCAB_SIZE)  # [T, V]
print("one-hot @ E equals the lookup:", bool(jnp.allclose(one_hot @ embed.embedding.get_value(), vectors)))

batch_vectors = embed(jnp.asarray(batch))  # works for any leading shape: [B, T] -> [B, T, d]
print("a batch of ids", batch.shape, "-> a batch of vectors", batch_vectors.shape)

# %% [markdown]
# Each row below is one token's vector. The two `l`s and the two `o`s have the
# same row: before the next sections, a token's vector knows nothing about its
# position or its neighbours. Positional encodings (section 4) add the first,
# attention (section 5) the second.

# %%
fig, ax = plt.subplots(figsize=(8, 4))
image = ax.imshow(vectors, cmap="RdBu_r", aspect="auto")
ax.set_yticks(range(len(ids)), token_labels(ids))
ax.set(xlabel="embedding dimension", ylabel="token", title="embeddings of 'hello, world' (untrained)")
fig.colorbar(image, ax=ax)
plt.show()

# %% [markdown]
# Untrained, the vectors are random. Random vectors in $d$ dimensions are
# nearly orthogonal: the cosine similarity of two of them is about
# $\pm 1/\sqrt{d}$, close to zero for a wide model. Training moves the vectors
# of tokens that are used alike closer together (section 10 looks at a trained
# model's table).

# %%
for width in (16, 128, 1024):
    table = nnx.Embed(tokenizer.VOCAB_SIZE, width, rngs=nnx.Rngs(1)).embedding.get_value()
    unit = table / jnp.linalg.norm(table, axis=1, keepdims=True)
    cosine = np.asarray(unit @ unit.T)[~np.eye(tokenizer.VOCAB_SIZE, dtype=bool)]  # pairs of different tokens
    print(f"d = {width:4}: cosine similarity mean {cosine.mean():+.3f}, std {cosine.std():.3f} (1/sqrt(d) = {width ** -0.5:.3f})")

# ## What you have learned
#
# - Tokenization trades vocabulary size against sequence length: words,
#   subwords (BPE) or bytes.
# - The course's tokenizer uses bytes: 256 ids, every text round-trips exactly.
# - The corpus is Python's standard library, cut into batches `int32[B, T]`.
# - An embedding table turns ids into learned vectors, `[B, T] -> [B, T, d]`.
#
# Next, section 4 gives each position a vector of its own.
