"""The `nin` command: models, data, train, eval, predict, maps, shifts, serve, plot, report,
export, sweep, demo.

Building the parser imports no torch (`nin --help` answers at once); each command imports what
it needs. `nin train`'s flags are made from config.TrainConfig's fields. nin's own errors
(errors.NinError) print one line and exit with their code; anything else is a bug and keeps its
traceback.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from . import __version__
from .config import DEMO, TrainConfig, field_type, read_config_file, resolve
from .errors import ConfigError, NinError
from .files import make_dir
from .paper import DATASETS

WEIGHTS_HELP = "a run folder, a checkpoint (.json or .safetensors), or 'pretrained' (with --model)"


def _add_data_dir(p):
    p.add_argument("--data-dir", help="where the datasets are (default: $NIN_DATA_DIR, else "
                                      "~/.cache/nin/data)")


def _flag_type(name: str):
    """The argparse type of a TrainConfig field, from its annotation."""
    base, _ = field_type(name)
    if base is tuple:
        return _int_list
    return base if base in (int, float) else str


def _int_list(v: str) -> tuple:
    try:
        return tuple(int(m) for m in v.split(",") if m.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{v!r}: give whole numbers separated by commas, "
                                         "e.g. 100,150") from None


def add_train_parser(sub):
    """`nin train`: one flag per TrainConfig field. --help is answered by cmd_train, after the
    one parse, so that it shows the defaults the given recipe, dataset and --config resolve to."""
    p = sub.add_parser("train", help="train a network (the paper's recipe or the modern one)",
                       add_help=False)
    p.add_argument("-h", "--help", action="store_true", help="show this help and exit")
    add_train_arguments(p)


def add_train_arguments(p, defaults: TrainConfig | None = None):
    """The flags of `nin train`, their help showing `defaults` when given."""
    for f in dataclasses.fields(TrainConfig):
        flag, helptext = "--" + f.name.replace("_", "-"), f.metadata["help"]
        if defaults is not None:
            default = getattr(defaults, f.name)
            shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
            helptext += f" (default: {'auto' if f.name == 'amp' and default is None else shown})"
        if field_type(f.name)[0] is bool:
            p.add_argument(flag, action=argparse.BooleanOptionalAction, default=None,
                           help=helptext)
        else:
            p.add_argument(flag, type=_flag_type(f.name), default=None, help=helptext,
                           choices=f.metadata.get("choices"))
    p.add_argument("--config", help="a JSON file of TrainConfig fields (e.g. a result.json); "
                                    "flags override it")
    p.add_argument("--resume", action="store_true",
                   help="continue from the run folder's newest valid checkpoint")
    p.add_argument("--overwrite", action="store_true",
                   help="start over in a run folder that holds a run: its metrics, checkpoints "
                        "and result are deleted first (without it, such a folder is refused)")
    p.add_argument("--print-config", action="store_true",
                   help="print the resolved config as JSON and exit")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def train_help(cfg: TrainConfig):
    """Print `nin train --help` with cfg's values as the defaults, and exit as argparse does."""
    p = argparse.ArgumentParser(prog="nin train", description="Every flag is a TrainConfig "
                                "field (src/nin/config.py). Defaults shown are those the "
                                "--recipe, --dataset, --model and --config given resolve to.")
    add_train_arguments(p, cfg)
    p.parse_args(["--help"])


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="nin", description="Network In Network (ICLR 2014)")
    ap.add_argument("--version", action="version", version=f"nin {__version__}")
    sub = ap.add_subparsers(dest="cmd", required=True)
    _add_setup_parsers(sub)
    add_train_parser(sub)
    _add_scoring_parsers(sub)
    _add_drawing_parsers(sub)
    _add_results_parsers(sub)
    return ap


def _add_weights(p, required=True):
    p.add_argument("--weights", required=required, help=WEIGHTS_HELP)
    p.add_argument("--model", help="the shipped network, with --weights pretrained")


