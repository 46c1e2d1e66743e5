"""A training run's settings: one dataclass, the recipes that override it, and the rules for
resuming. No torch here: the CLI builds `nin train`'s flags from these fields in milliseconds.

Adding a setting is one line in TrainConfig: its type, its default and its help. The CLI gets a
flag for it, the run records it in metrics, checkpoints and result.json.
"""
from __future__ import annotations

import dataclasses
import json
import typing
from dataclasses import dataclass, field
from pathlib import Path

from .errors import ConfigError
from .paper import DATASETS, INITS


def _f(default, help: str, **kw):
    """A config field with its help text (shown by `nin train --help`)."""
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata=dict(help=help, **kw))
    return field(default=default, metadata=dict(help=help, **kw))


@dataclass
class TrainConfig:
    # ---- what to train
    model: str = _f("nin_cifar10", "registered network (`nin models`)")
    dataset: str = _f("cifar10", "dataset", choices=tuple(DATASETS))
    recipe: str = _f("paper", "settings to start from: the paper's or the modern one",
                     choices=("paper", "modern"))
    train_split: str = _f("train", "split to train on (train-val: all but the last 10,000)")
    eval_split: str = _f("test", "split evaluated each epoch (val: the last 10,000 train images)")
    subset: int | None = _f(None, "train on the first N training images only")
    eval_subset: int | None = _f(None, "evaluate on the first N images of the eval split only")
    weights: str | None = _f(None, "fine-tune: start from 'pretrained' (the shipped --model) or "
                             "a run folder; a new class count re-initialises the classifier")
    pretrained_stats: bool = _f(False, "with --weights: keep its preprocessing statistics "
                                "instead of refitting them on this training split")
    # ---- optimizer (SGD)
    epochs: int = _f(260, "epochs (plateau schedule: the most it may run)")
    batch_size: int = _f(128, "images per step (the global batch under torchrun)")
    lr: float = _f(0.1, "peak learning rate, on the mean loss")
    momentum: float = _f(0.9, "SGD momentum")
    nesterov: bool = _f(False, "Nesterov momentum")
    weight_decay: float = _f(1e-4, "L2 weight decay on weights (not biases, not batch norm)")
    bias_lr_mult: float = _f(2.0, "learning-rate multiplier of biases (authors' files: 2)")
    last_lr_mult: float = _f(0.1, "learning-rate multiplier of the last 1x1 layer (authors': 0.1)")
    # ---- schedule
    schedule: str = _f("plateau", "plateau: the paper's rule; step: --milestones; onecycle: "
                       "linear warm-up then linear decay to 0",
                       choices=("plateau", "step", "onecycle"))
    milestones: tuple = _f((), "step schedule: epochs where lr /= 10, comma-separated")
    patience: int = _f(10, "plateau: epochs without a better training accuracy before lr /= 10")
    max_drops: int = _f(2, "plateau: lr /= 10 this many times, then stop at the next plateau")
    warmup_epochs: float = _f(0.0, "onecycle: epochs of linear warm-up")
    # ---- network and regularization
    init: str = _f("paper", "paper: Gaussian std 0.05; kaiming: He init; kaiming_zero: He init, "
                   "class layer zero (bias 1): no dead start without batch norm", choices=INITS)
    whiten: str = _f("off", "patch-whitening init of the first conv (airbench): filters start as "
                     "the +-eigenvectors of its input patches' covariance over 1/sqrt(eigenvalue); "
                     "frozen: they stay so", choices=("off", "trained", "frozen"))
    dirac: bool = _f(False, "identity init (airbench): every conv but the first and the class "
                     "layer starts with its first filters passing its input channels on")
    drop_rate: float = _f(0.5, "dropout after the first two mlpconv blocks")
    label_smoothing: float = _f(0.0, "label smoothing of the cross-entropy")
    ema: float = _f(0.0, "decay per step of a moving average of the weights, which is what is "
                    "evaluated and saved as the run's weights (0: off; e.g. 0.999)")
    lookahead: bool = _f(False, "lookahead (airbench): every 5 steps a slow copy of the weights "
                         "moves towards them by 1 - 0.95^5 (t/T)^3 (t/T: the share of the run "
                         "done) and the weights go back to it; at each epoch's end too")
    bn_momentum: float | None = _f(None, "batch norm: the weight of each batch in the running "
                                   "statistics (PyTorch's convention: default 0.1; airbench 0.4)")
    # ---- data
    preprocess: str = _f("gcn_zca", "input preprocessing, fitted on the training split",
                         choices=("scale", "standardize", "gcn_zca", "lcn"))
    translate: int = _f(0, "augmentation: random shifts of up to this many pixels")
    flip: bool = _f(False, "augmentation: random horizontal flips")
    alternate_flips: bool = _f(False, "with --flip: flip each image in every other epoch, from "
                               "a random start (airbench), not at random each time")
    crop_size: int | None = _f(None, "progressive resizing: train the first --crop-epochs "
                               "epochs on random crops of this side (e.g. 24 of 32)")
    crop_epochs: int = _f(0, "progressive resizing: epochs on --crop-size crops, then full size")
    image_size: int | None = _f(None, "folder datasets: resize the shorter side to N, then "
                                "centre-crop (default: the network's input size)")
    skip_bad_images: bool = _f(False, "folder datasets: leave out unreadable images (counted "
                               "in the log) instead of stopping")
    tta: bool = _f(False, "evaluate with flip test-time augmentation")
    seed: int = _f(0, "seed of the init, the data order, augmentation and dropout")
    # ---- checkpoints and logging
    max_steps: int | None = _f(None, "stop (with a checkpoint) after this many steps in all")
    eval_every: int = _f(1, "epochs between evaluations and checkpoints")
    eval_every_from: int | None = _f(None, "evaluate (and checkpoint) every epoch from this "
                                     "epoch on, as a time-to-accuracy curve needs near the end")
    ckpt_every: int | None = _f(None, "also checkpoint every N steps inside epochs")
    tensorboard: bool = _f(False, "also write TensorBoard logs to OUT/tensorboard: scalars per "
                           "epoch, the class maps at each evaluation (needs nin[tensorboard])")
    out: str = _f("runs/nin", "run folder: metrics.jsonl, checkpoints/, result.json")
    data_dir: str | None = _f(None, "dataset folder (default: $NIN_DATA_DIR, else "
                              "~/.cache/nin/data)")
    # ---- speed
    device: str = _f("auto", "auto, cpu, cuda, cuda:1 ...")
    threads: int | None = _f(None, "CPU threads of this process (default: torch's, all cores); "
                             "1 for two sweep ranks side by side on two cores")
    amp: bool | None = _f(None, "bf16 autocast; default auto: on CUDA and on CPUs with native "
                          "bf16 (avx512_bf16, amx_bf16), fp32 elsewhere; --no-amp: fp32")
    channels_last: bool = _f(True, "NHWC memory layout: faster convolutions on CPU and GPU")
    compile: bool = _f(False, "torch.compile the network (eager if compiling fails)")
    compile_mode: str = _f("default", "torch.compile mode; reduce-overhead captures CUDA graphs",
                           choices=("default", "reduce-overhead", "max-autotune"))

    def __post_init__(self):
        _check_ranges(self)
        _check_splits(self)
        side = DATASETS.get(self.dataset, {}).get("size")
        if self.image_size is not None and self.dataset != "folder":
            raise ConfigError(f"--image-size is for folder datasets; {self.dataset}'s images "
                              "are the network's size")
        if self.crop_epochs and not self.crop_size:
            raise ConfigError("--crop-epochs needs --crop-size (the side of the random crops)")
        if self.crop_size is not None and side and not 8 <= self.crop_size <= side:
            raise ConfigError(f"--crop-size {self.crop_size}: {self.dataset} images are "
                              f"{side}x{side}; use a side from 8 to {side}")
        if not 0 <= self.ema < 1:
            raise ConfigError(f"--ema {self.ema}: the decay of the average lies in [0, 1) "
                              "(0: off; 0.999 averages over about 1,000 steps)")
        if self.lookahead and self.ema:
            raise ConfigError("--lookahead and --ema both average the weights: choose one")
        if self.lookahead and self.schedule == "plateau":
            raise ConfigError("--lookahead follows the share of the run done, which the plateau "
                              "schedule does not know: use --schedule onecycle or step")
        if self.bn_momentum is not None and not 0 < self.bn_momentum <= 1:
            raise ConfigError(f"--bn-momentum {self.bn_momentum}: the weight of a batch lies in "
                              "(0, 1] (PyTorch's default 0.1)")
        if self.alternate_flips and not self.flip:
            raise ConfigError("--alternate-flips needs --flip")
        if self.dirac and self.weights:
            raise ConfigError("--dirac sets the convs of a network trained from scratch; with "
                              "--weights it would overwrite the pretrained ones: drop one")
        if self.whiten != "off" and self.weights:
            raise ConfigError("--whiten sets the first conv of a network trained from scratch; "
                              "with --weights it would overwrite the pretrained one: drop one")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# The numbers a setting may take. Outside them a run would crash deep inside (batch 0), or
