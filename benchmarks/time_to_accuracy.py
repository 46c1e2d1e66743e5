"""Wall-clock time from data-on-device to 91.19 % CIFAR-10 test accuracy (the paper's best,
8.81 % error) with the modern recipe; the median of several runs. Needs CUDA and CIFAR-10.
  python benchmarks/time_to_accuracy.py [--runs 3] [--epochs N] [--data-dir DIR]"""
import argparse
import statistics
import sys
import tempfile

import torch

from common import environment, table, write

from nin.config import make_config
from nin.training import train

TARGET = 8.81  # test error, %


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--epochs", type=int)
    ap.add_argument("--data-dir")
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--allow-cpu", action="store_true", help="run anyway (hours on a CPU)")
    args = ap.parse_args()
    if not torch.cuda.is_available() and not args.allow_cpu:
        print("time_to_accuracy.py needs CUDA; nothing measured on this machine")
        return 1
    rows = []
    for seed in range(args.runs):
        over = dict(seed=seed, data_dir=args.data_dir, compile=args.compile, eval_every=1)
        if args.epochs:
            over["epochs"] = args.epochs
        with tempfile.TemporaryDirectory() as d:
            cfg = make_config("modern", "cifar10", out=d, **over)
            r = train(cfg, progress=False)
        # time to the first epoch whose test error reaches the target (training time only:
        # from data on the device, evaluation excluded)
        t, hit = 0.0, None
        for h in r["history"]:
            t += h["time_s"]
            if h.get("test_error", 100) <= TARGET and hit is None:
                hit = dict(epoch=h["epoch"], seconds=round(t, 2))
        rows.append(dict(seed=seed, final_error=r["final"]["error"],
                         reached_epoch=hit and hit["epoch"], seconds=hit and hit["seconds"],
                         total_train_s=round(t, 2)))
    reached = [r["seconds"] for r in rows if r["seconds"] is not None]
    median = statistics.median(reached) if len(reached) == len(rows) else None
    table(rows, ["seed", "final_error", "reached_epoch", "seconds", "total_train_s"])
    print(f"median time to {100 - TARGET:.2f} % accuracy: "
          f"{median if median is not None else 'not reached by every run'}")
    write("time_to_accuracy", dict(benchmark="time_to_accuracy", target_error=TARGET,
                                   runs=rows, median_s=median, env=environment(
                                       torch.device("cuda" if torch.cuda.is_available()
                                                    else "cpu"))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
