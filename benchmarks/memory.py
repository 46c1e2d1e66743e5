"""Peak GPU memory of one training step per batch size (up to 2048), paper and modern networks.
Needs CUDA: on a machine without it, it says so and writes nothing.
  python benchmarks/memory.py"""
import sys

import torch

from common import environment, table, write

from nin.models import build_model
from nin.preprocessing import Preprocess
from nin.device import autocast
from nin.config import resolve
from nin.training import make_optimizer, train_step


def main():
    if not torch.cuda.is_available():
        print("memory.py measures GPU memory and needs CUDA; nothing measured on this machine")
        return 1
    device = torch.device("cuda")
    rows = []
    for name, recipe in (("nin_cifar10", "paper"), ("nin_cifar10_bn", "modern")):
        for batch in (128, 256, 512, 1024, 2048):
            cfg = resolve(dict(recipe=recipe, dataset="cifar10", batch_size=batch))
            model = build_model(name).to(device).to(memory_format=torch.channels_last)
            pre = Preprocess(cfg.preprocess, 3, 32).to(device)
            opt = make_optimizer(model, cfg, True)
            x8 = torch.randint(0, 256, (batch, 3, 32, 32), dtype=torch.uint8, device=device)
            y = torch.randint(0, 10, (batch,), device=device)
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
            for _ in range(2):
                x = pre(x8).contiguous(memory_format=torch.channels_last)
                train_step(model, opt, x, y, autocast(device))
            torch.cuda.synchronize()
            peak = torch.cuda.max_memory_allocated()
            rows.append(dict(model=name, batch=batch, peak_mib=round(peak / 2**20, 1),
                             step_mib=round((peak - base) / 2**20, 1)))
            del model, opt, pre, x8, y, x
            torch.cuda.empty_cache()
    table(rows, ["model", "batch", "peak_mib", "step_mib"])
    write("memory_cuda", dict(benchmark="memory", rows=rows, env=environment(device)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