def _add_setup_parsers(sub):
    """models, data"""
    p = sub.add_parser("models", help="list the registered networks and their parameter counts")
    p.add_argument("pattern", nargs="?", default="*")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("data", help="verify or download a dataset")
    p.add_argument("action", choices=["verify", "download"])
    p.add_argument("dataset", choices=[d for d in DATASETS if d != "folder"])
    _add_data_dir(p)


def _add_scoring_parsers(sub):
    """eval, predict: commands that score trained weights"""
    p = sub.add_parser("eval", help="evaluate trained weights on a dataset split")
    _add_weights(p)
    p.add_argument("--dataset", help="default: the one the weights were trained on")
    p.add_argument("--split", default="test")
    _add_tta(p)
    p.add_argument("--tta-shift", type=int, default=0, metavar="PX",
                   help="also average the images moved PX pixels up-left and down-right")
    p.add_argument("--batch-size", type=int, default=500)
    p.add_argument("--device", default="auto")
    p.add_argument("--precision", choices=("fp32", "bf16"),
                   help="default: fp32 on the CPU, bf16 on CUDA")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    _add_data_dir(p)

    p = sub.add_parser("predict", help="top-k classes for your own PNG or JPEG images")
    p.add_argument("images", nargs="+")
    _add_weights(p)
    p.add_argument("--topk", type=int, default=5)
    _add_tta(p)
    p.add_argument("--json", action="store_true")


def _add_drawing_parsers(sub):
    """maps, shifts, export: commands that draw or write out trained weights"""
    p = sub.add_parser("maps", help="draw the class confidence maps over images (paper §4.7)")
    p.add_argument("images", nargs="*", help="PNG/JPEG files")
    _add_weights(p)
    p.add_argument("--dataset", help="draw test images of this dataset by --index instead")
    p.add_argument("--index", type=int, nargs="+", default=[0])
    p.add_argument("--split", default="test")
    p.add_argument("--topk", type=int, help="only the k strongest maps (default: all)")
    p.add_argument("--grid", action="store_true", help="one figure, a row per image (§4.7)")
    p.add_argument("--threshold", type=float, default=0.5, help="localization: share of the "
                                                                   "top map's maximum")
    p.add_argument("--out", default="maps")
    _add_data_dir(p)

    p = sub.add_parser("shifts", help="test error of networks against translations of the "
                                      "test images (paper §4.6), as a figure and JSON")
    p.add_argument("runs", nargs="+", help="run folders or checkpoints (or NAME with "
                                           "--pretrained)")
    p.add_argument("--pretrained", action="store_true", help="runs are shipped model names")
    p.add_argument("--max-shift", type=int, default=8, help="pixels, in each direction")
    p.add_argument("--subset", type=int, help="only the first N test images")
    p.add_argument("--index", type=int, help="also draw this test image's class maps at each "
                                             "shift (the first network's)")
    p.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                   help="bf16 scores about 3x faster on a CPU with native bf16 (33 passes over "
                        "the test set per network)")
    p.add_argument("--out", default="shifts", help="folder for shifts.png, shifts.json")
    _add_data_dir(p)

    p = sub.add_parser("export", help="export a network with its preprocessing")
    _add_weights(p)
    p.add_argument("--onnx", required=True, help="output .onnx file (needs nin[onnx])")

    p = sub.add_parser("serve", help="the class maps in a browser: a local page (needs "
                                     "nin[serve])")
    p.add_argument("--weights", nargs="+", required=True,
                   help="one or more, side by side: " + WEIGHTS_HELP)
    p.add_argument("--model", nargs="+", help="the shipped networks, one per 'pretrained'")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: this "
                                                       "machine only)")
    p.add_argument("--port", type=int, help="port (default: the first free from 7860)")
    _add_data_dir(p)


