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
- ``decode(weights, cache, recent, position, t, steps, key_data, temperature, top_k)``:
  ``steps`` (at most ``chunk``) new tokens in one program; returns
  ``int32[chunk]`` (the first ``steps`` are the new tokens) and the cache.
  ``recent`` (``int32[context // 2]``) holds the latest tokens; the last, not
  yet in the cache, is fed at ``position``. At ``position == context`` the
  cache is full and restarts from ``recent``, as :func:`course.generate.stream`
  restarts it from the latest half-context. ``chunk = context - context // 2 + 1``:
  a restart and the steps that fill the cache again, so one call per restart.
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
    chunk: int  # the most tokens one decode call makes
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
    # The prefill comes before the first token: XLA's fast-compilation options compile it in 0.4 s
    # instead of 1.2 s on a 2-core CPU, at a few more milliseconds per run (once per prompt).
    return CompiledDemo(jax.jit(programs[0].call, compiler_options=FAST_COMPILATION_OPTIONS),
                        jax.jit(programs[1].call, donate_argnums=1, compiler_options=_decode_options()), arrays,
                        meta["context"], meta["vocab"], meta["chunk"], meta["jax"])


def _decode_options() -> dict:
    """XLA options for the decoding loop: on a CPU, XLA's tree reduction rewriter is off.

    It splits each reduction (a layer norm's mean, a softmax's sum) into two
    operations, worth it for long rows; the loop's rows are 128 to 512 wide and
    each operation costs a few microseconds: 1.2x the tokens/s without it on 2 cores.
    """
    return {"xla_disable_hlo_passes": "tree_reduction_rewriter"} if jax.default_backend() == "cpu" else {}


def stream(demo: CompiledDemo, prompt: np.ndarray, max_new_tokens: int, seed: int = 0,
           temperature: float = 0.8, top_k: int | None = None) -> Iterator[int]:
    """Yields the new token ids one at a time, computed ``demo.chunk`` at a time.

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
    if max_new_tokens == 0:
        return
    key_data = jax.random.key_data(jax.random.key(seed))
    settings = (np.float32(temperature), np.int32(top_k or demo.vocab))
    half = demo.context // 2
    history = [int(token) for token in prompt]  # every token so far: a full cache restarts from the latest half
    window = np.zeros(demo.context, np.int32)
    window[:len(prompt)] = prompt
    token, cache = demo.prefill(demo.weights, window, np.int32(len(prompt)), key_data, np.int32(len(prompt)), *settings)
    history.append(int(token))
    yield history[-1]  # before the decode program is first compiled: the first token shows at once
    filled, wanted = len(prompt), len(prompt) + max_new_tokens  # cache positions in use; tokens in the end

    def next_chunk():
        nonlocal cache, filled
        room = demo.context - filled if filled < demo.context else demo.chunk  # a restart: its token, then the steps
        n = min(demo.chunk, room, wanted - len(history))
        recent = np.zeros(half, np.int32)
        recent[half - min(half, len(history)):] = history[-half:]
        tokens, cache = demo.decode(demo.weights, cache, recent, np.int32(filled), np.int32(len(history)),
                                    np.int32(n), key_data, *settings)
        filled = (filled if filled < demo.context else half - 1) + n
        return tokens, n

    chunk = next_chunk() if len(history) < wanted else None
    while chunk is not None:
        tokens, n = chunk
        new = [int(token) for token in np.asarray(tokens)[:n]]  # waits for the chunk
        history.extend(new)
        chunk = next_chunk() if len(history) < wanted else None  # computes while this one is shown
        yield from new


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