# train silently on nothing (epochs 0) or on a slice counted from the end (subset -5).
_AT_LEAST_1 = (lambda v: v >= 1, "1 or more")
_AT_LEAST_0 = (lambda v: v >= 0, "0 or more")
_FROM_0_BELOW_1 = (lambda v: 0 <= v < 1, "from 0 up to (not including) 1")
_RANGES = {
    "epochs": _AT_LEAST_1, "batch_size": _AT_LEAST_1, "lr": (lambda v: v > 0, "above 0"),
    "momentum": _FROM_0_BELOW_1, "weight_decay": _AT_LEAST_0, "bias_lr_mult": _AT_LEAST_0,
    "last_lr_mult": _AT_LEAST_0, "patience": _AT_LEAST_1, "max_drops": _AT_LEAST_0,
    "warmup_epochs": _AT_LEAST_0, "drop_rate": _FROM_0_BELOW_1, "label_smoothing": _FROM_0_BELOW_1,
    "translate": (lambda v: 0 <= v <= 16, "from 0 to 16 pixels"), "crop_epochs": _AT_LEAST_0,
    "subset": _AT_LEAST_1, "eval_subset": _AT_LEAST_1, "seed": _AT_LEAST_0,
    "image_size": (lambda v: 8 <= v <= 4096, "from 8 to 4096 pixels"), "max_steps": _AT_LEAST_1,
    "eval_every": _AT_LEAST_1, "eval_every_from": _AT_LEAST_1, "ckpt_every": _AT_LEAST_1,
    "threads": _AT_LEAST_1,
}


