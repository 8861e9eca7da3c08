# %% [markdown]
# Before building anything, here is where the course is going: a small
# language model that writes Python. It is the course's demo model (4
# decoder blocks of width 128, about 860,000 parameters, trained on Python's
# standard library), shipped *compiled*: two programs exported with
# `jax.export` from the instructor's solution, so it runs before you have
# written a line. By section 10 the same model runs on *your* code.

# %%
import matplotlib.pyplot as plt
import numpy as np

from course import compiled_demo, tokenizer
from course.notebook_helpers import quick

demo = compiled_demo.load()  # course/demo/model.jaxexport (the programs) and course/demo/model.npz (the weights)
print(f"context {demo.context} bytes, vocabulary {demo.vocab} byte values; exported with jax {demo.built_with}")


def continuation(prompt, temperature=0.8, top_k=None, seed=0, new_tokens=200):
    """The prompt and what the model writes after it."""
    return prompt + "".join(compiled_demo.continue_text(demo, prompt, max_new_tokens=new_tokens,
                                                        temperature=temperature, top_k=top_k, seed=seed))


print(continuation("def "))

# %% [markdown]
# ## 1. What a language model does
#
# The model reads text as a sequence of **tokens**, here simply its bytes
# (section 3), and for every position it outputs a probability for each of
# the 256 possible next bytes. That is all it does. **Generation** is a loop
# around it: pick a next byte from those probabilities, append it, repeat.
#
# Picking is **sampling**, and it has two knobs:
#
# - **temperature** $\tau$: draw from $\text{softmax}(z / \tau)$, where $z$
#   are the model's scores (logits). $\tau = 0$ always takes the likeliest byte
#   (greedy); below 1 the choice sharpens towards it, above 1 it flattens.
# - **top-k**: draw only among the $k$ likeliest bytes.
#
# We can see the model's choice by sampling the byte after a prompt many times,
# each time with another seed:

# %%
PROMPT = "    for i in range("
DRAWS = 50 if quick() else 200  # each draw is one run of the prompt, with its own seed
fig, axes = plt.subplots(1, 3, figsize=(15, 3.2), sharey=True)
for ax, tau in zip(axes, (0.5, 1.0, 1.5)):
    firsts = [next(compiled_demo.stream(demo, tokenizer.encode(PROMPT), 1, seed=s, temperature=tau)) for s in range(DRAWS)]
    values, counts = np.unique(firsts, return_counts=True)
    order = np.argsort(counts)[::-1][:12]
    ax.bar(range(len(order)), counts[order] / DRAWS)
    ax.set_xticks(range(len(order)), [repr(chr(v))[1:-1] for v in values[order]])
    ax.set_title(f"τ = {tau}: {len(values)} different bytes in {DRAWS} draws")
axes[0].set_ylabel("frequency")
fig.suptitle(f"the byte the model writes after {PROMPT!r}", y=1.05)
plt.show()

# %% [markdown]
# ## 2. The controls
#
# Change these and run the cell again. `TEMPERATURE = 0` is greedy; `TOP_K =
# None` keeps all 256 bytes; the same seed gives the same text.

# %%
PROMPT = "class Stack:\n    def push(self, item):\n"
TEMPERATURE = 0.8  # try 0, 0.3, 1.0, 1.5
TOP_K = 20  # try 1, 5, None
SEED = 0  # another seed, another sample

print(continuation(PROMPT, TEMPERATURE, TOP_K, SEED))

# %% [markdown]
# ## 3. What temperature and top-k change
#
# Greedy text is plausible and dull, and it falls into loops: writing the
# likeliest line makes the same line likeliest again. A high temperature
# makes mistakes that compound, since every wrong byte becomes context for
# the next. Top-k cuts off the long tail of unlikely bytes, where most of
# those mistakes come from.

# %%
for label, tau, k in (("greedy", 0.0, None), ("τ = 0.8", 0.8, None), ("τ = 1.5", 1.5, None), ("τ = 1.5, top-10", 1.5, 10)):
    print(f"===== {label} =====")
    print(continuation("def read_config(path):\n", tau, k, seed=3, new_tokens=150))

# %% [markdown]
# ## 4. What the course builds
#
# The model has no idea what the code means: it has learned indentation,
# keywords, `self.` and matching brackets from bytes alone. In the sections
# that follow you build every piece of it yourself, in JAX and Flax NNX:
#
# | section | you build |
# | --- | --- |
# | 1. Introduction to JAX | `jit`, `grad`, `vmap`: the tools everything else uses |
# | 2. Introduction to Flax NNX | modules, optimizers and a train step |
# | 3. From text to embeddings | the byte tokens this model reads, and embedding tables |
# | 4. Positional encodings | how the model knows where each byte is |
# | 5. Understanding attention | scaled dot-product attention and the causal mask |
# | 6. Transformer architecture | multi-head attention, the feed-forward network, the decoder block |
# | 8. Training objective | the next-token loss this model was trained on |
# | 9. Training a model from scratch | the train step, sampling (temperature and top-k) and generation |
# | 10. Your model | this demo again, built from your modules and sampled by your code |
#
# `course generate --prompt "def "` runs this same compiled model in a
# terminal, printing the text as it is sampled.
