"""The official formats, bytes to arrays: CIFAR binary and python, MNIST's IDX, SVHN's MATLAB
5 files (read by our own reader: every length checked), gzip."""
from __future__ import annotations

import gzip
import math
import struct
import zlib

import numpy as np

from ..errors import DataError
from .unpickle import safe_unpickle

def _fix_hint(name: str) -> str:
    return (f"Delete it and run `nin data download {name}`, or put the official file there "
            f"(`nin data verify {name}` checks them).")


def parse_cifar_binary(data: bytes, path, name="cifar10"):
    """CIFAR-10 binary version: records of 1 label byte + 3,072 pixel bytes (R, G, B planes)."""
    rec = 1 + 3 * 32 * 32
    if len(data) == 0 or len(data) % rec:
        raise DataError(f"{path}: {len(data):,} bytes is not a whole number of {rec:,}-byte "
                        f"records, so it is truncated or not a CIFAR-10 binary batch. "
                        + _fix_hint(name))
    arr = np.frombuffer(data, np.uint8).reshape(-1, rec)
    labels = arr[:, 0].astype(np.int64)
    if labels.max() > 9:
        raise DataError(f"{path}: label {labels.max()} out of range 0-9; not a CIFAR-10 binary "
                        "batch. " + _fix_hint(name))
    return arr[:, 1:].reshape(-1, 3, 32, 32), labels


def parse_cifar_pickle(data: bytes, path, label_key=b"labels", name="cifar10"):
    """CIFAR python version: a pickled dict with b'data' (N, 3072) uint8 and a label list."""
    d = safe_unpickle(data, path)
    if not isinstance(d, dict) or b"data" not in d or label_key not in d:
        raise DataError(f"{path}: a pickle without the {label_key!r} and b'data' entries of a "
                        "CIFAR batch. " + _fix_hint(name))
    x = np.asarray(d[b"data"])
    y = np.asarray(d[label_key], dtype=np.int64)
    if x.dtype != np.uint8 or x.ndim != 2 or x.shape[1] != 3072 or len(x) != len(y):
        raise DataError(f"{path}: data of shape {x.shape} ({x.dtype}) with {len(y)} labels; a "
                        "CIFAR batch holds N×3072 uint8 and N labels. " + _fix_hint(name))
    return x.reshape(-1, 3, 32, 32), y


def parse_idx(data: bytes, path, name="mnist"):
    """MNIST idx: magic (0, 0, type 0x08 = ubyte, ndim), ndim big-endian int32 sizes, payload."""
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08 or data[3] not in (1, 3):
        raise DataError(f"{path}: bad idx magic {data[:4].hex() or '(empty)'}; expected 00000801 "
                        "(labels) or 00000803 (images). " + _fix_hint(name))
    ndim = data[3]
    if len(data) < 4 + 4 * ndim:
        raise DataError(f"{path}: truncated idx header. " + _fix_hint(name))
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    want = 4 + 4 * ndim + int(np.prod(dims))
    if len(data) != want:
        raise DataError(f"{path}: {len(data):,} bytes but its header {dims} says {want:,}; the "
                        "file is truncated or corrupt. " + _fix_hint(name))
    arr = np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(dims)
    return arr


def parse_svhn_mat(data: bytes, path, name="svhn"):
    """SVHN cropped digits: MATLAB X (32, 32, 3, N) uint8 and y (N, 1) with 10 standing for 0."""
    arrays = read_mat5(data, path, name)
    if "X" not in arrays or "y" not in arrays:
        raise DataError(f"{path}: holds {sorted(arrays)}, not SVHN's X and y. " + _fix_hint(name))
    x, y = arrays["X"], arrays["y"]
    if x.ndim != 4 or x.shape[:3] != (32, 32, 3) or x.dtype != np.uint8 or y.size != x.shape[3]:
        raise DataError(f"{path}: X {x.shape} {x.dtype}, y {y.shape}; SVHN has X 32×32×3×N "
                        "uint8 and N labels. " + _fix_hint(name))
    y = y.reshape(-1).astype(np.int64) % 10
    return np.ascontiguousarray(x.transpose(3, 2, 0, 1)), y


# MATLAB 5 MAT-files, read here rather than by scipy.io.loadmat, which crashed the process
# (SIGSEGV/SIGBUS) on some corrupt files in our fuzz tests. Only numeric real arrays are read.
_MI_TYPES = {1: "i1", 2: "u1", 3: "i2", 4: "u2", 5: "i4", 6: "u4", 7: "f4", 9: "f8", 12: "i8",
             13: "u8"}  # the element types numbers are stored in