# What each split is made of: val is the end of train (SVHN's of train and extra), so scoring it
# after training on all of train would report an error on images the network has seen.
_PARTS = {"train": {"train-val", "val"}, "val": {"val"}, "train-val": {"train-val"},
          "test": {"test"}}
_SVHN_PARTS = {"train": {"train-val", "val"}, "extra": {"extra-val", "extra-train"},
               "val": {"val", "extra-val"}, "train-val": {"train-val", "extra-train"},
               "test": {"test"}}


def _check_splits(c: TrainConfig) -> None:
    parts = {} if c.dataset == "folder" else _SVHN_PARTS if c.dataset == "svhn" else _PARTS
    seen = parts.get(c.train_split, {c.train_split}) & parts.get(c.eval_split, {c.eval_split})
    if c.train_split == c.eval_split or seen:
        raise ConfigError(f"--train-split {c.train_split} with --eval-split {c.eval_split}: the "
                          "scored images would be among the trained ones; train on train and "
                          "score test, or train on train-val and score val")


def _check_ranges(c: TrainConfig) -> None:
    for name, (ok, text) in _RANGES.items():
        v = getattr(c, name)
        if v is None or isinstance(v, bool) or not isinstance(v, (int, float)):
            continue  # None: the setting is off; a wrong type is _checked's to report
        if not ok(v):
            raise ConfigError(f"--{name.replace('_', '-')} {v:g}: must be {text}")


