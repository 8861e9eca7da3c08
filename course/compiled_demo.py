"""The shipped demo model as compiled programs: text generation with no Python model code.

``course/demo/model.jaxexport`` holds two ``jax.export`` programs (StableHLO,
lowered for CPU and CUDA), traced once from the reference solutions by
``course build-demo`` (``authoring/demo.py``, which documents them); the
weights are ``course/demo/model.npz``. So the demo runs on a fresh checkout,
whose exercises are stubs: ``course generate`` without ``--submission``, and
the first notebook.

- ``prefill(weights, window, length, key_data, t, temperature, top_k)``: the
  first ``length`` tokens of ``window`` (``int32[context]``, zero-padded) through
  the model into a fresh key/value cache; returns token ``t`` and the cache.
- ``decode(weights, cache, token, position, t, steps, key_data, temperature, top_k)``:
  ``steps`` (at most :data:`CHUNK`) cached decoding steps in one program, the
  first feeding ``token`` at ``position``; returns ``int32[CHUNK]`` (the first
  ``steps`` are the new tokens) and the cache.

When the cache is full, :func:`stream` restarts it with a prefill of the
latest half-context, as :func:`course.generate.stream` does.
Token ``t`` (counting the prompt) is drawn with ``fold_in(key, t)``, as in the
generation exercise, so for the same seed the tokens are those of the
reference model's :func:`course.generate.stream` (a test checks it).
"""

from __future__ import annotations

import codecs
import json
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import jax
import numpy as np

from course import tokenizer
from course.compile_flags import FAST_COMPILATION_OPTIONS

CHUNK = 64  # tokens per decode call: one dispatch per chunk, not per token
DEMO_DIR = Path(__file__).resolve().parent / "demo"
ARTIFACT = DEMO_DIR / "model.jaxexport"
WEIGHTS = DEMO_DIR / "model.npz"
REBUILD = "rebuild it with `course build-demo` in the course's instructor repository, or run the model from code with --submission DIR"


