"""Time to read a folder dataset (nin.folder): the first decode of every picture, then the
cached load, both per 10,000 images, into a fresh cache folder.
  python benchmarks/load_folder.py DIR [--size 32] [--in-chans 3]
(DIR: e.g. scripts/make_digit_folder.py's output.)"""
import argparse
import os
import tempfile
import time

from common import environment, table, write

import torch

from nin.data import load_dataset


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--in-chans", type=int, default=3)
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as cache:
        os.environ["NIN_CACHE_DIR"] = cache
        for what in ("first decode", "cached", "cached"):
            t0 = time.perf_counter()
            n = sum(len(load_dataset("folder", s, args.dir, in_chans=args.in_chans,
                                     size=args.size, log=lambda *_: None))
                    for s in ("train", "test"))
            dt = time.perf_counter() - t0
            rows.append(dict(load=what, images=n, seconds=round(dt, 3),
                             seconds_per_10k=round(dt * 10000 / n, 3)))
    table(rows, ["load", "images", "seconds", "seconds_per_10k"])
    write("load_folder", dict(benchmark="load_folder", size=args.size, in_chans=args.in_chans,
                              rows=rows, env=environment(torch.device("cpu"))))


if __name__ == "__main__":
    main()