def _add_results_parsers(sub):
    """plot, report, sweep, demo"""
    p = sub.add_parser("plot", help="training curves of runs, overlaid, as a PNG")
    p.add_argument("runs", nargs="+", help="run folders (with metrics.jsonl)")
    p.add_argument("--out", default="curves.png")

    p = sub.add_parser("report", help="one Markdown page from results/: tables, curves, maps")
    p.add_argument("--root", default=".", help="the project folder holding results/")
    p.add_argument("--out", default="results/report")
    _add_weights(p, required=False)
    _add_data_dir(p)

    p = sub.add_parser("sweep", help="run a grid of configs and seeds (see nin.sweep)")
    p.add_argument("spec", help="sweep file (JSON: out, base, grid)")
    p.add_argument("--dry-run", action="store_true", help="list the runs, run nothing")
    p.add_argument("--summary", action="store_true", help="only rebuild summary.{json,md}")

    p = sub.add_parser("demo", help="train NIN on the embedded MNIST sample (offline, minutes "
                                    "on a CPU) and compare with the paper")
    p.add_argument("--epochs", type=int, default=DEMO["epochs"])
    p.add_argument("--out", default=DEMO["out"])
    p.add_argument("--no-progress", action="store_true")


def _add_tta(p):
    p.add_argument("--tta", action=argparse.BooleanOptionalAction, default=None,
                   help="average with the mirrored image (default: as the weights were "
                        "evaluated in training, so that a run's stated error is reproduced)")


def _tta(args, side) -> bool:
    """--tta / --no-tta if given, else what the run evaluated with."""
    return args.tta if args.tta is not None else side.tta


def _load(args):
    from .hub import load_weights_arg
    return load_weights_arg(args.weights, args.model)


def cmd_models(args):
    from .hub import pretrained_info
    from .models import build_model, count_params, list_models, model_info
    rows = [dict(name=n, params=count_params(build_model(n)), dataset=model_info(n)["dataset"],
                 description=model_info(n)["doc"], pretrained=pretrained_info(n))
            for n in list_models(args.pattern)]
    if not rows:
        raise ConfigError(f"no registered network matches {args.pattern!r}; `nin models` "
                          "lists them all")
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    for r in rows:
        w = r["pretrained"]
        tag = "" if w is None else (f"  [pretrained: {w['error']:.2f} % test error"
                                    f"{', flip TTA' if w['tta'] else ''}, {w['dtype']}]")
        print(f"{r['name']:24s} {r['params']:>11,}  {r['description']}{tag}")
    return 0


def cmd_data(args):
    from .data import download, verify_files
    if args.action == "download":
        for path in download(args.dataset, args.data_dir):
            print(f"ok: {path}")
    ok, lines = verify_files(args.dataset, args.data_dir)
    for line in lines:
        print(line, file=sys.stdout if ok else sys.stderr)
    return 0 if ok else 1


def train_config(args) -> TrainConfig:
    """The run's config (config.resolve): a --config file's settings, then every flag given."""
    names = [f.name for f in dataclasses.fields(TrainConfig)]
    flags = {k: getattr(args, k) for k in names if getattr(args, k) is not None}
    return resolve({**(read_config_file(args.config) if args.config else {}), **flags})


def cmd_train(args):
    cfg = train_config(args)
    if args.help:
        train_help(cfg)
    if args.print_config:
        print(json.dumps(cfg.to_dict(), indent=1))
        return 0
    from . import distributed
    from .training import train
    try:
        train(cfg, resume=args.resume, progress=False if args.no_progress else None,
              overwrite=args.overwrite)
    finally:
        distributed.cleanup()
    return 0


