"""Paddle files without PaddlePaddle: static-graph LoDTensor files and `.pdparams` pickles.

LoDTensor file layout (Paddle `lod_tensor.cc` SerializeToStream + `tensor_util.cc` TensorToStream),
all integers little-endian:

    uint32  version (0)
    uint64  lod_level
    lod_level times: uint64 byte count, then that many bytes (uint64 offsets)
    uint32  tensor version (0)
    int32   byte length of the TensorDesc protobuf
    bytes   TensorDesc { required VarType.Type data_type = 1; repeated int64 dims = 2; }
    bytes   raw tensor data, C order, product(dims) * itemsize

`.pdparams` files are pickles of a dict name -> numpy array. They are read with an unpickler
that can only rebuild numpy arrays (and plain containers): any other global is refused, so a
hostile file cannot run code.
"""

from __future__ import annotations

import io
import os
import pickle
import struct
from pathlib import Path

import numpy as np

from ernie2.utils import atomic_write_bytes

# VarType.Type values of Paddle's framework.proto.
PADDLE_DTYPES = {
    0: np.bool_, 1: np.int16, 2: np.int32, 3: np.int64, 4: np.float16, 5: np.float32,
    6: np.float64, 20: np.uint8, 21: np.int8, 22: "bfloat16", 23: np.complex64, 24: np.complex128,
}
_DTYPE_CODES = {np.dtype(v): k for k, v in PADDLE_DTYPES.items() if v != "bfloat16"}


class PaddleFormatError(ValueError):
    """A Paddle file that is truncated, corrupt or not what it claims to be."""


def _varint(buf: bytes, pos: int, path) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise PaddleFormatError(f"{path}: TensorDesc protobuf ends inside a varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift > 70:
            raise PaddleFormatError(f"{path}: TensorDesc protobuf has an over-long varint")


def _parse_tensor_desc(buf: bytes, path) -> tuple[int, list[int]]:
    dtype, dims, pos = None, [], 0
    while pos < len(buf):
        key, pos = _varint(buf, pos, path)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos, path)
            if field == 1:
                dtype = value
            elif field == 2:
                dims.append(value - (1 << 64) if value >= 1 << 63 else value)
        elif wire == 2:  # length-delimited: packed dims, or an unknown field
            length, pos = _varint(buf, pos, path)
            end = pos + length
            if end > len(buf):
                raise PaddleFormatError(f"{path}: TensorDesc protobuf field runs past its end")
            if field == 2:
                while pos < end:
                    value, pos = _varint(buf, pos, path)
                    dims.append(value - (1 << 64) if value >= 1 << 63 else value)
            pos = end
        elif wire == 1:
            pos += 8
        elif wire == 5:
            pos += 4
        else:
            raise PaddleFormatError(f"{path}: TensorDesc protobuf has wire type {wire}")
    if dtype is None:
        raise PaddleFormatError(f"{path}: TensorDesc has no data_type")
    return dtype, dims


def read_lodtensor(path: str | os.PathLike) -> np.ndarray:
    path = Path(path)
    data = path.read_bytes()
    view = memoryview(data)
    pos = 0

    def take(n: int, what: str):
        nonlocal pos
        if pos + n > len(data):
            raise PaddleFormatError(
                f"{path}: truncated LoDTensor file: {what} needs {n} bytes at offset {pos}, "
                f"file has {len(data)}")
        chunk = view[pos:pos + n]
        pos += n
        return chunk

    (version,) = struct.unpack("<I", take(4, "version"))
    if version != 0:
        raise PaddleFormatError(f"{path}: not a LoDTensor file (version {version}, expected 0)")
    (lod_level,) = struct.unpack("<Q", take(8, "lod level"))
    if lod_level > 16:
        raise PaddleFormatError(f"{path}: not a LoDTensor file (lod level {lod_level})")
    for _ in range(lod_level):
        (size,) = struct.unpack("<Q", take(8, "lod size"))
        take(size, "lod data")
    (tversion,) = struct.unpack("<I", take(4, "tensor version"))
    if tversion != 0:
        raise PaddleFormatError(f"{path}: unsupported tensor version {tversion}")
    (desc_len,) = struct.unpack("<i", take(4, "TensorDesc length"))
    if desc_len < 0:
        raise PaddleFormatError(f"{path}: negative TensorDesc length {desc_len}")
    code, dims = _parse_tensor_desc(bytes(take(desc_len, "TensorDesc")), path)
    if code not in PADDLE_DTYPES:
        raise PaddleFormatError(f"{path}: unknown Paddle data type {code}")
    if any(d < 0 for d in dims):
        raise PaddleFormatError(f"{path}: negative dimension in {dims}")
    count = int(np.prod(dims)) if dims else 1
    if PADDLE_DTYPES[code] == "bfloat16":
        raw = np.frombuffer(take(count * 2, "bfloat16 data"), dtype=np.uint16)
        arr = (raw.astype(np.uint32) << 16).view(np.float32)
    else:
        dt = np.dtype(PADDLE_DTYPES[code])
        arr = np.frombuffer(take(count * dt.itemsize, f"{dims} {dt} data"), dtype=dt).copy()
    if pos != len(data):
        raise PaddleFormatError(f"{path}: {len(data) - pos} unexpected bytes after the tensor data")
    return arr.reshape(dims)


