"""Messages between the grader and the worker: JSON plus ``.npz`` arrays, never pickles.

A message is one frame on a pipe::

    8 bytes: length of the JSON header (big-endian)
    8 bytes: length of the .npz payload
    header:  UTF-8 JSON
    payload: numpy ``savez`` bytes, uncompressed, read back with ``allow_pickle=False``

The reader checks the payload before it loads anything: every member is
stored uncompressed (a deflated one could grow far beyond the frame's size
limit) and its ``.npy`` header declares a known dtype and exactly the bytes
the member holds, so an array is never allocated larger than what arrived.

Values travel as *trees*: ``None``, ``bool``, ``int``, ``float`` and ``str``
stay JSON; ``list`` is a JSON list; a tuple is ``{"$tuple": [...]}``, a dict
with string keys ``{"$dict": {...}}``; an array is ``{"$array": "a0"}`` naming
an entry of the payload. ``bfloat16`` (which ``.npz`` cannot name) travels as its
``uint16`` bits with ``"dtype": "bfloat16"``. Anything else a worker finds in a
result becomes ``{"$unsupported": "<type name>"}``, which the grader reports
as a wrong type; the grader never turns such data back into objects.

Requests (grader to worker) may also name objects that live in the worker:
``{"$handle": i}`` for an object built by an earlier ``construct`` request
(:class:`Handle`) and ``{"$ref": "flax.nnx.Param"}`` for a library attribute
(:class:`Ref`); only the worker resolves them.
"""

from __future__ import annotations

import io
import json
import os
import select
import struct
import time
import zipfile

import numpy as np

# Dtypes accepted from the other side; anything else is a protocol error.
DTYPES = frozenset(
    ["bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
     "float16", "float32", "float64", "bfloat16", "complex64", "complex128"]
)
_HEADER = struct.Struct(">QQ")
MAX_DEPTH = 64  # nesting accepted in a tree: deeper is a protocol error, not a recursion error in the grader


class ProtocolError(Exception):
    """A frame or value that does not follow this module's format."""


def _bfloat16():
    import ml_dtypes  # installed with jax

    return np.dtype(ml_dtypes.bfloat16)


class Handle:
    """An object the worker built and keeps (an NNX module, an optimizer), passed back by number."""

    def __init__(self, number: int):
        self.number = int(number)


class Ref:
    """A library attribute the worker imports by its dotted name, e.g. ``Ref("flax.nnx.Param")``."""

    def __init__(self, name: str):
        self.name = str(name)


def is_array(x) -> bool:
    """Whether ``x`` is an array the wire carries (numpy, numpy scalar or jax)."""
    if isinstance(x, np.ndarray | np.generic):
        return True
    module = type(x).__module__ or ""
    return module.startswith(("jaxlib", "jax")) and hasattr(x, "__array__") and hasattr(x, "dtype")


def encode(tree, arrays: dict[str, np.ndarray], *, strict: bool = True):
    """The JSON form of ``tree``; its arrays are added to ``arrays``.

    Args:
      tree: nested tuples, lists and string-keyed dicts of arrays and JSON scalars.
      arrays: the payload being built, ``{"a<i>": array}``.
      strict: raise ``TypeError`` on any other object (grader side); when
        ``False`` (worker side) such an object becomes ``{"$unsupported": name}``.
    """
    if tree is None or isinstance(tree, bool | int | float | str):
        return tree
    if isinstance(tree, Handle):
        return {"$handle": tree.number}
    if isinstance(tree, Ref):
        return {"$ref": tree.name}
    if is_array(tree):
        array = np.asarray(tree)
        name = f"a{len(arrays)}"
        if array.dtype.name == "bfloat16":
            arrays[name] = array.view(np.uint16)
            return {"$array": name, "dtype": "bfloat16"}
        if array.dtype.name not in DTYPES:
            if strict:
                raise TypeError(f"cannot send an array of dtype {array.dtype}")
            return {"$unsupported": f"array of dtype {array.dtype}"}
        arrays[name] = array
        return {"$array": name}
    if isinstance(tree, tuple):
        return {"$tuple": [encode(x, arrays, strict=strict) for x in tree]}
    if isinstance(tree, list):
        return [encode(x, arrays, strict=strict) for x in tree]
    if isinstance(tree, dict) and all(isinstance(k, str) for k in tree):
        return {"$dict": {k: encode(v, arrays, strict=strict) for k, v in tree.items()}}
    if strict:
        raise TypeError(f"cannot send a {type(tree).__name__}")
    return {"$unsupported": type(tree).__name__}


