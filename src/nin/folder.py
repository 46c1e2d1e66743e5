"""Your own pictures as a dataset, as timm and torchvision read them:

    DIR/train/<class>/*.png|jpg|jpeg|bmp|gif|webp     required: one subfolder per class
    DIR/val/<class>/...                                optional: the split settings are chosen on
    DIR/test/<class>/...                               optional: else a seeded 10 % of train/

Class names are train/'s subfolder names, sorted. Each image is converted to the network's
channels (RGB or L), its shorter side resized to the image size, then centre-cropped
(load_image). The decoded uint8 arrays are cached under ~/.cache/nin/folders (or
$NIN_CACHE_DIR/folders), keyed by the files' names, sizes and modification times and by the image
size, so a second run starts in seconds; nothing is written inside DIR.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from .errors import DataError, ImageError
from .files import atomic_write

EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")
HOLDOUT, HOLDOUT_SEED = 0.10, 0  # without test/: this share of each class, the same every run
SPLITS = ("train", "val", "test")


def cache_dir() -> Path:
    root = os.environ.get("NIN_CACHE_DIR")
    return (Path(root).expanduser() if root else Path.home() / ".cache" / "nin") / "folders"


# ---------------------------------------------------------------- one picture
MAX_PIXELS = 64_000_000  # refuse decompression bombs before decoding them


def load_image(path, in_chans: int, size: int) -> torch.Tensor:
    """Any PNG, JPEG, BMP, GIF or WebP (any size or mode, EXIF orientation applied) as a uint8
    C×size×size tensor: the shorter side resized to `size`, then centre-cropped."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    path = Path(path)
    Image.MAX_IMAGE_PIXELS = MAX_PIXELS
    try:
        with warnings.catch_warnings():  # a bomb is refused below, with the file's name
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(path)
        with im:
            if im.width * im.height > MAX_PIXELS:
                raise ImageError(f"{path}: {im.width}×{im.height} pixels is more than this "
                                 f"program decodes ({MAX_PIXELS:,}); shrink the image first")
            im = ImageOps.exif_transpose(im)
            if im.mode in ("RGBA", "LA", "P", "PA"):
                im = im.convert("RGBA")
                bg = Image.new("RGBA", im.size, (255, 255, 255, 255))
                im = Image.alpha_composite(bg, im)  # transparent areas read as white
            im = im.convert("L" if in_chans == 1 else "RGB")
            scale = size / min(im.width, im.height)
            w, h = max(size, round(im.width * scale)), max(size, round(im.height * scale))
            im = im.resize((w, h), Image.BICUBIC)
            left, top = (w - size) // 2, (h - size) // 2
            im = im.crop((left, top, left + size, top + size))
            arr = np.asarray(im, dtype=np.uint8)
    except FileNotFoundError:
        raise ImageError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ImageError(f"{path}: a folder, not a picture; give its pictures (e.g. "
                         f"{Path(path) / '*.jpg'})") from None
    except (UnidentifiedImageError, Image.DecompressionBombError) as e:
        raise ImageError(f"{path}: not an image PIL can read ({e}); give a PNG or JPEG") from None
    except (OSError, SyntaxError, ValueError) as e:
        if isinstance(e, ImageError):
            raise
        raise ImageError(f"{path}: corrupt or truncated image ({e})") from None
    arr = arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)
    return torch.from_numpy(np.array(arr))  # a writable copy


