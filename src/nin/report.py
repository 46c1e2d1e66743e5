"""The results tables (paper beside ours) and the one-page report, built from results/.

Full runs (all training images, the whole test set) fill the paper-beside-ours tables, as
mean ± std over seeds; shorter runs (subsets, samples) are listed apart.
"""
from __future__ import annotations

import json
import statistics
from pathlib import Path

from .errors import ConfigError
from .files import read_jsonl
from .paper import ABLATION_ROWS, CLAIMS, RESULT_ROWS, SHIFT_CLAIMS
from .results import RunResult, collect
from .sweep import fmt, summarize

START, END = "<!-- results:start (scripts/results_table.py) -->", "<!-- results:end -->"
SHIFTS_FILE = "results/cpu/ablations_cifar10/shifts.json"  # `nin shifts` over the ablations
MISSING = "not run"  # no result.json in results/ (why: docs/results.md says, beside the table)


def _masks(dropout) -> str:
    """What a precision cell adds for a run or benchmark row that drew random-bits masks."""
    return ", random-bits dropout" if dropout == "bits" else ""


def is_full(r: RunResult) -> bool:
    c = r.config
    return (r.finished and not c.subset and not c.eval_subset
            and c.eval_split == "test" and c.dataset not in ("mnist-sample", "folder"))


def augmented(row) -> bool:
    return bool(row["flip"] or row["translate"])


# Training settings a table cell names when a run changed them from its recipe's defaults.
RECIPE_FIELDS = ("init", "lr", "batch_size", "schedule", "milestones", "epochs", "weight_decay",
                 "drop_rate", "label_smoothing", "translate", "flip", "preprocess", "momentum",
                 "warmup_epochs", "crop_size", "crop_epochs", "bias_lr_mult", "ema",
                 "alternate_flips")


def changes(config: dict) -> list[str]:
    """What a run's config changed from its recipe's settings for its dataset, as
    'name value'."""
    from .config import resolve
    base = resolve(dict(recipe=config["recipe"], dataset=config["dataset"])).to_dict()
    out = []
    for k in RECIPE_FIELDS:
        v, b = config.get(k, base[k]), base[k]  # older runs lack newer fields: defaults
        if (list(v) if isinstance(v, (list, tuple)) else v) != \
                (list(b) if isinstance(b, (list, tuple)) else b):
            out.append(f"{k} {','.join(map(str, v)) if isinstance(v, (list, tuple)) else v}")
    return out


def cell(row: dict) -> str:
    """One table cell: mean ± std over seeds, the epochs run, the median training time, and
    what the runs changed from their recipe."""
    minutes = statistics.median(row["wall_s"]) / 60
    changed = changes(row["config"])
    threads = "/".join(map(str, row.get("threads", []))) or "?"
    where = f"on one {row['gpu']}" if row.get("gpu") else \
        f"{threads} thread{'s' if threads != '1' else ''}"
    return (f"{fmt(row)}, {'flip TTA' if row.get('tta') else 'no TTA'}; "
            f"{max(row['epochs'])} epochs in {row.get('precision', 'fp32')}, {minutes:.0f} min "
            f"of training each ({where})"
            + (f"; changed from the recipe: {', '.join(changed)}" if changed else ""))


def headlines(rows, dataset, model, recipe, aug, tta=None) -> list[dict]:
    """The headline runs' summary rows: the most seeds, then the longest schedule (a short
    time-to-accuracy run is not the result); recipes tied on both are each shown."""
    hits = [r for r in rows if (r["dataset"], r["model"], r["recipe"]) == (dataset, model, recipe)
            and augmented(r) == aug and (tta is None or bool(r.get("tta")) == tta)]
    rank = [(r["n"], max(r["epochs"])) for r in hits]
    best = max(rank, default=None)
    return [r for r, k in zip(hits, rank) if k == best]


def headline(rows, dataset, model, recipe, aug, tta=None) -> dict | None:
    found = headlines(rows, dataset, model, recipe, aug, tta)
    return found[0] if found else None


