"""Preprocessing (uint8 images -> network input) and batched augmentation.

A Preprocess is a module: what it learns from the training split (ZCA matrix, channel means) lives
in its buffers, is saved in the checkpoint beside the weights, and is applied unchanged at
evaluation and inference. It runs on batches, on whichever device holds them.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .errors import ConfigError

KINDS = ("scale", "standardize", "gcn_zca", "lcn")


def gcn(x: torch.Tensor, scale: float = 55.0, min_divisor: float = 1e-8) -> torch.Tensor:
    """Global contrast normalization as pylearn2's global_contrast_normalize(scale=55):
    subtract each image's mean, then scale it to L2 norm `scale`."""
    flat = x.flatten(1)
    flat = flat - flat.mean(1, keepdim=True)
    norm = flat.pow(2).sum(1, keepdim=True).sqrt() / scale
    norm = torch.where(norm < min_divisor, torch.ones_like(norm), norm)
    return (flat / norm).view_as(x)


def _gaussian_kernel(size: int, sigma: float = 2.0) -> torch.Tensor:
    r = torch.arange(size, dtype=torch.float64) - size // 2
    g = torch.exp(-(r[:, None] ** 2 + r[None, :] ** 2) / (2 * sigma ** 2))
    return (g / g.sum()).float()


def lcn(x: torch.Tensor, kernel: torch.Tensor, threshold: float = 1e-4) -> torch.Tensor:
    """Local contrast normalization per channel (Jarrett et al. 2009, pylearn2's lecun_lcn):
    subtract a Gaussian-weighted local mean, divide by the local std, floored at its image mean."""
    c, k = x.shape[1], kernel.shape[-1]
    w = kernel.to(x)[None, None].expand(c, 1, k, k)
    centered = x - F.conv2d(x, w, padding=k // 2, groups=c)
    std = F.conv2d(centered.pow(2), w, padding=k // 2, groups=c).sqrt()
    divisor = torch.maximum(std, std.mean((2, 3), keepdim=True)).clamp_min(threshold)
    return centered / divisor


class Preprocess(nn.Module):
    """kind: scale (x/255, MNIST), standardize (per-channel mean/std, the modern recipe),
    gcn_zca (GCN scale 55 then ZCA fitted on the training split, CIFAR), lcn (SVHN)."""

    def __init__(self, kind: str = "scale", in_chans: int = 3, input_size: int = 32,
                 zca_bias: float = 0.1, lcn_kernel: int = 7):
        super().__init__()
        if kind not in KINDS:
            raise ConfigError(f"unknown preprocessing {kind!r}; use one of {', '.join(KINDS)}")
        self.kind, self.in_chans, self.input_size = kind, in_chans, input_size
        self.zca_bias, self.lcn_kernel = zca_bias, lcn_kernel
        d = in_chans * input_size * input_size
        if kind == "standardize":
            self.register_buffer("mean", torch.zeros(in_chans))
            self.register_buffer("std", torch.ones(in_chans))
        elif kind == "gcn_zca":
            self.register_buffer("zca_mean", torch.zeros(d))
            self.register_buffer("zca_matrix", torch.eye(d))
        elif kind == "lcn":
            self.register_buffer("kernel", _gaussian_kernel(lcn_kernel))

    def config(self) -> dict:
        return dict(kind=self.kind, in_chans=self.in_chans, input_size=self.input_size,
                    zca_bias=self.zca_bias, lcn_kernel=self.lcn_kernel)

    @torch.no_grad()
    def fit(self, images: torch.Tensor, chunk: int = 4096) -> "Preprocess":
        """Learn the transform's statistics from training images (uint8 N×C×H×W)."""
        if self.kind == "standardize":
            x = images.float() / 255
            self.mean.copy_(x.mean((0, 2, 3)))
            self.std.copy_(x.std((0, 2, 3)))
        elif self.kind == "gcn_zca":
            # Covariance accumulated in float64 chunk by chunk: exact enough, bounded memory.
            n, d = images.shape[0], self.zca_mean.numel()
            total = torch.zeros(d, dtype=torch.float64, device=images.device)
            for i in range(0, n, chunk):
                total += gcn(images[i:i + chunk].float()).flatten(1).double().sum(0)
            mean = total / n
            cov = torch.zeros(d, d, dtype=torch.float64, device=images.device)
            for i in range(0, n, chunk):
                z = gcn(images[i:i + chunk].float()).flatten(1).double() - mean
                cov += z.T @ z
            cov /= n
            evals, evecs = torch.linalg.eigh(cov)
            evals = evals.clamp_min(0)
            w = (evecs * (evals + self.zca_bias).rsqrt()) @ evecs.T
            self.zca_mean.copy_(mean.float())
            self.zca_matrix.copy_(w.float())
        return self

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images.float()
        if self.kind == "scale":
            return x / 255
        if self.kind == "standardize":
            return (x / 255 - self.mean[:, None, None]) / self.std[:, None, None]
        if self.kind == "gcn_zca":
            z = gcn(x).flatten(1) - self.zca_mean
            return (z @ self.zca_matrix).view_as(x)
        return lcn(x / 255, self.kernel)


def augment(x: torch.Tensor, translate: int = 0, flip: bool = False,
            generator: torch.Generator | None = None, part: slice | None = None,
            total: int | None = None, size: int | None = None,
            flips: torch.Tensor | None = None) -> torch.Tensor:
    """Random translation by up to `translate` pixels (zero padding, i.e. the data mean after
    preprocessing) and random horizontal flips, drawn per image, for a batch on any device.
    `size` < the image's side takes a random size x size crop of the padded image instead
    (progressive resizing: a fully convolutional net with global pooling takes any size).

    x may be the rows `part` of a global batch of `total` images (a distributed rank's shard):
    the draws are made for the whole batch, so the shard is augmented as the whole would be.
    flips (bool, one per row of x), with flip, says which images to mirror instead of a draw."""
    n, c, h, w = x.shape
    part = part or slice(0, n)
    total = total or n
    size = size or h
    if size > h or size > w:
        raise ValueError(f"crop size {size} is larger than the {h}x{w} images")
    if translate > 0 or size < h:
        p = translate
        xp = F.pad(x, (p, p, p, p))
        # with size == h this is a shift of -p..p: the same draws as before crops existed
        dy = torch.randint(0, h + 2 * p - size + 1, (total,), device=x.device,
                           generator=generator)[part]
        dx = torch.randint(0, w + 2 * p - size + 1, (total,), device=x.device,
                           generator=generator)[part]
        span = torch.arange(size, device=x.device)[None]
        rows = (span + dy[:, None])[:, None, :, None]  # (n, 1, size, 1)
        cols = (span + dx[:, None])[:, None, None, :]  # (n, 1, 1, size)
        chans = torch.arange(c, device=x.device)[None, :, None, None]
        x = xp[torch.arange(n, device=x.device)[:, None, None, None], chans, rows, cols]
    if flip:
        mask = flips if flips is not None else \
            torch.rand(total, device=x.device, generator=generator)[part] < 0.5
        x = torch.where(mask[:, None, None, None], x.flip(3), x)
    return x

