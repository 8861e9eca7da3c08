"""One catalogue of known mistakes (course/mistakes.py), two consumers: the grader and the visible tests.

The grader's side is tests/test_grade_catalogue.py; here, the catalogue
itself, the fixtures that store the reference's outputs under each mistake,
and the visible tests that name a mistake in the catalogue's words when a
submission makes it.
"""

import shutil

import numpy as np
import pytest

from authoring import release
from course import catalog, mistakes
from course.check import run_visible_tests
from course.testing import KNOWN_MISTAKE, assert_close, load_fixtures, mistaken_distributions, stored_mistakes
from tests.conftest import ROOT, copy_with_edits
from tests.conftest import Mutation as M


def test_every_exercise_has_at_least_three_mistakes_of_its_own_functions():
    for exercise in catalog.EXERCISES:
        known = mistakes.of(exercise.name)
        assert len(known) >= 3, exercise.name
        classes = {"transformer": {"MultiHeadAttention", "FeedForward", "DecoderBlock"}}.get(exercise.name, set())
        assert {m.function for m in known} <= set(exercise.functions) | classes, exercise.name


def test_a_name_stands_for_one_hint():
    hints = {}
    for mistake in mistakes.CATALOGUE:
        assert hints.setdefault(mistake.name, mistake.hint) == mistake.hint, mistake.name
        assert mistakes.hint(mistake.name) == mistake.hint
    assert len({(m.exercise, m.function, m.name) for m in mistakes.CATALOGUE}) == len(mistakes.CATALOGUE)
    with pytest.raises(KeyError, match="no catalogued mistake is called 'nope'"):
        mistakes.hint("nope")


def test_the_catalogue_ships_no_solution_line(tmp_path):
    # The release's leak scan: no distinctive line of reference/ may appear in the student's course package.
    shutil.copytree(ROOT / "course", tmp_path / "course", ignore=shutil.ignore_patterns("__pycache__"))
    assert release.leaks(tmp_path, ROOT) == []


@pytest.mark.parametrize("exercise", catalog.EXERCISES, ids=lambda e: e.name)
def test_stored_mistakes_name_catalogued_mistakes_of_stored_values(exercise):
    fixtures = load_fixtures(ROOT / "exercises" / exercise.name / "test_x.py")
    names = {m.name for m in mistakes.of(exercise.name)}
    for key in fixtures:
        if ".mistake." in key:
            base, name = key.split(".mistake.")
            assert base in fixtures and name in names, key
            assert fixtures[key].shape == fixtures[base].shape, key


def test_assert_close_names_the_mistake_a_value_matches():
    right, wrong = np.ones(3, np.float32), np.full(3, 2.0, np.float32)
    hint = mistakes.hint("summed")
    with pytest.raises(AssertionError) as failure:
        assert_close(wrong * (1 + 1e-6), right, what="loss", mistakes={hint: wrong})
    assert str(failure.value).splitlines()[0].endswith("; " + KNOWN_MISTAKE.format(hint=hint))
    with pytest.raises(AssertionError) as failure:
        assert_close(wrong * 3, right, what="loss", mistakes={hint: wrong})
    assert "known mistake" not in str(failure.value)
    assert_close(right, right, what="loss", mistakes={hint: right})  # a match with the right values passes


def test_stored_mistakes_read_the_fixture_keys():
    fixtures = {"a.output": np.zeros(2), "a.output.mistake.unscaled": np.ones(2), "b.output.mistake.summed": np.ones(2)}
    assert list(stored_mistakes(fixtures, "a.output")) == [mistakes.hint("unscaled")]


