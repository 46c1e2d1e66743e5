"""Where a CPU training step goes: images/s of nin_cifar10 (batch 64, fp32) in NCHW, in
channels_last, and compiled; then torch.profiler's top operators for the fastest eager layout.
  python benchmarks/profile_cpu.py"""
import time

import torch
from torch.profiler import ProfilerActivity, profile

from common import environment, table, write

from nin.models import build_model
from nin.preprocessing import Preprocess
from nin.device import autocast
from nin.config import make_config
from nin.training import compile_or_eager, make_optimizer, train_step

BATCH, STEPS = 64, 12


def setup(channels_last: bool, compiled: bool):
    cfg = make_config("paper", "cifar10", batch_size=BATCH)
    torch.manual_seed(0)
    model = build_model("nin_cifar10", init="kaiming")
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)
    pre = Preprocess("gcn_zca", 3, 32)
    opt = make_optimizer(model, cfg, False)
    net = compile_or_eager(model, print) if compiled else model
    x8 = torch.randint(0, 256, (BATCH, 3, 32, 32), dtype=torch.uint8)
    y = torch.randint(0, 10, (BATCH,))
    amp = autocast(torch.device("cpu"))
    return lambda: train_step(net, opt, pre(x8).contiguous(memory_format=fmt), y, amp)


def main():
    rows = []
    for name, cl, comp in (("NCHW", False, False), ("channels_last", True, False),
                           ("channels_last + compile", True, True)):
        step = setup(cl, comp)
        for _ in range(2):
            step()
        t0 = time.perf_counter()
        for _ in range(STEPS):
            step()
        rows.append(dict(layout=name, images_per_s=round(STEPS * BATCH /
                                                         (time.perf_counter() - t0), 1)))
    table(rows, ["layout", "images_per_s"])
    step = setup(True, False)
    step()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(2):
            step()
    ops = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in ops)
    top = [dict(op=e.key, share=round(e.self_cpu_time_total / total, 4), calls=e.count)
           for e in ops[:10]]
    print("\ntop operators (self CPU time, channels_last, 2 steps):")
    table([dict(op=t["op"], share=f"{100 * t['share']:.1f} %", calls=t["calls"]) for t in top],
          ["op", "share", "calls"])
    write("profile_cpu", dict(benchmark="profile_cpu", batch=BATCH, layouts=rows, top_ops=top,
                              env=environment(torch.device("cpu"))))


if __name__ == "__main__":
    main()
