"""Loaders for the official dataset formats, checksums, downloads and the paper's splits.

Every dataset comes back as uint8 images (N, C, H, W) and int64 labels, in memory. Where the data
lives: the --data-dir flag, else $NIN_DATA_DIR, else ~/.cache/nin/data, in the official layouts:

  cifar-10-batches-bin/{data_batch_1..5,test_batch}.bin   or cifar-10-binary.tar.gz
  cifar-10-batches-py/{data_batch_1..5,test_batch}        or cifar-10-python.tar.gz
  cifar-100-python/{train,test,meta}                      or cifar-100-python.tar.gz
  mnist/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]
  svhn/{train,test,extra}_32x32.mat
"""
from __future__ import annotations

import gzip
import hashlib
import http.client
import io
import math
import os
import pickle
import struct
import sys
import tarfile
import urllib.error
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from . import folder
from .errors import DataError
from .files import file_digest
from .paper import DATASETS as _FACTS

SAMPLE_DIR = Path(__file__).parent / "sample"

CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                   "ship", "truck"]
DIGITS = [str(i) for i in range(10)]

# md5 of every file a loader reads, by path under the data folder. The archives' and the
# extracted python/MNIST/SVHN files' sums are the official ones; the binary .bin sums are those
# of the files inside the official cifar-10-binary.tar.gz.
MD5 = {
    "cifar10": {
        "cifar-10-binary.tar.gz": "c32a1d4ab5d03f1284b67883e8d87530",
        "cifar-10-python.tar.gz": "c58f30108f718f92721af3b95e74349a",
        "cifar-10-batches-bin/data_batch_1.bin": "5dd7e06a14cb22eb9f671a540d1b7c25",
        "cifar-10-batches-bin/data_batch_2.bin": "5ea93a67294ea407fff1d09f752e9692",
        "cifar-10-batches-bin/data_batch_3.bin": "942cd6a4bcdd0dd3c604fbe906cb4421",
        "cifar-10-batches-bin/data_batch_4.bin": "ae636b3ba5c66a11e91e8cb52e771fcb",
        "cifar-10-batches-bin/data_batch_5.bin": "53f37980c15c3d472c316c40844f3f0d",
        "cifar-10-batches-bin/test_batch.bin": "803d5f7f4d78ea53de84dbe85f74fb6d",
        "cifar-10-batches-py/data_batch_1": "c99cafc152244af753f735de768cd75f",
        "cifar-10-batches-py/data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
        "cifar-10-batches-py/data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
        "cifar-10-batches-py/data_batch_4": "634d18415352ddfa80567beed471001a",
        "cifar-10-batches-py/data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
        "cifar-10-batches-py/test_batch": "40351d587109b95175f43aff81a1287e",
    },
    "cifar100": {
        "cifar-100-python.tar.gz": "eb9058c3a382ffc7106e4002c42a8d85",
        "cifar-100-python/train": "16019d7e3df5f24257cddd939b257f8d",
        "cifar-100-python/test": "f0ef6b0ae62326f3e7ffdfab6717acfc",
        "cifar-100-python/meta": "7973b15100ade9c7d40fb424638fde48",
    },
    "mnist": {
        "mnist/train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "mnist/train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
        "mnist/t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
        "mnist/t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
        "mnist/train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
        "mnist/train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
        "mnist/t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
        "mnist/t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
    },
    "svhn": {
        "svhn/train_32x32.mat": "e26dedcc434d2e4c54c9b2d4a06d8373",
        "svhn/test_32x32.mat": "eb5a983be6a315427106f1b164d9cef3",
        "svhn/extra_32x32.mat": "a93ce644f1a588dc4d68dda5feec44a7",
    },
}  # mnist-sample (embedded, first 10,000 train / 2,000 test images): sample/MD5SUMS

_C10_BIN = [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]
_C10_PY = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
_MNIST = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
          "t10k-labels-idx1-ubyte"]

