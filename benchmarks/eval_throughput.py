"""Evaluation throughput (images/s, forward only) of nin_cifar10 through nin.evaluation, with
and without flip TTA.   python benchmarks/eval_throughput.py [--device cpu|cuda]"""
import argparse
import time

import torch

from common import environment, matmul_peak, sync, table, write

from nin.data import Dataset
from nin.evaluation import evaluate
from nin.models import count_macs, build_model
from nin.preprocessing import Preprocess


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--n", type=int)
    args = ap.parse_args()
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    n = args.n or (10000 if cuda else 1000)
    peak = matmul_peak(device)
    ds = Dataset(torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, device=device),
                 torch.randint(0, 10, (n,), device=device), [str(i) for i in range(10)],
                 "random", "test")
    rows = []
    for batch in ([500, 1000, 2000] if cuda else [250, 500]):
        for tta in (False, True):
            model = build_model("nin_cifar10", init="kaiming").to(device)
            model = model.to(memory_format=torch.channels_last)
            pre = Preprocess("gcn_zca", 3, 32).to(device)
            evaluate(model, pre, ds.take(slice(0, batch)), batch, tta)  # warm-up
            sync(device)
            t0 = time.perf_counter()
            evaluate(model, pre, ds, batch, tta)
            sync(device)
            dt = time.perf_counter() - t0
            ips = n / dt
            flops = ips * 2 * count_macs(model) * (2 if tta else 1)
            rows.append(dict(batch=batch, tta=tta, images=n, seconds=round(dt, 3),
                             images_per_s=round(ips, 1), achieved_tflops=round(flops / 1e12, 4),
                             share_of_peak=round(flops / peak, 4)))
    print(f"\n{device}: evaluation of nin_cifar10 (GCN+ZCA on the device); matmul peak "
          f"{peak / 1e12:.3f} TFLOP/s")
    table(rows, ["batch", "tta", "images_per_s", "achieved_tflops", "share_of_peak"])
    write(f"eval_throughput_{device.type}", dict(benchmark="eval_throughput",
                                                 matmul_peak_tflops=round(peak / 1e12, 4),
                                                 rows=rows, env=environment(device)))


if __name__ == "__main__":
    main()
