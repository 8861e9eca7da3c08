"""Catalogues of wrong and of correct-but-different submissions, graded by the hidden suites.

Each round edits a copy of ``reference/`` with one realistic mistake (or one
different correct implementation) per exercise and grades those exercises in
one run, so several mistakes cost one grading.
"""

import ast

import pytest

from tests.conftest import ROOT, copy_with_edits, mutate
from tests.conftest import Mutation as M

import graders
from course import mistakes

# One round: exercise -> a finding, or a list of findings in functions that do not use each other. A finding: (the
# mutation(s) of the exercise's module, the case that must fail, the catalogued mistake (course/mistakes.py) whose hint
# that case must give, or None for a mistake outside the catalogue, whose case must give no hint).
# A mutation is found by the structure of the reference's code (tests/conftest.py: Mutation), so the reference's
# comments and layout may change freely. A round grades only its exercises. The transformer and training are graded
# over the reference's attention and loss (graders/engine/known_good.py), so a round may mutate both of a pair; only
# their integration cases (test_with_your_own_*) see the submission's own, and no round here relies on them.
MISTAKES = [
    {
        # The heads concatenated and returned without the output projection.
        "transformer": (M("MultiHeadAttention.__call__", "return self.out(heads.reshape(*heads.shape[:-2], -1))",
                          "return heads.reshape(*heads.shape[:-2], -1)"),
                        "test_multi_head_attention_with_gradients[self]", "no_out_projection"),
        "jax_basics": (M("predict", "return x @ W + b", "return jnp.tanh(x @ W + b)"),
                       "test_predict_with_gradients", "last_layer_tanh"),
        "positional_encoding": (M("sinusoidal_positional_encoding",
                                  "jnp.stack([jnp.sin(angles), jnp.cos(angles)], axis=-1).reshape(seq_len, d_model)",
                                  "jnp.concatenate([jnp.sin(angles), jnp.cos(angles)], axis=-1)"),
                                "test_matches_reference[paper]", "concatenated"),
        "attention": [(M("scaled_dot_product_attention", "query @ jnp.swapaxes(key, -1, -2) / math.sqrt(query.shape[-1])",
                         "query @ jnp.swapaxes(key, -1, -2)"),
                       "test_matches_reference_with_gradients[random]", "unscaled"),
                      (M("causal_mask", "jnp.tril(jnp.ones((seq_len, seq_len), dtype=bool))",
                         "jnp.triu(jnp.ones((seq_len, seq_len), dtype=bool))"), "test_causal_mask[random]", "mask_transposed")],
        "loss": (M("next_token_loss",
                   """
                   targets = tokens[:, 1:]
                   mask = None if pad_id is None else targets != pad_id
                   return cross_entropy_loss(logits[:, :-1], targets, mask)
                   """,
                   """
                   targets = tokens[:, :-1]
                   mask = None if pad_id is None else targets != pad_id
                   return cross_entropy_loss(logits[:, 1:], targets, mask)
                   """),
                 "test_next_token_loss_with_gradient[pad_id_0]", "shifted_backwards"),
        "generation": (M("sample_next_token", "logits = logits.astype(jnp.float32) / temperature",
                         "logits = jnp.log(jax.nn.softmax(logits.astype(jnp.float32)) / temperature)"),
                       "test_samples_follow_the_distribution[temperature_0.6]", "temperature_ignored"),
    },
    {
        # The mask never passed on to the attention.
        "transformer": (M("MultiHeadAttention.__call__", "scaled_dot_product_attention(q, k, v, mask)",
                          "scaled_dot_product_attention(q, k, v)"),
                        "test_multi_head_attention_with_gradients[causal]", "mask_not_passed"),
        "jax_basics": (M("mse_loss", "return jnp.mean((predictions - targets) ** 2)", "return jnp.sum((predictions - targets) ** 2)"),
                       "test_mse_loss_with_gradients", "summed"),
        "positional_encoding": (M("sinusoidal_positional_encoding", "jnp.arange(0, d_model, 2, dtype=jnp.float32)",
                                  "jnp.arange(0, d_model // 2, dtype=jnp.float32)"),
                                "test_matches_reference[custom]", "frequencies_halved"),
        "attention": [(M("scaled_dot_product_attention", "jax.nn.softmax(scores.astype(jnp.float32), axis=-1)",
                         "jax.nn.softmax(scores.astype(jnp.float32), axis=-2)"),
                       "test_matches_reference_with_gradients[none]", "softmax_over_queries"),
                      (M("causal_mask", "jnp.tril(jnp.ones((seq_len, seq_len), dtype=bool))",
                         "jnp.tril(jnp.ones((seq_len, seq_len), dtype=bool), k=1)"), "test_causal_mask[random]", "next_visible")],
        "loss": (M("next_token_loss", "mask = None if pad_id is None else targets != pad_id", "mask = None"),
                 "test_next_token_loss_with_gradient[pad_id_other]", "pads_counted"),
        "generation": (M("sample_next_token", "logits >= kth_largest", "logits > kth_largest"), "test_top_k_one_is_argmax", None),
    },
    {
        # Keys and values projected from x even in cross-attention.
        "transformer": (M("MultiHeadAttention.__call__", "context = x if context is None else context", "context = x"),
                        "test_multi_head_attention_with_gradients[cross]", "context_ignored"),
        "jax_basics": (M("predict", "x = jnp.tanh(x @ W + b)", "x = jax.nn.relu(x @ W + b)"), "test_predict_with_gradients", "hidden_relu"),
        "positional_encoding": (M("sinusoidal_positional_encoding", "[jnp.sin(angles), jnp.cos(angles)]",
                                  "[jnp.cos(angles), jnp.sin(angles)]"),
                                "test_one_position", "sin_cos_swapped"),
        # The mask read the wrong way round, by the scores and by the weights alike.
        "attention": ([M("scaled_dot_product_attention", "jnp.where(mask, scores, -jnp.inf)", "jnp.where(~mask, scores, -jnp.inf)"),
                       M("scaled_dot_product_attention", "jnp.where(mask, weights, 0.0)", "jnp.where(~mask, weights, 0.0)")],
                      "test_matches_reference_with_gradients[random]", "mask_inverted"),
        "loss": (M("cross_entropy_loss", "return jnp.mean(nll)", "return jnp.sum(nll)"),
                 "test_cross_entropy_with_gradient[none]", "summed"),
        "generation": (M("_generate.step", "start = jnp.clip(t - window, 0, total - window)", "start = 0"),
                       "test_greedy_generation_is_exact[window_slides]", None),
    },
    {
        # Attention written inline in the module, the scores never divided by sqrt(d_head).
        "transformer": (M("MultiHeadAttention.__call__", "heads, _ = scaled_dot_product_attention(q, k, v, mask)",
                          """
                          scores = q @ jnp.swapaxes(k, -1, -2)
                          scores = scores if mask is None else jnp.where(mask, scores, -jnp.inf)
                          heads = jax.nn.softmax(scores, axis=-1) @ v
                          """),
                        "test_multi_head_attention_with_gradients[self]", "heads_unscaled"),
        "jax_basics": (M("loss_and_grad", "@jax.jit", ""), "test_loss_and_grad_is_jit_compiled", None),
        "positional_encoding": (M("sinusoidal_positional_encoding", "jnp.float32(base)", "jnp.float32(10000.0)"),
                                "test_matches_reference[custom]", "base_ignored"),
        "attention": [(M("causal_mask", "jnp.tril(jnp.ones((seq_len, seq_len), dtype=bool))",
                         "jnp.tril(jnp.ones((seq_len, seq_len), dtype=bool), k=-1)"),
                       "test_causal_mask[random]", "diagonal_hidden"),
                      (M("scaled_dot_product_attention", "query @ jnp.swapaxes(key, -1, -2) / math.sqrt(query.shape[-1])",
                         "query @ jnp.swapaxes(key, -1, -2) / query.shape[-1]"),
                       "test_matches_reference_with_gradients[none]", "scaled_by_d_k")],
        "loss": (M("cross_entropy_loss", "jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)",
                   "logits.astype(jnp.float32) - jnp.log(jnp.sum(jnp.exp(logits.astype(jnp.float32)), axis=-1, keepdims=True))"),
                 "test_large_logits_stay_finite", "exp_overflow"),
        "generation": (M("_generate", "return jax.lax.fori_loop(prompt_len, total, step, buffer)",
                         """
                         for t in range(prompt_len, total):  # unrolled: the model is traced once per token
                             buffer = step(t, buffer)
                         return buffer
                         """),
                       "test_model_is_traced_a_bounded_number_of_times", None),
    },
    {
        # The mask never applied, before or after the softmax.
        "attention": ([M("scaled_dot_product_attention", "scores = jnp.where(mask, scores, -jnp.inf)", "scores = scores"),
                       M("scaled_dot_product_attention", "weights = jnp.where(mask, weights, 0.0)", "weights = weights")],
                      "test_matches_reference_with_gradients[random]", "mask_ignored"),
        "transformer": (M("DecoderBlock.__call__",
                          """
                          x = x + self.attn(self.ln1(x), mask=mask)
                          return x + self.ffn(self.ln2(x))
                          """,
                          """
                          x = self.ln1(x + self.attn(x, mask=mask))
                          return self.ln2(x + self.ffn(x))
                          """),
                        "test_decoder_block_with_gradients[causal]", "post_norm"),
        "training": (M("train_step", "optimizer.update(model, grads)", ""),
                     "test_train_step_updates_like_the_reference[adam]", "no_update"),
        # One token too few kept: the k-th largest logit itself is cut.
        "generation": (M("sample_next_token", "logits >= kth_largest", "logits > kth_largest"),
                       "test_samples_follow_the_distribution[top_k]", "top_k_minus_one"),
    },
    {
        # log p(target) without the minus: the loss falls below zero.
        "loss": (M("cross_entropy_loss", "nll = -jnp.take_along_axis(log_probs, targets[..., None], axis=-1)[..., 0]",
                   "nll = jnp.take_along_axis(log_probs, targets[..., None], axis=-1)[..., 0]"),
                 "test_cross_entropy_with_gradient[none]", "wrong_sign"),
        # Heads split as [..., H, T, d_head] by a plain reshape, and merged back the same way. The exact gelu.
        "transformer": [([M("MultiHeadAttention.__call__.split_heads",
                             """
                             y = y.reshape(*y.shape[:-1], self.num_heads, -1)
                             return jnp.swapaxes(y, -2, -3)
                             """,
                             "return y.reshape(*y.shape[:-2], self.num_heads, y.shape[-2], -1)"),
                           M("MultiHeadAttention.__call__",
                             """
                             heads = jnp.swapaxes(heads, -2, -3)
                             return self.out(heads.reshape(*heads.shape[:-2], -1))
                             """,
                             "return self.out(heads.reshape(*heads.shape[:-3], heads.shape[-2], -1))")],
                           "test_multi_head_attention_with_gradients[self]", "heads_split_wrong"),
                      (M("FeedForward.__call__", "jax.nn.gelu(self.up(x))", "jax.nn.gelu(self.up(x), approximate=False)"),
                       "test_feed_forward_with_gradients", "exact_gelu")],
        "training": (M("train_step", "return loss", "return loss_fn(model)"),
                     "test_train_step_updates_like_the_reference[sgd]", "loss_after_update"),
        # Probabilities where jax.random.categorical expects logits.
        "generation": (M("sample_next_token", "return jax.random.categorical(key, logits, axis=-1).astype(jnp.int32)",
                         "return jax.random.categorical(key, jax.nn.softmax(logits, axis=-1), axis=-1).astype(jnp.int32)"),
                       "test_samples_follow_the_distribution[temperature_0.6]", "probabilities_as_logits"),
    },
    {
        # The pad mask read from the inputs tokens[:, :-1] instead of the targets.
        "loss": (M("next_token_loss", "mask = None if pad_id is None else targets != pad_id",
                   "mask = None if pad_id is None else tokens[:, :-1] != pad_id"),
                 "test_next_token_loss_with_gradient[pad_id_other]", "pad_mask_from_inputs"),
        # The relu, and the mask read as "True = hidden" (a row of the causal mask then hides every key).
        "transformer": [(M("FeedForward.__call__", "jax.nn.gelu(self.up(x))", "jax.nn.relu(self.up(x))"),
                         "test_feed_forward_with_gradients", "relu"),
                        (M("MultiHeadAttention.__call__", "scaled_dot_product_attention(q, k, v, mask)",
                           "scaled_dot_product_attention(q, k, v, None if mask is None else jnp.logical_not(mask))"),
                         "test_multi_head_attention_with_gradients[causal]", "mask_inverted")],
        "training": (M("train_step", "@nnx.jit", ""), "test_train_step_is_compiled", None),
        "generation": (M("sample_next_token", "logits = logits.astype(jnp.float32) / temperature",
                         "logits = logits.astype(jnp.float32) * temperature"),
                       "test_samples_follow_the_distribution[temperature_0.6]", "temperature_multiplied"),
    },
    {
        "transformer": (M("DecoderBlock.__call__", "x = x + self.attn(self.ln1(x), mask=mask)", "x = self.attn(self.ln1(x), mask=mask)"),
                        "test_decoder_block_with_gradients[none]", "no_attention_residual"),
        # The shard_batch check dropped, and the targets shifted by hand before next_token_loss shifts them again.
        "training": [(M("shard_batch", '"data" not in mesh.axis_names', "False"), "test_shard_batch_rejects_bad_meshes", None),
                     (M("train_step.loss_fn", "return next_token_loss(model(tokens), tokens)",
                        "return next_token_loss(model(tokens[:, :-1]), tokens[:, 1:])"),
                      "test_train_step_updates_like_the_reference[adam]", "shifted_twice")],
        "generation": (M("sample_next_token", "logits = jnp.where(logits >= kth_largest, logits, -jnp.inf)", "logits = logits"),
                       "test_samples_follow_the_distribution[top_k]", "top_k_ignored"),
    },
    {
        # No validation of num_heads; and neither residual connection in the block.
        "transformer": [(M("MultiHeadAttention.__init__", "num_heads <= 0 or d_model % num_heads", "False"),
                         "test_num_heads_must_divide_d_model", None),
                        (M("DecoderBlock.__call__",
                           """
                           x = x + self.attn(self.ln1(x), mask=mask)
                           return x + self.ffn(self.ln2(x))
                           """,
                           """
                           x = self.attn(self.ln1(x), mask=mask)
                           return self.ffn(self.ln2(x))
                           """),
                         "test_decoder_block_with_gradients[causal]", "no_residuals")],
        # The loss's sign flipped inside the step: the parameters climb the loss, and the loss returned is negative.
        "training": (M("train_step.loss_fn", "return next_token_loss(model(tokens), tokens)",
                       "return -next_token_loss(model(tokens), tokens)"),
                     "test_train_step_updates_like_the_reference[adam]", "loss_sign_flipped"),
    },
    {
        # No residual connection around the feed-forward network.
        "transformer": (M("DecoderBlock.__call__", "return x + self.ffn(self.ln2(x))", "return self.ffn(self.ln2(x))"),
                        "test_decoder_block_with_gradients[causal]", "no_ffn_residual"),
        # The softmax over every key, the masked weights zeroed after it: rows no longer sum to one.
        "attention": (M("scaled_dot_product_attention", "scores = jnp.where(mask, scores, -jnp.inf)", "scores = scores"),
                      "test_matches_reference_with_gradients[random]", "mask_after_softmax"),
        "generation": (M("sample_next_token", "return jax.random.categorical(key, logits, axis=-1).astype(jnp.int32)",
                         "return jnp.argmax(logits, axis=-1).astype(jnp.int32)"),
                       "test_samples_follow_the_distribution[temperature_1.7]", "greedy_sampling"),
        # The step applied to a copy of the model: the caller's model never changes.
        "training": (M("train_step", "loss, grads = nnx.value_and_grad(loss_fn)(model)",
                       """
                       model = nnx.clone(model)
                       loss, grads = nnx.value_and_grad(loss_fn)(model)
                       """),
                     "test_train_step_updates_like_the_reference[sgd]", "no_update"),
    },
    {
        # The decoder block's mask never passed on to its attention.
        "transformer": (M("DecoderBlock.__call__", "x = x + self.attn(self.ln1(x), mask=mask)", "x = x + self.attn(self.ln1(x))"),
                        "test_decoder_block_with_gradients[causal]", "mask_not_passed"),
        # A 3-D mask read as PyTorch's per-batch [B, T_q, T_k] (a head axis added), where numpy's rule makes it per head.
        # And a float32 output for bfloat16 inputs: its message names the dtype, not the values.
        "attention": [(M("scaled_dot_product_attention", "scores = jnp.where(mask, scores, -jnp.inf)",
                         """
                         mask = mask[:, None] if mask.ndim == 3 else mask
                         scores = jnp.where(mask, scores, -jnp.inf)
                         """),
                       "test_every_mask_shape[per_head]", None),
                      (M("scaled_dot_product_attention", "return weights @ value, weights",
                         "return (weights @ value).astype(jnp.float32), weights"),
                       "test_bfloat16_inputs_give_bfloat16_outputs", None)],
        # One key for every step: each token alone looks right, but the steps draw with the same noise.
        "generation": (M("_generate.step", "jax.random.fold_in(key, t)", "key"),
                       "test_generation_steps_are_independent_draws", None),
        # The mask ignored by the loss: every position counted.
        "loss": (M("cross_entropy_loss", "weights = mask.astype(jnp.float32)", "weights = jnp.ones(targets.shape)"),
                 "test_cross_entropy_with_gradient[bool_mask]", "loss_mask_ignored"),
    },
    {
        # One LayerNorm for both sublayers: invisible while the norms hold their initial scale 1 and bias 0.
        "transformer": (M("DecoderBlock.__call__", "return x + self.ffn(self.ln2(x))", "return x + self.ffn(self.ln1(x))"),
                        "test_decoder_block_with_gradients[causal]", "ln2_unused"),
        # Exactly top_k tokens kept by their indices: one of the tokens tied at the k-th largest logit is cut.
        "generation": (M("sample_next_token", "logits = jnp.where(logits >= kth_largest, logits, -jnp.inf)",
                         """
                         kept = jax.lax.top_k(logits, top_k)[1]  # [..., top_k]
                         logits = jnp.where((jnp.arange(vocab) == kept[..., None]).any(-2), logits, -jnp.inf)
                         """),
                       "test_top_k_keeps_every_tie", None),
        # The batch copied whole to every device of the mesh instead of split over its data axis.
        # The batch copied whole to every device; the step's loss read without the shift (logits[:, t] for tokens[:, t]).
        "training": [(M("shard_batch", 'NamedSharding(mesh, P("data"))', "NamedSharding(mesh, P())"),
                      "test_shard_batch_places_rows_on_the_data_axis[data]", None),
                     (M("train_step.loss_fn", "return next_token_loss(model(tokens), tokens)",
                        """
                        from exercises.loss.loss import cross_entropy_loss
                        return cross_entropy_loss(model(tokens), tokens)
                        """),
                      "test_train_step_updates_like_the_reference[sgd]", "loss_unshifted")],
    },
    {
        # PyTorch's LayerNorm epsilon (1e-5) instead of nnx.LayerNorm's (1e-6): it shows only at small variance.
        "transformer": ([M("DecoderBlock.__init__", "self.ln1 = nnx.LayerNorm(d_model, rngs=rngs)",
                           "self.ln1 = nnx.LayerNorm(d_model, epsilon=1e-5, rngs=rngs)"),
                         M("DecoderBlock.__init__", "self.ln2 = nnx.LayerNorm(d_model, rngs=rngs)",
                           "self.ln2 = nnx.LayerNorm(d_model, epsilon=1e-5, rngs=rngs)")],
                        "test_decoder_block_with_gradients[small_variance]", None),
        # The mesh's grid refilled in jax.devices() order: right only when the mesh's order is the natural one.
        "training": [(M("shard_batch", 'return jax.device_put(tokens, NamedSharding(mesh, P("data")))',
                        """
                        devices = mesh.devices.copy()
                        devices.flat[:] = jax.devices()[:devices.size]
                        return jax.device_put(tokens, NamedSharding(Mesh(devices, mesh.axis_names), P("data")))
                        """),
                      "test_shard_batch_places_rows_on_the_data_axis[data_and_model]", None),
                     # Token 0 dropped as padding though the batch has none.
                     (M("train_step.loss_fn", "return next_token_loss(model(tokens), tokens)",
                        "return next_token_loss(model(tokens), tokens, pad_id=0)"),
                      "test_train_step_updates_like_the_reference[adam]", "pad_id_given")],
    },
    {
        # A head axis always added to the mask (right for [T, T] and [B, T, T]): a per-batch [B, 1, T, T] mask breaks.
        "transformer": (M("MultiHeadAttention.__call__", "scaled_dot_product_attention(q, k, v, mask)",
                          "scaled_dot_product_attention(q, k, v, None if mask is None else mask[..., None, :, :])"),
                        "test_multi_head_attention_every_mask_shape[per_batch]", None),
        # Split over the mesh's first axis whatever its name (right while data comes first); the step compiled with jax.jit, which never writes the updates back.
        "training": [(M("shard_batch", 'NamedSharding(mesh, P("data"))', "NamedSharding(mesh, P(mesh.axis_names[0]))"),
                      "test_shard_batch_places_rows_on_the_data_axis[model_and_data]", None),
                     (M("train_step", "@nnx.jit", "@jax.jit"), "test_train_step_updates_like_the_reference[adam]", "no_update")],
    },
    {
        # Heads merged by a plain reshape of [..., H, T, d_head]; no activation between up and down.
        "transformer": [(M("MultiHeadAttention.__call__",
                           """
                           heads = jnp.swapaxes(heads, -2, -3)
                           return self.out(heads.reshape(*heads.shape[:-2], -1))
                           """,
                           "return self.out(heads.reshape(*heads.shape[:-3], heads.shape[-2], -1))"),
                         "test_multi_head_attention_with_gradients[self]", "heads_merged_untransposed"),
                        (M("FeedForward.__call__", "jax.nn.gelu(self.up(x))", "self.up(x)"),
                         "test_feed_forward_with_gradients", "no_activation")],
        "loss": (M("cross_entropy_loss", "return jnp.sum(nll * weights) / jnp.maximum(jnp.sum(weights), 1.0)",
                   "return jnp.sum(nll * weights) / nll.size"),
                 "test_cross_entropy_with_gradient[bool_mask]", "divided_by_all_positions"),
    },
    {
        # Heads split as [d_head, H]: head h made of the features h, h + H, ...
        "transformer": (M("MultiHeadAttention.__call__.split_heads", "y = y.reshape(*y.shape[:-1], self.num_heads, -1)",
                          """
                          y = y.reshape(*y.shape[:-1], -1, self.num_heads)
                          y = jnp.swapaxes(y, -1, -2)
                          """),
                        "test_multi_head_attention_with_gradients[cross]", "heads_split_d_head_first"),
        # Scoring logits[:, t] against tokens[:, t].
        "loss": (M("next_token_loss",
                   """
                   targets = tokens[:, 1:]
                   mask = None if pad_id is None else targets != pad_id
                   return cross_entropy_loss(logits[:, :-1], targets, mask)
                   """,
                   """
                   targets = tokens
                   mask = None if pad_id is None else targets != pad_id
                   return cross_entropy_loss(logits, targets, mask)
                   """),
                 "test_next_token_loss_with_gradient[pad_id_other]", "unshifted"),
    },
    {
        # The scores divided by sqrt(d_model) = sqrt(H * d_head), not by each head's sqrt(d_head).
        "transformer": (M("MultiHeadAttention.__call__", "scaled_dot_product_attention(q, k, v, mask)",
                          "scaled_dot_product_attention(q / self.num_heads ** 0.5, k, v, mask)"),
                        "test_multi_head_attention_with_gradients[self]", "scaled_by_sqrt_d_model"),
        # Token 0 read as padding whatever pad_id is.
        "loss": (M("next_token_loss", "mask = None if pad_id is None else targets != pad_id", "mask = targets != 0"),
                 "test_next_token_loss_with_gradient[pad_id_other]", "token_zero_dropped"),
    },
]
# Cases that must still pass despite the mistake of their round: each mistake costs only what it breaks.
STILL_PASSING = {
    (1, "loss"): "test_cross_entropy_with_gradient[bool_mask]",
    (3, "positional_encoding"): "test_matches_reference[paper]",
    (3, "jax_basics"): "test_loss_and_grad",
    (3, "loss"): "test_cross_entropy_with_gradient[none]",
    (4, "transformer"): "test_multi_head_attention_with_gradients[causal]",
    (0, "transformer"): "test_feed_forward_with_gradients",
    (0, "generation"): "test_samples_follow_the_distribution[top_k]",
    (2, "generation"): "test_greedy_generation_is_exact[short_prompt]",
    (6, "training"): "test_train_step_updates_like_the_reference[adam]",
    (7, "training"): "test_shard_batch_places_rows_on_the_data_axis[model_and_data]",
    (8, "transformer"): "test_multi_head_attention_with_gradients[causal]",
    (10, "attention"): "test_every_mask_shape[per_batch]",
    (10, "generation"): "test_generate_samples_follow_the_model",
    (11, "generation"): "test_samples_follow_the_distribution[top_k]",
    (12, "transformer"): "test_decoder_block_with_gradients[causal]",
    (13, "transformer"): "test_multi_head_attention_with_gradients[causal]",
    (12, "training"): "test_shard_batch_places_rows_on_the_data_axis[data]",
    (13, "training"): "test_shard_batch_places_rows_on_the_data_axis[data_and_model]",
}