# Each dataset's layouts in order of preference: (where, member files, parser family).
# `where` ending in .tar.gz is an archive read in place (never extracted, so no path in it can
# climb out of the data folder); otherwise it is a folder.
LAYOUTS = {
    "cifar10": [("cifar-10-batches-bin", _C10_BIN, "cifar-bin"),
                ("cifar-10-binary.tar.gz", _C10_BIN, "cifar-bin"),
                ("cifar-10-batches-py", _C10_PY, "cifar-py"),
                ("cifar-10-python.tar.gz", _C10_PY, "cifar-py")],
    "cifar100": [("cifar-100-python", ["train", "test", "meta"], "cifar-py"),
                 ("cifar-100-python.tar.gz", ["train", "test", "meta"], "cifar-py")],
    "mnist": [("mnist", [f + ".gz" for f in _MNIST], "idx"), ("mnist", _MNIST, "idx")],
    "svhn": [("svhn", ["train_32x32.mat", "test_32x32.mat", "extra_32x32.mat"], "mat")],
}
LAYOUTS["mnist-sample"] = LAYOUTS["mnist"][:1]
_ARCHIVE_FOLDER = {"cifar-10-binary.tar.gz": "cifar-10-batches-bin",
                   "cifar-10-python.tar.gz": "cifar-10-batches-py",
                   "cifar-100-python.tar.gz": "cifar-100-python"}

_MNIST_MIRRORS = ["https://ossci-datasets.s3.amazonaws.com/mnist/",
                  "http://yann.lecun.com/exdb/mnist/"]
# What `nin data download` fetches: (path under the data folder, candidate URLs).
DOWNLOADS = {
    "cifar10": [("cifar-10-binary.tar.gz",
                 ["https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"])],
    "cifar100": [("cifar-100-python.tar.gz",
                  ["https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"])],
    "mnist": [(f"mnist/{f}.gz", [m + f + ".gz" for m in _MNIST_MIRRORS]) for f in _MNIST],
    "svhn": [(f"svhn/{s}_32x32.mat", [f"http://ufldl.stanford.edu/housenumbers/{s}_32x32.mat"])
             for s in ("train", "test", "extra")],
}
DATASETS = tuple(_FACTS)
SPLITS = {name: facts["splits"] for name, facts in _FACTS.items()}


@dataclass
class Dataset:
    images: torch.Tensor  # uint8 (N, C, H, W)
    labels: torch.Tensor  # int64 (N,)
    classes: list
    name: str
    split: str

    def __len__(self) -> int:
        return len(self.labels)

    def take(self, index) -> "Dataset":
        return Dataset(self.images[index], self.labels[index], self.classes, self.name, self.split)

    def to(self, device) -> "Dataset":
        return Dataset(self.images.to(device), self.labels.to(device), self.classes, self.name,
                       self.split)


def data_dir(path: str | os.PathLike | None = None) -> Path:
    """--data-dir, else $NIN_DATA_DIR, else ~/.cache/nin/data."""
    if path:
        return Path(path).expanduser()
    if os.environ.get("NIN_DATA_DIR"):
        return Path(os.environ["NIN_DATA_DIR"]).expanduser()
    return Path.home() / ".cache" / "nin" / "data"


def _root_for(name: str, root) -> Path:
    return SAMPLE_DIR if name == "mnist-sample" else data_dir(root)


def _check_name(name: str):
    if name not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")


def md5_bytes(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def md5_file(path: Path) -> str:
    return file_digest(path, "md5")


def _expected_md5(name: str, rel: str) -> str | None:
    if name == "mnist-sample":
        return _sample_md5().get(rel)
    return MD5[name].get(rel)


def _sample_md5() -> dict:
    sums = SAMPLE_DIR / "MD5SUMS"
    if not sums.exists():
        return {}
    return {f"mnist/{line.split()[1]}": line.split()[0]
            for line in sums.read_text().splitlines() if line.strip()}


def _check_md5(name: str, rel: str, path: Path, data: bytes):
    want = _expected_md5(name, rel)
    if want is not None and md5_bytes(data) != want:
        raise DataError(
            f"{path}: md5 {md5_bytes(data)} but the official file has {want}; it is corrupt, "
            f"truncated or not the official file. Delete it and run `nin data download {name}` "
            "(in Python, load_dataset(..., verify=False) loads it anyway).")


# ---------------------------------------------------------------- safe unpickling
_PICKLE_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
}


class _DataUnpickler(pickle.Unpickler):
    """Resolves only the few globals a CIFAR pickle holds (numpy arrays, bytes)."""

    path = "<pickle>"

    def find_class(self, module, name):
        if (module, name) not in _PICKLE_ALLOWED:
            raise DataError(
                f"{self.path}: the pickle asks for {module}.{name}, which a dataset file never "
                "needs; refused, since loading it could run code. Replace the file with the "
                "official one.")
        if module == "numpy.core.multiarray" and hasattr(np, "_core"):
            module = "numpy._core.multiarray"  # numpy 2 moved it; avoids a deprecation warning
        return super().find_class(module, name)


