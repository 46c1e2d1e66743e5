"""The training engine: the paper's recipe, a modern one, logs, checkpoints and resume.

A run is a TrainConfig (a plain dataclass, recorded in every log line's run and in the result) and
an output folder holding metrics.jsonl, checkpoints/ and result.json. Everything random comes from
generators seeded by the config and saved in each checkpoint, so a killed run resumed with
--resume ends with the same weights as an uninterrupted one (on the CPU).
"""
from __future__ import annotations

import dataclasses
import json
import math
import platform
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel

from . import checkpoint as ckpt
from . import distributed as dist
from .data import load_dataset, num_classes
from .evaluation import evaluate
from .models import ARCHS, count_params, create_model, model_info
from .preprocessing import Preprocess, augment


@dataclass
class TrainConfig:
    model: str = "nin_cifar10"
    dataset: str = "cifar10"
    recipe: str = "paper"
    train_split: str = "train"
    eval_split: str = "test"
    epochs: int = 260
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 1e-4
    bias_lr_mult: float = 2.0     # the authors' files: biases at twice the rate
    last_lr_mult: float = 0.1     # ... and the last 1x1 layer at a tenth
    init: str = "paper"           # paper: Gaussian std 0.05; kaiming: robust to dead starts
    drop_rate: float = 0.5
    schedule: str = "plateau"     # plateau (the paper), step (milestones), onecycle (modern)
    milestones: tuple = ()        # epochs where lr /= 10, for schedule=step
    patience: int = 10            # plateau: epochs without a better training accuracy
    max_drops: int = 2            # plateau: lr /= 10 twice, then stop at the next plateau
    warmup_epochs: float = 0.0    # onecycle: linear warm-up, then linear decay to zero
    label_smoothing: float = 0.0
    preprocess: str = "gcn_zca"
    translate: int = 0            # augmentation: random shifts of up to this many pixels
    flip: bool = False            # augmentation: random horizontal flips
    tta: bool = False             # evaluate with flip test-time augmentation
    seed: int = 0
    subset: int | None = None     # train on the first N training images
    eval_subset: int | None = None
    max_steps: int | None = None  # stop (with a checkpoint) after this many steps in all
    eval_every: int = 1           # epochs between test evaluations (and checkpoints)
    ckpt_every: int | None = None  # also checkpoint every N steps inside epochs (long epochs)
    device: str = "auto"
    amp: bool = True              # bf16 autocast on CUDA
    compile: bool = False         # torch.compile the network (eager if compiling fails)
    compile_mode: str = "default"  # or "reduce-overhead" (CUDA graphs), "max-autotune"
    channels_last: bool = True    # NHWC: faster convolutions on CUDA and on the CPU (oneDNN)
    data_dir: str | None = None
    out: str = "runs/nin"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# Recipes: overrides of the defaults above. Dataset-specific settings of the paper follow.
RECIPES = {
    "paper": {},
    # The modern recipe: batch norm variant of the same network, He init, standardized inputs,
    # flip + translate, label smoothing, nesterov SGD with a one-cycle (warm-up, linear decay)
    # schedule, no per-layer multipliers, flip TTA. Trades the paper's ~260 epochs for 40.
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
}


def make_config(recipe: str = "paper", dataset: str = "cifar10", **overrides) -> TrainConfig:
    """Defaults <- recipe <- the paper's per-dataset settings <- explicit overrides."""
    if recipe not in RECIPES:
        raise ValueError(f"unknown recipe {recipe!r}; use one of {', '.join(RECIPES)}")
    base = dataset.replace("-sample", "")
    kw = dict(dataset=dataset, recipe=recipe, model=f"nin_{base}" + ("_bn" if recipe == "modern"
                                                                     else ""))
    kw.update(RECIPES[recipe])
    if recipe == "paper":
        kw.update(PAPER_DATASET.get(dataset, {}))
    elif base == "mnist":
        kw.update(flip=False, tta=False, translate=2)  # digits are not mirror-symmetric
    kw.update({k: v for k, v in overrides.items() if v is not None})
    return TrainConfig(**kw)


DEAD_STEPS = 100  # steps in a row with a dead class map before a run is called dead


class DeadStartError(RuntimeError):
    """A class map of the last layer died (zero for every image, so it gets no gradient); with
    all of them dead the loss sits at ln(classes)."""


