"""The results tables, built from typed results: the paper beside ours, the ablations and the
claims (with Welch intervals), the pilots, unfinished runs, short runs, benchmarks. Each builder
returns Markdown lines; report.py splices them into pages, whose prose lives in the pages.

Full runs (all training images, the whole test set) fill the paper-beside-ours tables, as
mean ± std over seeds; shorter runs (subsets, samples) are listed apart.
"""
from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

from .files import read_jsonl
from .paper import ABLATION_ROWS, CLAIMS, RESULT_ROWS, SHIFT_CLAIMS
from .results import RunResult
from .sweep import fmt, summarize

SHIFTS_FILE = "results/cpu/ablations_cifar10/shifts.json"  # `nin shifts` over the ablations
MISSING = "not run"  # no result.json in results/ (why: docs/results.md says, beside the table)


# ---------------------------------------------------------------- statistics
def t_quantile(p: float, df: float) -> float:
    """Student's t quantile (0.5 < p < 1) for real df > 0, by bisection on the CDF."""
    lo, hi = 0.0, 1e3
    for _ in range(200):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if t_cdf(mid, df) < p else (lo, mid)
    return (lo + hi) / 2


def t_cdf(t: float, df: float) -> float:
    """P(T <= t) for t >= 0: 1 - I_x(df/2, 1/2) / 2 with x = df / (df + t^2)."""
    return 1 - 0.5 * _betainc(df / 2, 0.5, df / (df + t * t))


def _betainc(a: float, b: float, x: float) -> float:
    """The regularized incomplete beta function I_x(a, b) (continued fraction, Lentz)."""
    if x <= 0 or x >= 1:
        return float(x >= 1)
    if x > (a + 1) / (a + b + 2):  # the fraction converges fast on this side only
        return 1 - _betainc(b, a, 1 - x)
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
                     + a * math.log(x) + b * math.log(1 - x)) / a
    f, c, d = 1.0, 1.0, 0.0
    for i in range(400):
        m = i // 2
        num = 1.0 if i == 0 else (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)) if i % 2 == 0
                                  else -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1)))
        d = 1 + num * d
        d = 1 / (d if abs(d) > 1e-300 else 1e-300)
        c = 1 + num / (c if abs(c) > 1e-300 else 1e-300)
        f *= c * d
        if abs(c * d - 1) < 1e-14:
            break
    return front * (f - 1)


def welch_interval(mean_a, std_a, n_a, mean_b, std_b, n_b, level: float = 0.95):
    """(low, high, degrees of freedom) of mean_b - mean_a: Welch's t-interval, each side with
    its own variance."""
    va, vb = std_a ** 2 / n_a, std_b ** 2 / n_b
    se = math.sqrt(va + vb)
    if se == 0:
        d = mean_b - mean_a
        return d, d, float("inf")
    df = (va + vb) ** 2 / (va ** 2 / (n_a - 1) + vb ** 2 / (n_b - 1))
    half = t_quantile(0.5 + level / 2, df) * se
    return mean_b - mean_a - half, mean_b - mean_a + half, df


# ---------------------------------------------------------------- rows and cells
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
                 "alternate_flips", "whiten", "dirac", "lookahead",
                 "bn_momentum")


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
    """One line per claim of the paper: our difference of test error beside the paper's, with
    its 95 % Welch t-interval (each network's own seed spread; degrees of freedom stated).
    "holds" only when the interval excludes zero on the paper's side, "reversed" when it
    excludes zero on the other, "not resolved" when it straddles zero or a side has one seed.
    rows: model -> its ablation summary row (mean, std, n)."""
    out = []
    for claim, better, worse, paper in CLAIMS:
        a, b = rows.get(better), rows.get(worse)
        said = "no figure" if paper is None else f"by {paper:.2f} points"
        if a is None or b is None:
            out.append(f"- {claim} (paper: {said}): {MISSING}.")
            continue
        diff = b["mean"] - a["mean"]
        seeds = f"{a['n']} and {b['n']} seed{'s' if b['n'] > 1 else ''}"
        if min(a["n"], b["n"]) < 2:
            out.append(f"- {claim} (paper: {said}): ours by {diff:+.2f} points ({seeds}), not "
                       "resolved: an interval needs two seeds of each.")
            continue
        lo, hi, df = welch_interval(a["mean"], a["std"], a["n"], b["mean"], b["std"], b["n"])
        verdict = "holds" if lo > 0 else "reversed" if hi < 0 else "not resolved"
        out.append(f"- {claim} (paper: {said}): ours by {diff:+.2f} points, 95 % interval "
                   f"[{lo:+.2f}, {hi:+.2f}] (Welch, {df:.1f} degrees of freedom; {seeds}): "
                   f"{verdict}.")
    return out