def safe_unpickle(data: bytes, path="<pickle>"):
    """Load a CIFAR-style pickle without letting it run code."""
    up = _DataUnpickler(io.BytesIO(data), encoding="bytes")
    up.path = str(path)
    try:
        return up.load()
    except DataError:
        raise
    except Exception as e:
        raise DataError(f"{path}: not a readable CIFAR pickle ({type(e).__name__}: {e}); the "
                        "file is truncated or corrupt. Replace it with the official one.") from None


# ---------------------------------------------------------------- parsers (bytes -> arrays)
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


# ---------------------------------------------------------------- layouts
def _present(root: Path, where: str, members) -> list:
    if where.endswith(".tar.gz"):
        return [where] if (root / where).is_file() else []
    return [f"{where}/{m}" for m in members if (root / where / m).is_file()]


def _read_members(name: str, root: Path, where: str, members, wanted, verify: bool) -> dict:
    """Bytes of the wanted members of one layout, md5-checked when verify."""
    out = {}
    if where.endswith(".tar.gz"):
        path = root / where
        raw = path.read_bytes()
        if verify:
            _check_md5(name, where, path, raw)
        folder = _ARCHIVE_FOLDER[where]
        try:
            with tarfile.open(fileobj=io.BytesIO(raw), mode="r:gz") as tar:
                _refuse_escapes(tar, path)
                for m in wanted:
                    try:
                        member = tar.getmember(f"{folder}/{m}")
                    except KeyError:
                        raise DataError(f"{path}: the archive has no {folder}/{m}; it is not "
                                        "the official archive. " + _fix_hint(name)) from None
                    out[m] = tar.extractfile(member).read()
        except (tarfile.TarError, OSError, EOFError) as e:
            raise DataError(f"{path}: unreadable archive ({e}). " + _fix_hint(name)) from None
        return out
    for m in wanted:
        path = root / where / m
        raw = path.read_bytes()
        if verify:
            _check_md5(name, f"{where}/{m}", path, raw)
        out[m] = raw
    return out


def _refuse_escapes(tar: tarfile.TarFile, path: Path):
    """An official archive holds one folder of plain files. One whose entries are absolute, climb
    out with '..', or are links or devices is not one, and could write outside the data folder
    if anyone extracted it: refused whole."""
    for m in tar.getmembers():
        parts = Path(m.name).parts
        if m.name.startswith(("/", "\\")) or ".." in parts or (parts and ":" in parts[0]):
            raise DataError(f"{path}: archive entry {m.name!r} points outside its folder; "
                            "refused (not an official archive). Delete it and download again.")
        if not (m.isfile() or m.isdir()):
            raise DataError(f"{path}: archive entry {m.name!r} is a link or device, which the "
                            "official archive never holds; refused. Delete it and download again.")


def _missing_message(name: str, root: Path) -> str:
    lines = [f"{name} not found under {root}. Put the official files there in one of these "
             "layouts:"]
    for where, members, _ in LAYOUTS[name]:
        lines.append("  " + (f"{root / where}" if where.endswith(".tar.gz") else
                             f"{root / where}/{{{','.join(members)}}}"))
    lines.append(f"then check them with `nin data verify {name}`; with a network, "
                 f"`nin data download {name}` fetches them. Choose the folder with --data-dir "
                 "or NIN_DATA_DIR.")
    return "\n".join(lines)


def _choose_layout(name: str, root: Path):
    """The first layout whose files are all present; else a clear error."""
    for where, members, family in LAYOUTS[name]:
        have = _present(root, where, members)
        if have and (where.endswith(".tar.gz") or len(have) == len(members)):
            return where, members, family
    partial = [(where, members) for where, members, _ in LAYOUTS[name]
               if _present(root, where, members)]
    if partial:
        where, members = partial[0]
        missing = [str(root / where / m) for m in members if not (root / where / m).is_file()]
        raise DataError(f"{name}: incomplete folder {root / where}; missing "
                        + ", ".join(missing) + f". Run `nin data download {name}` or copy "
                        "them from the official archive.")
    raise DataError(_missing_message(name, root))


