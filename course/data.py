"""Training data: the offline corpora, batch sampling, and synthetic tasks.

Every corpus exists on every machine with no download: the default is the
Python standard library's own ``.py`` sources; any UTF-8 text file works too.
Batches are drawn with a :class:`numpy.random.Generator`, so a seed fixes the
data order on every JAX version.
"""

from __future__ import annotations

import os
import sysconfig
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from course import tokenizer

# Left out of the stdlib corpus: test suites (huge, repetitive), GUI code and
# vendored or third-party trees, so the corpus is ordinary library Python.
STDLIB_SKIP = frozenset(
    {"test", "tests", "idlelib", "tkinter", "turtledemo", "lib2to3", "ensurepip",
     "site-packages", "dist-packages", "__pycache__", "venv"}
)
VAL_EVERY = 10  # every 10th stdlib file (in sorted order) is validation data


@dataclass(frozen=True)
class Corpus:
    name: str
    train: np.ndarray  # int32[N_train] token ids
    val: np.ndarray  # int32[N_val] token ids


def stdlib_files(root: Path | None = None) -> list[Path]:
    """The standard library's ``.py`` files, sorted, without :data:`STDLIB_SKIP` folders."""
    root = Path(sysconfig.get_paths()["stdlib"]) if root is None else root
    files = []
    for folder, dirs, names in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in STDLIB_SKIP)
        files.extend(Path(folder) / n for n in names if n.endswith(".py"))
    return sorted(files)


def _join(paths: list[Path]) -> np.ndarray:
    texts = [p.read_text(encoding="utf-8", errors="replace") for p in paths]
    return tokenizer.encode("\n".join(texts))


def stdlib_corpus() -> Corpus:
    """The standard library corpus, split by file: every :data:`VAL_EVERY`-th file is validation."""
    files = stdlib_files()
    if not files:
        raise FileNotFoundError(f"corpus: no standard library sources under {sysconfig.get_paths()['stdlib']}")
    val = [f for i, f in enumerate(files) if i % VAL_EVERY == VAL_EVERY - 1]
    train = [f for i, f in enumerate(files) if i % VAL_EVERY != VAL_EVERY - 1]
    return Corpus("stdlib", _join(train), _join(val))


def text_corpus(path: str | os.PathLike[str], val_fraction: float = 0.1) -> Corpus:
    """A UTF-8 text file as a corpus; its last ``val_fraction`` is validation data.

    Raises:
      FileNotFoundError: ``path`` does not exist.
      ValueError: the file is empty, not UTF-8, or too short to split.
    """
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"corpus: {str(path)!r} is not a file")
    try:
        text = file.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise ValueError(f"corpus: {str(path)!r} is not UTF-8 text ({error.reason} at byte {error.start})") from None
    tokens = tokenizer.encode(text)
    split = int(len(tokens) * (1 - val_fraction))
    if split < 2 or len(tokens) - split < 2:
        raise ValueError(f"corpus: {str(path)!r} has {len(tokens)} bytes, too few to split into training and validation")
    return Corpus(file.name, tokens[:split], tokens[split:])


def load_corpus(spec: str) -> Corpus:
    """``"stdlib"`` for the standard library corpus, otherwise the path of a text file."""
    return stdlib_corpus() if spec == "stdlib" else text_corpus(spec)


def sample_batch(tokens: np.ndarray, rng: np.random.Generator, batch_size: int, seq_len: int) -> np.ndarray:
    """``batch_size`` random windows of ``seq_len`` consecutive tokens, ``int32[B, T]``.

    Raises:
      ValueError: the corpus is shorter than ``seq_len``, or a size is not positive.
    """
    if batch_size <= 0 or seq_len <= 0:
        raise ValueError(f"batch_size and seq_len: expected positive ints, got {batch_size} and {seq_len}")
    if len(tokens) < seq_len:
        raise ValueError(f"tokens: the corpus has {len(tokens)} tokens, fewer than seq_len={seq_len}")
    starts = rng.integers(0, len(tokens) - seq_len + 1, size=batch_size)
    return np.stack([tokens[s : s + seq_len] for s in starts]).astype(np.int32)


# Synthetic tasks: a random sequence x of `length` symbols, a separator, then f(x).
# A model that has learned f predicts the second half exactly, so accuracy on it
# measures learning in seconds rather than hours.
SEPARATOR = 1
FIRST_SYMBOL = 2
TASKS = {"reverse": lambda x: x[:, ::-1], "sort": lambda x: np.sort(x, axis=1)}


def synthetic_batch(task: str, rng: np.random.Generator, batch_size: int, length: int, vocab_size: int) -> np.ndarray:
    """A batch of a synthetic task, ``int32[B, 2 * length + 1]``: ``x, SEPARATOR, task(x)``.

    Symbols are drawn uniformly from ``[FIRST_SYMBOL, vocab_size)``.

    Raises:
      ValueError: an unknown task, or ``vocab_size`` leaves fewer than two symbols.
    """
    if task not in TASKS:
        raise ValueError(f"task: expected one of {sorted(TASKS)}, got {task!r}")
    if vocab_size < FIRST_SYMBOL + 2:
        raise ValueError(f"vocab_size: expected at least {FIRST_SYMBOL + 2}, got {vocab_size}")
    x = rng.integers(FIRST_SYMBOL, vocab_size, size=(batch_size, length))
    separator = np.full((batch_size, 1), SEPARATOR)
    return np.concatenate([x, separator, TASKS[task](x)], axis=1).astype(np.int32)


def synthetic_accuracy(logits: np.ndarray, tokens: np.ndarray) -> float:
    """The fraction of answer tokens (after the separator) that the argmax of ``logits`` predicts.

    Args:
      logits: ``float[B, 2L + 1, V]``, the model's output on ``tokens``.
      tokens: ``int[B, 2L + 1]`` from :func:`synthetic_batch`.
    """
    length = (tokens.shape[1] - 1) // 2
    predicted = np.asarray(logits)[:, length:-1].argmax(-1)  # logits at t predict token t + 1
    return float((predicted == np.asarray(tokens)[:, length + 1 :]).mean())