def shift_rise(curve: dict) -> float:
    """A `nin shifts` curve's mean rise of test error over its shifts of 1..N pixels."""
    e = curve["error"]
    return sum(x - e[0] for x in e[1:]) / (len(e) - 1)


def shift_claim_lines(curves: dict) -> list[str]:
    """Claim (d), GAP is more robust to translations: for each GAP/FC pair, the mean rise of
    test error over shifts of 1-8 pixels (curves: `nin shifts`' JSON, one curve per run; runs
    of one network are its seeds), with a Welch interval where each has two seeds or more."""
    rises, top = {}, {}
    for c in curves.values():
        rises.setdefault(c["model"], []).append(shift_rise(c))
        top[c["model"]] = c["shifts"][-1]
    out = []
    for gap, fc in SHIFT_CLAIMS:
        head = f"- (d) GAP is more robust to translations ({gap} against {fc})"
        if gap not in rises or fc not in rises:
            out.append(f"{head}: {MISSING}.")
            continue
        g, f = rises[gap], rises[fc]
        mg, mf = statistics.fmean(g), statistics.fmean(f)
        d = mf - mg
        line = (f"{head}: shifted 1-{top[gap]} pixels, test error rises by {mg:.2f} points on "
                f"average with GAP and {mf:.2f} with FC: {'GAP' if d > 0 else 'FC'} is the more "
                f"robust by {abs(d):.2f} points")
        seeds = f"{len(g)} and {len(f)} seed{'s' if len(f) > 1 else ''}"
        if min(len(g), len(f)) < 2:
            out.append(f"{line} ({seeds}): not resolved: an interval needs two seeds of each.")
            continue
        lo, hi, df = welch_interval(mg, statistics.stdev(g), len(g), mf, statistics.stdev(f),
                                    len(f))
        verdict = "holds" if lo > 0 else "reversed" if hi < 0 else "not resolved"
        out.append(f"{line}, 95 % interval [{lo:+.2f}, {hi:+.2f}] (Welch, {df:.1f} degrees of "
                   f"freedom; {seeds}): {verdict}.")
    return out


def unfinished_runs(root: Path) -> list[tuple[Path, object, list[dict]]]:
    """Runs committed mid-way under root/results: (folder, TrainConfig, evaluated epochs) for
    each folder with metrics and a resumable checkpoint (checkpoints/, or resume/ of older
    snapshots) but no result.json and no stopped.json."""
    from .checkpoint import read_sidecar
    from .config import config_from_dict
    newest = {}  # run folder -> its newest sidecar
    for d in ("resume", "checkpoints"):
        for p in sorted(Path(root).glob(f"results/**/{d}/step-*.json")):
            newest[p.parent.parent] = p
    out = []
    for folder, side in sorted(newest.items()):
        if (folder / "result.json").exists() or (folder / "stopped.json").exists() or \
                not (folder / "metrics.jsonl").is_file():
            continue
        rows = [r for r in read_jsonl(folder / "metrics.jsonl") if not r.get("partial")]
        out.append((folder, config_from_dict(read_sidecar(side, check=()).config), rows))
    return out


def unfinished(root: Path, dataset: str, model: str, recipe: str) -> str | None:
    """A test-split run committed unfinished, as what it reached: never extrapolated."""
    for folder, c, rows in unfinished_runs(root):
        done = [r for r in rows if "test_error" in r]
        if (c.dataset, c.model, c.recipe) == (dataset, model, recipe) and done and \
                c.eval_split == "test":
            return (f"unfinished: {done[-1]['test_error']:.2f} at epoch {done[-1]['epoch']} of "
                    f"{c.epochs} (`{folder.relative_to(root)}`, resumable)")
    return None


