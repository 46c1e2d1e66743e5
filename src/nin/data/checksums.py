"""Checksums and URLs: the md5 of every official file a loader reads, the embedded sample's
sums, and where `nin data download` fetches each dataset."""
from __future__ import annotations

import hashlib
from pathlib import Path

from ..errors import DataError
from ..files import file_digest

SAMPLE_DIR = Path(__file__).parent.parent / "sample"
_MNIST = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
          "t10k-labels-idx1-ubyte"]

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
