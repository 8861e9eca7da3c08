# %% [markdown]
# A language model is trained to do one thing: given the tokens so far,
# predict the next one. Every position of every training sequence is such a
# question, with a known answer. This section writes the score that training
# minimizes, the **cross-entropy** of the model's predictions.

# %%
import matplotlib.pyplot as plt
import numpy as np

import jax
import jax.numpy as jnp
from flax import nnx

from course import data, tokenizer
from course.model import CONFIGS, TransformerLM
from course.notebook_helpers import check_close, token_labels

# %% [markdown]
# ## 1. Next-token prediction
#
# The model reads `tokens[0..t]` and outputs, at position $t$, a score for every
# possible next token. Its answer is checked against `tokens[t + 1]`. So one
# sequence of $T$ tokens holds $T - 1$ questions, all answered in one pass
# thanks to the causal mask: the **targets** are the tokens shifted left by one.

# %%
ids = tokenizer.encode("def add(a, b):")
print(f"{'position':>8}  {'the model has read':<20} {'target'}")
for t in range(len(ids) - 1):
    print(f"{t:>8}  {tokenizer.decode(ids[: t + 1])!r:<20} {tokenizer.decode(ids[t + 1 : t + 2])!r}")

# %% [markdown]
# ## 2. From logits to a loss
#
# At each position the model outputs **logits** $z \in \mathbb{R}^V$, one
# unnormalized score per token of the vocabulary. The softmax turns them into a
# probability distribution,
#
# $$\hat y_w = \frac{e^{z_w}}{\sum_{v} e^{z_v}},$$
#
# and the **cross-entropy** compares it with the truth $y_t$, a one-hot vector
# with a 1 at the target token:
#
# $$\text{Loss}_t = -\sum_{w} y_{t,w} \log \hat y_{t,w} = -\log \hat y_{t,\,\text{target}}$$
#
# Only the probability given to the right answer counts. Giving it probability
# 1 costs nothing; probability $p$ costs $-\log p$, which grows without bound
# as $p \to 0$: a confident wrong answer is punished hardest. The training loss
# is the mean over all positions (and sequences).
#
# **A worked example.** With $V = 3$ and logits $z = (2, 1, 0.1)$:
# $e^z = (7.389, 2.718, 1.105)$, their sum is $11.212$, so
# $\hat y = (0.6590, 0.2424, 0.0986)$. If the target is token 0 the loss is
# $-\log 0.6590 = 0.4170$; if it is token 2, $-\log 0.0986 = 2.3170$.

# %%
p = np.linspace(0.01, 1, 200)
fig, ax = plt.subplots(figsize=(6, 3.2))
ax.plot(p, -np.log(p))
for prob, label in [(0.6590, "target 0"), (0.0986, "target 2")]:
    ax.plot(prob, -np.log(prob), "o")
    ax.annotate(f"{label}: {-np.log(prob):.3f}", (prob, -np.log(prob)), textcoords="offset points", xytext=(8, 6))
ax.set(xlabel="probability given to the right token", ylabel="loss  −log p", title="the cross-entropy of one prediction")
ax.grid(alpha=0.3)
plt.show()

# %% [markdown]
# **Exercise.** Implement `cross_entropy_loss` in `exercises/loss/loss.py`: the
# mean of $-\log \hat y_\text{target}$ over every position (with an optional
# mask that leaves positions out). The cell checks the worked example.

# %% tags=["exercise"]
from exercises.loss.loss import cross_entropy_loss, next_token_loss

logits = jnp.array([[2.0, 1.0, 0.1], [2.0, 1.0, 0.1]])
check_close("loss, target 0", cross_entropy_loss(logits[:1], jnp.array([0])), 0.4170)
check_close("loss, target 2", cross_entropy_loss(logits[:1], jnp.array([2])), 2.3170)
check_close("mean of the two", cross_entropy_loss(logits, jnp.array([0, 2])), (0.4170 + 2.3170) / 2)
check_close("with the second masked out", cross_entropy_loss(logits, jnp.array([0, 2]), jnp.array([True, False])), 0.4170)

# %% [markdown]
# ## 3. Large logits: computing it stably
#
# Written naively, the softmax overflows: $e^{1000}$ is infinite in any
# floating-point format, and $\infty / \infty$ is NaN. Since adding a constant
# to every logit does not change the softmax, subtract the largest one,
# $m = \max_v z_v$, first: then every exponent is at most $e^0 = 1$. In log
# form, the **log-sum-exp** trick:
#
# $$\log \hat y_w = z_w - m - \log \sum_v e^{z_v - m}$$

# %%
big = jnp.array([1000.0, 0.0, -1000.0])
naive = jnp.exp(big) / jnp.sum(jnp.exp(big))
print("naive softmax:", naive)
shifted = big - big.max()
print("log-softmax with the maximum subtracted:", shifted - jnp.log(jnp.sum(jnp.exp(shifted))))

# %% [markdown]
# Your loss must be finite and right even for logits of size $10^4$. For
# $z = (10^4, 0, -10^4)$ and target 1, the log-probability is
# $0 - 10^4 - \log(1 + e^{-10^4} + e^{-2 \cdot 10^4}) = -10^4$ to float precision, so the loss is $10^4$.