def find(rows, dataset, model, recipe, aug, label: str = "") -> str | None:
    """The cells of the headline runs: without TTA (the paper's protocol) first, then with it."""
    found = [r for tta in (False, True) for r in headlines(rows, dataset, model, recipe, aug, tta)]
    return "<br>".join(label + cell(r) for r in found) or None


def modern_cell(rows, root, dataset, models) -> str:
    """The modern recipe's column: one network, or several, each line named by its network."""
    models = (models,) if isinstance(models, str) else models
    label = (lambda m: f"{m}: ") if len(models) > 1 else (lambda m: "")
    return "<br>".join(find(rows, dataset, m, "modern", True, label(m)) or
                       label(m) + (unfinished(root, dataset, m, "modern") or MISSING)
                       for m in models)


def ablation_line(label: str, paper, row: dict | None) -> str:
    """An ablation's row: the paper's error, ours, our last training error (the gap between
    them is the overfitting), the parameters."""
    if row is None:
        return f"| {label} | {paper} | {MISSING} | | |"
    train = [e for e in row.get("train_errors", []) if e is not None]
    train = f"{sum(train) / len(train):.2f}" if train else "?"
    return f"| {label} | {paper} | {cell(row)} | {train} | {row.get('params', 0):,} |"


def claim_lines(rows: dict) -> list[str]:
    """One line per claim of the paper: our difference of test error beside the paper's, and
    whether it holds at our budget. rows: model -> its ablation summary row. The spread of a
    difference comes from the seed std pooled over the networks with two or more seeds."""
    stds = [r["std"] for r in rows.values() if r and r["n"] > 1]
    pooled = statistics.fmean(stds) if stds else None
    out = []
    for claim, better, worse, paper in CLAIMS:
        a, b = rows.get(better), rows.get(worse)
        if a is None or b is None:
            out.append(f"- {claim} (paper: by {paper:.2f} points): {MISSING}.")
            continue
        diff = b["mean"] - a["mean"]
        if pooled is None:
            verdict, spread = "no seed spread measured yet (one seed each)", ""
        else:
            sd = pooled * (1 / a["n"] + 1 / b["n"]) ** 0.5
            spread = f" ± {sd:.2f}"
            verdict = ("inside the spread: not shown at this budget" if abs(diff) <= sd else
                       "holds" if diff > 0 else "reversed at this budget")
        out.append(f"- {claim} (paper: by {paper:.2f} points): ours by {diff:+.2f}{spread} points "
                   f"({a['n']} and {b['n']} seed{'s' if b['n'] > 1 else ''}), {verdict}.")
    return out


def shift_claim_lines(curves: dict) -> list[str]:
    """Claim (d), GAP is more robust to translations: for each GAP/FC pair, the mean rise of
    test error over shifts of 1-8 pixels (curves: `nin shifts`' JSON; one seed each)."""
    rise = {c["model"]: sum(e - c["error"][0] for e in c["error"][1:]) / (len(c["error"]) - 1)
            for c in curves.values()}
    top = {c["model"]: c["shifts"][-1] for c in curves.values()}
    out = []
    for gap, fc in SHIFT_CLAIMS:
        head = f"- (d) GAP is more robust to translations ({gap} against {fc})"
        if gap not in rise or fc not in rise:
            out.append(f"{head}: {MISSING}.")
            continue
        d = rise[fc] - rise[gap]
        out.append(f"{head}: shifted 1-{top[gap]} pixels, test error rises by {rise[gap]:.2f} "
                   f"points on average with GAP and {rise[fc]:.2f} with FC: "
                   f"{'GAP' if d > 0 else 'FC'} is the more robust by {abs(d):.2f} points "
                   "(one seed each).")
    return out


def unfinished(root: Path, dataset: str, model: str, recipe: str) -> str | None:
    """A run committed unfinished (metrics and a resume/ checkpoint, no result.json), as what
    it reached: never extrapolated."""
    from .checkpoint import read_sidecar
    from .config import config_from_dict
    for path in sorted(Path(root).glob("results/**/resume/step-*.json")):
        folder = path.parent.parent
        c = config_from_dict(read_sidecar(path, check=()).config)
        rows = read_jsonl(folder / "metrics.jsonl") if (folder / "metrics.jsonl").is_file() \
            else []
        done = [r for r in rows if "test_error" in r and not r.get("partial")]
        if (c.dataset, c.model, c.recipe) == (dataset, model, recipe) and done and \
                not (folder / "result.json").exists() and c.eval_split == "test":
            return (f"unfinished: {done[-1]['test_error']:.2f} at epoch {done[-1]['epoch']} of "
                    f"{c.epochs} (`{folder.relative_to(root)}`, resumable)")
    return None