# Recipes: overrides of the defaults above. The paper's per-dataset settings follow.
RECIPES = {
    "paper": {},
    # Batch norm variant of the same network, He init, standardized inputs, flip + translate,
    # label smoothing, Nesterov SGD on a one-cycle schedule, no per-layer multipliers, flip TTA.
    "modern": dict(batch_size=256, lr=0.2, nesterov=True, weight_decay=5e-4, bias_lr_mult=1.0,
                   last_lr_mult=1.0, init="kaiming", drop_rate=0.3, schedule="onecycle",
                   warmup_epochs=2, label_smoothing=0.1, preprocess="standardize", translate=4,
                   flip=True, tta=True, epochs=40),
}
PAPER_DATASET = {
    "cifar10": {},
    "cifar100": dict(lr=0.02, weight_decay=5e-4, last_lr_mult=1.0),
    "mnist": dict(preprocess="scale"),
    "svhn": dict(preprocess="lcn", train_split="train-val"),  # train + extra less the val set
    "mnist-sample": dict(preprocess="scale"),
    "folder": dict(preprocess="standardize"),  # ZCA on pictures of any size: d x d floats
}
MODERN_DATASET = {  # digits are not mirror-symmetric, and are small: shifts of 2 pixels
    # MNIST: batch 64 runs 1.5x more images/s than 256 on 2 CPU cores; lr 0.05 and 12 epochs
    # were chosen on the validation split (results/cpu/mnist-bn-pilot-*: 0.36 % vs 0.37 % at 0.1).
    "mnist": dict(flip=False, tta=False, translate=2, batch_size=64, lr=0.05, epochs=12,
                  warmup_epochs=1),
    "mnist-sample": dict(flip=False, tta=False, translate=2),
}


# `nin demo`: the modern recipe on the embedded MNIST sample, a few minutes on a CPU. Small
# batches suit a CPU and a 10,000-image sample: more steps for the same time.
DEMO = dict(recipe="modern", dataset="mnist-sample", epochs=3, batch_size=64, lr=0.1,
            warmup_epochs=0.25, out="runs/demo")


def _recipe_config(recipe: str = "paper", dataset: str = "cifar10", **overrides) -> TrainConfig:
    """Defaults <- recipe <- its per-dataset settings <- explicit overrides (None: not given).
    resolve's step; resolve is the public door."""
    if recipe not in RECIPES:
        raise ConfigError(f"unknown recipe {recipe!r}; use one of {', '.join(RECIPES)}")
    if dataset not in DATASETS:
        raise ConfigError(f"unknown dataset {dataset!r}; use one of {', '.join(DATASETS)}")
    base = {"folder": "cifar10"}.get(dataset, dataset.replace("-sample", ""))  # RGB, 32 px
    kw = dict(dataset=dataset, recipe=recipe,
              model=f"nin_{base}" + ("_bn" if recipe == "modern" else ""))
    kw.update(RECIPES[recipe])
    kw.update((PAPER_DATASET if recipe == "paper" else MODERN_DATASET).get(dataset, {}))
    kw.update({k: v for k, v in overrides.items() if v is not None})
    if isinstance(kw.get("milestones"), list):
        kw["milestones"] = tuple(kw["milestones"])
    return TrainConfig(**kw)


def config_from_dict(d: dict) -> TrainConfig:
    """A TrainConfig from a saved one (a result.json, a sidecar's config); fields this version
    does not know are ignored, fields it added take their defaults."""
    d = d.get("config", d)
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    return TrainConfig(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items()
                          if k in names})


def resolve(settings: dict) -> TrainConfig:
    """The one resolver of a run's settings, used by train, sweep, demo, --help and
    --print-config: defaults <- the recipe <- its dataset settings <- `settings` (a config
    file's, then the flags; None means not given). A model without a dataset trains on its
    own; milestones imply the step schedule; an unset `out` is runs/MODEL-RECIPE."""
    over = {k: v for k, v in settings.items() if v is not None}
    if "milestones" in over:
        over.setdefault("schedule", "step")
    recipe, dataset = over.pop("recipe", "paper"), over.pop("dataset", None)
    if dataset is None and over.get("model"):
        from .models import model_info  # imports torch: only when a model names the dataset
        dataset = model_info(over["model"])["dataset"]
    cfg = _recipe_config(recipe, dataset or "cifar10", **over)
    if "out" not in over:
        cfg.out = f"runs/{cfg.model}-{cfg.recipe}"
    return cfg


