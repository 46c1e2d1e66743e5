"""Two cores, two ways: one training run on 2 threads, or two runs of 1 thread each side by side
(a sweep's RANK=0/1 WORLD_SIZE=2 with "threads": 1). Times the trainer's own step
(train_throughput.measure) in three layouts on one machine, one after another:
  2 threads alone | 1 thread alone | two 1-thread processes at once (images/s of each, and summed)
The sum against the 2-thread figure says which layout finishes a sweep of several runs sooner;
the 1-thread figure against the 2-thread one says what a single run loses on one thread.

  python benchmarks/threads_throughput.py [--models nin_cifar10 nin_cifar10_bn] [--batch 64]
                                          [--precision bf16] [--steps 40]
"""
import argparse
import json
import subprocess
import sys

import torch

from common import environment, table, write
from nin.device import cpu_model


def worker(args):
    """One process: set its threads, time the step, print one JSON line per model."""
    from train_throughput import measure
    torch.set_num_threads(args.worker)
    for model in args.models:
        recipe = "modern" if model.endswith("_bn") else "paper"
        r = measure(model, recipe, args.batch, torch.device("cpu"), args.steps, 3, False,
                    args.precision, None)
        print(json.dumps(dict(model=model, images_per_s=r["images_per_s"])), flush=True)


def run(threads: int, copies: int, args) -> list[dict]:
    """`copies` workers of `threads` threads started together; each one's rows."""
    cmd = [sys.executable, __file__, "--worker", str(threads), "--steps", str(args.steps),
           "--batch", str(args.batch), "--precision", args.precision, "--models", *args.models]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True) for _ in range(copies)]
    outs = [p.communicate()[0] for p in procs]
    if any(p.returncode for p in procs):
        raise SystemExit(f"a worker failed: {cmd}")
    return [[json.loads(line) for line in out.splitlines() if line.startswith("{")]
            for out in outs]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", nargs="+", default=["nin_cifar10", "nin_cifar10_bn"])
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--precision", default="bf16", choices=("fp32", "bf16"))
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--name", default="threads_throughput_cpu")
    ap.add_argument("--worker", type=int, help=argparse.SUPPRESS)  # internal: one timed process
    args = ap.parse_args()
    if args.worker:
        return worker(args)
    two, one, pair = run(2, 1, args)[0], run(1, 1, args)[0], run(1, 2, args)
    rows = []
    for i, model in enumerate(args.models):
        each = [p[i]["images_per_s"] for p in pair]
        rows.append(dict(model=model, precision=args.precision, batch=args.batch,
                         two_threads=two[i]["images_per_s"], one_thread=one[i]["images_per_s"],
                         two_one_thread_runs=each, two_runs_total=round(sum(each), 1),
                         total_over_two_threads=round(sum(each) / two[i]["images_per_s"], 2)))
    print(f"\nimages/s of a training step on {torch.get_num_threads()} cores "
          f"({cpu_model()})")
    table(rows, ["model", "precision", "batch", "two_threads", "one_thread",
                 "two_one_thread_runs", "two_runs_total", "total_over_two_threads"])
    write(args.name, dict(benchmark="threads_throughput", steps=args.steps, rows=rows,
                          env=environment(torch.device("cpu"))))


if __name__ == "__main__":
    main()
