"""Grader suite for exercises/generation: ``sample_next_token`` and ``generate``.

Keys are ``jax.random.key(seed)`` built in the worker from seeds drawn with
numpy; a sample is never compared with a ``jax.random`` stream, only with the
distribution it should come from: Pearson's chi-square goodness-of-fit test
(``course.testing.fit_p_value``) over ``SAMPLES`` draws, failing when
the p-value is below ``ALPHA``. A correct submission therefore fails such a
case with probability ``ALPHA`` per case and grading seed (1 in 10 000), and a
distribution off by a few percent fails with near certainty.

Sizes (drawn once per grading seed): vocabulary ``V`` in 5..12, batch ``B`` in
1..3, the model's context ``max_seq_len`` in 4..8, prompt length in
1..max_seq_len. Logits for sampling are uniform in [-1, 1], so that every
allowed token has an expected count of at least about 19 in ``SAMPLES`` draws
at the temperatures used (0.6 and 1.7): large enough for the chi-square
approximation of the test. ``generate`` runs on
``course.testing.toy_model.PrefixMeanLM``, built in the worker with the reference
model's weights copied in; its logits depend on every token of the window, so
a window that does not slide changes the tokens, and it counts its traces.

The input space of the contract (the reference's docstrings):
``sample_next_token`` takes ``float[..., V]`` logits (any leading
dimensions), a temperature ``>= 0`` (0 is greedy) and ``top_k`` ``None`` or in
``[1, V]``, where ties at the ``top_k``-th largest logit are all kept;
``generate`` takes a prompt ``int[B, T]`` with ``1 <= T <= max_seq_len``,
``max_new_tokens >= 0`` (past the window, which then slides) and step ``t``
draws with its own key. Every grading seed covers each corner: temperature 0,
low and high temperatures, ``top_k`` of 1, of 3 and with ties across the
``top_k``-th place, and the joint distribution of three consecutive new tokens
(each step's distribution given the tokens before it, and fresh randomness at
every step: one key reused for every step makes the tokens dependent).
"""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from course.params import param_arrays
from course.testing import fit_p_value, mistaken_distributions, sampling_distribution
from course.testing.toy_model import PrefixMeanLM
from graders.engine.compare import check, expect_array, expect_dtype, expect_raises
from graders.engine.failures import Mismatch

ALPHA = 1e-4  # the false-alarm rate of each chi-square case
SAMPLES = 6000  # draws per chi-square case
MAX_TRACES = 3  # times generate may run the model's Python code for 8 new tokens (the reference: once)


@pytest.fixture(scope="module")
def dims(suite_rng):
    """``(V, B, max_seq_len)`` of this grading run."""
    return int(suite_rng.integers(5, 13)), int(suite_rng.integers(1, 4)), int(suite_rng.integers(4, 9))


def _key(student, rng):
    """A ``jax.random.key`` built in the worker from a numpy-drawn seed, passed to later calls by handle."""
    return student.construct("jax.random.key", int(rng.integers(2**31))).ref


def _expect_distribution(samples, logits, temperature, top_k, what):
    """Fails unless ``samples`` (int32 token ids) look drawn from the specification's distribution (chi-square, ``ALPHA``).

    On a failure, the first known mistake (``course.mistakes``) whose distribution the samples fit is named.
    """
    p = sampling_distribution(logits, temperature, top_k)
    samples = np.asarray(samples).reshape(-1)
    if samples.min() < 0 or samples.max() >= len(p):
        raise Mismatch(f"{what}: token ids outside [0, {len(p)})")
    counts = np.bincount(samples, minlength=len(p))
    p_value = fit_p_value(counts, p)
    if p_value >= ALPHA:
        return
    mistakes = mistaken_distributions(logits, temperature, top_k)
    hint = next((h for h, q in mistakes.items() if fit_p_value(counts, q) >= ALPHA), None)
    if counts[p == 0].any():
        message = f"{what}: {int(counts[p == 0].sum())} of {len(samples)} samples are tokens outside the top {top_k}"
    else:
        message = (f"{what}: the samples do not follow softmax(logits / temperature) (chi-square test over {len(samples)} "
                   f"samples, p-value {p_value:.2g} < {ALPHA})")
    raise Mismatch(message + (f". Hint: {hint}" if hint else ""), hint=hint)