def _load_part(name: str, part: str, root: Path, verify: bool):
    """One official part (train, test or extra): images, labels (numpy) and class names."""
    where, members, family = _choose_layout(name, root)
    if family == "cifar-bin":
        files = members[:5] if part == "train" else members[5:]
        raw = _read_members(name, root, where, members, files, verify)
        xs, ys = zip(*(parse_cifar_binary(raw[f], root / where / f, name) for f in files))
        return np.concatenate(xs), np.concatenate(ys), list(CIFAR10_CLASSES)
    if family == "cifar-py" and name == "cifar10":
        files = members[:5] if part == "train" else members[5:]
        raw = _read_members(name, root, where, members, files, verify)
        xs, ys = zip(*(parse_cifar_pickle(raw[f], root / where / f, b"labels", name)
                       for f in files))
        return np.concatenate(xs), np.concatenate(ys), list(CIFAR10_CLASSES)
    if family == "cifar-py":  # CIFAR-100: the part and the class names, in one read
        raw = _read_members(name, root, where, members, [part, "meta"], verify)
        meta = safe_unpickle(raw["meta"], root / where / "meta")
        if not isinstance(meta, dict) or b"fine_label_names" not in meta:
            raise DataError(f"{root / where / 'meta'}: no b'fine_label_names'. " + _fix_hint(name))
        x, y = parse_cifar_pickle(raw[part], root / where / part, b"fine_labels", name)
        return x, y, [n.decode() for n in meta[b"fine_label_names"]]
    if family == "idx":
        stem = "train" if part == "train" else "t10k"
        files = [m for m in members if m.startswith(stem)]
        raw = _read_members(name, root, where, members, files, verify)
        arrays = {}
        for f in files:
            data = _gunzip(raw[f], root / where / f, name) if f.endswith(".gz") else raw[f]
            arrays["images" if "images" in f else "labels"] = parse_idx(data, root / where / f,
                                                                        name)
        x, y = arrays["images"], arrays["labels"].astype(np.int64)
        if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
            raise DataError(f"{root / where}: {stem} images {x.shape} and labels {y.shape} do "
                            "not match. " + _fix_hint(name))
        return x[:, None], y, list(DIGITS)
    f = f"{part}_32x32.mat"
    raw = _read_members(name, root, where, members, [f], verify)
    return (*parse_svhn_mat(raw[f], root / where / f, name), list(DIGITS))


def svhn_val_index(train_labels: np.ndarray, extra_labels: np.ndarray):
    """The paper's SVHN validation split: the first 400 images of each class in train and the
    first 200 of each class in extra (file order), 6,000 images. Indices into train and extra."""
    def first(labels, k):
        return np.sort(np.concatenate([np.flatnonzero(labels == c)[:k] for c in range(10)]))
    return first(train_labels, 400), first(extra_labels, 200)


def load_dataset(name: str, split: str = "train", root=None, verify: bool = True, *,
                 in_chans: int | None = None, size: int | None = None, skip_bad: bool = False,
                 log=None) -> Dataset:
    """Load a split as uint8 tensors.

    splits: train, test; val and train-val (CIFAR, MNIST: the last 10,000 training images are the
    validation set, as the paper's hyper-parameter search); SVHN also extra, and val / train-val
    are the paper's: 6,000 validation images from train and extra, the rest of both to train on.
    "folder" is your own pictures in root (nin.folder), decoded to in_chans channels of
    size x size pixels; the other datasets ignore those arguments.
    """
    if name == "folder":
        if root is None:
            raise DataError("--dataset folder needs --data-dir DIR, the folder holding train/")
        x, y, classes = folder.read_split(root, split, in_chans or 3, size or 32, skip_bad,
                                          log or (lambda m: print(m, file=sys.stderr)))
        return Dataset(torch.from_numpy(x), torch.from_numpy(y), classes, "folder", split)
    _check_name(name)
    if split not in SPLITS[name]:
        raise DataError(f"{name} has no split {split!r}; use one of {', '.join(SPLITS[name])}")
    root = _root_for(name, root)
    if name == "svhn" and split in ("val", "train-val"):
        xt, yt, classes = _load_part(name, "train", root, verify)
        xe, ye, _ = _load_part(name, "extra", root, verify)
        it, ie = svhn_val_index(yt, ye)
        if split == "val":
            x, y = np.concatenate([xt[it], xe[ie]]), np.concatenate([yt[it], ye[ie]])
        else:
            kt = np.setdiff1d(np.arange(len(yt)), it)
            ke = np.setdiff1d(np.arange(len(ye)), ie)
            x, y = np.concatenate([xt[kt], xe[ke]]), np.concatenate([yt[kt], ye[ke]])
    elif split in ("val", "train-val"):
        x, y, classes = _load_part(name, "train", root, verify)
        x, y = (x[-10000:], y[-10000:]) if split == "val" else (x[:-10000], y[:-10000])
    else:
        x, y, classes = _load_part(name, split, root, verify)
    images = torch.from_numpy(np.require(x, np.uint8, ["C", "W"]))
    return Dataset(images, torch.from_numpy(np.require(y, np.int64, ["C", "W"])),
                   classes, name, split)