_MX_CLASSES = {6: "f8", 7: "f4", 8: "i1", 9: "u1", 10: "i2", 11: "u2", 12: "i4", 13: "u4",
               14: "i8", 15: "u8"}  # the array classes they are returned as
_MI_MATRIX, _MI_COMPRESSED = 14, 15


def read_mat5(data: bytes, path, name="svhn") -> dict:
    """{name: array} of the numeric arrays in a MATLAB 5 MAT-file (arrays in MATLAB's shape)."""
    if len(data) < 128 or data[126:128] not in (b"IM", b"MI"):
        raise DataError(f"{path}: not a MATLAB 5 MAT-file (no IM/MI mark at byte 126). "
                        + _fix_hint(name))
    order = "<" if data[126:128] == b"IM" else ">"
    arrays, data = {}, memoryview(data)  # slices of a memoryview copy nothing
    for typ, body in _mat_elements(data, 128, order, path, name):
        if typ == _MI_COMPRESSED:
            try:
                body = memoryview(zlib.decompress(body))
            except zlib.error as e:
                raise DataError(f"{path}: a compressed array is corrupt ({e}). "
                                + _fix_hint(name)) from None
            inner = list(_mat_elements(body, 0, order, path, name))
            typ, body = inner[0] if len(inner) == 1 else (None, None)
        if typ == _MI_MATRIX:
            arrays.update(_mat_matrix(body, order, path, name))
    return arrays


def _mat_elements(buf: bytes, pos: int, order: str, path, name):
    """(type, bytes) of each data element from pos on; a short element packs into 8 bytes."""
    while pos < len(buf):
        if pos + 8 > len(buf):
            raise DataError(f"{path}: truncated at byte {pos:,}. " + _fix_hint(name))
        typ, n = struct.unpack_from(order + "II", buf, pos)
        if typ >> 16:  # small data element: size in the high half, type in the low half
            typ, n = typ & 0xFFFF, typ >> 16
            if n > 4:
                raise DataError(f"{path}: bad small element at byte {pos:,}. " + _fix_hint(name))
            yield typ, buf[pos + 4: pos + 4 + n]
            pos += 8
            continue
        if pos + 8 + n > len(buf):
            raise DataError(f"{path}: an element at byte {pos:,} claims {n:,} bytes, past the end "
                            "of the file: truncated or corrupt. " + _fix_hint(name))
        yield typ, buf[pos + 8: pos + 8 + n]
        pos += 8 + n + (0 if typ == _MI_COMPRESSED else -n % 8)  # padded to 8 bytes


def _mat_matrix(body: bytes, order: str, path, name) -> dict:
    """{name: array} for one miMATRIX element (flags, dimensions, name, real part), or {}
    when it is not a numeric real array."""
    parts = list(_mat_elements(body, 0, order, path, name))
    bad = DataError(f"{path}: a malformed MATLAB array. " + _fix_hint(name))
    if len(parts) < 3 or [t for t, _ in parts[:3]] != [6, 5, 1] or len(parts[0][1]) < 4:
        raise bad
    flags = struct.unpack_from(order + "I", parts[0][1])[0]
    if (flags & 0xFF) not in _MX_CLASSES or flags & 0x800:  # not numeric, or complex
        return {}
    if len(parts) < 4 or parts[3][0] not in _MI_TYPES or len(parts[1][1]) % 4:
        raise bad
    dims = [int(d) for d in np.frombuffer(parts[1][1], order + "i4")]
    stored = np.dtype(order + _MI_TYPES[parts[3][0]])
    raw = parts[3][1]
    if len(dims) < 2 or min(dims) < 0 or len(raw) != math.prod(dims) * stored.itemsize:
        raise bad
    values = np.frombuffer(raw, stored).astype(_MX_CLASSES[flags & 0xFF], copy=False)
    key = bytes(parts[2][1]).decode("latin-1")
    return {key: values.reshape(dims[::-1]).T}  # MATLAB stores columns first


def _gunzip(data: bytes, path, name):
    try:
        return gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as e:  # BadGzipFile is an OSError
        raise DataError(f"{path}: not a complete gzip file ({e}). " + _fix_hint(name)) from None