def test_sampling_mistakes_give_their_distributions():
    logits = np.asarray([2.0, 0.5, -1.0, 1.0, 0.0])
    found = mistaken_distributions(logits, 2.0, 3)
    assert list(found) == [mistakes.hint(n) for n in ("temperature_ignored", "temperature_multiplied", "top_k_ignored", "greedy_sampling",
                                                      "top_k_minus_one", "probabilities_as_logits")]
    assert found[mistakes.hint("greedy_sampling")].tolist() == [1.0, 0.0, 0.0, 0.0, 0.0]
    assert found[mistakes.hint("top_k_ignored")].min() > 0
    assert mistakes.hint("temperature_ignored") not in mistaken_distributions(logits, 1.0)  # no change at temperature 1
    assert (found[mistakes.hint("top_k_minus_one")] > 0).tolist() == [True, False, False, True, False]  # the top 2, not 3
    assert mistakes.hint("top_k_minus_one") not in mistaken_distributions(logits, 2.0, 1)  # top_k=1 keeps its one token
    assert found[mistakes.hint("probabilities_as_logits")].min() > 0  # the softmax of probabilities: none is 0


# Per exercise, mistakes made in the reference's code (tests/conftest.py: Mutation): the mutation, the visible test
# that must fail, and the catalogued mistake its message must name. Round i holds the i-th mistake of each exercise,
# split in two submissions: the transformer uses the submission's attention and the training step its loss, so a
# mistake there would change what they compute.
VISIBLE = {
    "jax_basics": [
        (M("predict", "return x @ W + b", "return jnp.tanh(x @ W + b)"), "test_predict_matches_reference", "last_layer_tanh"),
        (M("mse_loss", "return jnp.mean((predictions - targets) ** 2)", "return jnp.sum((predictions - targets) ** 2)"),
         "test_mse_loss_matches_reference", "summed"),
        (M("predict", "x = jnp.tanh(x @ W + b)", "x = jax.nn.relu(x @ W + b)"), "test_predict_matches_reference", "hidden_relu"),
    ],
    "positional_encoding": [
        (M("sinusoidal_positional_encoding", "jnp.stack([jnp.sin(angles), jnp.cos(angles)], axis=-1).reshape(seq_len, d_model)",
           "jnp.concatenate([jnp.sin(angles), jnp.cos(angles)], axis=-1)"), "test_matches_reference", "concatenated"),
        (M("sinusoidal_positional_encoding", "[jnp.sin(angles), jnp.cos(angles)]", "[jnp.cos(angles), jnp.sin(angles)]"),
         "test_matches_reference", "sin_cos_swapped"),
        (M("sinusoidal_positional_encoding", "jnp.float32(base)", "jnp.float32(10000.0)"), "test_base_is_used", "base_ignored"),
    ],
    "attention": [
        (M("scaled_dot_product_attention", "query @ jnp.swapaxes(key, -1, -2) / math.sqrt(query.shape[-1])",
           "query @ jnp.swapaxes(key, -1, -2)"), "test_attention_matches_reference[unmasked]", "unscaled"),
        (M("scaled_dot_product_attention", "scores = jnp.where(mask, scores, -jnp.inf)", "scores = scores"),
         "test_attention_matches_reference[masked]", "mask_after_softmax"),
        (M("causal_mask", "jnp.tril(jnp.ones((seq_len, seq_len), dtype=bool))",
           "jnp.tril(jnp.ones((seq_len, seq_len), dtype=bool), k=-1)"), "test_causal_mask_matches_reference", "diagonal_hidden"),
    ],
    "loss": [
        # Scoring logits[:, t] against tokens[:, t].
        (M("next_token_loss", "targets = tokens[:, 1:]\nmask = None if pad_id is None else targets != pad_id\n"
                              "return cross_entropy_loss(logits[:, :-1], targets, mask)",
           "targets = tokens\nmask = None if pad_id is None else targets != pad_id\nreturn cross_entropy_loss(logits, targets, mask)"),
         "test_matches_reference[next_token]", "unshifted"),
        (M("cross_entropy_loss", "return jnp.mean(nll)", "return jnp.sum(nll)"), "test_matches_reference[cross_entropy]", "summed"),
        (M("cross_entropy_loss", "jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)",
           "logits.astype(jnp.float32) - jnp.log(jnp.sum(jnp.exp(logits.astype(jnp.float32)), axis=-1, keepdims=True))"),
         "test_large_logits_are_stable", "exp_overflow"),
    ],
    "generation": [
        (M("sample_next_token", "logits = logits.astype(jnp.float32) / temperature",
           "logits = jnp.log(jax.nn.softmax(logits.astype(jnp.float32)) / temperature)"),
         "test_samples_follow_the_distribution[2.0-None]", "temperature_ignored"),
        (M("sample_next_token", "logits = logits.astype(jnp.float32) / temperature", "logits = logits.astype(jnp.float32) * temperature"),
         "test_samples_follow_the_distribution[2.0-None]", "temperature_multiplied"),
        (M("sample_next_token", "logits = jnp.where(logits >= kth_largest, logits, -jnp.inf)", "logits = logits"),
         "test_samples_follow_the_distribution[0.5-3]", "top_k_ignored"),
    ],
    "transformer": [
        (M("DecoderBlock.__call__", "x = x + self.attn(self.ln1(x), mask=mask)\nreturn x + self.ffn(self.ln2(x))",
           "x = self.ln1(x + self.attn(x, mask=mask))\nreturn self.ln2(x + self.ffn(x))"),
         "test_outputs_and_gradients_match_reference[block]", "post_norm"),
        (M("FeedForward.__call__", "jax.nn.gelu(self.up(x))", "jax.nn.relu(self.up(x))"),
         "test_outputs_and_gradients_match_reference[ffn]", "relu"),
        ([M("MultiHeadAttention.__call__.split_heads", "y = y.reshape(*y.shape[:-1], self.num_heads, -1)\nreturn jnp.swapaxes(y, -2, -3)",
            "return y.reshape(*y.shape[:-2], self.num_heads, y.shape[-2], -1)"),
          M("MultiHeadAttention.__call__", "heads = jnp.swapaxes(heads, -2, -3)\nreturn self.out(heads.reshape(*heads.shape[:-2], -1))",
            "return self.out(heads.reshape(*heads.shape[:-3], heads.shape[-2], -1))")],
         "test_outputs_and_gradients_match_reference[mha_self]", "heads_split_wrong"),
    ],
    "training": [
        (M("train_step", "optimizer.update(model, grads)", ""), "test_three_steps_match_reference", "no_update"),
        (M("train_step", "return loss", "return loss_fn(model)"), "test_three_steps_match_reference", "loss_after_update"),
        (M("train_step.loss_fn", "return next_token_loss(model(tokens), tokens)", "return -next_token_loss(model(tokens), tokens)"),
         "test_three_steps_match_reference", "loss_sign_flipped"),
    ],
    "encoder_decoder": [
        (M("EncoderBlock.__call__", "source_mask[:, None, None, :]", "~source_mask[:, None, None, :]"),
         "test_block_outputs_and_gradients_match_reference[encoder]", "source_mask_inverted"),
        (M("CrossAttentionDecoderBlock.__call__", "self.cross_attn(self.ln2(x), context=memory, mask=padding)",
           "self.cross_attn(self.ln2(x))"),
         "test_block_outputs_and_gradients_match_reference[decoder]", "cross_attention_on_own_states"),
        (M("EncoderDecoder.loss", "labels = target[:, 1:]\nreturn cross_entropy_loss(self(source, target[:, :-1]), labels, labels != self.pad_id)",
           "return cross_entropy_loss(self(source, target), target, target != self.pad_id)"),
         "test_loss_and_its_gradients_match_reference", "target_not_shifted"),
    ],
}
# The encoder-decoder runs on the submission's attention, loss and positional encoding: a group of its own.
TOGETHER = (("jax_basics", "positional_encoding", "attention", "training"), ("loss", "transformer", "generation"),
            ("encoder_decoder",))