@pytest.mark.points(1)
@pytest.mark.values("sample_next_token")
@pytest.mark.parametrize("layout", ["rows", "leading_dims"])
def test_temperature_zero_is_argmax(student, rng, dims, layout):
    V, B, _ = dims
    logits = rng.standard_normal((B, V) if layout == "rows" else (2, B, 3, V)).astype(np.float32)
    got = student.sample_next_token(logits, _key(student, rng), 0.0)
    expect_dtype(got, np.int32, what="sample_next_token with temperature 0")
    check(got, np.argmax(logits, -1).astype(np.int32), what="sample_next_token with temperature 0 (greedy)")


@pytest.mark.points(1)
@pytest.mark.values("sample_next_token")
def test_top_k_one_is_argmax(student, rng, dims):
    V, B, _ = dims
    logits = rng.standard_normal((B, 4, V)).astype(np.float32)
    got = student.sample_next_token(logits, _key(student, rng), 1.0, 1)
    check(got, np.argmax(logits, -1).astype(np.int32), what="sample_next_token with top_k=1")


@pytest.mark.points(1)
@pytest.mark.requires_values("sample_next_token")
def test_samples_only_from_the_top_k(student, rng, dims):
    V, _, _ = dims
    k = int(rng.integers(2, V))
    logits = rng.standard_normal((500, V)).astype(np.float32)  # every row its own top k
    got = expect_array(student.sample_next_token(logits, _key(student, rng), 1.0, k), dtype=np.int32, shape=(500,),
                       what=f"sample_next_token(top_k={k}) for logits of shape {list(logits.shape)}")
    allowed = logits >= np.sort(logits, -1)[:, -k:-k + 1]
    if (got < 0).any() or (got >= V).any() or not allowed[np.arange(500), np.clip(got, 0, V - 1)].all():
        raise Mismatch(f"sample_next_token(top_k={k}): some samples are not among their row's {k} largest logits")


@pytest.mark.points(2)
@pytest.mark.values("sample_next_token")
@pytest.mark.parametrize("temperature,top_k", [(0.6, None), (1.7, None), (1.0, 3), (1.7, 3)],
                         ids=["temperature_0.6", "temperature_1.7", "top_k", "top_k_and_temperature"])
def test_samples_follow_the_distribution(student, rng, dims, temperature, top_k):
    V, _, _ = dims
    logits = rng.uniform(-1.0, 1.0, V).astype(np.float32)
    what = f"sample_next_token(temperature={temperature}, top_k={top_k})"
    got = student.sample_next_token(np.broadcast_to(logits, (SAMPLES, V)).copy(), _key(student, rng), temperature, top_k)
    _expect_distribution(expect_array(got, dtype=np.int32, shape=(SAMPLES,), what=what), logits, temperature, top_k, what)


@pytest.mark.points(1)
@pytest.mark.requires_values("sample_next_token")
@pytest.mark.parametrize("argument", ["negative_temperature", "top_k_above_vocabulary", "top_k_zero"])
def test_invalid_arguments_raise_value_error(student, rng, dims, argument):
    V, B, _ = dims
    logits = rng.standard_normal((B, V)).astype(np.float32)
    temperature, top_k = {"negative_temperature": (-0.5, None), "top_k_above_vocabulary": (1.0, V + 1),
                          "top_k_zero": (1.0, 0)}[argument]
    expect_raises(student, "sample_next_token", (logits, _key(student, rng), temperature, top_k), error="ValueError",
                  why=f"temperature={temperature}, top_k={top_k} for {V} tokens")


