"""Evaluation (error, per-class accuracy, confusion matrix, flip and shift TTA) and prediction
on images."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from . import distributed as dist
from .device import autocast, eval_precision
from .errors import ImageError  # noqa: F401 - callers catch it from here
from .folder import load_image
from .models import eval_mode


@torch.no_grad()
def predict_logits(model, pre, images: torch.Tensor, batch_size: int = 512, tta: bool = False,
                   precision: str | None = None, tta_shift: int = 0) -> torch.Tensor:
    """Log-probabilities for uint8 images, in batches; tta averages the image and its mirror.
    tta_shift s > 0 also scores the (preprocessed) images moved s pixels up-left and down-right
    (reflected borders), weighted 1/2 unmoved and 1/4 each, as airbench's TTA.
    precision None: device.eval_precision (fp32 on the CPU)."""
    device = next(model.parameters()).device
    precision = precision or eval_precision(device)
    out = []
    with eval_mode(model):
        for i in range(0, len(images), batch_size):
            x = pre(images[i:i + batch_size].to(device))
            with autocast(device, precision):
                p = _probs(model, x, tta)
                if tta_shift:
                    s, (h, w) = tta_shift, x.shape[-2:]
                    padded = F.pad(x, (s,) * 4, mode="reflect")
                    p = p / 2 + sum(_probs(model, padded[..., a:a + h, a:a + w], tta)
                                    for a in (0, 2 * s)) / 4
            out.append(p.clamp_min(1e-12).log())
    return torch.cat(out) if out else torch.zeros(0, model.num_classes, device=device)


def _probs(model, x: torch.Tensor, flip: bool) -> torch.Tensor:
    x = x.contiguous(memory_format=torch.channels_last)  # NHWC: faster convolutions
    p = F.softmax(model(x).float(), 1)
    return (p + F.softmax(model(x.flip(3)).float(), 1)) / 2 if flip else p


def evaluate(model, pre, dataset, batch_size: int = 512, tta: bool = False,
             precision: str | None = None, tta_shift: int = 0) -> dict:
    """Test error (%), mean loss, per-class accuracy and confusion matrix (rows: true class).
    Under torch.distributed each rank scores its share and the counts are summed."""
    n_all = len(dataset)
    r, w = dist.rank(), dist.world()
    part = slice(r * n_all // w, (r + 1) * n_all // w)
    logp = predict_logits(model, pre, dataset.images[part], batch_size, tta, precision, tta_shift)
    y = dataset.labels[part].to(logp.device)
    k = model.num_classes
    conf = torch.bincount(y * k + logp.argmax(1), minlength=k * k).view(k, k)
    loss_sum = F.nll_loss(logp, y, reduction="sum") if len(y) else logp.new_zeros(())
    dist.all_sum(conf, loss_sum)
    conf = conf.cpu()
    n = int(conf.sum())
    per_class = (conf.diag().double() / conf.sum(1).clamp_min(1).double()).tolist()
    return dict(n=n, error=100.0 * (n - int(conf.diag().sum())) / max(n, 1),
                loss=float(loss_sum) / n if n else float("nan"),
                per_class_accuracy=dict(zip(dataset.classes, per_class)),
                confusion=conf.tolist(), tta=tta, tta_shift=tta_shift)


# ---------------------------------------------------------------- translations (paper §4.6)
DIRECTIONS = {"right": (1, 0), "left": (-1, 0), "down": (0, 1), "up": (0, -1)}


def shift_images(x: torch.Tensor, dx: int, dy: int) -> torch.Tensor:
    """Images (..., H, W) moved dx pixels right and dy down; what comes in is zero (black)."""
    h, w = x.shape[-2:]
    out = torch.zeros_like(x)
    if abs(dx) < w and abs(dy) < h:
        out[..., max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = \
            x[..., max(-dy, 0):h + min(-dy, 0), max(-dx, 0):w + min(-dx, 0)]
    return out


def shift_errors(model, pre, dataset, max_shift: int = 8, batch_size: int = 500,
                 tta: bool = False, precision: str = "fp32") -> dict:
    """Test error (%) of the images moved by 0..max_shift pixels in each of four directions
    (zero fill): per direction, and their mean at each shift."""
    def error(ds):
        return evaluate(model, pre, ds, batch_size, tta, precision)["error"]
    still = error(dataset)
    by_dir = {name: [still] + [error(_shifted(dataset, ux * s, uy * s))
                               for s in range(1, max_shift + 1)]
              for name, (ux, uy) in DIRECTIONS.items()}
    mean = [float(np.mean([by_dir[d][s] for d in DIRECTIONS])) for s in range(max_shift + 1)]
    return dict(shifts=list(range(max_shift + 1)), error=mean, by_direction=by_dir, n=len(dataset),
                tta=tta, precision=precision)


def _shifted(dataset, dx: int, dy: int):
    return type(dataset)(shift_images(dataset.images, dx, dy), dataset.labels, dataset.classes,
                         dataset.name, dataset.split)


def predict_images(model, pre, paths, classes, topk: int = 5, tta: bool = False) -> list[dict]:
    images = torch.stack([load_image(p, pre.in_chans, pre.input_size) for p in paths])
    probs = predict_logits(model, pre, images, tta=tta).exp().cpu()
    k = min(topk, probs.shape[1])
    out = []
    for path, p in zip(paths, probs):
        val, idx = p.topk(k)
        out.append(dict(image=str(path), top=[dict(cls=classes[i], index=int(i), prob=float(v))
                                              for v, i in zip(val, idx)]))
    return out
