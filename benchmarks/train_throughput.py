"""Training throughput (images/s) in fp32 and in bf16 autocast, side by side, and achieved FLOP/s
as a share of the matmul peak of the same precision, measured in the same run. Uses the trainer's
own step (resident uint8 data, preprocessing and augmentation on the device, channels_last, fp32
loss, weights and optimizer; fused SGD on CUDA).

  python benchmarks/train_throughput.py [--device cpu|cuda] [--batch 64 128] [--size 24]
                                        [--precision fp32 bf16] [--models nin_cifar10_bn]
                                        [--dropout auto torch bits] [--compile-bn-relu 0 1]
Dropout masks are drawn as training draws them (random bits for bf16 on the CPU, torch's
bernoulli_ elsewhere) unless --dropout names them: `--dropout torch bits` times both.
"""
import argparse
import itertools
import time

import torch

from common import environment, matmul_peak, sync, table, write

from nin.models import build_model, count_macs, model_info, set_dropout_bits
from nin.preprocessing import Preprocess, augment
from nin.device import PRECISIONS, autocast, cpu_has_native_bf16, dropout_masks
from nin.config import resolve
from nin.training import compile_or_eager, make_optimizer, train_step


class _BNReLU(torch.nn.Module):
    def __init__(self, bn):
        super().__init__()
        self.bn = bn

    def forward(self, x):
        return torch.relu(self.bn(x))


def compile_bn_relu(model):
    """torch.compile each batch norm + ReLU pair alone, the convolutions left to eager oneDNN:
    the one fusion that could cut their memory passes (together 43 % of a bf16 CPU step) without
    the whole-network compile, which gained nothing. Returns how many pairs it compiled."""
    torch._dynamo.config.cache_size_limit = 64  # one compiled graph per pair, as each is a module
    pairs = 0
    for seq in [m for m in model.modules() if isinstance(m, torch.nn.Sequential)]:
        for i in range(len(seq) - 1):
            if isinstance(seq[i], torch.nn.BatchNorm2d) and isinstance(seq[i + 1], torch.nn.ReLU):
                seq[i], seq[i + 1] = torch.compile(_BNReLU(seq[i])), torch.nn.Identity()
                pairs += 1
    return pairs


def measure(model_name, recipe, batch, device, steps, warmup, compile_, precision, size,
            dropout="auto", compile_mode="default", bn_relu=False):
    dataset = model_info(model_name)["dataset"]  # the recipe's settings for its images
    cfg = resolve(dict(recipe=recipe, dataset=dataset, batch_size=batch))
    cuda = device.type == "cuda"
    model = build_model(model_name, init="kaiming").to(device)
    model = model.to(memory_format=torch.channels_last)
    # auto: the masks a new training run draws
    dropout = dropout_masks(device, precision) if dropout == "auto" else dropout
    set_dropout_bits(model, dropout == "bits")
    c, side = model.in_chans, model.input_size
    size = None if size == side else size
    pre = Preprocess(cfg.preprocess, c, side).to(device)
    opt = make_optimizer(model, cfg, cuda)
    if bn_relu and not compile_bn_relu(model):
        raise SystemExit(f"--compile-bn-relu: {model_name} has no batch norm + ReLU pairs")
    net = compile_or_eager(model, print, compile_mode) if compile_ else model
    images = torch.randint(0, 256, (batch * 8, c, side, side), dtype=torch.uint8, device=device)
    labels = torch.randint(0, 10, (batch * 8,), device=device)
    gen = torch.Generator(device=device).manual_seed(0)
    amp = autocast(device, precision)

    def step(i):
        idx = torch.arange(i % 8 * batch, (i % 8 + 1) * batch, device=device)
        x = augment(pre(images[idx]), cfg.translate, cfg.flip, gen, size=size)
        x = x.contiguous(memory_format=torch.channels_last)
        return train_step(net, opt, x, labels[idx], amp, cfg.label_smoothing)
    for i in range(warmup):
        step(i)
    sync(device)
    t0 = time.perf_counter()
    for i in range(steps):
        step(i)
    sync(device)
    dt = time.perf_counter() - t0
    macs = count_macs(model, size=size)
    ips = steps * batch / dt
    return dict(model=model_name, recipe=recipe, precision=precision,
                dropout=dropout, compile_bn_relu=bn_relu, batch=batch,
                size=size or side, steps=steps, seconds=round(dt, 3),
                images_per_s=round(ips, 1), train_gflop_per_image=round(6 * macs / 1e9, 3),
                achieved_tflops=round(ips * 6 * macs / 1e12, 4))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--batch", type=int, nargs="+")
    ap.add_argument("--size", type=int, nargs="+", default=[0], help="crop sides (24: the "
                    "progressive-resizing epochs; default: the network's input)")
    ap.add_argument("--precision", nargs="+", default=["fp32", "bf16"], choices=PRECISIONS)
    ap.add_argument("--models", nargs="+", default=["nin_cifar10", "nin_cifar10_bn"])
    ap.add_argument("--dropout", nargs="+", default=["auto"], choices=("auto", "torch", "bits"),
                    help="dropout masks: auto as training draws them, or torch's / random bits")
    ap.add_argument("--steps", type=int)
    ap.add_argument("--name", help="JSON file name (default: train_throughput_DEVICE)")
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--compile-mode", default="default",
                    help="torch.compile mode (reduce-overhead: CUDA graphs, for launch-bound "
                         "steps)")
    ap.add_argument("--compile-bn-relu", nargs="+", type=int, default=[0], choices=(0, 1),
                    help="1: torch.compile each batch norm + ReLU pair alone; `0 1` times both")
    args = ap.parse_args()
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    batches = args.batch or ([128, 256, 512, 1024] if cuda else [32, 64, 128])
    steps = args.steps or (50 if cuda else 6)
    dtypes = dict(fp32=torch.float32, bf16=torch.bfloat16)
    peaks = {p: matmul_peak(device, dtypes[p]) for p in args.precision}
    rows = []
    for model in args.models:
        recipe = "modern" if model.endswith("_bn") else "paper"
        for b, size, p, d, f in itertools.product(batches, args.size, args.precision,
                                                  args.dropout, args.compile_bn_relu):
            r = measure(model, recipe, b, device, steps, 10 if cuda else 2, args.compile, p,
                        size or None, d, args.compile_mode, bool(f))
            r["share_of_peak"] = round(r["achieved_tflops"] * 1e12 / peaks[p], 4)
            rows.append(r)
    env = environment(device)
    print(f"\n{device} ({env['gpu'] or env['cpu']}), native bf16: {cpu_has_native_bf16()}; "
          "measured matmul peaks " + ", ".join(f"{p} {v / 1e12:.3f} TFLOP/s"
                                               for p, v in peaks.items())
          + "; training step = 6 x forward multiply-adds")
    table(rows, ["model", "precision", "dropout", "compile_bn_relu", "batch", "size", "images_per_s",
                 "achieved_tflops", "share_of_peak"])
    write(args.name or f"train_throughput_{device.type}", dict(
        benchmark="train_throughput", matmul_peak_tflops={p: round(v / 1e12, 4)
                                                          for p, v in peaks.items()},
        compile=args.compile and args.compile_mode, rows=rows, env=env))


if __name__ == "__main__":
    main()