@pytest.mark.points(1)
@pytest.mark.values("sample_next_token")
def test_top_k_keeps_every_tie(student, rng, dims):
    V, _, _ = dims
    k = int(rng.integers(2, V - 1))
    # The k-th largest logit tied with the next one (and with a third when the vocabulary allows): all are kept.
    logits = rng.uniform(-1.0, 1.0, V).astype(np.float32)
    order = np.argsort(-logits)
    logits[order[k:min(k + 2, V - 1)]] = logits[order[k - 1]]
    what = f"sample_next_token(top_k={k}) with ties at the {k}-th largest logit (every tied token is kept)"
    got = student.sample_next_token(np.broadcast_to(logits, (SAMPLES, V)).copy(), _key(student, rng), 1.0, k)
    _expect_distribution(expect_array(got, dtype=np.int32, shape=(SAMPLES,), what=what), logits, 1.0, k, what)


def _models(student, rng, dims):
    """The same ``PrefixMeanLM`` in the worker (weights copied from the grader's) and here."""
    V, _, max_seq_len = dims
    kwargs = {"vocab_size": V, "d_hidden": 16, "max_seq_len": max_seq_len}
    ref = PrefixMeanLM(**kwargs, rngs=nnx.Rngs(int(rng.integers(2**31))))
    model = student.construct("course.testing.toy_model.PrefixMeanLM", kwargs=kwargs, rngs_seed=0, params_follow=True)
    model.set_params(param_arrays(ref))
    return model, ref


@pytest.mark.points(3)
@pytest.mark.values("generate")
@pytest.mark.parametrize("length", ["short_prompt", "window_slides"])
def test_greedy_generation_is_exact(student, reference, rng, dims, length):
    V, B, max_seq_len = dims
    model, ref = _models(student, rng, dims)
    T = int(rng.integers(1, max_seq_len)) if length == "short_prompt" else max_seq_len
    new = max_seq_len - T if length == "short_prompt" else max_seq_len + 3  # the latter reads past the first window
    new = max(new, 2)
    prompt = rng.integers(0, V, (B, T)).astype(np.int32)
    seed = int(rng.integers(2**31))
    got = student.generate(model.ref, prompt, new, student.construct("jax.random.key", seed).ref, temperature=0.0)
    want = reference.generate(ref, jnp.asarray(prompt), new, jax.random.key(seed), temperature=0.0)
    got = expect_array(got, dtype=np.int32, shape=(B, T + new), what=f"generate (the prompt and {new} new tokens)")
    check(got[:, :T], prompt, what="generate: the prompt at the start of the output")
    window = min(T + new, max_seq_len)
    if length == "window_slides" and np.array_equal(got[:, :window], np.asarray(want)[:, :window]):
        # Right within the first window, wrong after it: the tokens read once the window is full are the suspect.
        check(got[:, window:], np.asarray(want)[:, window:],
              what="generate with temperature 0 (greedy): the tokens after the first window (does the window slide "
                   "to the last max_seq_len tokens?)")
    check(got, want, what="generate with temperature 0 (greedy)")


