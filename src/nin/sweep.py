"""Sweeps: a grid of configs and seeds, each run with its own folder and result.json, and the
multi-seed summary (mean ± std) that the results tables are built from.

A sweep file is JSON:
  {"out": "runs/heads",
   "base": {"dataset": "cifar10", "recipe": "paper", "epochs": 260},
   "grid": {"model": ["nin_cifar10", "nin_cifar10_fc", "nin_cifar10_fc_dropout"],
            "seed": [0, 1, 2]}}
"grid" may also be a list of such grids, run in turn (as scikit-learn's ParameterGrid): e.g. seed 0
for seven networks, then seed 1 for three of them. A point listed twice runs once.
Runs go one after another; under torchrun each rank takes every world-th run on its own GPU
(independent single-process runs). A finished run (result.json) is skipped and a started one
resumed, so a sweep cut off by a time limit continues where it stopped.
"""
from __future__ import annotations

import itertools
import json
import os
import statistics
from pathlib import Path

from .errors import ConfigError, DeadStartError, NonFiniteLoss
from .files import atomic_write
from .results import RunResult, collect


STOPPED = "stopped.json"  # a run that diverged or died at its start: why, in place of result.json


def load_spec(path) -> dict:
    path = Path(path)
    try:
        spec = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ConfigError(f"{path}: not a readable sweep file ({e})") from None
    _check_shape(spec, path)
    from .config import resolve
    runs = expand(spec, where=path)  # every point checked now, not hours into the sweep
    if not runs:
        raise ConfigError(f"{path}: the grid has no points (a list in it is empty)")
    for name, settings in runs:
        try:
            resolve(settings)
        except ConfigError as e:
            raise ConfigError(f"{path} (run {name}): {e}") from None
    return spec


def _check_shape(spec, path) -> None:
    shape = (f"{path}: a sweep is a JSON object with \"out\" (a folder name), an optional "
             "\"base\" object of settings, and a \"grid\" object of lists (or a list of such "
             "objects); see configs/ for examples")
    if not isinstance(spec, dict) or not isinstance(spec.get("out"), str) \
            or not isinstance(spec.get("base", {}), dict):
        raise ConfigError(shape)
    if not all(isinstance(g, dict) and all(isinstance(v, list) for v in g.values())
               for g in _grids(spec)):
        raise ConfigError(shape)


def expand(spec: dict, where="sweep") -> list[tuple[str, dict]]:
    """(run name, its settings) for every point of the grid, in a fixed order; each point's
    settings are checked as a config file's are (config.check_settings)."""
    from .config import check_settings
    runs = {}
    for grid in _grids(spec):
        keys = list(grid)
        for values in itertools.product(*(grid[k] for k in keys)):
            point = dict(zip(keys, values))
            name = "-".join(f"{k}={v}" for k, v in point.items()).replace("/", "_") or "run"
            runs.setdefault(name, check_settings({**spec.get("base", {}), **point},
                                                 f"{where} (run {name})"))
    return list(runs.items())


def _grids(spec: dict) -> list:
    grid = spec.get("grid", {})
    return grid if isinstance(grid, list) else [grid]


def run_sweep(spec: dict, dry_run: bool = False, log=print) -> list[Path]:
    from .config import resolve
    from .training import train
    runs = expand(spec)
    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    mine = runs[rank::world]
    out = Path(spec["out"])
    done = []
    for name, over in mine:
        if world > 1 and "device" not in over:
            import torch
            if torch.cuda.is_available():
                over["device"] = f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}"
        cfg = resolve({**over, "out": str(out / name)})
        if (out / name / "result.json").exists():
            log(f"[sweep] {name}: done already{_scored(out / name / 'result.json')}")
        elif (out / name / STOPPED).exists():
            log(f"[sweep] {name}: stopped before (its {STOPPED} says why); delete it to rerun")
        elif dry_run:
            log(f"[sweep] {name}: would {_plan(out / name, cfg.epochs)}")
            continue
        else:
            log(f"[sweep] {name}: running ({len(done) + 1}/{len(mine)} on rank {rank})")
            try:
                train(cfg, resume=True, progress=False, log=log, ddp=False)
            except (DeadStartError, NonFiniteLoss) as e:  # a rate pilot may diverge: a result
                atomic_write(out / name / STOPPED, json.dumps(
                    dict(reason=type(e).__name__, message=str(e))).encode())
                log(f"[sweep] {name}: stopped ({e}); the sweep goes on")
        done.append(out / name)
    if not dry_run:
        write_summary(out)
    return done


def _scored(result: Path) -> str:
    try:
        d = json.loads(result.read_text())
        return f" ({d['final']['split']} error {d['final']['error']:.2f} %)"
    except (OSError, ValueError, KeyError, TypeError):
        return ""


def _plan(folder: Path, epochs: int) -> str:
    """What running this point would do: start, or resume from the newest checkpoint."""
    from .checkpoint import latest_checkpoint, read_sidecar
    last = latest_checkpoint(folder)
    if last is None:
        return f"start ({epochs} epochs)"
    side = read_sidecar(last, check=())
    return (f"resume from epoch {side.run.get('epoch', '?')} of {epochs} "
            f"(step {side.step}, {last.relative_to(folder)})")


def summarize(results: list[RunResult]) -> list[dict]:
    """Group finished runs that differ only in seed (and output folder): mean ± std error,
    with each run's row (RunResult.row) kept."""
    groups: dict[tuple, list[RunResult]] = {}
    for r in results:
        if r.finished:
            groups.setdefault(r.group_key(), []).append(r)
    rows = []
    for runs in groups.values():
        each = [r.row() for r in runs]
        errs = [e["error"] for e in each]
        rows.append({**{k: each[0][k] for k in ("model", "dataset", "recipe", "translate",
                                                "flip", "tta", "precision", "params")},
                     "seeds": sorted(e["seed"] for e in each), "n": len(errs),
                     "mean": statistics.fmean(errs),
                     "std": statistics.stdev(errs) if len(errs) > 1 else 0.0,
                     "errors": errs, "train_errors": [e["train_error"] for e in each],
                     "wall_s": [e["wall_s"] for e in each],
                     "epochs": [e["epochs"] for e in each], "config": runs[0].config.to_dict(),
                     "threads": sorted({t for e in each for t in e["threads"]}),
                     "gpu": next((e["gpu"] for e in each if e.get("gpu")), None)})
    return sorted(rows, key=lambda r: (r["dataset"], r["model"], r["recipe"]))


def fmt(row: dict) -> str:
    return f"{row['mean']:.2f} ± {row['std']:.2f} (n={row['n']})" if row["n"] > 1 else \
        f"{row['mean']:.2f} (1 seed)"


def write_summary(folder) -> list[dict]:
    rows = summarize(collect(folder))
    atomic_write(Path(folder) / "summary.json", json.dumps(rows, indent=1).encode())
    lines = ["| model | dataset | recipe | aug | test error % |", "|---|---|---|---|---|"]
    for r in rows:
        aug = ("translate+flip" if r["flip"] and r["translate"] else
               "flip" if r["flip"] else f"translate {r['translate']}" if r["translate"] else
               "none")
        lines.append(f"| {r['model']} | {r['dataset']} | {r['recipe']} | {aug} | {fmt(r)} |")
    atomic_write(Path(folder) / "summary.md", ("\n".join(lines) + "\n").encode())
    return rows