def cmd_eval(args):
    import torch

    from .data import load_for_weights
    from .evaluation import evaluate
    from .device import eval_precision, pick_device
    from .models import model_info
    if not 0 <= args.tta_shift <= 8:
        raise ConfigError(f"--tta-shift {args.tta_shift}: use 0 (off) to 8 pixels")
    model, pre, side = _load(args)
    dataset = args.dataset or side.dataset or model_info(side.model)["dataset"]
    ds = load_for_weights(side, model, args.split, dataset, args.data_dir)
    device = pick_device(args.device)
    model, pre, tta = model.to(device), pre.to(device), _tta(args, side)
    with torch.no_grad():
        ev = evaluate(model, pre, ds, args.batch_size, tta=tta, precision=args.precision,
                      tta_shift=args.tta_shift)
    out = dict(model=side.model, weights=args.weights, dataset=dataset, split=args.split,
               n=ev["n"], error=ev["error"], accuracy=100 - ev["error"], loss=ev["loss"],
               tta=tta, tta_shift=args.tta_shift,
               precision=args.precision or eval_precision(device),
               per_class_accuracy=ev["per_class_accuracy"],
               confusion=ev["confusion"])
    if args.json:
        print(json.dumps(out))
        return 0
    print(f"{out['model']} on {dataset}/{args.split}: {ev['n']:,} images, error "
          f"{ev['error']:.2f}% (loss {ev['loss']:.4f}{', flip TTA' if tta else ''}"
          f"{f', {args.tta_shift} px shift TTA' if args.tta_shift else ''})")
    for name, acc in ev["per_class_accuracy"].items():
        print(f"  {name:12s} {100 * acc:6.2f}%")
    print("confusion matrix (rows: true class, columns: predicted):")
    for row in ev["confusion"]:
        print("  " + " ".join(f"{v:5d}" for v in row))
    return 0


def cmd_predict(args):
    from .evaluation import predict_images
    model, pre, side = _load(args)
    results = predict_images(model, pre, args.images, side.class_names(), args.topk,
                             _tta(args, side))
    if args.json:
        print(json.dumps(results, indent=1))
        return 0
    for r in results:
        print(r["image"] + ": " + ", ".join(f"{t['cls']} {100 * t['prob']:.1f}%"
                                            for t in r["top"]))
    return 0


def cmd_maps(args):
    import torch

    from .folder import load_image
    from .visualization import draw_grid, draw_maps
    model, pre, side = _load(args)
    classes = side.class_names()
    out = Path(args.out)
    make_dir(out)
    if args.dataset:
        from .data import load_for_weights
        ds = load_for_weights(side, model, args.split, args.dataset, args.data_dir)
        bad = [i for i in args.index if not 0 <= i < len(ds)]
        if bad:
            raise ConfigError(f"--index {bad}: {args.dataset}/{args.split} has {len(ds)} "
                              "images")
        items = [(f"{args.dataset}_{args.split}_{i}", ds.images[i], int(ds.labels[i]))
                 for i in args.index]
    elif args.images:
        items = [(Path(p).stem, load_image(p, pre.in_chans, pre.input_size), None)
                 for p in args.images]
    else:
        raise ConfigError("give image files, or --dataset with --index")
    with torch.no_grad():
        if args.grid:
            labels = [lab if lab is not None else -1 for _, _, lab in items]
            g = draw_grid(model, pre, torch.stack([x for _, x, _ in items]), labels, classes,
                          out / "grid.png")
            print(f"{g['path']}: {g['n']} images")
            return 0
        for name, x, label in items:
            r = draw_maps(model, pre, x, classes, out / f"{name}_maps.png", args.topk,
                          title=f"true: {classes[label]}" if label is not None else name,
                          threshold=args.threshold)
            print(f"{r['path']}: {classes[r['pred']]} {100 * r['prob']:.1f}%, box {r['box']}")
    return 0


