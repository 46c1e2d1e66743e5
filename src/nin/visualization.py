"""What the network sees: class confidence maps, weak localization, training curves, a report.

Paper §4.7: each map of the last mlpconv block is a confidence map of its class; GAP averages it
to the class score. Here the maps are upsampled and laid over the (network-sized) input image.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .errors import ConfigError
from .files import atomic_write, read_jsonl
from .models import eval_mode

import matplotlib

matplotlib.use("Agg")  # files only; no display needed
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402
from matplotlib.ticker import ScalarFormatter  # noqa: E402


def _save(fig, path) -> None:
    """The figure in the format its suffix names, written whole or not at all (atomic_write);
    a file object (TensorBoard's in-memory PNG) takes a PNG."""
    import io
    import os
    if not isinstance(path, (str, os.PathLike)):
        fig.savefig(path, format="png")
        plt.close(fig)
        return
    buf = io.BytesIO()
    fig.savefig(buf, format=Path(path).suffix.lstrip(".").lower() or "png")
    plt.close(fig)
    atomic_write(path, buf.getvalue())


@torch.no_grad()
def class_maps(model, pre, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(probabilities (N, K), maps (N, K, h, w)) for uint8 images (N, C, H, W), on the CPU."""
    device = next(model.parameters()).device
    with eval_mode(model):
        maps = model.forward_maps(pre(images.to(device))).float()
    probs = F.softmax(maps.mean((2, 3)), 1)
    return probs.cpu(), maps.cpu()


def upsample(maps: torch.Tensor, size: int) -> torch.Tensor:
    return F.interpolate(maps, size=(size, size), mode="bilinear", align_corners=False)


def localize(model, pre, image: torch.Tensor, threshold: float = 0.5) -> dict:
    """Weak localization from the top class's map: upsample it to the input, keep the pixels at
    or above `threshold` x its maximum, and box the largest connected region. Returns the class,
    its probability, the box (x0, y0, x1, y1) in input pixels (x1, y1 exclusive) and the map."""
    probs, maps = class_maps(model, pre, image[None])
    cls = int(probs[0].argmax())
    m = upsample(maps[:, cls:cls + 1], image.shape[-1])[0, 0].numpy()
    return dict(cls=cls, prob=float(probs[0, cls]), box=box_from_map(m, threshold), map=m)


def box_from_map(m: np.ndarray, threshold: float = 0.5):
    """Bounding box (x0, y0, x1, y1) of the largest connected region at or above threshold x
    the map's maximum; None for a map that is zero everywhere."""
    if m.max() <= 0:
        return None
    region = largest_region(m >= threshold * m.max())
    ys, xs = np.nonzero(region)
    return (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)


def largest_region(mask: np.ndarray) -> np.ndarray:
    """The largest 4-connected region of a boolean map (the first found on a tie), by flood
    fill: maps are a few dozen pixels wide, so plain Python is fast enough."""
    seen = np.zeros_like(mask, dtype=bool)
    best: list = []
    h, w = mask.shape
    for start in zip(*np.nonzero(mask)):
        if seen[start]:
            continue
        seen[start] = True
        stack, region = [start], []
        while stack:
            y, x = stack.pop()
            region.append((y, x))
            for ny, nx in ((y - 1, x), (y + 1, x), (y, x - 1), (y, x + 1)):
                if 0 <= ny < h and 0 <= nx < w and mask[ny, nx] and not seen[ny, nx]:
                    seen[ny, nx] = True
                    stack.append((ny, nx))
        if len(region) > len(best):
            best = region
    out = np.zeros_like(mask, dtype=bool)
    out[tuple(np.array(best).T)] = True
    return out


def _show(ax, image: torch.Tensor):
    img = image.permute(1, 2, 0).numpy()
    ax.imshow(img[..., 0] if img.shape[2] == 1 else img, cmap="gray" if img.shape[2] == 1
              else None, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])


def draw_maps(model, pre, image: torch.Tensor, classes, path, topk: int | None = None,
              title: str = "", threshold: float = 0.5, ncols: int | None = None) -> dict:
    """One PNG: the input with the predicted class and its localization box, then the class
    maps (all, or the top-k) laid over it on one shared colour scale, strongest first; in one
    row, or in rows of `ncols` panels."""
    probs, maps = class_maps(model, pre, image[None])
    probs, maps = probs[0], maps[0]
    order = probs.argsort(descending=True)[:topk or len(classes)].tolist()
    up = upsample(maps[None], image.shape[-1])[0]
    box = box_from_map(up[order[0]].numpy(), threshold)  # as localize(), without a 2nd pass
    n = len(order) + 1
    cols = min(ncols or n, n)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(1.6 * cols, 2.0 * rows), dpi=100,
                             squeeze=False)
    axes = axes.ravel()
    for ax in axes[n:]:
        ax.axis("off")
    _show(axes[0], image)
    if box is not None:
        x0, y0, x1, y1 = box
        axes[0].add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False,
                                    edgecolor="lime", linewidth=1.5))
    axes[0].set_title(f"{title}\npred: {classes[order[0]]} {100 * probs[order[0]]:.0f}%".strip(),
                      fontsize=7)
    vmax = max(float(up.max()), 1e-12)
    for ax, k in zip(axes[1:], order):
        _show(ax, image)
        ax.imshow(up[k].numpy(), cmap="jet", alpha=0.5, vmin=0, vmax=vmax,
                  interpolation="bilinear")
        ax.set_title(f"{classes[k]} {100 * probs[k]:.0f}%\nmean {maps[k].mean():.3f}",
                     fontsize=7)
    fig.tight_layout()
    _save(fig, path)
    return dict(path=str(path), pred=order[0], prob=float(probs[order[0]]), box=box,
                top=[(k, float(probs[k])) for k in order], map_means=maps.mean((1, 2)).tolist())


