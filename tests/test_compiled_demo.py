"""The compiled demo (``course/demo/model.jaxexport``): fresh, faithful to the reference, free of solution source."""

import numpy as np
import pytest

from authoring.release import secrets
from course import compiled_demo, tokenizer
from course.submission import active, repo_root

ROOT = repo_root()


def test_the_artifact_is_what_the_reference_and_the_weights_build():
    from authoring.demo import build

    assert not build(write=False), "course/demo/model.jaxexport is stale: run `course build-demo`"


def test_the_artifact_holds_no_solution_source_and_no_path():
    prefill, decode, _ = compiled_demo.read()
    for blob in (prefill, decode, compiled_demo.ARTIFACT.read_bytes()):
        text = blob.decode("latin-1")
        found = [where for line, where in secrets(ROOT).items() if line in text]
        assert not found, f"solution text from {found[:3]} in the compiled demo"
        assert "reference/" not in text and ".py" not in text, "source locations left in the compiled demo"


def reference_tokens(prompt: np.ndarray, new_tokens: int, temperature: float, top_k: int | None) -> list[int]:
    """The new tokens of the reference model's cached stream (``course.generate``), key 7."""
    import jax

    from course.checkpoint import DEMO_CHECKPOINT, load_checkpoint
    from course.generate import generate_cached

    with active(ROOT / "reference"):
        model, _ = load_checkpoint(DEMO_CHECKPOINT)
        tokens = generate_cached(model, prompt[None], new_tokens, jax.random.key(7), temperature, top_k)
    return tokens[0, len(prompt):].tolist()


@pytest.mark.parametrize(("temperature", "top_k", "new_tokens"), [(0.8, 40, 200), (1.0, None, 40), (0.0, None, 40)])
def test_the_artifact_gives_the_reference_models_tokens_for_the_same_key(temperature, top_k, new_tokens):
    prompt = tokenizer.encode("def ")
    # 200 new tokens pass the 128-token context: the cache restarts from the latest half-context in both.
    got = list(compiled_demo.stream(compiled_demo.load(), prompt, new_tokens, 7, temperature, top_k))
    assert got == reference_tokens(prompt, new_tokens, temperature, top_k)


@pytest.mark.parametrize("prompt_length", [127, 128])
def test_a_prompt_that_fills_the_context_restarts_the_cache_at_once_as_the_reference_does(prompt_length):
    # 128: the first decoding call restarts the cache; 127: one step fills it, then it restarts. 70 tokens restart it twice.
    prompt = np.random.default_rng(prompt_length).integers(32, 127, prompt_length).astype(np.int32)
    got = list(compiled_demo.stream(compiled_demo.load(), prompt, 70, 7, 0.8, 5))
    assert got == reference_tokens(prompt, 70, 0.8, 5)


def test_it_makes_exactly_the_tokens_asked_for():
    demo, prompt = compiled_demo.load(), tokenizer.encode("def ")
    ten = list(compiled_demo.stream(demo, prompt, 10, 7, 0.8, None))
    assert [len(list(compiled_demo.stream(demo, prompt, n, 7, 0.8, None))) for n in (0, 1, 2)] == [0, 1, 2]
    assert list(compiled_demo.stream(demo, prompt, 3, 7, 0.8, None)) == ten[:3] and len(ten) == 10


def test_a_damaged_artifact_is_one_line_that_says_how_to_rebuild_it(tmp_path):
    damaged = tmp_path / "model.jaxexport"
    damaged.write_bytes(compiled_demo.ARTIFACT.read_bytes()[:1000])
    with pytest.raises(compiled_demo.DemoLoadError) as error:
        compiled_demo.load(damaged)
    assert "\n" not in str(error.value) and "course build-demo" in str(error.value) and "--submission" in str(error.value)


def test_settings_are_checked_before_anything_runs():
    demo = compiled_demo.load()
    for field, kwargs in (("prompt", {"prompt": np.zeros(0, np.int32)}), ("top_k", {"top_k": 257}),
                          ("temperature", {"temperature": -1.0})):
        with pytest.raises(compiled_demo.SettingError) as error:
            compiled_demo.stream(demo, **{"prompt": tokenizer.encode("x"), "max_new_tokens": 5, **kwargs})
        assert error.value.field == field


@pytest.mark.parametrize("top_k", [1, 3, 40, 256])
def test_the_top_k_threshold_by_counting_keeps_exactly_the_logits_a_sort_keeps_ties_included(top_k):
    import jax.numpy as jnp

    from authoring.demo import sample

    rng = np.random.default_rng(top_k)
    logits = rng.integers(-4, 5, (8, 256)).astype(np.float32)  # many ties at every rank
    noise = rng.gumbel(size=(8, 256)).astype(np.float32)
    scaled = logits / np.float32(0.5)
    kth = np.sort(scaled, axis=-1)[:, 256 - top_k][:, None]
    expected = np.argmax(np.where(scaled >= kth, scaled, -np.inf) + noise, axis=-1)
    got = sample(jnp.asarray(logits), jnp.asarray(noise), jnp.float32(0.5), jnp.int32(top_k))
    np.testing.assert_array_equal(np.asarray(got), expected)
    greedy = sample(jnp.asarray(logits), jnp.asarray(noise), jnp.float32(0.0), jnp.int32(top_k))
    np.testing.assert_array_equal(np.asarray(greedy), np.argmax(logits, axis=-1))


def test_the_decoding_loop_updates_the_cache_in_place_on_a_cpu():
    """The loop's speed rests on it: copies of each layer's cache at every step made it 1.45x slower."""
    import re

    import jax

    if jax.default_backend() != "cpu":
        pytest.skip("XLA's CPU compiler is the one checked; on a GPU the loop's speed rests on other things")
    demo = compiled_demo.load()
    program = jax.export.deserialize(bytearray(compiled_demo.read()[1]))
    args, _ = jax.tree.unflatten(program.in_tree, [jax.ShapeDtypeStruct(a.shape, a.dtype) for a in program.in_avals])
    cache_shapes = {f"f32[{','.join(map(str, leaf.shape))}]" for leaf in jax.tree.leaves(args[1])}
    hlo = demo.decode.lower(*args).compile().as_text()
    bodies = set(re.findall(r"body=%([\w.\-]+)", hlo))
    assert bodies, "no loop in the decoding program"
    copies = []
    for computation in re.split(r"\n\s*\n", hlo):
        name = re.match(r"\s*(?:ENTRY\s+)?%([\w.\-]+)", computation)
        if name and name.group(1) in bodies:
            copies += [line.strip() for line in computation.splitlines()
                       if (copy := re.search(r"= (f32\[[\d,]*\])\S* copy\(", line)) and copy.group(1) in cache_shapes]
    assert not copies, f"{len(copies)} copies of the key/value cache inside the decoding loop, e.g. {copies[0][:100]}"