def _encode_varint(value: int) -> bytes:
    value &= (1 << 64) - 1
    out = bytearray()
    while True:
        b = value & 0x7F
        value >>= 7
        if value:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def lodtensor_bytes(array: np.ndarray) -> bytes:
    """Serialize an array the way Paddle's save_persistables writes one variable."""
    array = np.ascontiguousarray(array)
    code = _DTYPE_CODES.get(array.dtype)
    if code is None:
        raise TypeError(f"no Paddle data type for numpy {array.dtype}")
    desc = b"\x08" + _encode_varint(code)
    for d in array.shape:
        desc += b"\x10" + _encode_varint(d)
    return (struct.pack("<IQ", 0, 0) + struct.pack("<Ii", 0, len(desc)) + desc
            + array.tobytes())


def write_lodtensor(path: str | os.PathLike, array: np.ndarray) -> None:
    atomic_write_bytes(path, lodtensor_bytes(array))


def read_static_params(directory: str | os.PathLike) -> dict[str, np.ndarray]:
    """Every variable file of a static `params/` directory, by file name."""
    directory = Path(directory)
    out = {}
    for f in sorted(directory.iterdir()):
        if f.is_file() and not f.name.startswith("."):
            out[f.name] = read_lodtensor(f)
    if not out:
        raise PaddleFormatError(f"{directory}: no parameter files")
    return out


# ---------------------------------------------------------------------- .pdparams
_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("collections", "OrderedDict"),
    # Protocol-2 pickles written by Python 3 (paddle.save's default) rebuild bytes this way.
    ("_codecs", "encode"),
    ("builtins", "set"),
    ("builtins", "frozenset"),
    ("builtins", "tuple"),
    ("builtins", "list"),
    ("builtins", "dict"),
}
# The dtype classes of numpy >= 1.20 (numpy.dtypes.Float32DType and friends).
_ALLOWED_MODULE_PREFIXES = ("numpy.dtypes",)


class _ArraysOnlyUnpickler(pickle.Unpickler):
    def __init__(self, fh, path):
        super().__init__(fh)
        self._path = path

    def find_class(self, module: str, name: str):
        if (module, name) in _ALLOWED_GLOBALS or (
                module.startswith(_ALLOWED_MODULE_PREFIXES) and name.endswith("DType")):
            return super().find_class(module, name)
        raise PaddleFormatError(
            f"{self._path}: refused to unpickle {module}.{name}: a .pdparams file may only "
            f"hold numpy arrays (this file may be corrupt or malicious)")

    def persistent_load(self, pid):
        raise PaddleFormatError(f"{self._path}: unexpected persistent id in pickle")


def read_pdparams(path: str | os.PathLike) -> dict[str, np.ndarray]:
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            obj = _ArraysOnlyUnpickler(fh, path).load()
    except PaddleFormatError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError,
            IndexError, KeyError, struct.error) as exc:
        raise PaddleFormatError(f"{path}: not a readable .pdparams pickle "
                                f"({type(exc).__name__}: {exc})") from None
    if not isinstance(obj, dict):
        raise PaddleFormatError(f"{path}: expected a dict of arrays, got {type(obj).__name__}")
    out = {}
    for k, v in obj.items():
        if k == "StructuredToParameterName@@":  # paddle.save's name map, not a tensor
            continue
        if not isinstance(v, np.ndarray):
            raise PaddleFormatError(f"{path}: entry {k!r} is {type(v).__name__}, not an array")
        out[str(k)] = v
    return out


def write_pdparams(path: str | os.PathLike, arrays: dict[str, np.ndarray]) -> None:
    """Write a dict of arrays as paddle.save does (a protocol-2 pickle), for tests and export."""
    buf = io.BytesIO()
    pickle.dump({k: np.asarray(v) for k, v in arrays.items()}, buf, protocol=2)
    atomic_write_bytes(path, buf.getvalue())
