"""How small can a CIFAR-10 ZCA matrix be stored? Fits GCN+ZCA on the 50,000 training images,
then approximates W by an isotropic part plus a rank-k correction (W ~ c I + U_k D_k U_k^T, the k
directions whose scale is farthest from c) and reports the relative error of the whitened test
images. Usage: python scripts/zca_lowrank.py DATA_DIR"""
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from nin.data import load_dataset  # noqa: E402
from nin.preprocessing import Preprocess, gcn  # noqa: E402

root = sys.argv[1] if len(sys.argv) > 1 else None
t = time.time()
pre = Preprocess("gcn_zca", 3, 32).fit(load_dataset("cifar10", "train", root).images)
print(f"ZCA fitted on 50,000 images in {time.time() - t:.1f} s")
scales, vecs = torch.linalg.eigh(pre.zca_matrix.double())
c = scales.max()  # 1/sqrt(0.1 + smallest eigenvalue): the scale of most directions
print(f"per-direction scales 1/sqrt(lambda + 0.1): {scales.min():.4f} .. {c:.4f}")
z = (gcn(load_dataset("cifar10", "test", root).images[:2000].float()).flatten(1)
     - pre.zca_mean).double()
full = z @ pre.zca_matrix.double()
order = torch.argsort((scales - c).abs(), descending=True)
print("   k  mean rel. error  max rel. error  size (fp32)")
for k in (128, 256, 512, 1024, 1536, 2048):
    u, d = vecs[:, order[:k]], scales[order[:k]] - c
    rel = ((c * z + ((z @ u) * d) @ u.T - full).norm(dim=1) / full.norm(dim=1))
    print(f"{k:4d}  {rel.mean():14.2e}  {rel.max():14.2e}  {3072 * k * 4 / 2**20:7.1f} MiB")
print(f"full matrix: {3072 * 3072 * 4 / 2**20:.1f} MiB fp32, {3072 * 3072 * 2 / 2**20:.1f} MiB fp16")
