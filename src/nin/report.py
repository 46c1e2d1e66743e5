"""Pages from results/: the generated blocks of docs/results.md and docs/speed.md (between
their <!-- NAME:start --> and <!-- NAME:end --> markers; the prose around them is the pages'),
and the one-page report of `nin report`. The blocks themselves: tables.py.
"""
from __future__ import annotations

from pathlib import Path

from .errors import ConfigError
from .files import make_dir
from .results import RunResult, collect
from .tables import bench_tables, blocks

# the pages and the blocks each holds (their builders: tables.py)
PAGES = {"results.md": ("results", "ablations", "claims", "pilots", "running", "short"),
         "speed.md": ("bench",)}
TITLES = dict(results="Results", ablations="Ablations on CIFAR-10", claims="The claims",
              pilots="Pilots on the validation split", running="Unfinished runs",
              short="Short runs")


def load_results(root) -> list[RunResult]:
    """Every run's result.json under root/results (benchmarks excluded)."""
    results = [r for r in collect(Path(root) / "results") if "/bench/" not in r.path]
    for r in results:
        r.path = str(Path(r.path).resolve())
    return results


def markers(name: str) -> tuple[str, str]:
    return f"<!-- {name}:start (scripts/results_table.py) -->", f"<!-- {name}:end -->"


def _splice(text: str, name: str, body: str, where) -> str:
    start, end = markers(name)
    if start not in text or end not in text:
        raise ConfigError(f"{where}: no {start} ... {end} markers")
    head, rest = text.split(start, 1)
    return head + start + "\n" + body + "\n" + end + rest.split(end, 1)[1]


def update_docs(root, check: bool = False) -> bool:
    """Rewrite the generated blocks of docs/results.md and docs/speed.md; with check, only say
    whether they are up to date."""
    root = Path(root).resolve()
    built = {**blocks(load_results(root), root), "bench": bench_tables(root)}
    fresh = True
    for page, names in PAGES.items():
        path = root / "docs" / page
        text = new = path.read_text()
        for name in names:
            new = _splice(new, name, built[name], path)
        fresh &= new == text
        if not check:
            path.write_text(new)
    return fresh or not check


def write_report(root, out, weights=None, model=None, data_dir=None, n_maps: int = 10) -> Path:
    """results/report.md: the tables, every run's curves, sample confidence maps."""
    from .visualization import plot_runs
    root, out = Path(root).resolve(), Path(out)
    make_dir(out)
    results = load_results(root)
    lines = ["# nin: results report", ""]
    for name, body in blocks(results, root).items():
        lines += [f"## {TITLES[name]}", "", body, ""]
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