def draw_grid(model, pre, images: torch.Tensor, labels, classes, path,
              row_names=None) -> dict:
    """The paper's figure (§4.7): one row per test image, its input then all class maps, each
    row on its own colour scale; the true class's column is framed. row_names: a line above
    each row's true → predicted class (the shift, say)."""
    probs, maps = class_maps(model, pre, images)
    up = upsample(maps, images.shape[-1])
    n, k = len(images), len(classes)
    fig, axes = plt.subplots(n, k + 1, figsize=(1.1 * (k + 1), 1.15 * n + 0.4), dpi=100,
                             squeeze=False)
    for i in range(n):
        _show(axes[i, 0], images[i])
        pred = int(probs[i].argmax())
        name = f"{row_names[i]}\n" if row_names else ""
        axes[i, 0].set_ylabel(f"{name}{classes[labels[i]]}\n→ {classes[pred]}", fontsize=7)
        vmax = max(float(up[i].max()), 1e-12)
        for j in range(k):
            ax = axes[i, j + 1]
            ax.imshow(up[i, j].numpy(), cmap="jet", vmin=0, vmax=vmax, interpolation="bilinear")
            ax.set_xticks([])
            ax.set_yticks([])
            if j == int(labels[i]):
                for side in ax.spines.values():
                    side.set_edgecolor("lime")
                    side.set_linewidth(2.5)
            if i == 0:
                ax.set_title(classes[j], fontsize=7)
    fig.tight_layout()
    _save(fig, path)
    true_strongest = float(np.mean([int(maps[i].mean((1, 2)).argmax()) == int(labels[i])
                                    for i in range(n)]))
    return dict(path=str(path), n=n, true_class_strongest=true_strongest)


def plot_runs(runs, path) -> str:
    """Training curves from runs' metrics.jsonl: train and test error against epoch."""
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=100)
    for i, run in enumerate(runs):
        log = Path(run) / "metrics.jsonl"
        if not log.is_file():
            raise ConfigError(f"{log}: no metrics log; give run folders written by "
                              "`nin train`")
        rows = read_jsonl(log)
        rows = [r for r in rows if not r.get("partial")]
        name = Path(run).name
        color = f"C{i % 10}"
        ax.plot([r["epoch"] for r in rows], [100 * (1 - r["train_acc"]) for r in rows],
                color=color, linestyle="--", linewidth=1, label=f"{name} train")
        test = [r for r in rows if "test_error" in r]
        ax.plot([r["epoch"] for r in test], [r["test_error"] for r in test], color=color,
                linewidth=1.6, marker="o" if len(test) < 30 else None, markersize=3,
                label=f"{name} test")
    ax.set_xlabel("epoch")
    ax.set_ylabel("error (%)")
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(ScalarFormatter())  # 30, not 3 x 10^1
    ax.yaxis.set_minor_formatter(ScalarFormatter())
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    _save(fig, path)
    return str(path)


def shift_bands(curves: dict) -> dict:
    """label -> (shifts, mean error, std or None) per network: curves maps a run's name to
    evaluation.shift_errors' result with its "model"; runs of one network are its seeds."""
    groups = {}
    for name, c in curves.items():
        groups.setdefault((c.get("model", name), tuple(c["shifts"])), []).append(c["error"])
    out = {}
    for (model, shifts), errs in groups.items():
        e = np.array(errs, dtype=float)
        label = model if len(e) == 1 else f"{model} (mean of {len(e)})"
        out[label] = (list(shifts), e.mean(0), e.std(0, ddof=1) if len(e) > 1 else None)
    return out


def plot_shifts(curves: dict, path) -> str:
    """Test error against the shift of the test images (paper §4.6), one line per network,
    the mean of its seeds in a band of +-1 std (shift_bands)."""
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=100)
    for i, (label, (shifts, mean, sd)) in enumerate(shift_bands(curves).items()):
        ax.plot(shifts, mean, marker="o", markersize=3, color=f"C{i % 10}", label=label)
        if sd is not None:
            ax.fill_between(shifts, mean - sd, mean + sd, color=f"C{i % 10}", alpha=0.2, lw=0)
    ax.set_xlabel("shift of the test images, pixels (mean of left, right, up, down; zero fill)")
    ax.set_ylabel("test error, %")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    _save(fig, path)
    return str(path)
