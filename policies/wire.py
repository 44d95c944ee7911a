"""msgpack with numpy arrays, byte-compatible with ``openpi-client``'s ``msgpack_numpy``.

Why msgpack and not pickle: a policy server reads bytes from the network, and unpickling runs
arbitrary code. msgpack only ever builds maps, lists, strings, numbers and bytes; arrays travel as
a map of raw bytes plus dtype and shape, which this module turns back into ``np.ndarray`` after
checking that the three agree.

The encoding (the one openpi uses, so its clients and servers interoperate with ours):

* ``np.ndarray`` -> ``{b"__ndarray__": True, b"data": <bytes>, b"dtype": dtype.str, b"shape": shape}``
  (``dtype.str`` is numpy's byte-order-qualified code, e.g. ``"|u1"``, ``"<f4"``);
* numpy scalars -> ``{b"__npgeneric__": True, b"data": <python number>, b"dtype": dtype.str}``;
* object, structured (void) and complex dtypes are refused, as openpi refuses them.

Decoding accepts the marker keys as bytes (what openpi writes) or as str (hand-written clients) and
returns writable, native-byte-order arrays.
"""

from __future__ import annotations

import math
from typing import Any

import msgpack
import numpy as np

NDARRAY = "__ndarray__"
NPGENERIC = "__npgeneric__"
REFUSED_KINDS = {"O": "object", "V": "structured/void", "c": "complex"}
MAX_NDIM = 8
MAX_DTYPE_CHARS = 16


class WireError(ValueError):
    """Bytes that are not a valid message: the text says what was wrong and what to send instead."""


def _check_dtype(dtype: np.dtype) -> None:
    if dtype.kind in REFUSED_KINDS:
        raise WireError(f"arrays of {REFUSED_KINDS[dtype.kind]} dtype ({dtype.str}) cannot be sent; use numeric arrays")


def _encode(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        _check_dtype(obj.dtype)
        return {
            NDARRAY.encode(): True,
            b"data": np.ascontiguousarray(obj).tobytes(),
            b"dtype": obj.dtype.str,
            b"shape": list(obj.shape),
        }
    if isinstance(obj, np.generic):
        _check_dtype(obj.dtype)
        return {NPGENERIC.encode(): True, b"data": obj.item(), b"dtype": obj.dtype.str}
    raise TypeError(f"cannot send a {type(obj).__name__} over the wire (maps, lists, str, bytes, numbers, arrays)")


def packb(obj: Any) -> bytes:
    """Serialise maps / lists / scalars / numpy arrays to msgpack bytes."""
    try:
        return msgpack.packb(obj, default=_encode, use_bin_type=True)
    except WireError:
        raise
    except (TypeError, ValueError, OverflowError) as err:
        raise WireError(f"cannot encode message: {err}") from err


def _field(obj: dict, name: str) -> Any:
    if name in obj:
        return obj[name]
    key = name.encode()
    if key in obj:
        return obj[key]
    raise WireError(f"encoded array is missing its {name!r} field (expected data, dtype, shape)")


def _parse_dtype(value: Any) -> np.dtype:
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    if not isinstance(value, str) or not value or len(value) > MAX_DTYPE_CHARS:
        raise WireError(f"encoded array has an invalid dtype {value!r}; send numpy's dtype.str, e.g. '|u1' or '<f4'")
    try:
        dtype = np.dtype(value)
    except TypeError as err:
        raise WireError(f"encoded array has an unknown dtype {value!r}: {err}") from None
    _check_dtype(dtype)
    return dtype


def _decode_array(obj: dict) -> np.ndarray:
    data = _field(obj, "data")
    dtype = _parse_dtype(_field(obj, "dtype"))
    shape = _field(obj, "shape")
    if not isinstance(data, bytes):
        raise WireError(f"encoded array data must be bytes (msgpack bin), got {type(data).__name__}")
    if not isinstance(shape, list | tuple) or len(shape) > MAX_NDIM:
        raise WireError(f"encoded array shape must be a list of at most {MAX_NDIM} sizes, got {shape!r}")
    if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape):
        raise WireError(f"encoded array shape must hold non-negative integers, got {shape!r}")
    expected = math.prod(shape) * dtype.itemsize
    if len(data) != expected:
        raise WireError(
            f"encoded array of shape {tuple(shape)} and dtype {dtype.str} needs {expected} bytes but carries "
            f"{len(data)}; send arr.tobytes() of a C-contiguous array with its own shape and dtype"
        )
    array = np.frombuffer(data, dtype=dtype).reshape(shape)
    return array.astype(dtype.newbyteorder("="), copy=True)  # writable and in native byte order


def _decode_generic(obj: dict) -> np.generic:
    dtype = _parse_dtype(_field(obj, "dtype"))
    try:
        return dtype.type(_field(obj, "data"))
    except (TypeError, ValueError, OverflowError) as err:
        raise WireError(f"encoded numpy scalar does not fit its dtype {dtype.str}: {err}") from None


def _object_hook(obj: dict) -> Any:
    if obj.get(NDARRAY) is True or obj.get(NDARRAY.encode()) is True:
        return _decode_array(obj)
    if obj.get(NPGENERIC) is True or obj.get(NPGENERIC.encode()) is True:
        return _decode_generic(obj)
    return obj


def unpackb(data: bytes) -> Any:
    """msgpack bytes -> Python objects with numpy arrays; anything malformed raises :class:`WireError`."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise WireError(f"expected a binary message, got {type(data).__name__}")
    try:
        return msgpack.unpackb(data, object_hook=_object_hook, raw=False)
    except WireError:
        raise
    except Exception as err:  # msgpack raises many types (ExtraData, FormatError, StackError, ValueError, ...)
        raise WireError(f"message is not valid msgpack ({type(err).__name__}: {err})") from None
