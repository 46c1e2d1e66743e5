"""TensorBoard logs of a run (`nin train --tensorboard`, needs nin[tensorboard]): per-epoch
scalars and, at each evaluation, the class-maps grid of a few test images (paper §4.7), under
OUT/tensorboard, so that `tensorboard --logdir runs` shows runs as they train. metrics.jsonl
stays the record; these logs are for watching.
"""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch

from .errors import ConfigError
from .visualization import draw_grid

GRID_IMAGES = 6  # test images in the class-maps grid
SCALARS = {"train_loss": "loss/train", "test_loss": "loss/test", "test_error": "error/test",
           "lr": "lr", "images_per_s": "speed/images_per_s"}


def require():
    """TensorBoard's writer class, or a one-line error naming the fix (before any data loads)."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise ConfigError("--tensorboard needs TensorBoard: pip install -e '.[tensorboard]'"
                          ) from None
    return SummaryWriter


def open_board(out: Path):
    """A SummaryWriter for OUT/tensorboard."""
    return require()(str(Path(out) / "tensorboard"))


def write_epoch(writer, record: dict):
    """One epoch's record (as metrics.jsonl's line), keyed by epoch."""
    epoch = record["epoch"]
    for key, tag in SCALARS.items():
        if record.get(key) is not None:
            writer.add_scalar(tag, record[key], epoch)
    writer.add_scalar("error/train", 100 * (1 - record["train_acc"]), epoch)
    writer.add_text("precision", f"{record['precision']}, {record['threads']} threads", epoch)
    writer.flush()


def write_maps(writer, model, pre, test_ds, epoch: int):
    """The class-maps grid of the first test images (their maps, true class framed)."""
    n = min(GRID_IMAGES, len(test_ds))
    images, labels = test_ds.images[:n].cpu(), test_ds.labels[:n].cpu()
    png = io.BytesIO()  # drawn in memory: nothing written beside the run
    with torch.no_grad():
        draw_grid(model, pre, images, labels.tolist(), test_ds.classes, png)
    from PIL import Image
    with Image.open(png) as im:
        rgb = np.asarray(im.convert("RGB"))
    writer.add_image("class_maps", rgb, epoch, dataformats="HWC")
    writer.flush()