class SettingError(ValueError):
    """A generation setting is out of range; ``field`` names it (``prompt``, ``top_k``, ...)."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


class DemoLoadError(RuntimeError):
    """The compiled demo cannot be loaded (missing, damaged, or from a JAX version this one cannot read)."""


@dataclass(frozen=True)
class CompiledDemo:
    """The deserialized programs (compiled at their first call), their weights and the sizes they were built for."""

    prefill: Callable
    decode: Callable
    weights: dict[str, jax.Array]
    context: int  # the model's max_seq_len
    vocab: int
    built_with: str  # the JAX version that exported it


def write(path: Path, prefill: bytes, decode: bytes, meta: dict) -> None:
    """Stores the serialized programs and their metadata in one uncompressed zip (``np.savez``)."""
    with open(path, "wb") as file:
        np.savez(file, prefill=np.frombuffer(prefill, np.uint8), decode=np.frombuffer(decode, np.uint8),
                 meta=np.frombuffer(json.dumps(meta, sort_keys=True).encode(), np.uint8))


def read(path: Path = ARTIFACT) -> tuple[bytes, bytes, dict]:
    """The serialized programs and metadata stored by :func:`write`."""
    with np.load(path, allow_pickle=False) as data:
        return data["prefill"].tobytes(), data["decode"].tobytes(), json.loads(data["meta"].tobytes())


def load(path: Path = ARTIFACT, weights: Path = WEIGHTS) -> CompiledDemo:
    """The compiled demo, ready to run.

    Raises:
      DemoLoadError: one line: what failed and how to rebuild the artifact.
    """
    try:
        prefill, decode, meta = read(path)
        programs = [jax.export.deserialize(bytearray(b)) for b in (prefill, decode)]
        with np.load(weights, allow_pickle=False) as data:
            arrays = {k.removeprefix("model/"): jax.device_put(data[k]) for k in data.files if k.startswith("model/")}
    except (OSError, KeyError, ValueError, ImportError, zipfile.BadZipFile) as error:
        detail = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise DemoLoadError(f"compiled demo: cannot load {path} with jax {jax.__version__} ({detail}); {REBUILD}") from None
    return CompiledDemo(_quickly_compiled(programs[0].call), jax.jit(programs[1].call, donate_argnums=1), arrays,
                        meta["context"], meta["vocab"], meta["jax"])


def _quickly_compiled(fn: Callable) -> Callable:
    """``jax.jit(fn)``, compiled at its first call with XLA's fast-compilation options (``course.compile_flags``).

    For the prefill, which comes before the first token and runs once per
    context window: compiled in 0.4 s instead of 1.2 s on a 2-core CPU, at a
    few more milliseconds per run. ``fn``'s arguments keep their shapes from call to call.
    """
    jitted, compiled = jax.jit(fn), []

    def call(*args):
        if not compiled:
            compiled.append(jitted.lower(*args).compile(compiler_options=FAST_COMPILATION_OPTIONS))
        return compiled[0](*args)
    return call


def stream(demo: CompiledDemo, prompt: np.ndarray, max_new_tokens: int, seed: int = 0,
           temperature: float = 0.8, top_k: int | None = None) -> Iterator[int]:
    """Yields the new token ids one at a time, computed :data:`CHUNK` at a time.

    Args:
      prompt: ``int[T]``, ``1 <= T <= demo.context`` byte ids.
      max_new_tokens: ``>= 0``.
      seed: the sampling key is ``jax.random.key(seed)``.
      temperature: ``>= 0``; 0 is greedy.
      top_k: ``None`` (every token) or ``1..vocab``.

    Raises:
      SettingError: a setting is out of range (checked before anything runs).
    """
    if not 1 <= len(prompt) <= demo.context:
        raise SettingError("prompt", f"{len(prompt)} bytes; expected 1 to {demo.context} (the model's context)")
    if top_k is not None and not 1 <= top_k <= demo.vocab:
        raise SettingError("top_k", f"expected 1 to {demo.vocab} (the vocabulary size), got {top_k}")
    for field, value in (("temperature", temperature), ("max_new_tokens", max_new_tokens)):
        if value < 0:
            raise SettingError(field, f"expected a value >= 0, got {value}")
    return _tokens(demo, np.asarray(prompt, np.int32), max_new_tokens, seed, temperature, top_k)


def _tokens(demo, prompt, max_new_tokens, seed, temperature, top_k) -> Iterator[int]:
    settings = (jax.random.key_data(jax.random.key(seed)), np.float32(temperature), np.int32(top_k or demo.vocab))
    history = list(prompt)  # every token so far: a full cache restarts from the latest half-context
    made, chunk = 0, None
    while made < max_new_tokens:
        if chunk is None:  # a fresh cache: the prompt, or the latest half-context once the cache is full
            window = np.zeros(demo.context, np.int32)
            recent = history[-demo.context // 2:] if made else history
            window[:len(recent)] = recent
            token, cache = demo.prefill(demo.weights, window, np.int32(len(recent)), settings[0],
                                        np.int32(len(history)), *settings[1:])
            filled = len(recent)
            made += 1
            history.append(int(token))
            yield history[-1]  # before the decode program is first compiled: the first token shows at once
            current, steps = None, 0
        else:
            current, steps = chunk
        chunk = None
        if made + steps < max_new_tokens and filled < demo.context:  # the next chunk computes while this one is shown
            n = min(CHUNK, demo.context - filled, max_new_tokens - made - steps)
            last = token if current is None else current[steps - 1]
            tokens, cache = demo.decode(demo.weights, cache, last, np.int32(filled), np.int32(len(history) + steps),
                                        np.int32(n), *settings)
            chunk, filled = (tokens, n), filled + n
        if current is not None:
            for new in np.asarray(current)[:steps]:
                made += 1
                history.append(int(new))
                yield history[-1]


def continue_text(demo: CompiledDemo, prompt: str, *, max_new_tokens: int = 300, temperature: float = 0.8,
                  top_k: int | None = None, seed: int = 0) -> Iterator[str]:
    """The compiled demo's :func:`course.generate.continue_text`: the new text piece by piece.

    Raises:
      SettingError: as :func:`stream` (an empty or too long prompt, a bad setting), before any text.
    """
    return _pieces(stream(demo, tokenizer.encode(prompt), max_new_tokens, seed, temperature, top_k))


def _pieces(tokens: Iterator[int]) -> Iterator[str]:
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")  # a character may span several byte tokens
    for token in tokens:
        yield decoder.decode(bytes([token]))
    yield decoder.decode(b"", final=True)