# The start of a failing case's message where it must name the dtype or the shape before any value.
MESSAGES = {
    (10, "test_bfloat16_inputs_give_bfloat16_outputs"): "bfloat16 output: expected dtype bfloat16, got float32",
}


def _findings(entry) -> list[tuple]:
    """The findings of one exercise's entry in a round of MISTAKES."""
    return entry if isinstance(entry, list) else [entry]


def _mutations(finding) -> list[M]:
    return finding[0] if isinstance(finding[0], list) else [finding[0]]


def _edits(round_: dict) -> dict:
    return {f"{name}/{name}.py": [m for finding in _findings(entry) for m in _mutations(finding)] for name, entry in round_.items()}


# The hint each graded finding got, by (round, exercise, catalogued mistake or None): read by the metric below.
GRADED: dict[tuple[int, str, str | None], str | None] = {}


@pytest.mark.parametrize("number", range(len(MISTAKES)))
def test_each_mistake_loses_points_on_its_case_with_its_hint(tmp_path, number):
    round_ = MISTAKES[number]
    result = graders.grade(copy_with_edits(tmp_path / "wrong", _edits(round_)), exercises=list(round_), seed=100 + number)
    assert result.status == "ok", result.errors
    for exercise in result.exercises:
        cases = {c.name: c for c in exercise.cases}
        assert exercise.score < exercise.max_score
        for _, case_name, mistake in _findings(round_[exercise.name]):
            case = cases[case_name]
            assert case.status == "failed" and case.points == 0, (exercise.name, case)
            GRADED[number, exercise.name, mistake] = case.hint
            # The hint of that mistake and only it: another's hint, or any for an uncatalogued mistake, misdirects.
            assert case.hint == (None if mistake is None else mistakes.hint(mistake)), (exercise.name, mistake, case)
            if mistake is not None:
                assert case.hint in case.message
            assert case.message.startswith(MESSAGES.get((number, case_name), "")), case.message
        if (number, exercise.name) in STILL_PASSING:
            assert cases[STILL_PASSING[number, exercise.name]].status == "passed", exercise


