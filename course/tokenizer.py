"""A byte-level tokenizer: every UTF-8 byte is a token.

Byte-level tokenization needs no vocabulary file and no training, and it
round-trips any text exactly: ``decode(encode(text)) == text``. Its vocabulary
is the 256 byte values; a character outside ASCII becomes two to four tokens.
"""

from __future__ import annotations

import numpy as np

VOCAB_SIZE = 256


def encode(text: str) -> np.ndarray:
    """The UTF-8 bytes of ``text`` as token ids, ``int32[len(text.encode())]``."""
    if not isinstance(text, str):
        raise TypeError(f"text: expected str, got {type(text).__name__}")
    return np.frombuffer(text.encode("utf-8"), dtype=np.uint8).astype(np.int32)


def decode(ids) -> str:
    """The text of token ids (any int array or sequence, values in ``[0, 256)``).

    A byte sequence that is not valid UTF-8 (a model may emit one) decodes with
    the replacement character U+FFFD rather than failing.

    Raises:
      ValueError: an id is outside ``[0, 256)``.
    """
    array = np.asarray(ids).reshape(-1)
    if array.size and (array.min() < 0 or array.max() >= VOCAB_SIZE):
        raise ValueError(f"ids: expected values in [0, {VOCAB_SIZE}), got min {array.min()} and max {array.max()}")
    return array.astype(np.uint8).tobytes().decode("utf-8", errors="replace")
