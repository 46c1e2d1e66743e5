"""Regenerate the README's results tables from results/**/result.json.

Full runs (all training images, the whole test set) fill the paper-beside-ours tables, as
mean ± std over seeds; shorter runs (subsets, samples) are listed apart as CPU/short runs.
Usage: python scripts/results_table.py            rewrite README.md between the markers
       python scripts/results_table.py --check    exit 1 if README.md is not up to date
"""
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from nin.sweep import collect, fmt, summarize  # noqa: E402

START, END = "<!-- results:start (scripts/results_table.py) -->", "<!-- results:end -->"
OFFLINE = "not run: dataset not available offline"
GPU = "not run (needs the GPU)"

# (label, dataset, augmented, paper, paper-recipe model, modern model, best published)
MAIN = [
    ("CIFAR-10, no augmentation", "cifar10", False, "10.41", "nin_cifar10", None,
     "10.36 (PyTorch port of the Caffe recipe)"),
    ("CIFAR-10, translation + flip", "cifar10", True, "8.81", "nin_cifar10", "nin_cifar10_bn",
     "7.43 (pytorchcv nin_cifar10)"),
    ("CIFAR-100, no augmentation", "cifar100", False, "35.68", "nin_cifar100", "nin_cifar100_bn",
     "28.39 (pytorchcv)"),
    ("SVHN", "svhn", False, "2.35", "nin_svhn", "nin_svhn_bn", "3.76 (pytorchcv)"),
    ("MNIST", "mnist", False, "0.47", "nin_mnist", "nin_mnist_bn", "—"),
]
ABLATIONS = [
    ("mlpconv + fully connected", "nin_cifar10_fc", "11.59"),
    ("mlpconv + fully connected + dropout", "nin_cifar10_fc_dropout", "10.88"),
    ("mlpconv + GAP (NIN)", "nin_cifar10", "10.41"),
    ("NIN without dropout between blocks", "nin_cifar10_nodropout", "~14.5"),
    ("conventional CNN + fully connected", "cnn_cifar10_fc", "17.56"),
    ("conventional CNN + fully connected + dropout", "cnn_cifar10_fc_dropout", "15.99"),
    ("conventional CNN + GAP", "cnn_cifar10_gap", "16.46"),
]


def is_full(r: dict) -> bool:
    c = r["config"]
    return (r.get("finished") and not c.get("subset") and not c.get("eval_subset")
            and c["eval_split"] == "test" and c["dataset"] != "mnist-sample")


def augmented(row) -> bool:
    return bool(row["flip"] or row["translate"])


def find(rows, dataset, model, recipe, aug):
    for r in rows:
        if (r["dataset"], r["model"], r["recipe"]) == (dataset, model, recipe) \
                and augmented(r) == aug:
            return fmt(r)
    return None


def tables(results: list[dict]) -> str:
    full = summarize([r for r in results if is_full(r)])
    out = ["Test error, %, mean ± std over seeds where there are several. Every figure of ours "
           "comes from a run whose result.json and log are in `results/`.", "",
           "| | paper | ours (paper recipe) | ours (modern) | best published reimplementation |",
           "|---|---|---|---|---|"]
    for label, ds, aug, paper, pm, mm, best in MAIN:
        missing = OFFLINE if ds in ("cifar100", "svhn") else GPU
        ours_p = find(full, ds, pm, "paper", aug) or missing
        ours_m = "— (the modern recipe augments)" if mm is None else \
            (find(full, ds, mm, "modern", True) or missing)
        out.append(f"| {label} | {paper} | {ours_p} | {ours_m} | {best} |")
    out += ["", "Ablations on CIFAR-10 (no augmentation, the paper's recipe):", "",
            "| | paper | ours |", "|---|---|---|"]
    for label, model, paper in ABLATIONS:
        out.append(f"| {label} | {paper} | {find(full, 'cifar10', model, 'paper', False) or GPU} |")
    short = [r for r in results if not is_full(r) and r.get("finished")]
    out += ["", "Short CPU runs (a subset or the embedded sample and a few epochs: they test the "
            "pipeline, they are not comparable with the paper):", "",
            "| run | model | recipe | train images | epochs | test images | test error | "
            "wall |", "|---|---|---|---|---|---|---|---|"]
    for r in short:
        c = r["config"]
        n_train = c.get("subset") or ("10,000 (sample)" if c["dataset"] == "mnist-sample"
                                      else "all")
        folder = Path(r["path"]).parent.relative_to(ROOT)
        out.append(f"| `{folder}` | {c['model']} | {c['recipe']} | {n_train} | "
                   f"{r['epochs_run']} | {r['final']['n']:,} | {r['final']['error']:.2f} % | "
                   f"{r['wall_s']:.0f} s on {r['env']['device']} |")
    return "\n".join(out)


def main() -> int:
    results = [r for r in collect(ROOT / "results") if "/bench/" not in r["path"]]
    for r in results:
        r["path"] = str(Path(r["path"]).resolve())
    readme = ROOT / "README.md"
    text = readme.read_text()
    if START not in text or END not in text:
        print(f"{readme}: no {START} ... {END} markers", file=sys.stderr)
        return 2
    head, rest = text.split(START, 1)
    new = head + START + "\n" + tables(results) + "\n" + END + rest.split(END, 1)[1]
    if "--check" in sys.argv:
        if new != text:
            print("README.md results tables are out of date: run scripts/results_table.py",
                  file=sys.stderr)
            return 1
        return 0
    readme.write_text(new)
    print(f"README.md results tables rebuilt from {len(results)} result(s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