MODEL_EXERCISES = ("attention", "transformer", "loss", "training", "generation")


def test_every_model_exercise_has_six_catalogued_mistakes_graded_and_the_metric_is_reported(capsys):
    """Named correctly / catalogued mistakes, over the rounds graded in this session, and coverage of the catalogue.

    The rounds above fail on any misdirected hint; this reports the numbers the issue measures them by.
    """
    graded = {(exercise, mistake) for r in MISTAKES for exercise, entry in r.items()
              for _, _, mistake in _findings(entry) if mistake is not None}
    for exercise in MODEL_EXERCISES:
        assert len({m for e, m in graded if e == exercise}) >= 6, exercise
        assert {m for e, m in graded if e == exercise} <= {m.name for m in mistakes.of(exercise)}, exercise
    catalogued = [m for m in mistakes.CATALOGUE if m.exercise in MODEL_EXERCISES]
    covered = sum((m.exercise, m.name) in graded for m in catalogued)
    named = sum(hint is not None and hint == mistakes.hint(m) for (_, _, m), hint in GRADED.items() if m is not None)
    misdirected = sum(hint is not None and (m is None or hint != mistakes.hint(m)) for (_, _, m), hint in GRADED.items())
    total = sum(m is not None for _, _, m in GRADED)
    with capsys.disabled():
        print(f"\ncatalogue of the model exercises: {covered}/{len(catalogued)} mistakes graded by a realistic submission; "
              f"graded this session: {named}/{total} named correctly, {misdirected} misdirected")
    assert misdirected == 0
    if total:
        assert named / total >= 0.9