def cmd_shifts(args):
    """Error against shift for each network, one figure; optionally one image's maps. Curves
    already in OUT/shifts.json for the same weights, images and shifts are kept, not measured
    again, and the file is rewritten after each network: a cut-off run loses at most one
    network."""
    import torch

    from .data import load_for_weights
    from .evaluation import _shifted, shift_errors
    from .files import atomic_write
    from .hub import load_weights_arg
    from .visualization import draw_grid, plot_shifts
    out = Path(args.out)
    make_dir(out)
    curves, keys = _read_curves(out / "shifts.json"), []
    for i, run in enumerate(args.runs):
        model, pre, side = load_weights_arg("pretrained" if args.pretrained else run,
                                            run if args.pretrained else None)
        key = side.model if args.pretrained else Path(run).name
        keys.append(key)
        ds = load_for_weights(side, model, "test", root=args.data_dir)
        ds = ds.take(slice(0, args.subset)) if args.subset else ds
        sha = side.files["weights"]["sha256"]
        c = curves.get(key)
        with torch.no_grad():
            if not (c and (c.get("weights"), c["n"], c["shifts"][-1], c.get("precision")) ==
                    (sha, len(ds), args.max_shift, args.precision)):
                c = curves[key] = {"model": side.model, "weights": sha,
                                   **shift_errors(model, pre, ds, args.max_shift,
                                                  precision=args.precision)}
                atomic_write(out / "shifts.json", json.dumps(curves, indent=1).encode())
            if i == 0 and args.index is not None:
                one = ds.take(slice(args.index, args.index + 1))
                rows = torch.cat([_shifted(one, s, 0).images for s in c["shifts"]])
                draw_grid(model, pre, rows, [int(one.labels[0])] * len(rows), ds.classes,
                          out / "shift_maps.png", [f"{s} px right" for s in c["shifts"]])
        print(f"{run}: " + ", ".join(f"{s} px {e:.2f}%" for s, e in zip(c["shifts"], c["error"])))
    print(plot_shifts({k: curves[k] for k in keys}, out / "shifts.png"))
    return 0


def _read_curves(path: Path) -> dict:
    """Curves an earlier `nin shifts` wrote to this folder (none if it wrote nothing)."""
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path}: not the JSON `nin shifts` writes ({e}); move it away or "
                          "give another --out") from None


def cmd_plot(args):
    from .visualization import plot_runs
    print(plot_runs(args.runs, args.out))
    return 0


def cmd_report(args):
    from .report import write_report
    print(write_report(args.root, args.out, args.weights, args.model, args.data_dir))
    return 0


def cmd_serve(args):
    from .serve import serve
    serve(args.weights, args.model, args.host, args.port, args.data_dir)
    return 0


def cmd_export(args):
    from .export import export_onnx
    model, pre, side = _load(args)
    print(f"{export_onnx(model, pre, args.onnx)}: {side.model} with {pre.kind} "
          "preprocessing; input float32 (N, C, H, W) pixels 0-255, output probabilities")
    return 0


def cmd_sweep(args):
    from .sweep import load_spec, run_sweep, write_summary
    spec = load_spec(args.spec)
    if args.summary:
        write_summary(spec["out"])
    else:
        run_sweep(spec, dry_run=args.dry_run)
    if not args.dry_run:
        md = Path(spec["out"]) / "summary.md"
        print(md.read_text() if md.exists() else "no finished runs", end="")
    return 0


def cmd_demo(args):
    from .paper import PAPER_ERROR
    from .training import train
    cfg = resolve({**DEMO, "epochs": args.epochs, "out": args.out})
    r = train(cfg, progress=False if args.no_progress else None, overwrite=True)  # a rerun
    print(f"\nNIN ({cfg.model}, {r.params:,} params, modern recipe) on the embedded MNIST "
          f"sample\n  trained {r.epochs_run} epochs on 10,000 images in {r.wall_s:.0f} s "
          f"on {r.env['device']} ({r.precision})\n"
          f"  test error {r.error:.2f}% on {r.final['n']:,} test images   |   paper: "
          f"{PAPER_ERROR['mnist']:.2f}% (all 60,000 images, full schedule)\n"
          f"  weights: {r.checkpoint}  (try: nin eval --weights {args.out})")
    return 0


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = _parser().parse_args(argv)
    cmd = {"models": cmd_models, "data": cmd_data, "train": cmd_train, "eval": cmd_eval,
           "predict": cmd_predict, "maps": cmd_maps, "plot": cmd_plot, "report": cmd_report,
           "export": cmd_export, "shifts": cmd_shifts, "sweep": cmd_sweep,
           "demo": cmd_demo, "serve": cmd_serve}[args.cmd]
    try:
        return cmd(args)
    except NinError as e:  # the user can fix these: one line, no traceback
        from .errors import TrainingStopped
        print(f"{'training stopped' if isinstance(e, TrainingStopped) else 'error'}: {e}",
              file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("interrupted; continue with --resume", file=sys.stderr)
        return 130
