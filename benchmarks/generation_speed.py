"""Generation speed: the exercise's uncached generate, the key/value-cached stream, and the compiled demo.

Reports new tokens per second (after compilation) and the first-token latency
of the cached path (the prefill), for a batch of one, on the demo config with
random weights (speed does not depend on the weights). The compiled demo
(``course/demo/model.jaxexport``, what ``course generate`` runs without
``--submission``) is measured as ``course generate`` runs it: its first token
counted from the end of loading, compilation included (a fresh process, no
persistent compilation cache), then its sustained rate over
``--compiled-tokens`` tokens, streamed one by one.

    python benchmarks/generation_speed.py --new-tokens 100 --rounds 5
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

sys.path.insert(0, os.path.dirname(__file__))
from common import dump, machine, median, timed  # noqa: E402

from course import submission  # noqa: E402
from course.generate import stream  # noqa: E402
from course.host_memory import keep_freed_memory  # noqa: E402
from course.model import CONFIGS, TransformerLM  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", default="demo")
    parser.add_argument("--prompt-tokens", type=int, default=16)
    parser.add_argument("--new-tokens", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--compiled-tokens", type=int, default=5000)
    parser.add_argument("--json")
    args = parser.parse_args()
    keep_freed_memory()  # as `course generate` runs
    compiled = compiled_demo_speed(args.prompt_tokens, args.compiled_tokens, args.rounds)  # first: its compilation is cold
    submission.activate(submission.repo_root() / "reference")
    from exercises.generation.generation import generate

    config = CONFIGS[args.config]
    model = TransformerLM(config, rngs=nnx.Rngs(0))
    prompt = jnp.asarray(np.random.default_rng(0).integers(0, config.vocab_size, (1, args.prompt_tokens)))
    key, n = jax.random.key(0), args.new_tokens

    def uncached():
        generate(model, prompt, n, key, 0.8, 40).block_until_ready()

    def cached():
        start, first = time.perf_counter(), None
        for token in stream(model, prompt, n, key, 0.8, 40):
            first = first if first is not None else time.perf_counter() - start
        return first

    uncached(), cached()  # compile both
    uncached_s = [timed(uncached) for _ in range(args.rounds)]
    cached_runs = []
    for _ in range(args.rounds):
        start = time.perf_counter()
        first = cached()
        cached_runs.append((time.perf_counter() - start, first))
    dump({
        "machine": machine(), "config": str(config), "prompt_tokens": args.prompt_tokens, "new_tokens": n,
        "uncached_tokens_per_s": n / median(uncached_s),
        "cached_tokens_per_s": n / median([r[0] for r in cached_runs]),
        "cached_first_token_s": median([r[1] for r in cached_runs]),
        "speedup": median(uncached_s) / median([r[0] for r in cached_runs]),
        **compiled,
    }, args.json)


def compiled_demo_speed(prompt_tokens: int, new_tokens: int, rounds: int) -> dict:
    """The compiled demo's load time, first token after loading (compilation included), and sustained tokens/s."""
    from course import compiled_demo

    start = time.perf_counter()
    demo = compiled_demo.load()
    loaded = time.perf_counter()
    prompt = np.random.default_rng(0).integers(0, 256, prompt_tokens)
    tokens = compiled_demo.stream(demo, prompt, 2, seed=0, temperature=0.8, top_k=40)
    next(tokens)
    first = time.perf_counter() - loaded
    list(tokens)  # compiles the decode program
    runs = []
    for seed in range(rounds):
        began = time.perf_counter()
        count = sum(1 for _ in compiled_demo.stream(demo, prompt, new_tokens, seed=seed, temperature=0.8, top_k=40))
        runs.append(count / (time.perf_counter() - began))
    return {"compiled_load_s": loaded - start, "compiled_first_token_after_load_s": first,
            "compiled_tokens": new_tokens, "compiled_tokens_per_s": median(runs)}


if __name__ == "__main__":
    main()
