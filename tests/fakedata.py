"""Small datasets written in the official file formats, for the loader tests.

Each writer returns {path under the data folder: md5} for the files it wrote, so a test can put
them in nin.data.MD5 in place of the official sums and exercise the real checking code.
"""
from __future__ import annotations

import gzip
import hashlib
import io
import sys
import pickle
import tarfile
from pathlib import Path

import numpy as np


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def images(n: int, c: int, h: int, w: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Random images whose first pixel encodes the label, so tests can check order."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (n, c, h, w), dtype=np.uint8)
    y = (np.arange(n) % 10).astype(np.int64)
    x[:, 0, 0, 0] = y * 20
    return x, y


def _archive(root: Path, archive: str, folder: Path) -> dict:
    """Pack the folder into the official archive name and remove the folder."""
    with tarfile.open(root / archive, "w:gz") as tar:
        tar.add(folder, arcname=folder.name)
    for f in folder.iterdir():
        f.unlink()
    folder.rmdir()
    return {archive: _md5(root / archive)}


def _write_cifar10(root: Path, folder: str, suffix: str, encode, per_batch: int,
                   archive: str | None) -> dict:
    """Five training batches and a test batch of `per_batch` images, each encoded by `encode`."""
    folder = root / folder
    folder.mkdir(parents=True, exist_ok=True)
    sums = {}
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for i, name in enumerate(names):
        x, y = images(per_batch, 3, 32, 32, seed=i)
        (folder / (name + suffix)).write_bytes(encode(x, y))
        sums[f"{folder.name}/{name}{suffix}"] = _md5(folder / (name + suffix))
    return _archive(root, archive, folder) if archive else sums


def cifar_pickle(x: np.ndarray, labels, label_key: str) -> bytes:
    # The official batches are Python 2 pickles of a dict of str keys; loaded with
    # encoding="bytes" the keys are bytes, as written here with protocol 2.
    d = {b"batch_label": b"testing batch", label_key.encode(): list(map(int, labels)),
         b"data": x.reshape(len(x), -1), b"filenames": [b"x.png"] * len(x)}
    return pickle.dumps(d, protocol=2)


def write_cifar10_binary(root: Path, per_batch: int = 20, archive: bool = False) -> dict:
    """The binary version: records of a label byte and 3,072 pixel bytes."""
    return _write_cifar10(
        root, "cifar-10-batches-bin", ".bin",
        lambda x, y: np.concatenate([y.astype(np.uint8)[:, None], x.reshape(len(x), -1)],
                                    1).tobytes(),
        per_batch, "cifar-10-binary.tar.gz" if archive else None)


def write_cifar10_python(root: Path, per_batch: int = 20, archive: bool = False) -> dict:
    return _write_cifar10(root, "cifar-10-batches-py", "",
                          lambda x, y: cifar_pickle(x, y, "labels"), per_batch,
                          "cifar-10-python.tar.gz" if archive else None)


def write_cifar100_python(root: Path, n_train: int = 200, n_test: int = 100,
                          archive: bool = False) -> dict:
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True, exist_ok=True)
    for name, n, seed in (("train", n_train, 0), ("test", n_test, 1)):
        x, _ = images(n, 3, 32, 32, seed)
        y = np.arange(n) % 100
        (folder / name).write_bytes(cifar_pickle(x, y, "fine_labels"))
    meta = {b"fine_label_names": [f"class{i}".encode() for i in range(100)],
            b"coarse_label_names": [f"super{i}".encode() for i in range(20)]}
    (folder / "meta").write_bytes(pickle.dumps(meta, protocol=2))
    if archive:
        return _archive(root, "cifar-100-python.tar.gz", folder)
    return {f"cifar-100-python/{n}": _md5(folder / n) for n in ("train", "test", "meta")}


def idx_bytes(arr: np.ndarray) -> bytes:
    head = bytes([0, 0, 0x08, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    return head + arr.astype(np.uint8).tobytes()


def write_mnist(root: Path, n_train: int = 120, n_test: int = 40, gz: bool = True) -> dict:
    folder = root / "mnist"
    folder.mkdir(parents=True, exist_ok=True)
    sums = {}
    for stem, n, seed in (("train", n_train, 0), ("t10k", n_test, 1)):
        x, y = images(n, 1, 28, 28, seed)
        for kind, arr in (("images-idx3", x[:, 0]), ("labels-idx1", y)):
            name = f"{stem}-{kind}-ubyte" + (".gz" if gz else "")
            data = idx_bytes(arr)
            (folder / name).write_bytes(gzip.compress(data) if gz else data)
            sums[f"mnist/{name}"] = _md5(folder / name)
    return sums


def svhn_mat(x, y, compressed: bool) -> bytes:
    """A MAT-file as SVHN's: X (32, 32, 3, N) uint8, y (N, 1) float64 with 10 for the digit 0."""
    import scipy.io
    buf = io.BytesIO()
    scipy.io.savemat(buf, {"X": x.transpose(2, 3, 1, 0),
                           "y": np.where(y == 0, 10, y).astype(np.float64)[:, None]},
                     do_compression=compressed)
    return buf.getvalue()


def write_svhn(root: Path, n: dict | None = None) -> dict:
    n = n or {"train": 4100, "test": 50, "extra": 2100}
    folder = root / "svhn"
    folder.mkdir(parents=True, exist_ok=True)
    sums = {}
    for i, (part, count) in enumerate(n.items()):
        x, y = images(count, 3, 32, 32, seed=i)
        # compressed as the official files are, but test: both forms are read
        (folder / f"{part}_32x32.mat").write_bytes(svhn_mat(x, y, compressed=part != "test"))
        sums[f"svhn/{part}_32x32.mat"] = _md5(folder / f"{part}_32x32.mat")
    return sums


def small_train_cmd(out, *extra) -> list:
    """`nin train` as a subprocess on 384 images of the shipped MNIST sample, checkpointing
    every 3 steps: the runs the kill and resume tests interrupt."""
    return [sys.executable, "-m", "nin", "train", "--dataset", "mnist-sample", "--subset", "384",
            "--eval-subset", "100", "--batch-size", "32", "--epochs", "2", "--ckpt-every", "3",
            "--no-progress", "--out", str(out), *extra]


def picture_folder(root, per_class: int = 12, classes=(0, 1, 2), test: bool = True,
                   val: bool = False, size: int = 32):
    """Real MNIST digits (the embedded sample) as a folder dataset of PNG, JPEG, BMP, GIF and
    WebP files of mixed sizes and modes: DIR/{train,test,val}/digit_<d>/*. Returns DIR."""
    from PIL import Image
    from nin.data import load_dataset
    ds = load_dataset("mnist-sample", "train")
    root = Path(root)
    fmts = [("png", "L"), ("jpg", "RGB"), ("bmp", "RGB"), ("gif", "P"), ("webp", "RGB"),
            ("png", "RGBA")]
    parts = {"train": per_class, **({"test": per_class // 3} if test else {}),
             **({"val": per_class // 3} if val else {})}
    start = 0
    for part, n in parts.items():
        for d in classes:
            idx = (ds.labels == d).nonzero().flatten()[start:start + n].tolist()
            folder = root / part / f"digit_{d}"
            folder.mkdir(parents=True, exist_ok=True)
            for j, i in enumerate(idx):
                ext, mode = fmts[(i + j) % len(fmts)]
                side = size + 4 * (j % 4)  # mixed sizes: all get resized to the network's
                im = Image.fromarray(ds.images[i, 0].numpy()).resize((side, side + 2 * (j % 3)))
                im.convert(mode).save(folder / f"{i}.{ext}")
        start += max(parts.values())
    return root