# %% tags=["exercise"]
huge = jnp.array([[1e4, 0.0, -1e4]])
check_close("loss at logits of size 1e4", cross_entropy_loss(huge, jnp.array([1])), 1e4, atol=1.0)

# %% [markdown]
# ## 4. What the gradient says
#
# The derivative of the cross-entropy with respect to the logits is strikingly
# simple: $\partial \text{Loss} / \partial z = \hat y - y$, the predicted
# distribution minus the one-hot truth. Training pushes the right token's
# logit up by $1 - \hat y_\text{target}$ and every other logit down by its
# probability. For the worked example with target 0:
# $(0.6590 - 1,\; 0.2424,\; 0.0986)$.

# %% tags=["exercise"]
gradient = jax.grad(lambda z: cross_entropy_loss(z, jnp.array([0])))(logits[:1])
check_close("gradient of the loss", gradient, [[0.6590 - 1, 0.2424, 0.0986]])

# %% [markdown]
# ## 5. The language-modelling loss
#
# **Exercise.** Implement `next_token_loss` in `exercises/loss/loss.py`: given
# the logits `[B, T, V]` that the model computed from `tokens [B, T]`, score
# `logits[:, t]` against `tokens[:, t + 1]`, skipping targets equal to an
# optional `pad_id`. With the logits $(2, 1, 0.1)$ at both positions and
# tokens $(0, 1, 2)$, the targets are 1 and 2, whose losses are
# $-\log 0.2424 = 1.4170$ and $2.3170$, so the mean is $1.8670$. The last
# position's logits predict a token beyond the sequence and are not scored.
# With `pad_id=2`, only the first target counts.

# %% tags=["exercise"]
logits_btv = jnp.array([[[2.0, 1.0, 0.1], [2.0, 1.0, 0.1], [5.0, -5.0, 0.0]]])  # [1, 3, 3]
tokens_bt = jnp.array([[0, 1, 2]])
check_close("next_token_loss", next_token_loss(logits_btv, tokens_bt), (1.4170 + 2.3170) / 2)
check_close("next_token_loss, pad_id=2", next_token_loss(logits_btv, tokens_bt, pad_id=2), 1.4170)

# %% [markdown]
# ## 6. How good is a loss?
#
# Three reference points, in nats per byte:
#
# - A model that spreads its probability **uniformly** over the 256 bytes has a
#   loss of $\log 256 = 5.545$ at every position. A freshly initialized model is
#   close to this.
# - A model that knows only **how often** each byte occurs, and ignores the
#   context, reaches the corpus's *unigram entropy*
#   $H = -\sum_w p_w \log p_w$.
# - Anything lower needs context: that the next byte after `de` is likely `f`.
#
# The exponential of the loss is the **perplexity**, the number of equally
# likely choices the model is as unsure as: 256 for the uniform model. Divided
# by $\log 2$ the loss is in **bits per byte**.

# %% tags=["exercise"]
corpus = data.stdlib_corpus()
counts = np.bincount(corpus.train, minlength=tokenizer.VOCAB_SIZE)
frequencies = counts[counts > 0] / counts.sum()
unigram_entropy = float(-(frequencies * np.log(frequencies)).sum())

model = TransformerLM(CONFIGS["small"], rngs=nnx.Rngs(0))  # untrained, built from your code
batch = jnp.asarray(data.sample_batch(corpus.val, np.random.default_rng(0), 8, 128))
untrained = float(next_token_loss(model(batch), batch))

for name, loss in [("uniform over 256 bytes", np.log(256)), ("your untrained model", untrained),
                   ("byte frequencies only (unigram)", unigram_entropy)]:
    print(f"{name:32} loss {loss:.3f} nats = {loss / np.log(2):.2f} bits per byte, perplexity {np.exp(loss):6.1f}")

# %% [markdown]
# The untrained model's prediction of the ninth byte of a validation
# sequence from the first eight: no better than a guess.

# %% tags=["exercise"]
context, actual = batch[0, :8], int(batch[0, 8])
probs = np.asarray(jax.nn.softmax(model(context[None])[0, -1]))
top = np.argsort(probs)[::-1][:20]
fig, ax = plt.subplots(figsize=(9, 3))
ax.bar(range(20), probs[top], color=["tab:red" if t == actual else "tab:blue" for t in top])
ax.set_xticks(range(20), token_labels(top))
ax.axhline(1 / 256, color="gray", linestyle="--", label="uniform: 1/256")
ax.set(title=f"untrained: the 20 likeliest bytes after {tokenizer.decode(context)!r}", ylabel="probability")
ax.legend()
plt.show()
print(f"the right byte, {token_labels([actual])[0]!r}, gets probability {probs[actual]:.4f}: a loss of {-np.log(probs[actual]):.2f}")

# %% [markdown]
# ## What you have learned
#
# - A language model's targets are its inputs shifted by one; one sequence is
#   $T - 1$ predictions at once.
# - The cross-entropy $-\log \hat y_\text{target}$ rewards probability on the
#   right token; computed through log-sum-exp it is stable at any scale.
# - Its gradient is $\hat y - y$.
# - Uniform is $\log V$; the unigram entropy is the bar a context-aware model must clear.
#
# Check your functions with `pytest exercises/loss`. In section 9 this loss
# trains your transformer.