class NonFiniteLoss(RuntimeError):
    """The training loss became NaN or infinite; the last good checkpoint is kept."""


# ---------------------------------------------------------------- optimizer and schedule
def param_groups(model, cfg: TrainConfig) -> list[dict]:
    """The paper's per-layer rates: biases x bias_lr_mult without weight decay, the last layer
    x last_lr_mult; batch-norm parameters without weight decay."""
    last = {id(p) for p in model.last_layer().parameters()}
    groups = {}
    for mod in model.modules():
        for pname, p in mod.named_parameters(recurse=False):
            is_bias = pname == "bias" or isinstance(mod, nn.modules.batchnorm._BatchNorm)
            mult = (cfg.bias_lr_mult if pname == "bias" else 1.0) * \
                (cfg.last_lr_mult if id(p) in last else 1.0)
            key = (mult, 0.0 if is_bias else cfg.weight_decay)
            groups.setdefault(key, []).append(p)
    return [dict(params=ps, lr_mult=m, weight_decay=wd) for (m, wd), ps in groups.items()]


class Schedule:
    """Learning-rate factor by step and epoch; state is plain numbers, saved in checkpoints."""

    def __init__(self, cfg: TrainConfig, steps_per_epoch: int):
        self.cfg, self.spe = cfg, steps_per_epoch
        self.scale, self.best, self.since_best, self.drops, self.stop = 1.0, -1.0, 0, 0, False

    def factor(self, step: int) -> float:
        c = self.cfg
        if c.schedule == "onecycle":
            total, warm = c.epochs * self.spe, max(1, round(c.warmup_epochs * self.spe))
            if step < warm:
                return (step + 1) / warm
            return max(0.0, (total - step) / max(1, total - warm))
        if c.schedule == "step":
            return 0.1 ** sum(step >= m * self.spe for m in c.milestones)
        return self.scale

    def end_epoch(self, train_acc: float) -> str | None:
        """The paper's rule: when training accuracy stops improving, lr /= 10; twice; then stop."""
        if self.cfg.schedule != "plateau":
            return None
        if train_acc > self.best + 1e-4:
            self.best, self.since_best = train_acc, 0
            return None
        self.since_best += 1
        if self.since_best < self.cfg.patience:
            return None
        self.since_best = 0
        if self.drops < self.cfg.max_drops:
            self.drops += 1
            self.scale /= 10
            return f"training accuracy stopped improving: lr /= 10 (drop {self.drops})"
        self.stop = True
        return "training accuracy stopped improving after the last drop: stopping"

    def state(self) -> dict:
        return dict(scale=self.scale, best=self.best, since_best=self.since_best,
                    drops=self.drops, stop=self.stop)

    def load(self, s: dict):
        self.scale, self.best, self.since_best = s["scale"], s["best"], s["since_best"]
        self.drops, self.stop = s["drops"], s["stop"]


# ---------------------------------------------------------------- helpers
def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                             cwd=Path(__file__).parent, timeout=5)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def environment(device: torch.device) -> dict:
    return dict(torch=torch.__version__, python=platform.python_version(),
                device=str(device), threads=torch.get_num_threads(),
                gpu=torch.cuda.get_device_name(device) if device.type == "cuda" else None,
                cpu=platform.processor() or platform.machine(), git_commit=git_commit(),
                command=" ".join(sys.argv))


def _epoch_perm(n: int, seed: int, epoch: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=g)


