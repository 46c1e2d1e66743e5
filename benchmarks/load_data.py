"""Time to load all of CIFAR-10 (binary version, md5s checked) into uint8 tensors.
  python benchmarks/load_data.py [--data-dir DIR]"""
import argparse
import time

from common import table, write

from nin.data import load_dataset


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-dir")
    args = ap.parse_args()
    rows = []
    for dataset in ("cifar10", "mnist"):
        for rep in range(3):
            t0 = time.perf_counter()
            tr = load_dataset(dataset, "train", args.data_dir)
            te = load_dataset(dataset, "test", args.data_dir)
            rows.append(dict(dataset=dataset, rep=rep, images=len(tr) + len(te),
                             seconds=round(time.perf_counter() - t0, 3)))
    table(rows, ["dataset", "rep", "images", "seconds"])
    write("load_data", dict(benchmark="load_data", rows=rows))


if __name__ == "__main__":
    main()