# Correct implementations written differently from the reference: each round must earn full marks.
CORRECT = [
    {
        "jax_basics": [
            M("predict", "x = jnp.tanh(x @ W + b)", "x = jnp.tanh(jnp.einsum('...i,ij->...j', x, W) + b)"),
            M("mse_loss", "jnp.mean((predictions - targets) ** 2)", "jnp.square(predictions - targets).sum() / targets.size"),
            M("per_example_grads", "return jax.vmap(jax.grad(mse_loss), in_axes=(None, 0))(params, batch)",
              """
              one = lambda x, y: jax.grad(mse_loss)(params, (x[None], y[None]))
              return jax.vmap(one)(*batch)
              """),
        ],
        "positional_encoding": [
            M("sinusoidal_positional_encoding", "positions / jnp.power(jnp.float32(base), exponents)",
              "positions * jnp.exp(-jnp.log(jnp.float32(base)) * exponents)"),
        ],
        "attention": [
            M("scaled_dot_product_attention", "query @ jnp.swapaxes(key, -1, -2)", "jnp.einsum('...qd,...kd->...qk', query, key)"),
            M("scaled_dot_product_attention", "jnp.where(mask, scores, -jnp.inf)", "jnp.where(mask, scores, -1e9)"),
        ],
        "loss": [
            M("cross_entropy_loss", "log_probs = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)",
              """
              z = logits.astype(jnp.float32)
              top = jax.lax.stop_gradient(z.max(-1, keepdims=True))
              log_probs = z - top - jnp.log(jnp.sum(jnp.exp(z - top), axis=-1, keepdims=True))
              """),
        ],
        "transformer": [
            M("MultiHeadAttention.__call__",
              """
              heads = jnp.swapaxes(heads, -2, -3)
              return self.out(heads.reshape(*heads.shape[:-2], -1))
              """,
              "return self.out(jnp.concatenate([heads[..., h, :, :] for h in range(self.num_heads)], axis=-1))"),
            M("DecoderBlock.__call__", "x = x + self.attn(self.ln1(x), mask=mask)", "x = self.attn(self.ln1(x), mask=mask) + x"),
        ],
        "generation": [
            M("sample_next_token", "return jax.random.categorical(key, logits, axis=-1).astype(jnp.int32)",
              """
              gumbel = jax.random.gumbel(key, logits.shape)  # the Gumbel-max trick
              return jnp.argmax(logits + gumbel, axis=-1).astype(jnp.int32)
              """),
            M("sample_next_token", "jax.lax.top_k(logits, top_k)[0][..., -1:]", "jnp.sort(logits, axis=-1)[..., -top_k:][..., :1]"),
        ],
        "training": [
            M("train_step", "loss, grads = nnx.value_and_grad(loss_fn)(model)",
              """
              grads = nnx.grad(loss_fn)(model)
              loss = loss_fn(model)
              """),
            M("shard_batch", 'NamedSharding(mesh, P("data"))', 'NamedSharding(mesh, P("data", *[None] * (tokens.ndim - 1)))'),
        ],
    },
    {
        "jax_basics": [
            M("loss_and_grad", "return jax.value_and_grad(mse_loss)(params, batch)",
              "return mse_loss(params, batch), jax.grad(mse_loss)(params, batch)"),
        ],
        "positional_encoding": [
            M("sinusoidal_positional_encoding",
              "return jnp.stack([jnp.sin(angles), jnp.cos(angles)], axis=-1).reshape(seq_len, d_model)",
              """
              table = jnp.zeros((seq_len, d_model), jnp.float32)
              return table.at[:, 0::2].set(jnp.sin(angles)).at[:, 1::2].set(jnp.cos(angles))
              """),
        ],
        "attention": [
            M("scaled_dot_product_attention", "weights = jax.nn.softmax(scores.astype(jnp.float32), axis=-1)",
              """
              scores = scores.astype(jnp.float32)
              e = jnp.exp(scores - scores.max(axis=-1, keepdims=True))
              if mask is not None:
                  e = e * mask
              weights = e / e.sum(axis=-1, keepdims=True)
              """),
            M("scaled_dot_product_attention", "jnp.where(mask, scores, -jnp.inf)", "jnp.where(mask, scores, jnp.finfo(scores.dtype).min)"),
        ],
        "loss": [
            M("cross_entropy_loss", "-jnp.take_along_axis(log_probs, targets[..., None], axis=-1)[..., 0]",
              "-jnp.sum(jax.nn.one_hot(targets, logits.shape[-1]) * log_probs, axis=-1)"),
            M("cross_entropy_loss", "return jnp.sum(nll * weights) / jnp.maximum(jnp.sum(weights), 1.0)",
              """
              total = jnp.sum(jnp.where(weights != 0, nll * weights, 0.0))
              return total / jnp.maximum(jnp.sum(weights), 1.0)
              """),
        ],
        "transformer": [
            M("MultiHeadAttention.__call__.split_heads",
              """
              y = y.reshape(*y.shape[:-1], self.num_heads, -1)
              return jnp.swapaxes(y, -2, -3)
              """,
              """
              d = y.shape[-1] // self.num_heads
              return jnp.stack([y[..., h * d:(h + 1) * d] for h in range(self.num_heads)], axis=-3)
              """),
            M("FeedForward.__call__", "return self.down(jax.nn.gelu(self.up(x)))",
              """
              h = self.up(x)
              return self.down(0.5 * h * (1 + jnp.tanh(jnp.sqrt(2 / jnp.pi) * (h + 0.044715 * h**3))))
              """),
        ],
        "generation": [
            M("sample_next_token", "return jax.random.categorical(key, logits, axis=-1).astype(jnp.int32)",
              """
              cdf = jnp.cumsum(jax.nn.softmax(logits, axis=-1), axis=-1)  # inverse-CDF sampling
              u = jax.random.uniform(key, (*logits.shape[:-1], 1))
              return jnp.minimum(jnp.sum(cdf < u, axis=-1), logits.shape[-1] - 1).astype(jnp.int32)
              """),
            M("_generate", "return jax.lax.fori_loop(prompt_len, total, step, buffer)",
              """
              buffer, _ = jax.lax.scan(lambda b, t: (step(t, b), None), buffer, jnp.arange(prompt_len, total))
              return buffer
              """),
            M("_generate.step", "jax.random.fold_in(key, t)", "jax.random.split(key, total)[t]"),
        ],
        "training": [
            M("train_step", "loss, grads = nnx.value_and_grad(loss_fn)(model)",
              "(loss, _), grads = nnx.value_and_grad(lambda m: (loss_fn(m), None), has_aux=True)(model)"),
            M("shard_batch", '"data" not in mesh.axis_names', '"data" not in mesh.shape'),
            # Each device's rows assembled from the numpy batch rather than put there by jax.device_put.
            M("shard_batch", 'return jax.device_put(tokens, NamedSharding(mesh, P("data")))',
              'return jax.make_array_from_callback(tokens.shape, NamedSharding(mesh, P("data")), lambda index: tokens[index])'),
        ],
    },
]