def check_writable(out: Path, need_bytes: int = 0):
    """Fail before training, not an hour in, when the output folder cannot be written or has
    too little room for the checkpoints the run will keep."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_bytes(b"0" * 4096)
        probe.unlink()
    except OSError as e:
        raise OSError(f"{out}: cannot write the run's output there ({e.strerror}); choose another "
                      "folder with --out") from None
    free = shutil.disk_usage(out).free
    if free < need_bytes:
        raise OSError(f"{out}: {free / 2**20:,.0f} MiB free, but the run's checkpoints need about "
                      f"{need_bytes / 2**20:,.0f} MiB; free some space or choose another --out")


def _checkpoint_bytes(cfg: TrainConfig) -> int:
    """Room for the checkpoints kept at once, plus one being written: weights, momentum and the
    preprocessing (a ZCA matrix is d x d floats)."""
    arch = ARCHS[model_info(cfg.model)["dataset"]]
    params = count_params(create_model(cfg.model, num_classes=num_classes(cfg.dataset)))
    d = arch["in_chans"] * arch["input_size"] ** 2
    pre = 4 * (d * d + d) if cfg.preprocess == "gcn_zca" else 4096
    return (ckpt.KEEP + 1) * (8 * params + pre + 65536)


def _truncate_log(path: Path, step: int):
    """On resume, drop log lines written after the checkpoint we resume from."""
    if not path.exists():
        return
    keep = [ln for ln in path.read_text().splitlines() if ln.strip() and
            json.loads(ln).get("step", 0) <= step]
    ckpt.atomic_write(path, ("\n".join(keep) + "\n").encode() if keep else b"")


def _append_log(path: Path, record: dict):
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")


# ---------------------------------------------------------------- the loop
def compile_or_eager(net, log, mode: str = "default"):
    """torch.compile the network; if compiling fails (no compiler, unsupported backend), the
    first call falls back to eager mode with a message instead of failing the run."""
    try:
        compiled = torch.compile(net) if mode == "default" else torch.compile(net, mode=mode)
    except Exception as e:  # noqa: BLE001 - any failure means: run eager
        log(f"torch.compile unavailable ({type(e).__name__}: {e}); running eager")
        return net
    state = {"fn": compiled, "tried": False}

    def call(x):
        if state["tried"]:
            return state["fn"](x)
        state["tried"] = True
        try:
            return state["fn"](x)
        except Exception as e:  # noqa: BLE001
            log(f"torch.compile failed ({type(e).__name__}: {str(e)[:200]}); running eager")
            state["fn"] = net
            return net(x)
    return call


def _check_resumable(last: Path, meta: dict, cfg: TrainConfig):
    free = ("epochs", "max_steps", "out", "device", "compile", "compile_mode", "data_dir",
            "ckpt_every")
    old = {k: v for k, v in meta["config"].items() if k not in free}
    new = {k: v for k, v in cfg.to_dict().items() if k not in free}
    diff = {k: (old.get(k), v) for k, v in new.items()
            if old.get(k) != v and not (isinstance(v, tuple) and list(v) == old.get(k))}
    if diff:
        raise ValueError(f"{last}: the checkpoint's config differs from this run's: {diff}. "
                         "Resume with the same settings (only --epochs, --max-steps, --device "
                         "may change) or use another --out.")


def _load_optimizer(opt, state: dict, device):
    sd = opt.state_dict()
    for i, g in enumerate(sd["param_groups"]):
        for j, pid in enumerate(g["params"]):
            key = f"opt.{i}.{j}.momentum_buffer"
            if key in state:
                sd["state"][pid] = {"momentum_buffer": state[key].to(device)}
    opt.load_state_dict(sd)


def _optimizer_tensors(opt) -> dict:
    sd, out = opt.state_dict(), {}
    for i, g in enumerate(sd["param_groups"]):
        for j, pid in enumerate(g["params"]):
            buf = sd["state"].get(pid, {}).get("momentum_buffer")
            if buf is not None:
                out[f"opt.{i}.{j}.momentum_buffer"] = buf
    return out


def make_optimizer(model, cfg: TrainConfig, cuda: bool) -> torch.optim.SGD:
    # fused: one kernel for the whole update on CUDA; the CPU path is the reference one.
    return torch.optim.SGD(param_groups(model, cfg), lr=cfg.lr, momentum=cfg.momentum,
                           nesterov=cfg.nesterov, **({"fused": True} if cuda else {}))


def train_step(net, opt, x, y, amp, label_smoothing: float = 0.0):
    """One SGD step; returns the (detached) loss and logits, left on the device."""
    with amp:
        logits = net(x)
        loss = F.cross_entropy(logits.float(), y, label_smoothing=label_smoothing)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss.detach(), logits.detach()


def autocast(device: torch.device, enabled: bool = True):
    """bf16 autocast on CUDA; fp32 elsewhere."""
    if device.type == "cuda" and enabled:
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return torch.autocast("cpu", enabled=False)


def train(cfg: TrainConfig, resume: bool = False, progress: bool | None = None,
          log=print, ddp: bool = True) -> dict:
    """Train, evaluating and checkpointing every eval_every epochs; returns the result dict
    (also written to OUT/result.json when the run reaches its end). Under torchrun (and ddp),
    trains with DistributedDataParallel; rank 0 alone logs and writes."""
    rank, world, ddp_device = dist.init(cfg.device) if ddp else (0, 1, None)
    main = rank == 0
    if not main:
        log = lambda *a, **k: None  # noqa: E731
    out = Path(cfg.out)
    if main:
        check_writable(out, need_bytes=_checkpoint_bytes(cfg))
    device = ddp_device or pick_device(cfg.device)
    cuda = device.type == "cuda"
    if cuda:
        torch.backends.cudnn.benchmark = True
    if cfg.batch_size % world:
        raise ValueError(f"batch size {cfg.batch_size} does not split over {world} ranks")
    torch.manual_seed(cfg.seed + rank)  # dropout differs per rank, as it would per image

    arch = ARCHS[model_info(cfg.model)["dataset"]]
    train_ds = load_dataset(cfg.dataset, cfg.train_split, cfg.data_dir)
    test_ds = load_dataset(cfg.dataset, cfg.eval_split, cfg.data_dir)
    if cfg.subset:
        train_ds = train_ds.take(slice(0, cfg.subset))
    if cfg.eval_subset:
        test_ds = test_ds.take(slice(0, cfg.eval_subset))
    shape = (arch["in_chans"], arch["input_size"], arch["input_size"])
    if tuple(train_ds.images.shape[1:]) != shape:
        raise ValueError(f"{cfg.model} takes {shape} images; {cfg.dataset} has "
                         f"{tuple(train_ds.images.shape[1:])}")
    # The whole dataset stays resident on the device as uint8; batches are cut from it there.
    train_ds, test_ds = train_ds.to(device), test_ds.to(device)
    n_cls, n = num_classes(cfg.dataset), len(train_ds)

    model_kwargs = dict(drop_rate=cfg.drop_rate, init=cfg.init)
    model = create_model(cfg.model, num_classes=n_cls, **model_kwargs).to(device)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    pre = Preprocess(cfg.preprocess, *shape[:2]).to(device)
    opt = make_optimizer(model, cfg, cuda)
    spe = n // cfg.batch_size  # drop the last partial batch, as cuda-convnet's fixed batches
    if spe == 0:
        raise ValueError(f"batch size {cfg.batch_size} is larger than the {n} training images")
    sched = Schedule(cfg, spe)
    data_gen = torch.Generator(device=device).manual_seed(cfg.seed + 1)

    metrics_path = out / "metrics.jsonl"
    history, step, epoch, step_in_epoch, wall = [], 0, 0, 0, 0.0
    running = None  # (loss sum, correct, seen) of an epoch cut short by a checkpoint
    last, meta = ckpt.latest_valid(out, log=log) if resume else (None, None)
    if resume and last is None:
        log(f"--resume: no checkpoint in {out}; starting from scratch")
    if last is not None:
        _check_resumable(last, meta, cfg)
        _, saved_pre = ckpt.load_weights(last, meta, model=model, map_location=device)
        pre.load_state_dict(saved_pre.state_dict())
        state = ckpt.load_state(last, meta)
        _load_optimizer(opt, state, device)
        torch.set_rng_state(state.get(f"rng.cpu.{rank}", state["rng.cpu.0"]))
        if cuda and f"rng.cuda.{rank}" in state:
            torch.cuda.set_rng_state(state[f"rng.cuda.{rank}"])
        data_gen.set_state(state["rng.data"].to(data_gen.get_state().device))
        sched.load(meta["schedule"])
        step, epoch, step_in_epoch = meta["step"], meta["epoch"], meta["step_in_epoch"]
        history, wall = meta["history"], meta["wall_s"]
        if step_in_epoch:
            running = (state[f"run.loss_sum.{rank}"].to(device),
                       state[f"run.correct.{rank}"].to(device), meta["seen_in_epoch"][rank])
        if main:
            _truncate_log(metrics_path, step)
        log(f"resumed from {last} (epoch {epoch}, step {step})")
    else:
        if main and metrics_path.exists():
            metrics_path.unlink()
        pre.fit(train_ds.images)
    net = model
    if world > 1:
        net = DistributedDataParallel(model, device_ids=[device.index] if cuda else None)
    if cfg.compile:
        net = compile_or_eager(net, log, cfg.compile_mode)
    env = dict(environment(device), world_size=world)
    log(f"{cfg.model} ({count_params(model):,} params) on {cfg.dataset}/{cfg.train_split} "
        f"({n:,} images), recipe {cfg.recipe}, {device}" + (f" x {world} ranks" if world > 1
                                                            else ""))

    def save(reason: str, loss_sum=None, correct=None, seen=0):
        # Every rank takes part (its RNG and running sums are gathered); rank 0 writes.
        mine = {"rng.cpu": torch.get_rng_state()}
        if cuda:
            mine["rng.cuda"] = torch.cuda.get_rng_state(device)
        if step_in_epoch:
            mine.update({"run.loss_sum": loss_sum.cpu(), "run.correct": correct.cpu(),
                         "seen": seen})
        ranks = dist.gather_objects(mine)
        if main:
            state = {"rng.data": data_gen.get_state().cpu(), **_optimizer_tensors(opt)}
            for r, d in enumerate(ranks):
                state.update({f"{k}.{r}": v for k, v in d.items() if k != "seen"})
            meta = dict(config=cfg.to_dict(), model_kwargs=model_kwargs, epoch=epoch,
                        step_in_epoch=step_in_epoch, schedule=sched.state(), history=history,
                        wall_s=wall, classes=train_ds.classes, reason=reason, env=env,
                        seen_in_epoch=[d.get("seen", 0) for d in ranks])
            ckpt.save_checkpoint(out / "checkpoints", step, model, pre, meta, state)
        dist.barrier()

    amp = autocast(device, cfg.amp)
    use_bar = main and (progress if progress is not None else sys.stderr.isatty())
    local = dist.shard(cfg.batch_size)  # this rank's rows of each global batch
    gap = model.head_type == "gap"
    dead_streak = torch.zeros((), device=device, dtype=torch.long)  # counts across epochs
    stopped_early, ev = None, None  # ev: the last evaluation, reused for the result
    while epoch < cfg.epochs and not sched.stop:
        model.train()
        perm = _epoch_perm(n, cfg.seed, epoch).to(device)
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), device=device, dtype=torch.long)
        seen, t0, seen0 = 0, time.time(), 0
        if running is not None:  # resuming inside an epoch: its training accuracy counts all
            loss_sum, correct, seen = running
            seen0, running = seen, None
        bar = None
        if use_bar:
            from tqdm import tqdm
            bar = tqdm(total=spe, initial=step_in_epoch, desc=f"epoch {epoch + 1}/{cfg.epochs}",
                       leave=False, dynamic_ncols=True)
        while step_in_epoch < spe:
            if cfg.max_steps is not None and step >= cfg.max_steps:
                break
            idx = perm[step_in_epoch * cfg.batch_size:(step_in_epoch + 1) * cfg.batch_size]
            idx = idx[local]
            x = augment(pre(train_ds.images[idx]), cfg.translate, cfg.flip, data_gen,
                        part=local, total=cfg.batch_size)
            y = train_ds.labels[idx]
            if cfg.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            f = sched.factor(step)
            for g in opt.param_groups:
                g["lr"] = cfg.lr * f * g["lr_mult"]
            loss, logits = train_step(net, opt, x, y, amp, cfg.label_smoothing)
            with torch.no_grad():  # running sums stay on the device: no sync per step
                loss_sum += loss * len(y)
                correct += (logits.argmax(1) == y).sum()
                if gap:  # a class whose map is zero for every image: the ReLU before GAP died
                    dead = (logits.float().amax(0) <= 0).any().long()
                    dead_streak = (dead_streak + 1) * dead
            seen += len(y)
            step += 1
            step_in_epoch += 1
            if bar is not None and (step_in_epoch % 10 == 0 or step_in_epoch == spe):
                bar.update(step_in_epoch - bar.n)
                bar.set_postfix(loss=f"{loss_sum.item() / seen:.4f}",
                                acc=f"{correct.item() / seen:.4f}",
                                img_s=f"{world * (seen - seen0) / (time.time() - t0):.0f}")
            if cfg.ckpt_every and step % cfg.ckpt_every == 0 and step_in_epoch < spe:
                save(f"every {cfg.ckpt_every} steps", loss_sum, correct, seen)
            if step_in_epoch % 50 == 0 or step_in_epoch == spe:
                if dist.any_flag(not math.isfinite(loss_sum.item()), device):
                    raise NonFiniteLoss(f"the loss became non-finite by step {step}; the last "
                                        f"good checkpoint is kept in {out / 'checkpoints'}. Lower "
                                        "--lr or use --recipe modern.")
                if dist.any_flag(dead_streak.item() >= DEAD_STEPS, device):
                    dead_classes = (logits.float().amax(0) <= 0).nonzero().flatten().tolist()
                    raise DeadStartError(
                        f"dead start: for {dead_streak.item()} steps up to step {step} the "
                        f"class map(s) {dead_classes} have been zero for every image: the ReLU "
                        "before global average pooling died there and gets no gradient, so "
                        "those classes can never be predicted (with all maps dead the loss sits "
                        f"at ln {n_cls} = {math.log(n_cls):.4f}). Restart with another --seed, "
                        "or with --init kaiming (or --recipe modern).")
        if bar is not None:
            bar.close()
        dt = time.time() - t0
        wall += dt
        if seen == seen0 or step_in_epoch < spe:  # max_steps reached (inside or at an epoch)
            stopped_early = f"max_steps {cfg.max_steps} reached"
            save(stopped_early, loss_sum, correct, seen)
            g_loss, g_correct, g_seen = dist.all_sum(loss_sum.clone(), correct.clone(),
                                                     torch.tensor(seen, device=device))
            if main and seen > seen0:
                n_seen = g_seen.item()
                _append_log(metrics_path, dict(epoch=epoch + step_in_epoch / spe, step=step,
                                               partial=True, train_loss=g_loss.item() / n_seen,
                                               train_acc=g_correct.item() / n_seen))
            log(f"stopped at step {step}: {stopped_early}; continue with --resume")
            break
        g_loss, g_correct, g_seen = dist.all_sum(loss_sum, correct,
                                                 torch.tensor(seen, device=device))
        train_loss, train_acc = g_loss.item() / g_seen.item(), g_correct.item() / g_seen.item()
        epoch += 1
        step_in_epoch = 0
        record = dict(epoch=epoch, step=step, lr=cfg.lr * sched.factor(step - 1),
                      train_loss=train_loss, train_acc=train_acc, time_s=dt,
                      images_per_s=world * (seen - seen0) / dt)
        msg = sched.end_epoch(train_acc)
        if epoch % cfg.eval_every == 0 or epoch == cfg.epochs or sched.stop:
            ev = evaluate(model, pre, test_ds, batch_size=512, tta=cfg.tta, amp=cfg.amp)
            record.update(test_loss=ev["loss"], test_error=ev["error"])
        history.append(record)
        if main:
            _append_log(metrics_path, record)
        log(f"epoch {epoch:3d}  loss {train_loss:.4f}  train acc {train_acc:.4f}  "
            + (f"test error {record['test_error']:.2f}%  " if "test_error" in record else "")
            + f"{record['images_per_s']:.0f} img/s" + (f"  [{msg}]" if msg else ""))
        if "test_error" in record or sched.stop or epoch == cfg.epochs:
            save("epoch end")

    if stopped_early:
        return dict(config=cfg.to_dict(), finished=False, step=step, history=history)
    if ev is None:  # the last epoch always evaluates; only a run resumed at its end has none
        ev = evaluate(model, pre, test_ds, batch_size=512, tta=cfg.tta, amp=cfg.amp)
    result = dict(config=cfg.to_dict(), model_kwargs=model_kwargs, finished=True,
                  params=count_params(model), epochs_run=epoch, steps=step, wall_s=wall,
                  final=dict(split=cfg.eval_split, n=ev["n"], error=ev["error"],
                             loss=ev["loss"], per_class_accuracy=ev["per_class_accuracy"]),
                  history=history, env=env, checkpoint=str(ckpt.latest_checkpoint(out)))
    if main:
        ckpt.atomic_write(out / "result.json", json.dumps(result, indent=1).encode())
    log(f"test error {ev['error']:.2f}% on {cfg.dataset}/{cfg.eval_split} ({ev['n']:,} images); "
        f"result in {out / 'result.json'}")
    return result


def config_from_json(path) -> TrainConfig:
    d = json.loads(Path(path).read_text())
    d = d.get("config", d)
    return TrainConfig(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items()
                          if k in {f.name for f in dataclasses.fields(TrainConfig)}})