def decode(tree, arrays: dict[str, np.ndarray], resolve=None, _depth: int = 0):
    """The inverse of :func:`encode`: plain numpy arrays and containers.

    ``{"$unsupported": name}`` is returned as an :class:`Unsupported` marker.

    Args:
      resolve: in the worker, turns a :class:`Handle` or :class:`Ref` into its
        object; ``None`` (the grader) refuses them.

    Raises:
      ProtocolError: an unknown tag, a missing array, a refused dtype, or
        nesting deeper than :data:`MAX_DEPTH`.
    """
    if _depth > MAX_DEPTH:
        raise ProtocolError(f"values nested more than {MAX_DEPTH} levels deep")
    if tree is None or isinstance(tree, bool | int | float | str):
        return tree
    if isinstance(tree, list):
        return [decode(x, arrays, resolve, _depth + 1) for x in tree]
    if isinstance(tree, dict) and resolve is not None and len(tree) == 1:
        if "$handle" in tree:
            return resolve(Handle(tree["$handle"]))
        if "$ref" in tree:
            return resolve(Ref(tree["$ref"]))
    if isinstance(tree, dict) and len(tree) >= 1:
        if "$array" in tree:
            array = arrays.get(tree["$array"])
            if array is None:
                raise ProtocolError(f"missing array {tree['$array']!r}")
            if tree.get("dtype") == "bfloat16":
                if array.dtype != np.uint16:
                    raise ProtocolError("bfloat16 must travel as uint16")
                return array.view(_bfloat16())
            if array.dtype.name not in DTYPES:
                raise ProtocolError(f"refused dtype {array.dtype}")
            return array
        if "$tuple" in tree and isinstance(tree["$tuple"], list):
            return tuple(decode(x, arrays, resolve, _depth + 1) for x in tree["$tuple"])
        if "$dict" in tree and isinstance(tree["$dict"], dict):
            return {str(k): decode(v, arrays, resolve, _depth + 1) for k, v in tree["$dict"].items()}
        if "$unsupported" in tree:
            return Unsupported(str(tree["$unsupported"])[:200])
    raise ProtocolError(f"unknown value {str(tree)[:80]!r}")


class Unsupported:
    """Stands for a value the worker could not send (an object that is no array)."""

    def __init__(self, type_name: str):
        self.type_name = type_name

    def __repr__(self) -> str:
        return f"<a {self.type_name}>"


def pack(header: dict, arrays: dict[str, np.ndarray]) -> bytes:
    """One frame holding ``header`` and ``arrays``."""
    body = json.dumps(header).encode()
    buffer = io.BytesIO()
    if arrays:
        np.savez(buffer, **arrays)
    payload = buffer.getvalue()
    return _HEADER.pack(len(body), len(payload)) + body + payload


def unpack(body: bytes, payload: bytes) -> tuple[dict, dict[str, np.ndarray]]:
    """The header and arrays of a frame's two parts.

    Raises:
      ProtocolError: the JSON is malformed, or the ``.npz`` is malformed,
        compressed, holds pickles or declares an array other than the bytes it
        holds (see :func:`check_npz`).
    """
    try:
        header = json.loads(body)
        arrays = {}
        if payload:
            check_npz(payload)
            with np.load(io.BytesIO(payload), allow_pickle=False) as data:
                arrays = {key: data[key] for key in data.files}
    except ProtocolError as error:
        raise ProtocolError(f"unreadable frame: {error}") from None
    except Exception as error:  # any parse failure of untrusted bytes is the sender's fault
        raise ProtocolError(f"unreadable frame: {type(error).__name__}: {error}"[:300]) from None
    if not isinstance(header, dict):
        raise ProtocolError("the header is not a JSON object")
    return header, arrays


