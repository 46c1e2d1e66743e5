"""Where a CPU training step goes. First images/s of nin_cifar10_bn (the modern recipe: batch
norm, flips, translation; batch 64, channels_last) in fp32 and in bf16 autocast, eager and
compiled; then torch.profiler's top operators of a bf16 step, the whole step included:
preprocessing, augmentation, forward, backward and the SGD update.

  python benchmarks/profile_cpu.py [--model nin_cifar10_bn] [--size 32]"""
import argparse
import time

import torch
from torch.profiler import ProfilerActivity, profile

from common import environment, table, write

from nin.config import resolve
from nin.device import autocast, dropout_masks
from nin.models import build_model, set_dropout_bits
from nin.preprocessing import Preprocess, augment
from nin.training import compile_or_eager, make_optimizer, train_step

BATCH, STEPS = 64, 10


def setup(model_name: str, precision: str, compiled: bool, size: int):
    """One training step of the recipe the model is trained with, on resident uint8 images."""
    recipe = "modern" if model_name.endswith("_bn") else "paper"
    cfg = resolve(dict(recipe=recipe, dataset="cifar10", batch_size=BATCH))
    torch.manual_seed(0)
    model = build_model(model_name, init="kaiming").to(memory_format=torch.channels_last)
    set_dropout_bits(model, dropout_masks(torch.device("cpu"), precision) == "bits")
    pre = Preprocess(cfg.preprocess, 3, 32)
    pre.fit(torch.randint(0, 256, (256, 3, 32, 32), dtype=torch.uint8))
    opt = make_optimizer(model, cfg, False)
    net = compile_or_eager(model, print) if compiled else model
    x8 = torch.randint(0, 256, (BATCH, 3, 32, 32), dtype=torch.uint8)
    y = torch.randint(0, 10, (BATCH,))
    gen, amp = torch.Generator().manual_seed(0), autocast(torch.device("cpu"), precision)

    def step():
        x = augment(pre(x8), cfg.translate, cfg.flip, gen, size=None if size == 32 else size)
        return train_step(net, opt, x.contiguous(memory_format=torch.channels_last), y, amp,
                          cfg.label_smoothing)
    return step


def rate(step) -> float:
    for _ in range(2):
        step()
    t0 = time.perf_counter()
    for _ in range(STEPS):
        step()
    return round(STEPS * BATCH / (time.perf_counter() - t0), 1)


def top_ops(step, n=12) -> list[dict]:
    step()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(2):
            step()
    ops = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in ops)
    return [dict(op=e.key, share=round(e.self_cpu_time_total / total, 4), calls=e.count)
            for e in ops[:n]]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="nin_cifar10_bn")
    ap.add_argument("--size", type=int, default=32, help="training crop side (24: progressive)")
    args = ap.parse_args()
    rows = [dict(precision=p, compiled=c, images_per_s=rate(setup(args.model, p, c, args.size)))
            for p in ("fp32", "bf16") for c in (False, True)]
    table(rows, ["precision", "compiled", "images_per_s"])
    top = top_ops(setup(args.model, "bf16", False, args.size))
    print(f"\ntop operators of a bf16 step (self CPU time, {args.model}, {args.size} px, 2 steps):")
    table([dict(op=t["op"][:60], share=f"{100 * t['share']:.1f} %", calls=t["calls"])
           for t in top], ["op", "share", "calls"])
    write("profile_cpu", dict(benchmark="profile_cpu", model=args.model, batch=BATCH,
                              size=args.size, rates=rows, top_ops_bf16=top,
                              env=environment(torch.device("cpu"))))


if __name__ == "__main__":
    main()