@pytest.mark.parametrize("number", range(3))
@pytest.mark.parametrize("group", TOGETHER, ids=["with_attention", "with_loss", "encoder_decoder"])
def test_visible_tests_name_each_mistake_as_the_grader_does(tmp_path, number, group):
    edits = {f"{name}/{name}.py": VISIBLE[name][number][0] for name in group}
    results = {r.exercise.name: r for r in run_visible_tests(copy_with_edits(tmp_path / "wrong", edits), list(group))}
    for name in group:
        _, test, mistake = VISIBLE[name][number]
        failed = {o.nodeid.split("::")[1]: o.message for o in results[name].outcomes if o.outcome == "failed"}
        assert test in failed, f"{name}: {test} passed; failed: {sorted(failed)}"
        assert KNOWN_MISTAKE.format(hint=mistakes.hint(mistake)) in failed[test], f"{name}: {failed[test]}"


def test_each_exercise_shows_three_mistakes_in_its_visible_tests():
    for exercise in catalog.EXERCISES:
        assert len({mistake for _, _, mistake in VISIBLE[exercise.name]}) >= 3, exercise.name
    assert sorted(n for group in TOGETHER for n in group) == sorted(e.name for e in catalog.EXERCISES)


# The visible tests of a property (causal, blind to padding, averaging to the batch gradient) compare your outputs after a change with your own outputs
# before it, not with the reference's: a mistake elsewhere fails the comparison with the reference, never the property.
# Per exercise: (the property's test, a mistake that keeps the property, a mistake that breaks it).
PROPERTIES = {
    "jax_basics": ("test_per_example_grads_average_to_the_batch_gradient",
                   M("predict", "return x @ W + b", "return jnp.tanh(x @ W + b)"),
                   M("per_example_grads", "return jax.vmap(jax.grad(mse_loss), in_axes=(None, 0))(params, batch)",
                     "return jax.tree.map(lambda g: g / len(batch[0]), jax.vmap(jax.grad(mse_loss), in_axes=(None, 0))(params, batch))")),
    "transformer": ("test_causal_block_ignores_the_future",
                    M("DecoderBlock.__call__", "x = x + self.attn(self.ln1(x), mask=mask)\nreturn x + self.ffn(self.ln2(x))",
                      "x = self.ln1(x + self.attn(x, mask=mask))\nreturn self.ln2(x + self.ffn(x))"),
                    M("DecoderBlock.__call__", "self.attn(self.ln1(x), mask=mask)", "self.attn(self.ln1(x))")),
    "encoder_decoder": ("test_decoder_is_causal",
                        M("CrossAttentionDecoderBlock.__call__", "self.cross_attn(self.ln2(x), context=memory, mask=padding)",
                          "self.cross_attn(self.ln2(x), context=memory)"),
                        M("CrossAttentionDecoderBlock.__call__", "self.self_attn(self.ln1(x), mask=causal_mask(x.shape[-2]))",
                          "self.self_attn(self.ln1(x))")),
    "loss": ("test_next_token_loss_ignores_pad_targets",
             M("cross_entropy_loss", "return jnp.sum(nll * weights) / jnp.maximum(jnp.sum(weights), 1.0)",
               "return jnp.mean(nll * weights)"),
             M("next_token_loss", "mask = None if pad_id is None else targets != pad_id", "mask = None")),
}