@pytest.mark.points(1)
@pytest.mark.values("generate")
def test_generate_samples_follow_the_model(student, rng, dims):
    V, _, max_seq_len = dims
    model, ref = _models(student, rng, dims)
    prompt = np.broadcast_to(rng.integers(0, V, (1, max_seq_len - 1)), (SAMPLES // 2, max_seq_len - 1)).astype(np.int32)
    got = student.generate(model.ref, prompt, 1, _key(student, rng), temperature=1.7, top_k=4)
    got = expect_array(got, dtype=np.int32, shape=(SAMPLES // 2, max_seq_len), what="generate(temperature=1.7, top_k=4)")
    logits = np.asarray(ref(jnp.asarray(prompt[:1])))[0, -1]
    _expect_distribution(got[:, -1], logits, 1.7, 4, "generate(temperature=1.7, top_k=4): the first new token")


STEPS = 3  # consecutive new tokens whose joint distribution is tested (top-3: 27 outcomes)


def _joint_distribution(ref, V, prompt, temperature, top_k):
    """``float64[V, ..., V]`` (``STEPS`` axes): the probability of each run of ``STEPS`` new tokens after ``prompt`` (``int[T]``)."""
    joint = np.ones(())
    for step in range(STEPS):
        prefixes = np.array(list(itertools.product(range(V), repeat=step)), np.int32).reshape(V**step, step)
        seqs = np.concatenate([np.broadcast_to(prompt, (len(prefixes), len(prompt))), prefixes], 1)[:, -ref.max_seq_len:]
        logits = np.asarray(ref(jnp.asarray(seqs)))[:, -1]  # [V**step, V], in the order of the joint's axes
        joint = joint[..., None] * sampling_distribution(logits, temperature, top_k).reshape(joint.shape + (V,))
    return joint


@pytest.mark.points(2)
@pytest.mark.values("generate")
def test_generation_steps_are_independent_draws(student, rng, dims):
    V, _, max_seq_len = dims
    model, ref = _models(student, rng, dims)
    prompt = rng.integers(0, V, max_seq_len - 1).astype(np.int32)  # the window fills, then slides
    what = f"generate(temperature=1.0, top_k=3): the first {STEPS} new tokens together"
    got = student.generate(model.ref, np.broadcast_to(prompt, (SAMPLES, len(prompt))).copy(), STEPS, _key(student, rng),
                           temperature=1.0, top_k=3)
    new = expect_array(got, dtype=np.int32, shape=(SAMPLES, len(prompt) + STEPS), what=what)[:, len(prompt):]
    if new.min() < 0 or new.max() >= V:
        raise Mismatch(f"{what}: token ids outside [0, {V})")
    joint = _joint_distribution(ref, V, prompt, 1.0, 3)
    p_value = fit_p_value(np.bincount(np.ravel_multi_index(new.T, joint.shape), minlength=joint.size), joint.ravel())
    if p_value < ALPHA:
        raise Mismatch(f"{what}: the runs of new tokens do not follow the model's distribution step after step (chi-square "
                       f"test over {SAMPLES} runs, p-value {p_value:.2g} < {ALPHA}); does step t sample from the logits "
                       "given every token before it, with a key of its own (jax.random.fold_in(key, t))?")


@pytest.mark.points(1)
@pytest.mark.requires_values("generate")
def test_model_is_traced_a_bounded_number_of_times(student, rng, dims):
    V, B, max_seq_len = dims
    model, _ = _models(student, rng, dims)
    prompt = rng.integers(0, V, (B, max_seq_len // 2)).astype(np.int32)
    student.generate(model.ref, prompt, 8, _key(student, rng), temperature=1.0)
    traces = int(model.call(method="call_count"))
    if traces > MAX_TRACES:
        raise Mismatch(f"generate: the model's code ran {traces} times for 8 new tokens (at most {MAX_TRACES} allowed): "
                       "run the loop inside one compiled function (jax.lax.fori_loop on a fixed-size buffer) "
                       "instead of calling or re-tracing the model for every token")


@pytest.mark.points(1)
@pytest.mark.requires_values("generate")
@pytest.mark.parametrize("argument", ["prompt_longer_than_context", "negative_max_new_tokens"])
def test_generate_invalid_arguments_raise_value_error(student, rng, dims, argument):
    V, B, max_seq_len = dims
    model, _ = _models(student, rng, dims)
    T, new = (max_seq_len + 1, 2) if argument == "prompt_longer_than_context" else (2, -1)
    prompt = rng.integers(0, V, (B, T)).astype(np.int32)
    expect_raises(student, "generate", (model.ref, prompt, new, _key(student, rng)), error="ValueError",
                  why=f"a prompt of {T} tokens for a context of {max_seq_len} and max_new_tokens={new}")
