"""Checkpoints: one ``.npz`` file of arrays plus JSON metadata, written atomically.

A checkpoint holds the model's parameters, optionally the optimizer's state,
and a JSON document (the model config, the training state: step, the numpy
generator's state, the metrics so far). Everything is plain arrays and JSON:
nothing is pickled, and the format reads the same on every numpy, JAX and Flax
version.

A save writes a temporary file in the same folder, flushes it to disk and
renames it over the old one (``os.replace`` is atomic on POSIX), so a crash
mid-save leaves the last good checkpoint whole.
"""

from __future__ import annotations

import dataclasses
import json
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
from flax import nnx

from course.folders import replacing_file
from course.model import TransformerConfig, TransformerLM
from course.params import SEPARATOR, arrays_under, load_param_arrays, param_arrays

CHECKPOINT_FILE = "checkpoint.npz"  # full training state, for --resume
MODEL_FILE = "model.npz"  # parameters only, for generation (the shipped demo is one)
DEMO_CHECKPOINT = Path(__file__).resolve().parent / "demo"
_META = "__meta__"
FORMAT_VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint is missing, unreadable, or does not fit the model."""


# The model's parameters only: its constant buffers (positional encoding, mask)
# are rebuilt by the active submission. The optimizer's state is saved whole.
# Each part's arrays are named "<part>/<path>" ("model/blocks/0/attn/query/kernel").
_SAVED = {"model": nnx.Param, "optimizer": ...}


def _flat(obj: nnx.Module | nnx.Optimizer, part: str) -> dict[str, np.ndarray]:
    return {f"{part}{SEPARATOR}{name}": array for name, array in param_arrays(obj, _SAVED[part]).items()}


def _restore(obj: nnx.Module | nnx.Optimizer, part: str, arrays: dict[str, np.ndarray], source: Path) -> None:
    try:
        load_param_arrays(obj, arrays_under(arrays, part + SEPARATOR), _SAVED[part])
    except ValueError as error:
        raise CheckpointError(f"checkpoint: {source} does not fit this model ({error})") from None


def save(
    path: str | os.PathLike[str],
    model: TransformerLM,
    meta: dict[str, Any],
    optimizer: nnx.Optimizer | None = None,
) -> Path:
    """Writes ``model`` (and ``optimizer``) with JSON ``meta`` to ``path``, atomically.

    The model's config is added to the metadata under ``"model_config"``.

    Returns:
      The path written.
    """
    path = Path(path)
    arrays = _flat(model, "model")
    if optimizer is not None:
        arrays |= _flat(optimizer, "optimizer")
    document = {"format": FORMAT_VERSION, "model_config": dataclasses.asdict(model.config), **meta}
    arrays[_META] = np.frombuffer(json.dumps(document).encode(), dtype=np.uint8)
    with replacing_file(path) as new, open(new, "wb") as file:
        np.savez(file, **arrays)
        file.flush()
        os.fsync(file.fileno())
    return path


def read(path: str | os.PathLike[str]) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The arrays and metadata of a checkpoint file.

    Raises:
      CheckpointError: the file is missing, not a checkpoint, or damaged.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint: {path} does not exist")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
        meta = json.loads(arrays.pop(_META).tobytes())
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, json.JSONDecodeError) as error:
        raise CheckpointError(f"checkpoint: {path} is not a readable checkpoint ({error})") from None
    if meta.get("format") != FORMAT_VERSION:
        raise CheckpointError(f"checkpoint: {path} has format {meta.get('format')!r}, expected {FORMAT_VERSION}")
    return arrays, meta


def model_config(meta: dict[str, Any]) -> TransformerConfig:
    """The :class:`TransformerConfig` stored in a checkpoint's metadata."""
    return TransformerConfig(**meta["model_config"])


def restore(
    path: str | os.PathLike[str], model: TransformerLM, optimizer: nnx.Optimizer | None = None
) -> dict[str, Any]:
    """Loads a checkpoint into an existing model (and optimizer); returns its metadata.

    Raises:
      CheckpointError: unreadable, or its config or arrays do not fit ``model``.
    """
    arrays, meta = read(path)
    if model_config(meta) != model.config:
        raise CheckpointError(
            f"checkpoint: {path} was written for {model_config(meta)}, not for {model.config}"
        )
    _restore(model, "model", arrays, Path(path))
    if optimizer is not None:
        if not arrays_under(arrays, "optimizer" + SEPARATOR):
            raise CheckpointError(f"checkpoint: {path} holds no optimizer state to resume from")
        _restore(optimizer, "optimizer", arrays, Path(path))
    return meta


def load_checkpoint(directory: str | os.PathLike[str]) -> tuple[TransformerLM, dict[str, Any]]:
    """A ready :class:`TransformerLM` from a run directory, for generation.

    Reads ``model.npz`` if present, otherwise ``checkpoint.npz``. The model is
    built from the active submission, then given the stored weights.

    Returns:
      ``(model, meta)``.

    Raises:
      CheckpointError: neither file exists, or it cannot be read.
    """
    directory = Path(directory)
    candidates = [directory / MODEL_FILE, directory / CHECKPOINT_FILE]
    path = next((p for p in candidates if p.is_file()), None)
    if path is None:
        raise CheckpointError(f"checkpoint: {directory} holds neither {MODEL_FILE} nor {CHECKPOINT_FILE}")
    _, meta = read(path)
    model = TransformerLM(model_config(meta), rngs=nnx.Rngs(0))
    return model, restore(path, model)