def load_for_weights(meta: dict, model, split: str = "test", name: str | None = None,
                     root=None) -> Dataset:
    """The split to score or draw with trained weights: their own dataset unless `name` is
    given; a folder dataset is read from the run's --data-dir unless root is given, at the
    network's channels and size, and must still have the classes the run trained on."""
    config = meta.get("config", {})
    name = name or config.get("dataset") or "cifar10"
    if name == "folder":
        root = root or config.get("data_dir")
    ds = load_dataset(name, split, root, in_chans=model.in_chans, size=model.input_size)
    if name == "folder" and meta.get("classes") and ds.classes != meta["classes"]:
        raise DataError(f"{root}: its classes {ds.classes} are not the {len(meta['classes'])} "
                        f"the weights were trained on ({', '.join(meta['classes'])})")
    return ds


# ---------------------------------------------------------------- verify and download
def verify_files(name: str, root=None) -> tuple[bool, list[str]]:
    """Check a dataset's files. Returns (ok, lines): the layout found, or a line per bad or
    missing file."""
    _check_name(name)
    root = _root_for(name, root)
    reports = []
    for where, members, _ in LAYOUTS[name]:
        if not _present(root, where, members):
            continue
        rels = [where] if where.endswith(".tar.gz") else [f"{where}/{m}" for m in members]
        bad = []
        for rel in rels:
            path = root / rel
            if not path.is_file():
                bad.append(f"missing: {path}")
                continue
            want = _expected_md5(name, rel)
            got = md5_file(path)
            if want is not None and got != want:
                bad.append(f"bad md5: {path}: {got}, expected {want}")
        if not bad:
            return True, [f"ok: {name} ({len(rels)} file(s) under {root / where})"]
        reports += bad
    if not reports:
        where, members, _ = LAYOUTS[name][0]
        reports = [f"missing: {root / rel}" for rel, _ in DOWNLOADS.get(name, [])] or \
                  [f"missing: {root / where / m}" for m in members]
        reports.append(_missing_message(name, root))
    return False, reports


def _fetch(urls: list, dest: Path, md5: str | None, timeout: float = 60.0):
    """Download to dest.part (resuming a cut-off download with an HTTP Range request), check the
    md5, then rename into place: a half-written file is never taken for the real one."""
    part = dest.with_name(dest.name + ".part")
    dest.parent.mkdir(parents=True, exist_ok=True)
    errors = []
    for url in urls:
        try:
            have = part.stat().st_size if part.exists() else 0
            req = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
            with urllib.request.urlopen(req, timeout=timeout) as r:
                resumed = have and r.status == 206  # else the server sent the whole file
                size = int(r.headers.get("Content-Length") or -1)
                size = size + have if (resumed and size >= 0) else size
                with open(part, "ab" if resumed else "wb") as f:
                    try:
                        while block := r.read(1 << 20):
                            f.write(block)
                    except http.client.IncompleteRead as e:
                        f.write(e.partial)
            if 0 <= size != part.stat().st_size:
                errors.append(f"{url}: cut off after {part.stat().st_size:,} of {size:,} bytes "
                              f"(kept in {part.name}; run again to resume)")
                continue
            got = md5_file(part)
            if md5 is not None and got != md5:
                part.unlink()
                errors.append(f"{url}: md5 {got}, expected {md5} (deleted; try again)")
                continue
            os.replace(part, dest)
            return
        except urllib.error.HTTPError as e:
            if e.code == 416:  # range past the end: the partial file is complete or stale
                part.unlink(missing_ok=True)
            errors.append(f"{url}: HTTP {e.code}")
        except (urllib.error.URLError, http.client.HTTPException, OSError, TimeoutError) as e:
            errors.append(f"{url}: {getattr(e, 'reason', e)}")
    raise DataError(f"could not download {dest.name}:\n  " + "\n  ".join(errors)
                    + f"\nOffline? Copy the official file to {dest} and run `nin data verify`.")


def download(name: str, root=None, urls: dict | None = None) -> list[Path]:
    """Fetch a dataset's official files into the data folder, checking their md5s. Files that
    are already there and correct are kept. `urls` maps a file to other URLs (mirrors, tests)."""
    _check_name(name)
    if name == "mnist-sample":
        return []
    root = data_dir(root)
    done = []
    for rel, candidates in DOWNLOADS[name]:
        dest, want = root / rel, MD5[name].get(rel)
        if dest.is_file() and (want is None or md5_file(dest) == want):
            done.append(dest)
            continue
        _fetch((urls or {}).get(rel, candidates), dest, want)
        done.append(dest)
    return done