def unpack_frame(frame: bytes) -> tuple[dict, dict[str, np.ndarray]]:
    """The header and arrays of one whole frame (:func:`pack`'s bytes).

    Raises:
      ProtocolError: as :func:`unpack`, or the frame is shorter than its lengths say.
    """
    if len(frame) < _HEADER.size:
        raise ProtocolError("the frame is shorter than its header")
    body_size, payload_size = _HEADER.unpack_from(frame)
    if len(frame) != _HEADER.size + body_size + payload_size:
        raise ProtocolError("the frame's size differs from its lengths")
    body = frame[_HEADER.size:_HEADER.size + body_size]
    return unpack(body, frame[_HEADER.size + body_size:])


def check_npz(payload: bytes) -> None:
    """Checks a ``.npz`` payload before anything of it is loaded.

    Every member must be a ``.npy`` stored without compression, whose header
    declares a dtype of :data:`DTYPES` and a shape of exactly the bytes the
    member holds: what ``np.load`` then allocates is bounded by the payload's size.

    Raises:
      ProtocolError: a compressed member, a refused dtype, or a declared shape
        whose size differs from the member's data.
    """
    with zipfile.ZipFile(io.BytesIO(payload)) as archive:
        for member in archive.infolist():
            name = member.filename
            if member.compress_type != zipfile.ZIP_STORED or member.file_size != member.compress_size:
                raise ProtocolError(f"array {name!r} is compressed; arrays travel uncompressed (np.savez)")
            with archive.open(member) as stream:
                version = np.lib.format.read_magic(stream)
                read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
                shape, _, dtype = read_header(stream)
                data_bytes = member.file_size - stream.tell()
            if dtype.name not in DTYPES:
                raise ProtocolError(f"array {name!r} has the refused dtype {dtype}")
            declared = dtype.itemsize
            for size in shape:
                declared *= size
            if declared != data_bytes:
                raise ProtocolError(f"array {name!r} declares {declared} bytes (shape {shape}, {dtype}) but holds {data_bytes}")


def write_frame(fd: int, frame: bytes, deadline: float | None = None) -> None:
    """Writes a whole frame to a pipe.

    Args:
      deadline: a ``time.monotonic()`` after which :class:`TimeoutError` is
        raised; ``fd`` must then be non-blocking (a reader that stops reading,
        or shrinks its pipe, cannot hold the writer).
    """
    view = memoryview(frame)
    while view:
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            _, ready, _ = select.select([], [fd], [], min(left, 0.05))
            if not ready:
                continue
        try:
            written = os.write(fd, view)
        except BlockingIOError:
            continue
        view = view[written:]


def read_exactly(fd: int, size: int, deadline: float | None = None, on_wait=None) -> bytes:
    """``size`` bytes from ``fd``.

    Args:
      deadline: a ``time.monotonic()`` after which :class:`TimeoutError` is raised.
      on_wait: called about every 50 ms while waiting (the grader checks memory there).

    Raises:
      EOFError: the other side closed the pipe first.
      TimeoutError: the deadline passed.
    """
    chunks, missing = [], size
    while missing:
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            ready, _, _ = select.select([fd], [], [], min(left, 0.05))
            if not ready:
                if on_wait is not None:
                    on_wait()
                continue
        chunk = os.read(fd, min(missing, 1 << 20))
        if not chunk:
            raise EOFError
        chunks.append(chunk)
        missing -= len(chunk)
    return b"".join(chunks)


def read_frame(fd: int, *, limit: int, deadline: float | None = None, on_wait=None) -> tuple[dict, dict[str, np.ndarray]]:
    """Reads one frame of at most ``limit`` bytes (see :func:`read_exactly`)."""
    head = read_exactly(fd, _HEADER.size, deadline, on_wait)
    body_size, payload_size = _HEADER.unpack(head)
    if body_size + payload_size > limit:
        raise ProtocolError(f"a message of {body_size + payload_size} bytes exceeds the limit of {limit}")
    body = read_exactly(fd, body_size, deadline, on_wait)
    payload = read_exactly(fd, payload_size, deadline, on_wait)
    return unpack(body, payload)
