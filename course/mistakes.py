"""The known mistakes of every exercise: what each looks like, and the hint that names it.

A mistake is written as a transformation of the reference: ``wrong(ref)``
takes the reference's exercise module and returns its function (for an NNX
module: its ``__call__``, the module instance first) computed as if the
mistake had been made, by changing the reference's inputs, outputs or
weights, never by re-implementing the exercise. So this file holds no
solution, and ships to students with its hints.

Two consumers apply the same catalogue: the hidden grader, which runs
``wrong(reference)`` on each case's inputs and names the mistake whose
outputs the student's match (``graders/engine/compare.py``), and
``course fixtures``, which stores the reference's outputs under each mistake
beside the visible tests' expected values, so that a visible test names the
mistake in the same words (``course.testing.assert_close(..., mistakes=...)``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING

import jax
import jax.numpy as jnp

if TYPE_CHECKING:  # Flax and optax are imported where a mistake needs them: most exercises never do
    import optax
    from flax import nnx


@dataclass(frozen=True)
class Mistake:
    """One known mistake in one function of an exercise.

    Attributes:
      exercise: the exercise's name (``"attention"``).
      function: the function or NNX module class it concerns (``"scaled_dot_product_attention"``).
      name: a short identifier, the mistake's part of a fixture's key; a name
        always stands for the same hint.
      hint: what the student is told, in words.
      wrong: ``wrong(ref)`` is the reference's ``function`` as if the mistake
        had been made, with its signature (a module class: its ``__call__``,
        the module first).
    """

    exercise: str
    function: str
    name: str
    hint: str
    wrong: Callable[[ModuleType], Callable]


# --- attention -------------------------------------------------------------------------------------------------

# Attention's and the transformer's alike.
MASK_INVERTED = "the mask looks inverted: True means the query MAY attend to that key"


def _softmax_over_queries(ref):
    def attend(q, k, v, mask=None):
        # A softmax over the queries of q k^T is a softmax over the keys of its transpose, k q^T.
        _, transposed = ref.scaled_dot_product_attention(k, q, q, None if mask is None else jnp.swapaxes(mask, -1, -2))
        weights = jnp.swapaxes(transposed, -1, -2)
        return weights @ v, weights
    return attend


def _mask_after_softmax(ref):
    def attend(q, k, v, mask=None):
        _, weights = ref.scaled_dot_product_attention(q, k, v)
        if mask is not None:
            weights = jnp.where(mask, weights, 0).astype(weights.dtype)
        return weights @ v, weights
    return attend


ATTENTION = (
    Mistake("attention", "causal_mask", "diagonal_hidden", "off by one: a position must see itself (mask[i, i] is True)",
            lambda ref: lambda n: ref.causal_mask(n + 1)[:-1, 1:]),
    Mistake("attention", "causal_mask", "mask_transposed",
            "the mask is transposed: query i may see keys j <= i (lower triangle)",
            lambda ref: lambda n: ref.causal_mask(n).T),
    Mistake("attention", "causal_mask", "next_visible", "off by one: query i must not see key i + 1",
            lambda ref: lambda n: ref.causal_mask(n + 1)[1:, :-1]),
    Mistake("attention", "scaled_dot_product_attention", "unscaled",
            "the weights look unscaled: did you divide the scores by sqrt(d_k)?",
            lambda ref: lambda q, k, v, mask=None: ref.scaled_dot_product_attention(q * math.sqrt(q.shape[-1]), k, v, mask)),
    Mistake("attention", "scaled_dot_product_attention", "scaled_by_d_k", "the scores look divided by d_k, not by sqrt(d_k)",
            lambda ref: lambda q, k, v, mask=None: ref.scaled_dot_product_attention(q / math.sqrt(q.shape[-1]), k, v, mask)),
    Mistake("attention", "scaled_dot_product_attention", "softmax_over_queries",
            "the softmax runs over the query axis (-2), not over the keys (the last axis)", _softmax_over_queries),
    Mistake("attention", "scaled_dot_product_attention", "mask_inverted",
            MASK_INVERTED,
            lambda ref: lambda q, k, v, mask=None: ref.scaled_dot_product_attention(q, k, v, None if mask is None else ~mask)),
    Mistake("attention", "scaled_dot_product_attention", "mask_ignored", "the mask is not applied",
            lambda ref: lambda q, k, v, mask=None: ref.scaled_dot_product_attention(q, k, v)),
    Mistake("attention", "scaled_dot_product_attention", "mask_after_softmax",
            "the mask is applied after the softmax: set the masked scores to -inf before it, so that each row of "
            "weights still sums to one", _mask_after_softmax),
)


# --- jax_basics ------------------------------------------------------------------------------------------------


def _hidden_activation(activation):
    def wrong(ref):
        def predict(params, inputs):
            *hidden, last = params
            x = inputs
            for layer in hidden:
                x = activation(ref.predict([layer], x))  # a one-layer network is one affine map
            return ref.predict([last], x)
        return predict
    return wrong


def _batch_gradient_repeated(ref):
    def per_example(params, batch):
        grads = jax.grad(ref.mse_loss)(params, batch)
        return jax.tree.map(lambda g: jnp.broadcast_to(g, (batch[0].shape[0], *g.shape)), grads)
    return per_example


_MSE = (
    Mistake("jax_basics", "mse_loss", "summed", "the loss is summed, not averaged",
            lambda ref: lambda params, batch: ref.mse_loss(params, batch) * batch[1].size),
    Mistake("jax_basics", "mse_loss", "mean_over_examples_only",
            "the squared error is summed over output units and averaged over examples only; average over every element",
            lambda ref: lambda params, batch: ref.mse_loss(params, batch) * batch[1].shape[-1]),
    Mistake("jax_basics", "mse_loss", "root_mean_square", "the loss is a root mean square; it is the mean of the squares",
            lambda ref: lambda params, batch: jnp.sqrt(ref.mse_loss(params, batch))),
)

JAX_BASICS = (
    Mistake("jax_basics", "predict", "last_layer_tanh", "the last layer applies tanh; it must be linear",
            lambda ref: lambda params, inputs: jnp.tanh(ref.predict(params, inputs))),
    Mistake("jax_basics", "predict", "hidden_linear", "the hidden layers apply no tanh", _hidden_activation(lambda y: y)),
    Mistake("jax_basics", "predict", "hidden_relu", "the hidden layers apply ReLU; the model uses tanh",
            _hidden_activation(jax.nn.relu)),
    *_MSE,
    # loss_and_grad differentiates mse_loss: its mistakes show in the loss and the gradients alike.
    *(Mistake("jax_basics", "loss_and_grad", m.name, m.hint, lambda ref, m=m: jax.value_and_grad(m.wrong(ref)))
      for m in _MSE),
    Mistake("jax_basics", "per_example_grads", "batch_gradient_repeated",
            "every example got the gradient of the whole batch: vmap over the examples (in_axes=(None, 0))",
            _batch_gradient_repeated),
    Mistake("jax_basics", "per_example_grads", "divided_by_batch",
            "each example's gradient is divided by N: differentiate the loss of one example on its own",
            lambda ref: lambda params, batch: jax.tree.map(lambda g: g / batch[0].shape[0], ref.per_example_grads(params, batch))),
)


# --- positional_encoding ---------------------------------------------------------------------------------------


def _pairs_swapped(table):
    return table.reshape(*table.shape[:-1], -1, 2)[..., ::-1].reshape(table.shape)


def _halves(table):
    """The even columns, then the odd ones."""
    return jnp.concatenate([table[:, 0::2], table[:, 1::2]], axis=-1)


POSITIONAL_ENCODING = tuple(
    Mistake("positional_encoding", "sinusoidal_positional_encoding", name, hint, wrong)
    for name, hint, wrong in (
        ("concatenated", "sin and cos are concatenated instead of interleaved (sin in even columns, cos in odd ones)",
         lambda ref: lambda n, d, base=10000.0: _halves(ref.sinusoidal_positional_encoding(n, d, base))),
        ("sin_cos_swapped", "sin and cos are swapped: even columns hold sin, odd columns cos",
         lambda ref: lambda n, d, base=10000.0: _pairs_swapped(ref.sinusoidal_positional_encoding(n, d, base))),
        ("frequencies_halved", "the frequencies are off: the exponent is 2i / d_model for pair i (not i / d_model)",
         lambda ref: lambda n, d, base=10000.0: ref.sinusoidal_positional_encoding(n, 2 * d, base)[:, :d]),
        ("positions_from_one", "positions start at 1; the first position is 0",
         lambda ref: lambda n, d, base=10000.0: ref.sinusoidal_positional_encoding(n + 1, d, base)[1:]),
        ("base_ignored", "the base argument is not used",
         lambda ref: lambda n, d, base=10000.0: ref.sinusoidal_positional_encoding(n, d)),
    )
)


# --- loss ------------------------------------------------------------------------------------------------------


def _counted(targets, mask):
    """How many targets the loss averages over."""
    return targets.size if mask is None else jnp.maximum(jnp.sum(mask.astype(jnp.float32)), 1.0)


def _exp_overflow(ref):
    def loss(logits, targets, mask=None):
        z = logits.astype(jnp.float32)
        # log(sum(exp(z))) taken as written: 0 more than logsumexp, unless exp over- or underflows.
        excess = jnp.log(jnp.sum(jnp.exp(z), axis=-1)) - jax.nn.logsumexp(z, axis=-1)
        weights = jnp.ones(targets.shape) if mask is None else mask.astype(jnp.float32)
        return ref.cross_entropy_loss(logits, targets, mask) + jnp.sum(excess * weights) / _counted(targets, mask)
    return loss


DIVIDED_BY_ALL_POSITIONS = "divided by the number of positions, not by the number counted by the mask"


def _next_token_divided_by_all_positions(ref):
    # next_token_loss reuses cross_entropy_loss: a wrong denominator there shows here too, whenever pad_id hides targets.
    def loss(logits, tokens, pad_id=None):
        scored = tokens[:, 1:]
        counted = None if pad_id is None else scored != pad_id
        return ref.next_token_loss(logits, tokens, pad_id) * _counted(scored, counted) / scored.size
    return loss


LOSS = (
    Mistake("loss", "cross_entropy_loss", "summed", "the loss is summed, not averaged",
            lambda ref: lambda z, t, mask=None: ref.cross_entropy_loss(z, t, mask) * _counted(t, mask)),
    Mistake("loss", "cross_entropy_loss", "wrong_sign", "the loss has the wrong sign: it is -log p(target)",
            lambda ref: lambda z, t, mask=None: -ref.cross_entropy_loss(z, t, mask)),
    Mistake("loss", "cross_entropy_loss", "loss_mask_ignored", "the mask is not applied (every position counted)",
            lambda ref: lambda z, t, mask=None: ref.cross_entropy_loss(z, t)),
    Mistake("loss", "cross_entropy_loss", "divided_by_all_positions", DIVIDED_BY_ALL_POSITIONS,
            lambda ref: lambda z, t, mask=None: ref.cross_entropy_loss(z, t, mask) * _counted(t, mask) / t.size),
    Mistake("loss", "cross_entropy_loss", "exp_overflow",
            "exp overflowed: subtract the largest logit first (or use jax.nn.log_softmax)", _exp_overflow),
    # next_token_loss scores logits[:, :-1] against tokens[:, 1:]: moving the logits or the tokens by one
    # position first undoes or reverses that shift.
    Mistake("loss", "next_token_loss", "unshifted", "targets are not shifted by one: logits[:, t] predict tokens[:, t + 1]",
            lambda ref: lambda z, tokens, pad_id=None: ref.next_token_loss(
                jnp.pad(z, ((0, 0), (0, 1), (0, 0))), jnp.pad(tokens, ((0, 0), (1, 0))), pad_id)),
    Mistake("loss", "next_token_loss", "shifted_backwards", "shifted the wrong way: logits[:, :-1] predict tokens[:, 1:]",
            lambda ref: lambda z, tokens, pad_id=None: ref.next_token_loss(
                jnp.roll(z, -1, axis=1), jnp.roll(tokens, 1, axis=1), pad_id)),
    Mistake("loss", "next_token_loss", "pads_counted", "pad targets are counted: drop the targets equal to pad_id",
            lambda ref: lambda z, tokens, pad_id=None: ref.next_token_loss(z, tokens)),
    Mistake("loss", "next_token_loss", "pad_mask_from_inputs",
            "the pad mask comes from the inputs tokens[:, :-1], not from the targets tokens[:, 1:]",
            lambda ref: lambda z, tokens, pad_id=None: ref.cross_entropy_loss(
                z[:, :-1], tokens[:, 1:], None if pad_id is None else tokens[:, :-1] != pad_id)),
    Mistake("loss", "next_token_loss", "token_zero_dropped",
            "token 0 is treated as padding: drop only the targets equal to pad_id (none when pad_id is None)",
            lambda ref: lambda z, tokens, pad_id=None: ref.next_token_loss(z, tokens, 0)),
    Mistake("loss", "next_token_loss", "divided_by_all_positions", DIVIDED_BY_ALL_POSITIONS,
            _next_token_divided_by_all_positions),
)


# --- transformer -----------------------------------------------------------------------------------------------


def _heads_split_wrong(ref):
    def attend(module, x, context=None, mask=None):
        source = x if context is None else context
        H = module.num_heads
        # [..., T, d_model] -> [..., H, T, d_head] by a plain reshape: positions and features of heads mixed up.
        q, k, v = (layer(y).reshape(*y.shape[:-2], H, y.shape[-2], -1)
                   for layer, y in ((module.query, x), (module.key, source), (module.value, source)))
        heads, _ = ref.scaled_dot_product_attention(q, k, v, mask)
        return module.out(heads.reshape(*heads.shape[:-3], heads.shape[-2], -1))
    return attend


def _heads_merged_untransposed(ref):
    def attend(module, x, context=None, mask=None):
        # The heads concatenated right ([..., T, H * d_head], `out` made the identity), taken back to [..., H, T, d_head]
        # and reshaped to [..., T, d_model] without the swap of H and T.
        merged = _with_weights(_identity_out)(ref)(module, x, context, mask)
        heads = jnp.swapaxes(merged.reshape(*merged.shape[:-1], module.num_heads, -1), -2, -3)
        return module.out(heads.reshape(*heads.shape[:-3], heads.shape[-2], -1))
    return attend


def _with_weights(change: Callable[[nnx.Module], None]):
    """The reference module called on a copy of its weights that ``change`` edits in place."""
    def wrong(ref):
        def call(module, *args, **kwargs):
            from flax import nnx  # here: the exercises without Flax never pay for importing it

            edited = nnx.clone(module)
            change(edited)
            return edited(*args, **kwargs)
        return call
    return wrong


def _identity_out(module):
    module.out.kernel[...] = jnp.eye(module.out.kernel.shape[0], dtype=module.out.kernel.dtype)
    module.out.bias[...] = jnp.zeros_like(module.out.bias[...])


def _queries_times_sqrt_d_head(module):
    # Queries scaled by sqrt(d_head) cancel the attention's division by it.
    scale = math.sqrt(module.query.kernel.shape[-1] // module.num_heads)
    module.query.kernel[...] = module.query.kernel[...] * scale
    module.query.bias[...] = module.query.bias[...] * scale


def _heads_split_d_head_first(module):
    # Head h made of the features h, h + H, h + 2H, ... (a reshape to [d_head, H]): the reference's split of
    # projections whose output features are so permuted; the concatenation back keeps the reference's order.
    d_model, H = module.query.kernel.shape[-1], module.num_heads
    order = jnp.arange(d_model).reshape(-1, H).T.reshape(-1)
    for layer in (module.query, module.key, module.value):
        layer.kernel[...] = layer.kernel[...][:, order]
        layer.bias[...] = layer.bias[...][order]


def _queries_over_sqrt_heads(module):
    # Scores divided by sqrt(d_model) = sqrt(H * d_head): the attention's own division by sqrt(d_head), once more by sqrt(H).
    scale = 1 / math.sqrt(module.num_heads)
    module.query.kernel[...] = module.query.kernel[...] * scale
    module.query.bias[...] = module.query.bias[...] * scale


def _ln2_is_ln1(module):
    module.ln2.scale[...] = module.ln1.scale[...]
    module.ln2.bias[...] = module.ln1.bias[...]


def _post_norm(ref):
    def block(module, x, mask=None):
        x = module.ln1(x + module.attn(x, mask=mask))
        return module.ln2(x + module.ffn(x))
    return block


def _residuals(attention: bool, feed_forward: bool):
    """A decoder block that keeps only the chosen residual connections."""
    def wrong(ref):
        def block(module, x, mask=None):
            h = module.attn(module.ln1(x), mask=mask) + (x if attention else 0)
            return module.ffn(module.ln2(h)) + (h if feed_forward else 0)
        return block
    return wrong


MASK_NOT_PASSED = "the mask is not passed on to the attention"

TRANSFORMER = (
    Mistake("transformer", "MultiHeadAttention", "heads_split_wrong",
            "the heads look split in the wrong order: reshape [..., T, d_model] to [..., T, H, d_head], then swap T and H",
            _heads_split_wrong),
    Mistake("transformer", "MultiHeadAttention", "no_out_projection",
            "the output projection `out` is not applied to the concatenated heads", _with_weights(_identity_out)),
    Mistake("transformer", "MultiHeadAttention", "mask_not_passed", MASK_NOT_PASSED,
            lambda ref: lambda module, x, context=None, mask=None: module(x, context)),
    Mistake("transformer", "MultiHeadAttention", "context_ignored", "the keys and values come from x, not from context",
            lambda ref: lambda module, x, context=None, mask=None: module(x, None, mask)),
    Mistake("transformer", "MultiHeadAttention", "heads_unscaled",
            "the attention scores look unscaled (the heads' d_head is the d_k of the attention)",
            _with_weights(_queries_times_sqrt_d_head)),
    Mistake("transformer", "MultiHeadAttention", "scaled_by_sqrt_d_model",
            "the scores look divided by sqrt(d_model): each head's d_k is d_head = d_model // num_heads",
            _with_weights(_queries_over_sqrt_heads)),
    Mistake("transformer", "MultiHeadAttention", "heads_split_d_head_first",
            "the heads look split as [d_head, num_heads]: feature h * d_head + i belongs to head h "
            "(reshape the last axis to [num_heads, d_head])", _with_weights(_heads_split_d_head_first)),
    Mistake("transformer", "MultiHeadAttention", "heads_merged_untransposed",
            "the heads are merged without moving the head axis back: swap [..., H, T, d_head] to [..., T, H, d_head] "
            "before the reshape to [..., T, d_model]", _heads_merged_untransposed),
    Mistake("transformer", "MultiHeadAttention", "mask_inverted", MASK_INVERTED,
            lambda ref: lambda module, x, context=None, mask=None: module(x, context, None if mask is None else ~mask)),
    Mistake("transformer", "FeedForward", "relu", "the activation looks like relu: the specification uses jax.nn.gelu",
            lambda ref: lambda module, x: module.down(jax.nn.relu(module.up(x)))),
    Mistake("transformer", "FeedForward", "exact_gelu",
            "the activation looks like the exact gelu: use jax.nn.gelu's default (tanh) approximation",
            lambda ref: lambda module, x: module.down(jax.nn.gelu(module.up(x), approximate=False))),
    Mistake("transformer", "FeedForward", "no_activation", "no activation between up and down",
            lambda ref: lambda module, x: module.down(module.up(x))),
    Mistake("transformer", "DecoderBlock", "post_norm",
            "this looks like post-norm (x = ln(x + sublayer(x))): the block is pre-norm, x = x + sublayer(ln(x))", _post_norm),
    Mistake("transformer", "DecoderBlock", "no_attention_residual",
            "the residual connection around the attention is missing (x = x + attn(ln1(x), mask=mask))",
            _residuals(attention=False, feed_forward=True)),
    Mistake("transformer", "DecoderBlock", "no_ffn_residual",
            "the residual connection around the feed-forward network is missing (x = x + ffn(ln2(x)))",
            _residuals(attention=True, feed_forward=False)),
    Mistake("transformer", "DecoderBlock", "no_residuals", "both residual connections are missing",
            _residuals(attention=False, feed_forward=False)),
    Mistake("transformer", "DecoderBlock", "mask_not_passed", MASK_NOT_PASSED,
            lambda ref: lambda module, x, mask=None: module(x)),
    Mistake("transformer", "DecoderBlock", "ln2_unused",
            "the second LayerNorm is never used: the feed-forward sublayer reads ln2(x), a norm with its own weights",
            _with_weights(_ln2_is_ln1)),
)


# --- training --------------------------------------------------------------------------------------------------


def _no_update(ref):
    def step(model, optimizer, tokens):
        from flax import nnx

        return ref.train_step(*nnx.clone((model, optimizer)), tokens)  # the step happens to copies
    return step


def _loss_after_update(ref):
    def step(model, optimizer, tokens):
        ref.train_step(model, optimizer, tokens)
        from flax import nnx

        return ref.train_step(*nnx.clone((model, optimizer)), tokens)  # the loss at the updated parameters
    return step


def _climbing(tx: optax.GradientTransformation) -> optax.GradientTransformation:
    """``tx`` with its updates negated, its state unchanged: for Adam and SGD, ``tx`` applied to minus the gradients."""
    import optax

    def update(updates, state, params=None, **extra):
        updates, state = tx.update(updates, state, params, **extra)
        return jax.tree.map(jnp.negative, updates), state
    return optax.GradientTransformation(tx.init, update)


def _loss_sign_flipped(ref):
    def step(model, optimizer, tokens):
        # Minimizing -loss: every gradient, and the loss returned, has the other sign.
        tx = optimizer.tx
        optimizer.tx = _climbing(tx)
        try:
            return -ref.train_step(model, optimizer, tokens)
        finally:
            optimizer.tx = tx
    return step


def _with_loss(loss: Callable[[ModuleType], Callable]):
    """A step whose loss is ``loss(loss_module)(logits, tokens)`` in place of ``next_token_loss(logits, tokens)``.

    The reference's step is run uncompiled (``train_step.fun``) with its module's ``next_token_loss`` swapped for the
    while: the compiled step keeps its traces of the right loss.
    """
    def wrong(ref):
        def step(model, optimizer, tokens):
            import sys

            right = ref.next_token_loss
            ref.next_token_loss = loss(sys.modules[right.__module__])
            try:
                return ref.train_step.fun(model, optimizer, tokens)
            finally:
                ref.next_token_loss = right
        return step
    return wrong


TRAINING = (
    Mistake("training", "train_step", "no_update",
            "the parameters did not change: call optimizer.update(model, grads) on the model and optimizer passed in "
            "(not on copies), in a step compiled with nnx.jit (jax.jit does not write the updates back)", _no_update),
    Mistake("training", "train_step", "loss_after_update",
            "the loss returned is the loss after the update; return the one the gradients came from", _loss_after_update),
    Mistake("training", "train_step", "loss_sign_flipped",
            "the step climbs the loss: minimize next_token_loss itself, not -log p(target) with its sign flipped",
            _loss_sign_flipped),
    # The toy models are causal: model(tokens[:, :-1]) is model(tokens)[:, :-1].
    Mistake("training", "train_step", "shifted_twice",
            "the tokens are shifted twice: next_token_loss shifts them itself, pass it model(tokens) and tokens",
            _with_loss(lambda loss: lambda z, tokens: loss.next_token_loss(z[:, :-1], tokens[:, 1:]))),
    Mistake("training", "train_step", "loss_unshifted",
            "the step's loss compares logits[:, t] with tokens[:, t]: use next_token_loss(model(tokens), tokens)",
            _with_loss(lambda loss: lambda z, tokens: loss.cross_entropy_loss(z, tokens))),
    Mistake("training", "train_step", "pad_id_given",
            "the step drops the tokens equal to 0 as padding: the batch has no padding, call next_token_loss without pad_id",
            _with_loss(lambda loss: lambda z, tokens: loss.next_token_loss(z, tokens, 0))),
)


# --- generation ------------------------------------------------------------------------------------------------


def _sampling_with(arguments: Callable[[float, int | None], tuple[float, int | None]]):
    """A sampling mistake: the reference samples with ``(temperature, top_k) = arguments(temperature, top_k)``.

    Being a change of arguments only, the same change applied to the
    distribution ``softmax(logits / temperature)`` (top-k) gives the
    distribution the mistake samples from (``course.testing.mistaken_distributions``).
    """
    def wrong(ref):
        def sample(logits, key, temperature=1.0, top_k=None):
            return ref.sample_next_token(logits, key, *arguments(temperature, top_k))
        return sample
    return wrong


def _probabilities_as_logits(ref):
    def sample(logits, key, temperature=1.0, top_k=None):
        if temperature == 0:  # greedy: the argmax of the probabilities is the argmax of the logits
            return ref.sample_next_token(logits, key, temperature, top_k)
        from course.testing import sampling_distribution

        # The right probabilities, read by the sampler as logits: it samples from their softmax.
        return ref.sample_next_token(jnp.asarray(sampling_distribution(logits, temperature, top_k), jnp.float32), key)
    return sample


GENERATION = (
    Mistake("generation", "sample_next_token", "temperature_ignored",
            "the temperature has no effect: divide the logits by it before the softmax (not the probabilities after it)",
            _sampling_with(lambda t, k: (1.0 if t > 0 else t, k))),
    Mistake("generation", "sample_next_token", "temperature_multiplied",
            "the logits look multiplied by the temperature instead of divided by it",
            _sampling_with(lambda t, k: (1 / t if t > 0 else t, k))),
    Mistake("generation", "sample_next_token", "top_k_ignored", "top_k is ignored: only the top_k largest logits may be sampled",
            _sampling_with(lambda t, k: (t, None))),
    Mistake("generation", "sample_next_token", "greedy_sampling",
            "every sample is the most likely token: with a temperature above 0, draw from softmax(logits / temperature) "
            "(jax.random.categorical)", _sampling_with(lambda t, k: (0.0, k))),
    Mistake("generation", "sample_next_token", "top_k_minus_one",
            "one token too few is kept: keep every logit >= the k-th largest (top_k tokens, not top_k - 1)",
            _sampling_with(lambda t, k: (t, k - 1 if k is not None and k > 1 else k))),
    Mistake("generation", "sample_next_token", "probabilities_as_logits",
            "jax.random.categorical takes logits (log-probabilities), not probabilities: pass it the scaled logits",
            _probabilities_as_logits),
)


CATALOGUE: tuple[Mistake, ...] = (*JAX_BASICS, *POSITIONAL_ENCODING, *ATTENTION, *LOSS, *TRANSFORMER, *TRAINING, *GENERATION)


def of(exercise: str, function: str | None = None) -> tuple[Mistake, ...]:
    """The catalogued mistakes of ``exercise`` (of its ``function`` only, when given), in the order they are tried."""
    return tuple(m for m in CATALOGUE if m.exercise == exercise and function in (None, m.function))


def hint(name: str) -> str:
    """The hint of the mistake called ``name``.

    Raises:
      KeyError: no mistake of the catalogue is called ``name``.
    """
    for mistake in CATALOGUE:
        if mistake.name == name:
            return mistake.hint
    raise KeyError(f"name: no catalogued mistake is called {name!r}")


# --- encoder_decoder -------------------------------------------------------------------------------------------
# Appended after CATALOGUE, which it extends: of() and hint() read CATALOGUE when called.
# EncoderDecoder's mistakes are of its teacher-forced ``loss`` (the module first, then source and target): the
# loss runs every part of the model, so the suites and fixtures score each model-level mistake through it.


def _padding_and(source_mask, attention_mask):
    """The key padding ``source_mask[:, None, None, :]`` and ``attention_mask`` together."""
    return attention_mask if source_mask is None else source_mask[:, None, None, :] & attention_mask


def _causal_encoder(ref):
    def block(module, x, source_mask=None):
        mask = _padding_and(source_mask, ref.causal_mask(x.shape[-2]))
        x = x + module.attn(module.ln1(x), mask=mask)
        return x + module.ffn(module.ln2(x))
    return block


def _cross_attention_on_own_states(ref):
    def block(module, x, memory, source_mask=None):
        x = x + module.self_attn(module.ln1(x), mask=ref.causal_mask(x.shape[-2]))
        x = x + module.cross_attn(module.ln2(x))  # keys and values from the decoder's own states
        return x + module.ffn(module.ln3(x))
    return block


def _encoder_output_not_normed(ref):
    def loss(module, source, target):
        from flax import nnx

        class Identity(nnx.Module):
            def __call__(self, x):
                return x

        edited = nnx.clone(module)
        edited.encoder_norm = Identity()
        return edited.loss(source, target)
    return loss


_SOURCE_MASK_IGNORED = ("source_mask_ignored",
                        "the source mask is not applied: padding positions of the source must be hidden from the "
                        "attention's keys (source_mask[:, None, None, :] as its mask)")
_SOURCE_MASK_INVERTED = ("source_mask_inverted",
                         "the source mask looks inverted: True marks a real source position, one that may be attended to")

ENCODER_DECODER = (
    Mistake("encoder_decoder", "EncoderBlock", *_SOURCE_MASK_IGNORED,
            lambda ref: lambda module, x, source_mask=None: module(x)),
    Mistake("encoder_decoder", "EncoderBlock", *_SOURCE_MASK_INVERTED,
            lambda ref: lambda module, x, source_mask=None: module(x, None if source_mask is None else ~source_mask)),
    Mistake("encoder_decoder", "EncoderBlock", "causal_encoder",
            "the encoder looks causal: its self-attention is bidirectional, every position sees every real source "
            "position (only the source mask applies)", _causal_encoder),
    Mistake("encoder_decoder", "CrossAttentionDecoderBlock", "cross_attention_on_own_states",
            "the cross-attention attends over the decoder's own states: its keys and values come from the encoder's "
            "output (context=memory)", _cross_attention_on_own_states),
    Mistake("encoder_decoder", "CrossAttentionDecoderBlock", *_SOURCE_MASK_IGNORED,
            lambda ref: lambda module, x, memory, source_mask=None: module(x, memory)),
    Mistake("encoder_decoder", "CrossAttentionDecoderBlock", *_SOURCE_MASK_INVERTED,
            lambda ref: lambda module, x, memory, source_mask=None: module(
                x, memory, None if source_mask is None else ~source_mask)),
    Mistake("encoder_decoder", "EncoderDecoder", "encoder_output_not_normed",
            "the encoder's output is not normalized: apply encoder_norm after the last encoder block",
            _encoder_output_not_normed),
    Mistake("encoder_decoder", "EncoderDecoder", "target_not_shifted",
            "the target is not shifted: the decoder reads target[:, :-1] and its logits are scored against target[:, 1:]",
            lambda ref: lambda module, source, target: ref.cross_entropy_loss(
                module(source, target), target, target != module.pad_id)),
    Mistake("encoder_decoder", "EncoderDecoder", "target_pads_counted",
            "pad targets are counted: score only the targets that are not pad_id",
            lambda ref: lambda module, source, target: ref.cross_entropy_loss(module(source, target[:, :-1]), target[:, 1:])),
)

CATALOGUE = (*CATALOGUE, *ENCODER_DECODER)