def running_table(root: Path) -> list[str]:
    """Each unfinished run: its error at every evaluated epoch so far, the epoch it reached and
    the minutes that took (the sum of its epoch times)."""
    out = []
    for folder, c, rows in unfinished_runs(root):
        done = [r for r in rows if "test_error" in r]
        epochs = [r for r in rows if "time_s" in r]
        split = "validation" if c.eval_split == "val" else c.eval_split
        head = (f"`{folder.relative_to(root)}` ({c.model}, {c.dataset}, {c.recipe} recipe, "
                f"{c.epochs} epochs, seed {c.seed}): epoch {rows[-1]['epoch'] if rows else 0} of "
                f"{c.epochs} reached after {sum(r['time_s'] for r in epochs) / 60:.0f} minutes "
                "of training; ")
        if not done:
            out += [head + f"not evaluated yet (every {c.eval_every} epochs).", ""]
            continue
        out += [head + f"{split} error without TTA, {done[-1].get('precision', 'fp32')} "
                "training:", "",
                "| epoch | " + " | ".join(str(r["epoch"]) for r in done) + " |",
                "|---" * (len(done) + 1) + "|",
                f"| {split} error % | " + " | ".join(f"{r['test_error']:.2f}" for r in done) + " |",
                "| training accuracy % | " + " | ".join(
                    f"{100 * r['train_acc']:.1f}" if "train_acc" in r else "—" for r in done)
                + " |", ""]
    return out[:-1] or ["No run is unfinished."]


def pilots_table(results: list[RunResult], root: Path) -> list[str]:
    """Runs scored on the validation split: where settings were chosen."""
    pilots = [r for r in results if r.finished and r.config.eval_split == "val"]
    out = ["| run | model | recipe | precision | seed | train images | batch | lr | "
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


def results_table(full: list[dict], root: Path) -> list[str]:
    """The paper's figures beside ours, one row per dataset and setting."""
    out = ["| | paper | ours (paper recipe) | ours (modern) | best published reimplementation |",
           "|---|---|---|---|---|"]
    for label, ds, aug, paper, pm, mm, best in RESULT_ROWS:
        ours_p = find(full, ds, pm, "paper", aug) or unfinished(root, ds, pm, "paper") or MISSING
        ours_m = "— (the modern recipe augments)" if mm is None else \
            modern_cell(full, root, ds, mm)
        out.append(f"| {label} | {paper} | {ours_p} | {ours_m} | {best} |")
    return out


def ablation_rows(full: list[dict]) -> dict:
    """model -> the headline summary row of each ablation network (None: not run)."""
    return {model: headline(full, "cifar10", model, "paper", False)
            for _, model, _ in ABLATION_ROWS}


def ablations_table(ablations: dict) -> list[str]:
    return (["| | paper | ours | training error | parameters |", "|---|---|---|---|---|"]
            + [ablation_line(label, paper, ablations[model])
               for label, model, paper in ABLATION_ROWS])


def short_table(results: list[RunResult], root: Path) -> list[str]:
    """Runs on a subset or the embedded sample: they test the pipeline."""
    short = [r for r in results if not is_full(r) and r.finished  # not yours: folders
             and r.config.eval_split != "val" and r.config.dataset != "folder"]
    out = ["| run | model | recipe | train images | epochs | test images | test error | "
           "wall |", "|---|---|---|---|---|---|---|---|"]
    for r in short:
        c = r.config
        n_train = f"{c.subset:,}" if c.subset else \
            ("10,000 (sample)" if c.dataset == "mnist-sample" else "all")
        out.append(f"| `{_rel(r, root)}` | {c.model} | {c.recipe} | {n_train} | "
                   f"{r.epochs_run} | {r.final['n']:,} | {r.error:.2f} % | "
                   f"{r.wall_s:.0f} s on {r.env['device']} |")
    return out


def blocks(results: list[RunResult], root: Path = Path(".")) -> dict[str, str]:
    """Every generated block of docs/results.md, by its marker name."""
    full = summarize([r for r in results if is_full(r)])
    ablations = ablation_rows(full)
    shifts = Path(root) / SHIFTS_FILE
    claims = claim_lines(ablations) + shift_claim_lines(
        json.loads(shifts.read_text()) if shifts.is_file() else {})
    parts = dict(results=results_table(full, root), ablations=ablations_table(ablations),
                 claims=claims, pilots=pilots_table(results, root),
                 running=running_table(Path(root)), short=short_table(results, root))
    return {k: "\n".join(v) for k, v in parts.items()}

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
