"""Where each dataset's files lie (folders or archives read in place), the paper's splits, and
load_dataset: a split as uint8 tensors, md5s checked."""
from __future__ import annotations

import io
import os
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .. import folder
from ..errors import DataError
from ..paper import DATASETS
from .checksums import DOWNLOADS, SAMPLE_DIR, _MNIST, _check_md5, _expected_md5, md5_file
from .formats import (_fix_hint, _gunzip, parse_cifar_binary, parse_cifar_pickle, parse_idx,
                      parse_svhn_mat)
from .unpickle import safe_unpickle

CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                   "ship", "truck"]
DIGITS = [str(i) for i in range(10)]

_C10_BIN = [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]
_C10_PY = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
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
# the datasets with files of a known layout (a folder is yours: nin.folder)
NAMED = tuple(n for n in DATASETS if n != "folder")
SPLITS = {name: facts["splits"] for name, facts in DATASETS.items()}


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
    if name not in NAMED:
        raise DataError(f"unknown dataset {name!r}; known: {', '.join(NAMED)}")


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


def load_for_weights(side, model, split: str = "test", name: str | None = None,
                     root=None) -> Dataset:
    """The split to score or draw with trained weights: their own dataset unless `name` is
    given; a folder dataset is read from the run's --data-dir unless root is given, at the
    network's channels and size, and must still have the classes the run trained on."""
    name = name or side.dataset or "cifar10"
    if name == "folder":
        root = root or side.config.get("data_dir")
    ds = load_dataset(name, split, root, in_chans=model.in_chans, size=model.input_size)
    if name == "folder" and side.classes and ds.classes != side.classes:
        raise DataError(f"{root}: its classes {ds.classes} are not the {len(side.classes)} "
                        f"the weights were trained on ({', '.join(side.classes)})")
    c, h, w = ds.images.shape[1:]
    if (c, h, w) != (model.in_chans, model.input_size, model.input_size) \
            or len(ds.classes) != side.num_classes:
        raise DataError(f"{name}/{split} holds {len(ds.classes)} classes of {c}-channel {h}x{w} "
                        f"images; {side.model} takes {side.num_classes} classes of "
                        f"{model.in_chans}-channel {model.input_size}x{model.input_size}: score "
                        f"it on its own dataset ({side.dataset or 'leave out --dataset'})")
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