@pytest.mark.parametrize("number", range(len(CORRECT)))
def test_correct_but_different_submissions_earn_full_marks(tmp_path, number):
    round_ = CORRECT[number]
    target = copy_with_edits(tmp_path / "different", {f"{name}/{name}.py": edits for name, edits in round_.items()})
    result = graders.grade(target, exercises=list(round_), seed=200 + number)
    failures = [(c.exercise, c.name, c.message) for e in result.exercises for c in e.cases if c.status != "passed"]
    assert result.status == "ok" and not failures, failures
    assert result.score == result.max_score


def _mutations_of(name: str) -> list[list[M]]:
    """The mutation lists of exercise ``name`` in both catalogues."""
    edits = [_mutations(f) for r in MISTAKES if name in r for f in _findings(r[name])] + [r[name] for r in CORRECT if name in r]
    return [[e] if isinstance(e, M) else e for e in edits]


@pytest.mark.parametrize("name", sorted({name for round_ in MISTAKES + CORRECT for name in round_}))
def test_mutations_survive_a_reformatted_reference(name):
    # ast.unparse drops every comment, rewraps every line and requotes every string: no anchor may move.
    source = (ROOT / "reference" / name / f"{name}.py").read_text()
    reformatted = ast.unparse(ast.parse(source))
    for mutations in _mutations_of(name):
        mutated = [source, reformatted]
        for mutation in mutations:
            mutated = [mutate(text, mutation, name) for text in mutated]
        assert ast.dump(ast.parse(mutated[0])) == ast.dump(ast.parse(mutated[1])), mutations


def test_mutate_edits_by_structure_and_names_a_missing_anchor():
    source = "def f(x):\n    y = x + 1  # one more\n    return y + 1\n"
    assert mutate(source, M("f", "y = x + 1", "y = x - 1"), "f.py") == "def f(x):\n    y = x - 1\n    return y + 1\n"
    assert mutate(source, M("f", "y + 1", "y * 2"), "f.py") == "def f(x):\n    y = x + 1  # one more\n    return (y * 2)\n"
    with pytest.raises(AssertionError, match=r"f.py: 'x - 1' matches 0 times in f, expected once"):
        mutate(source, M("f", "x - 1", "x"), "f.py")
    with pytest.raises(AssertionError, match="'1' matches 2 times in f"):
        mutate(source, M("f", "1", "2"), "f.py")
    with pytest.raises(AssertionError, match="f.py: no function or class 'g' on the path 'g.h'"):
        mutate(source, M("g.h", "x", "y"), "f.py")
    with pytest.raises(AssertionError, match="is not Python"):
        mutate(source, M("f", "return y + 1", "return ("), "f.py")
