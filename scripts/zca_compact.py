"""How small can a CIFAR-10 ZCA matrix be stored without changing what the network does?

Takes a GCN+ZCA checkpoint trained on train-val and, on the 10,000 validation images it never
saw, replaces its 3,072 x 3,072 ZCA matrix W (36 MiB fp32) by compact stand-ins:
  fp16        W in half precision;
  iso k       c I + U_k D_k U_k^T, the k eigen-directions whose scale is farthest from c;
  band r      W kept only where output and input pixels are within r pixels (a local filter);
  low k+band r  the k highest-variance directions exactly, the rest through the band of the
              remainder W - U_k S_k U_k^T (ZCA is roughly a local filter once low frequencies,
              which it scales down 70x, are taken out).
For each it prints the stored size (fp16; the exact row fp32), the mean relative error of the
whitened images, the validation error and how many predictions change against the exact W.
Usage: python scripts/zca_compact.py CHECKPOINT [DATA_DIR]   (one thread: runs beside training)
"""
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from nin.checkpoint import load_checkpoint  # noqa: E402
from nin.data import load_dataset  # noqa: E402
from nin.evaluation import predict_logits  # noqa: E402
from nin.preprocessing import gcn  # noqa: E402

MIB = 2 ** 20


def local_mask(side=32, chans=3):
    """dist[i, j]: the larger of the row and column offsets between flat pixels i and j."""
    i = torch.arange(chans * side * side) % (side * side)
    y, x = i // side, i % side
    return torch.maximum((y[:, None] - y).abs(), (x[:, None] - x).abs())


def variants(w):
    """(name, stand-in matrix, fp16 bytes stored) for each compact form of w (float64)."""
    d = w.shape[0]
    dist, (scales, vecs) = local_mask(), torch.linalg.eigh(w)  # ascending: high variance first
    c = scales.max()
    yield "fp32 (exact)", w, d * d * 2 * 2
    yield "fp16", w.half().double(), d * d * 2
    for k in (1024, 1536):
        order = torch.argsort((scales - c).abs(), descending=True)[:k]
        u = vecs[:, order]
        yield f"iso {k}", c * torch.eye(d, dtype=w.dtype) + (u * (scales[order] - c)) @ u.T, d * k * 2
    for r in (3, 4):
        yield f"band {r}", torch.where(dist <= r, w, 0), d * 3 * (2 * r + 1) ** 2 * 2
    for k, r in ((32, 3), (64, 3), (64, 4), (128, 6), (256, 4), (512, 8)):
        u, s = vecs[:, :k], scales[:k]
        low = (u * s) @ u.T
        band = torch.where(dist <= r, w - low, 0)
        rest = torch.eye(d, dtype=w.dtype) - u @ u.T  # z -> z U S U^T + (z - z U U^T) band
        yield f"low {k}+band {r}", low + rest @ band, (d * k + d * 3 * (2 * r + 1) ** 2) * 2


class Whiten(torch.nn.Module):
    """GCN then z @ m: the checkpoint's preprocessing with another matrix."""

    def __init__(self, mean, m):
        super().__init__()
        self.mean, self.m = mean, m.float()

    def forward(self, x):
        return ((gcn(x.float()).flatten(1) - self.mean) @ self.m).view(x.shape)


def main(ckpt, root=None):
    torch.set_num_threads(1)
    model, pre, side = load_checkpoint(ckpt)
    if pre.kind != "gcn_zca" or side.config.get("train_split") != "train-val":
        sys.exit(f"{ckpt}: needs a gcn_zca checkpoint trained on train-val (so val is unseen)")
    val = load_dataset(side.dataset, "val", root)
    w, mean = pre.zca_matrix.double(), pre.zca_mean
    z = (gcn(val.images.float()).flatten(1) - mean).double()
    exact, ref = z @ w, None
    print(f"{ckpt} (step {side.step}), {len(val.labels):,} validation images, bf16 inference")
    print(f"{'stand-in':16s} {'MiB':>8s} {'rel. error':>10s} {'val error':>9s} {'changed':>7s}")
    for name, m, size in variants(w):
        t = time.time()
        rel = ((z @ m - exact).norm(dim=1) / exact.norm(dim=1)).mean()
        pred = predict_logits(model, Whiten(mean, m), val.images, precision="bf16").argmax(1)
        ref = pred if ref is None else ref
        err = (pred != val.labels).float().mean() * 100
        print(f"{name:16s} {size / MIB:8.2f} {rel:10.1e} {err:8.2f}% {(pred != ref).sum():7d}"
              f"  ({time.time() - t:.0f} s)", flush=True)


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else None)