def pilots_table(results: list[RunResult], root: Path) -> list[str]:
    """Runs scored on the validation split: where settings were chosen."""
    pilots = [r for r in results if r.finished and r.config.eval_split == "val"]
    if not pilots:
        return []
    out = ["", "Pilots on the validation split (trained on `train-val`, scored on `val`, the last "
           "10,000 training images): the settings above were chosen here, never on the test "
           "set.", "", "| run | model | recipe | precision | seed | train images | batch | lr | "
           "epochs | crops | val error, last epoch | best (epoch) |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in sorted(pilots, key=lambda r: r.path):
        c, h = r.config, [e for e in r.history if "test_error" in e]
        best = min(h, key=lambda e: e["test_error"])
        crops = (f"{c.crop_size} px, epochs 1-{c.crop_epochs}" if c.crop_epochs
                 else "—")
        n = f"{c.subset:,}" if c.subset else "all"
        out.append(f"| `{_rel(r, root)}` | {c.model} | {c.recipe} | "
                   f"{r.precision}{_masks(r.dropout)} | "
                   f"{c.seed} | {n} | "
                   f"{c.batch_size} | {c.lr} | {r.epochs_run} | {crops} | "
                   f"{r.error:.2f} % ({r.final['n']:,} images) | "
                   f"{best['test_error']:.2f} % ({best['epoch']}) |")
    return out


def _rel(r: RunResult, root: Path):
    return r.folder.relative_to(root) if r.folder.is_relative_to(root) else r.folder


def tables(results: list[RunResult], root: Path = Path(".")) -> str:
    full = summarize([r for r in results if is_full(r)])
    out = ["Test error, %, mean ± std over seeds where there are several. Every figure of ours "
           "comes from a run whose result.json and log are in `results/`.", "",
           "| | paper | ours (paper recipe) | ours (modern) | best published reimplementation |",
           "|---|---|---|---|---|"]
    for label, ds, aug, paper, pm, mm, best in RESULT_ROWS:
        ours_p = find(full, ds, pm, "paper", aug) or unfinished(root, ds, pm, "paper") or MISSING
        ours_m = "— (the modern recipe augments)" if mm is None else \
            modern_cell(full, root, ds, mm)
        out.append(f"| {label} | {paper} | {ours_p} | {ours_m} | {best} |")
    out += ["", "Ablations on CIFAR-10 (no augmentation, GCN + ZCA, no batch norm), test error "
            "without TTA; training error of the last epoch as trained (dropout on):", "",
            "| | paper | ours | training error | parameters |", "|---|---|---|---|---|"]
    ablations = {model: headline(full, "cifar10", model, "paper", False)
                 for _, model, _ in ABLATION_ROWS}
    for label, model, paper in ABLATION_ROWS:
        out.append(ablation_line(label, paper, ablations[model]))
    out += ["", "The paper's claims are about differences (our runs are far shorter than its, so "
            "our errors sit above its): positive means the paper's side is better. The spread "
            "is the seed std pooled over the networks run with two seeds, scaled to each "
            "difference.", ""] + claim_lines(ablations)
    shifts = Path(root) / SHIFTS_FILE
    out += shift_claim_lines(json.loads(shifts.read_text()) if shifts.is_file() else {})
    out += pilots_table(results, root)
    short = [r for r in results if not is_full(r) and r.finished  # not yours: folders
             and r.config.eval_split != "val" and r.config.dataset != "folder"]
    out += ["", "Short CPU runs (a subset or the embedded sample and a few epochs: they test the "
            "pipeline, they are not comparable with the paper):", "",
            "| run | model | recipe | train images | epochs | test images | test error | "
            "wall |", "|---|---|---|---|---|---|---|---|"]
    for r in short:
        c = r.config
        n_train = f"{c.subset:,}" if c.subset else \
            ("10,000 (sample)" if c.dataset == "mnist-sample" else "all")
        out.append(f"| `{_rel(r, root)}` | {c.model} | {c.recipe} | {n_train} | "
                   f"{r.epochs_run} | {r.final['n']:,} | {r.error:.2f} % | "
                   f"{r.wall_s:.0f} s on {r.env['device']} |")
    return "\n".join(out)


def load_results(root) -> list[RunResult]:
    """Every run's result.json under root/results (benchmarks excluded)."""
    results = [r for r in collect(Path(root) / "results") if "/bench/" not in r.path]
    for r in results:
        r.path = str(Path(r.path).resolve())
    return results


BENCH_START, BENCH_END = "<!-- bench:start -->", "<!-- bench:end -->"


def bench_tables(root) -> str:
    """The benchmark figures in results/bench/*.json, as tables; a missing one says so."""
    bench = Path(root) / "results" / "bench"
    out = []
    for dev in ("cuda", "cpu"):
        for kind, what in (("train", "training"), ("eval", "evaluation")):
            f = bench / f"{kind}_throughput_{dev}.json"
            if not f.is_file():
                out += [f"{what[0].upper() + what[1:]} throughput on {dev}: not measured.", ""]
                continue
            d = json.loads(f.read_text())
            peak, env = d["matmul_peak_tflops"], d["env"]
            # one peak (older files: fp32 on the CPU, bf16 on CUDA) or one per precision
            peaks = peak if isinstance(peak, dict) else {d.get("matmul_dtype", "fp32"): peak}
            out += [f"{what[0].upper() + what[1:]} throughput on "
                    f"{env.get('gpu') or env.get('name') or env.get('cpu')} "
                    f"({env['device']}, {env['threads']} threads), measured matmul peak "
                    + ", ".join(f"{p} {v:.3f} TFLOP/s" for p, v in peaks.items())
                    + f" (`{f.relative_to(root)}`):", "",
                    "| model | precision | batch | size | images/s | TFLOP/s | share of its "
                    "precision's peak |", "|---|---|---|---|---|---|---|"]
            for r in d["rows"]:
                name = r.get("model", "nin_cifar10") + (" + flip TTA" if r.get("tta") else "") \
                    + _masks(r.get("dropout"))
                p = r.get("precision", next(iter(peaks)))
                out.append(f"| {name} | {p} | {r['batch']} | {r.get('size', 32)} | "
                           f"{r['images_per_s']:,.1f} | {r['achieved_tflops']:.4f} | "
                           f"{100 * r['share_of_peak']:.0f} % |")
            out.append("")
    f = bench / "load_data.json"
    if f.is_file():
        rows = json.loads(f.read_text())["rows"]
        best = {}
        for r in rows:
            best[r["dataset"]] = min(best.get(r["dataset"], 1e9), r["seconds"])
        out += ["Loading a whole dataset (train + test, md5s checked) into uint8 tensors: "
                + ", ".join(f"{k} {v:.2f} s" for k, v in best.items())
                + f" (best of {len(rows) // max(1, len(best))}, `{f.relative_to(root)}`).", ""]
    for name, what in (("memory_cuda", "GPU memory per batch size"),
                       ("time_to_accuracy", "time to 91.19 % CIFAR-10 accuracy")):
        if not (bench / f"{name}.json").is_file():
            out += [f"{what[0].upper() + what[1:]}: not measured.", ""]
    out += _time_to_accuracy_cpu(bench / "time_to_accuracy_cpu.json", root)
    return "\n".join(out).rstrip()


def _time_to_accuracy_cpu(f: Path, root) -> list[str]:
    """The CPU time-to-accuracy rows (benchmarks/time_to_accuracy.py --from-runs)."""
    if not f.is_file():
        return ["Time to the paper's error on the CPU: not measured yet.", ""]
    out = [f"Training time on the CPU until the first epoch at or below the paper's test error "
           f"(median over seeds, evaluation excluded; `{f.relative_to(root)}`):", "",
           "| dataset | model | recipe | schedule | precision | TTA | target | time | seeds | "
           "threads | reached at epoch |",
           "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in json.loads(f.read_text())["rows"]:
        reached = ", ".join("—" if p["epoch"] is None else str(p["epoch"]) for p in r["per_seed"])
        t = "not reached" if r["seconds"] is None else f"{r['seconds'] / 60:.1f} min"
        sched = f"{r['epochs']} epochs" + (f", {r['crops']} crops" if r.get("crops") else "")
        if r.get("bias_lr_mult"):  # set only where it is not the recipe's default
            sched += f", biases at {r['bias_lr_mult']:g}x lr"
        out.append(f"| {r['dataset']} | {r['model']} | {r['recipe']} | {sched} | "
                   f"{r.get('precision', 'fp32')}{_masks(r.get('dropout'))} | "
                   f"{'flip' if r.get('tta') else 'no'} | "
                   f"{r['target_error']} % | {t} | {','.join(map(str, r['seeds']))} | "
                   f"{','.join(map(str, r['threads']))} | {reached} |")
    for r in json.loads(f.read_text())["rows"]:
        if r.get("published"):  # the published schedules, priced at this run's epoch time
            out += ["", f"The published {r['dataset']} schedules at the {r['model']} run's "
                    f"measured full-size epoch ({r['full_size_epoch_s']:.0f} s): "
                    + "; ".join(f"{p['source']}, {p['epochs']} epochs: {p['hours']} h"
                                for p in r["published"]) + "."]
    return out + [""]


def _splice(text: str, start: str, end: str, body: str, where) -> str:
    if start not in text or end not in text:
        raise ConfigError(f"{where}: no {start} ... {end} markers")
    head, rest = text.split(start, 1)
    return head + start + "\n" + body + "\n" + end + rest.split(end, 1)[1]


def update_docs(root, check: bool = False) -> bool:
    """Rewrite the generated tables between the markers of docs/results.md (results) and
    docs/speed.md (benchmarks); with check, only say whether they are up to date."""
    root = Path(root).resolve()
    fresh = True
    for page, start, end, body in (
            ("results.md", START, END, lambda: tables(load_results(root), root)),
            ("speed.md", BENCH_START, BENCH_END, lambda: bench_tables(root))):
        path = root / "docs" / page
        text = path.read_text()
        new = _splice(text, start, end, body(), path)
        fresh &= new == text
        if not check:
            path.write_text(new)
    return fresh or not check


def write_report(root, out, weights=None, model=None, data_dir=None, n_maps: int = 10) -> Path:
    """results/report.md: the tables, every run's curves, sample confidence maps."""
    from .visualization import plot_runs
    root, out = Path(root).resolve(), Path(out)
    out.mkdir(parents=True, exist_ok=True)
    results = load_results(root)
    lines = ["# nin: results report", "", tables(results, root), ""]
    runs = [r.folder for r in results if (r.folder / "metrics.jsonl").is_file()]
    if runs:
        plot_runs(runs, out / "curves.png")
        lines += ["## Training curves", "", "![training curves](curves.png)", ""]
    lines += ["## Confidence maps", ""]
    if weights:
        import torch

        from .data import load_for_weights
        from .hub import load_weights_arg
        from .visualization import draw_grid
        model, pre, side = load_weights_arg(weights, model)
        ds = load_for_weights(side, model, "test", root=data_dir)
        with torch.no_grad():
            g = draw_grid(model, pre, ds.images[:n_maps], ds.labels[:n_maps].tolist(),
                          ds.classes, out / "maps.png")
        lines += [f"The first {n_maps} test images of {ds.name} with {side.model}'s class "
                  f"maps (true class framed); the true class's map has the highest mean for "
                  f"{100 * g['true_class_strongest']:.0f} % of them.", "",
                  "![confidence maps](maps.png)", ""]
    else:
        lines += ["Pass `--weights` (a run folder) to include the maps of a trained network.", ""]
    path = out / "report.md"
    path.write_text("\n".join(lines))
    return path