@pytest.mark.parametrize("breaks", [False, True], ids=["other_mistake", "property_broken"])
def test_property_tests_fail_only_when_the_property_breaks(tmp_path, breaks):
    edits = {f"{name}/{name}.py": mutations[2 if breaks else 1] for name, mutations in PROPERTIES.items()}
    results = run_visible_tests(copy_with_edits(tmp_path / "wrong", edits), list(PROPERTIES))
    for result in results:
        test = PROPERTIES[result.exercise.name][0]
        failed = {o.nodeid.split("::")[1]: o.message for o in result.outcomes if o.outcome != "passed"}
        assert failed, f"{result.exercise.name}: the mistake went unnoticed"
        if breaks:
            assert test in failed and "your" in failed[test], (result.exercise.name, failed)
        else:
            assert test not in failed, (result.exercise.name, failed[test])
    if not breaks:  # the loss's wrong denominator shows in next_token_loss with a pad_id too, and is named there
        loss = {o.nodeid.split("::")[1]: o.message for r in results if r.exercise.name == "loss" for o in r.outcomes}
        for case in ("cross_entropy_masked", "next_token_pad0"):
            assert KNOWN_MISTAKE.format(hint=mistakes.hint("divided_by_all_positions")) in loss[f"test_matches_reference[{case}]"]