def read_config_file(path) -> dict:
    """The settings of a config file given to `nin train --config`: TrainConfig fields (or a
    result.json / checkpoint sidecar, whose "config" they are), checked as flags are. An unknown
    key or a wrong type is refused in one line naming the key and the file; "_"-keys are notes."""
    try:
        d = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise ConfigError(f"{path}: not a readable JSON config ({e})") from None
    if not isinstance(d, dict):
        raise ConfigError(f"{path}: a config file is a JSON object of TrainConfig fields")
    if "base" in d and "grid" in d:
        raise ConfigError(f"{path} is a sweep file (base + grid); run it with `nin sweep {path}`")
    return check_settings(d["config"] if isinstance(d.get("config"), dict) else d, path)


def check_settings(d: dict, where) -> dict:
    """d's TrainConfig fields, each checked against its annotation; "_"-keys (notes) dropped.
    `where` (a file, a sweep point) names the source in the one-line error."""
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    out = {}
    for key, value in d.items():
        if key.startswith("_"):
            continue
        if key not in names:
            raise ConfigError(f"{where}: unknown setting {key!r} (`nin train --help` lists them)")
        out[key] = _checked(value, key, where)
    return out


def field_type(name: str) -> tuple[type, bool]:
    """(the base type, whether None is allowed) of a TrainConfig field, from its annotation."""
    t = typing.get_type_hints(TrainConfig)[name]
    args = [a for a in typing.get_args(t) if a is not type(None)]
    return (args[0] if args else t), type(None) in typing.get_args(t)


def _checked(value, key, path):
    """value as TrainConfig field `key` (typed by its annotation), or a ConfigError."""
    base, optional = field_type(key)
    if value is None and optional:
        return None
    if base is tuple and isinstance(value, list) and all(isinstance(v, int) for v in value):
        return tuple(value)
    ok = (isinstance(value, bool) if base is bool else
          isinstance(value, (int, float)) and not isinstance(value, bool) if base is float else
          isinstance(value, int) and not isinstance(value, bool) if base is int else
          isinstance(value, base))
    if not ok:
        what = {float: "a number", int: "a whole number", bool: "true or false", str: "a string",
                tuple: "a list of whole numbers"}.get(base, base.__name__)
        raise ConfigError(f"{path}: {key} must be {what}" + (" or null" if optional else "")
                          + f", not {json.dumps(value)}")
    return float(value) if base is float else value


# ---------------------------------------------------------------- resuming
# Settings a resumed run may change: where and how fast it runs, and when it stops, saves or
# evaluates (a long run evaluates rarely early on, every epoch near the end).
# `epochs` too, except on a one-cycle schedule, whose whole curve depends on it.
# `amp` too: a resumed run keeps the precision its checkpoint ran in (training.restore).
FREE_ON_RESUME = ("max_steps", "out", "device", "compile", "compile_mode", "data_dir",
                  "ckpt_every", "eval_every", "eval_every_from", "epochs", "amp",
                  "tensorboard", "threads")


def check_resumable(saved: dict, cfg: TrainConfig, where) -> None:
    """Refuse to resume a checkpoint whose config differs from cfg in a way that would silently
    change the run. `saved` is the checkpoint's config (older versions: missing fields take
    their defaults)."""
    old = config_from_dict(saved).to_dict()
    new = cfg.to_dict()
    free = set(FREE_ON_RESUME)
    if cfg.schedule == "onecycle":
        free.discard("epochs")
    diff = {k: (old[k], new[k]) for k in new if k not in free and old[k] != new[k]}
    if diff:
        why = ("; --epochs sets the length of the one-cycle schedule, so changing it would "
               "change every learning rate from here on" if "epochs" in diff else "")
        raise ConfigError(f"{where}: the checkpoint's config differs from this run's: {diff}{why}."
                          f" Resume with the same settings (only {', '.join(sorted(free))} may "
                          "change) or use another --out.")