# ---------------------------------------------------------------- layout
def class_names(root) -> list[str]:
    """train/'s subfolders, sorted: the class names and their order (label i = names[i])."""
    root = Path(root).expanduser()
    train = root / "train"
    if not train.is_dir():
        what = "does not exist" if not root.exists() else "has no train/ folder"
        raise DataError(f"{root} {what}; a folder dataset is DIR/train/<class>/<images> "
                        "(val/ and test/ optional), given with --data-dir DIR")
    names = sorted(p.name for p in train.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not names:
        raise DataError(f"{train}: no class folders; put each class's images in "
                        f"{train}/<class name>/")
    if len(names) == 1:  # one class trains to "0 % error" and predicts nothing
        raise DataError(f"{train}: one class folder ({names[0]}); a classifier needs two "
                        f"classes at least: add another folder {train}/<class name>/")
    return names


def scan(root, part: str, classes: list[str]) -> list[tuple[Path, int]]:
    """(file, label) of every image under DIR/part/<class>/, sorted by path."""
    folder = Path(root).expanduser() / part
    present = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    unknown = [c for c in present if c not in classes]
    if unknown:
        raise DataError(f"{folder}: class folder(s) {', '.join(unknown)} are not in train/ "
                        f"(classes: {', '.join(classes)}); add them to train/ or remove them")
    files = []
    for label, name in enumerate(classes):
        sub = folder / name
        found = sorted(f for f in sub.rglob("*") if f.suffix.lower() in EXTS and f.is_file()) \
            if sub.is_dir() else []
        if not found and part == "train":
            raise DataError(f"{sub}: no images ({', '.join(EXTS)}); add some or remove the "
                            "folder")
        files += [(f, label) for f in found]
    if not files:
        raise DataError(f"{folder}: no images in any class folder ({', '.join(EXTS)})")
    return files


# ---------------------------------------------------------------- decode, with a cache
def _key(files, in_chans: int, size: int, skip_bad: bool) -> str:
    h = hashlib.sha256(json.dumps([in_chans, size, skip_bad, 1]).encode())
    for f, label in files:
        st = f.stat()
        h.update(f"{f}\0{label}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:32]


def decode(files, in_chans: int, size: int, skip_bad: bool, log=print):
    """(images uint8 N×C×size×size, labels) of the files. A broken image is refused in one line
    naming it and how many more there are; with skip_bad it is left out and counted."""
    images, labels, bad = [], [], []
    for f, label in files:
        try:
            images.append(load_image(f, in_chans, size).numpy())
            labels.append(label)
        except ImageError as e:
            bad.append(str(e))
    if bad and not skip_bad:
        more = f" (and {len(bad) - 1} more broken image(s))" if len(bad) > 1 else ""
        raise DataError(f"{bad[0]}{more}; fix or remove them, or pass --skip-bad-images")
    if bad:
        log(f"skipped {len(bad)} broken image(s) of {len(files)}, the first: {bad[0]}")
    if not images:
        raise DataError(f"{files[0][0].parent.parent}: none of its {len(files)} images could "
                        "be read")
    # C order: load_image's arrays are HWC memory seen as CHW, and the cache writes raw bytes
    return np.ascontiguousarray(np.stack(images)), np.asarray(labels, dtype=np.int64), len(bad)


def load_part(root, part: str, classes, in_chans: int, size: int, skip_bad: bool = False,
              log=print):
    """One subfolder (train/, val/ or test/) decoded, from the cache when nothing changed."""
    from safetensors.numpy import save
    files = scan(root, part, classes)
    path = cache_dir() / f"{_key(files, in_chans, size, skip_bad)}.safetensors"
    if path.is_file():
        try:
            t, meta = _read_cache(path)
            if _digest(t["images"], t["labels"]) == meta.get("sha256"):
                return t["images"], t["labels"]
            log(f"{path}: damaged cache file (its arrays no longer match their digest); "
                "decoding the images again")
        except Exception:  # noqa: BLE001 - a damaged cache file is rebuilt, not trusted
            log(f"{path}: unreadable cache file; decoding the images again")
    t0 = time.time()
    x, y, n_bad = decode(files, in_chans, size, skip_bad, log)
    atomic_write(path, save({"images": x, "labels": y},
                            metadata=dict(root=str(root), part=part, skipped=str(n_bad),
                                          sha256=_digest(x, y))))
    log(f"decoded {len(y):,} images of {Path(root) / part} in {time.time() - t0:.1f} s "
        f"(cached in {path})")
    return x, y


def _digest(x: np.ndarray, y: np.ndarray) -> str:
    """What a cache file's arrays must hash to: a flipped byte is caught, as the datasets' md5s
    catch theirs."""
    h = hashlib.sha256(np.ascontiguousarray(x).data)
    h.update(np.ascontiguousarray(y).data)
    return h.hexdigest()


def _read_cache(path: Path) -> tuple[dict, dict]:
    """A cache file's arrays and its metadata, in one read."""
    from safetensors import safe_open
    with safe_open(str(path), "np") as f:
        return {k: f.get_tensor(k) for k in f.keys()}, f.metadata() or {}


def holdout(labels: np.ndarray) -> np.ndarray:
    """Boolean mask of the seeded 10 % of each class held out as the test split."""
    rng = np.random.default_rng(HOLDOUT_SEED)
    mask = np.zeros(len(labels), dtype=bool)
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        k = int(round(HOLDOUT * len(idx))) if len(idx) > 1 else 0
        mask[rng.permutation(idx)[:k]] = True
    return mask


def read_split(root, split: str, in_chans: int, size: int, skip_bad: bool = False,
               log=print):
    """(images uint8 N×C×size×size, labels int64, class names) of a split of DIR."""
    root = Path(root).expanduser()
    if split not in SPLITS:
        raise DataError(f"a folder dataset has the splits {', '.join(SPLITS)}, not {split!r}")
    classes = class_names(root)
    has_test = (root / "test").is_dir()
    if split == "val" and not (root / "val").is_dir():
        raise DataError(f"{root} has no val/ folder; add DIR/val/<class>/ images to choose "
                        "settings on, or evaluate on --eval-split test")
    part = "train" if split == "test" and not has_test else split
    x, y = load_part(root, part, classes, in_chans, size, skip_bad, log)
    if part == "train" and not has_test:
        mask = holdout(y)
        keep = mask if split == "test" else ~mask
        if split == "train":
            log(f"{root} has no test/ folder: {mask.sum():,} of the {len(y):,} train/ images "
                f"(a seeded {HOLDOUT:.0%} of each class) are held out as the test split")
        x, y = x[keep], y[keep]
    return np.ascontiguousarray(x), y, classes
