"""The training loop, top to bottom: build a run, restore it, train epoch by epoch, finish.

    train(cfg)  =  build_run -> restore (or fit the preprocessing) -> [train_epoch -> end_epoch]*
                   -> finish

A run is its settings (config.TrainConfig), what was built from them (Run: data, network,
optimizer, schedule) and what changes as it trains (RunState: counters, history, this epoch's
running sums). run_state_dict / load_run_state save and restore all of it with the optimizer,
schedule and RNG states; a killed run resumed with --resume ends with the same weights as an
uninterrupted one (on the CPU). SIGTERM writes a checkpoint and stops with exit code 75
("resume me"); a second `nin train` into a folder where a run is alive is refused.
"""
from __future__ import annotations

import contextlib
import copy
import functools
import json
import math
import shutil
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel

from . import checkpoint as ckpt
from . import distributed as dist
from .config import TrainConfig, check_resumable
from .data import load_dataset
from .device import (autocast, dropout_masks, environment, eval_precision, pick_device,
                     resolve_precision)
from .errors import ConfigError, DeadStartError, Interrupted, NonFiniteLoss, Preempted
from .evaluation import evaluate
from .files import read_jsonl
from .models import (ARCHS, build_model, count_params, dirac_init, first_conv, freeze_rows,
                     model_info, set_dropout_bits, whiten_first_conv, whiten_rows)
from .paper import num_classes
from .preprocessing import Preprocess, augment
from .results import RunResult

DEAD_STEPS = 100  # steps in a row with a dead class map before a run is called dead
WHITEN_IMAGES = 5000  # training images whose patches set the whitening filters (airbench: 5000)
SYNC_EVERY = 50   # steps between host syncs (loss check, dead maps, progress)
LOOKAHEAD_EVERY = 5  # steps between lookahead pulls, and their largest decay (airbench)
LOOKAHEAD_DECAY = 0.95 ** LOOKAHEAD_EVERY


# ---------------------------------------------------------------- optimizer and schedule
def param_groups(model, cfg: TrainConfig) -> list[dict]:
    """The paper's per-layer rates: biases x bias_lr_mult without weight decay, the last layer
    x last_lr_mult; batch-norm parameters without weight decay."""
    last = {id(p) for p in model.last_layer().parameters()}
    frozen = {id(first_conv(model).weight)} if cfg.whiten == "frozen" else set()
    groups = {}
    for mod in model.modules():
        for pname, p in mod.named_parameters(recurse=False):
            is_bias = pname == "bias" or isinstance(mod, nn.modules.batchnorm._BatchNorm)
            mult = (cfg.bias_lr_mult if pname == "bias" else 1.0) * \
                (cfg.last_lr_mult if id(p) in last else 1.0)
            key = (mult, 0.0 if is_bias or id(p) in frozen else cfg.weight_decay)
            groups.setdefault(key, []).append(p)
    return [dict(params=ps, lr_mult=m, weight_decay=wd) for (m, wd), ps in groups.items()]


def make_optimizer(model, cfg: TrainConfig, cuda: bool) -> torch.optim.SGD:
    # fused: one kernel for the whole update on CUDA; the CPU path is the reference one.
    return torch.optim.SGD(param_groups(model, cfg), lr=cfg.lr, momentum=cfg.momentum,
                           nesterov=cfg.nesterov, **({"fused": True} if cuda else {}))


class Schedule:
    """Learning-rate factor by step and epoch; state is plain numbers, saved in checkpoints."""

    def __init__(self, cfg: TrainConfig, steps_per_epoch: int):
        self.cfg, self.steps_per_epoch = cfg, steps_per_epoch
        self.scale, self.best, self.since_best, self.drops, self.stop = 1.0, -1.0, 0, 0, False

    def factor(self, step: int) -> float:
        c = self.cfg
        if c.schedule == "onecycle":
            n = self.steps_per_epoch
            total, warm = c.epochs * n, max(1, round(c.warmup_epochs * n))
            if step < warm:
                return (step + 1) / warm
            return max(0.0, (total - step) / max(1, total - warm))
        if c.schedule == "step":
            return 0.1 ** sum(step >= m * self.steps_per_epoch for m in c.milestones)
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


# ---------------------------------------------------------------- one step
def train_step(net, opt, x, y, amp, label_smoothing: float = 0.0):
    """One SGD step; returns the (detached) loss and logits, left on the device."""
    with amp:  # the network's forward in bf16 or fp32; the loss in fp32 either way
        logits = net(x)
    loss = F.cross_entropy(logits.float(), y, label_smoothing=label_smoothing)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss.detach(), logits.detach()


@torch.no_grad()
def update_ema(ema: nn.Module, model: nn.Module, decay: float, step: int):
    """ema <- d * ema + (1 - d) * model, batch-norm statistics too; d ramps up to decay as
    (1 + step) / (10 + step), so that a short run does not average in its first weights."""
    d = min(decay, (1 + step) / (10 + step))
    for e, m in zip(ema.state_dict().values(), model.state_dict().values()):
        if e.is_floating_point():
            e.lerp_(m, 1 - d)
        else:
            e.copy_(m)


@torch.no_grad()
def lookahead(slow: dict, model: nn.Module, decay: float):
    """slow <- d * slow + (1 - d) * model, then model <- slow, batch-norm statistics too
    (airbench's lookahead: the weights take a few fast steps, then fall back towards where they
    were; d = 1 throws the fast steps away)."""
    for s, m in zip(slow.values(), model.state_dict().values()):
        if m.is_floating_point():
            s.lerp_(m, 1 - decay)
            m.copy_(s)


def lookahead_decay(step: int, total: int) -> float:
    """airbench's schedule: no averaging at the start, 0.95^5 at the end."""
    return LOOKAHEAD_DECAY * min(1.0, step / total) ** 3


def set_bn_momentum(model: nn.Module, momentum: float, name: str):
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns:
        raise ConfigError(f"--bn-momentum: {name} has no batch norm (the _bn networks have)")
    for m in bns:
        m.momentum = momentum


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


# ---------------------------------------------------------------- the run and its state
@dataclass
class RunState:
    """What changes as a run trains: counters, history, this epoch's running sums. A checkpoint
    saves it with the optimizer, schedule and RNG states: run_state_dict / load_run_state."""
    step: int = 0                 # optimizer steps so far
    epoch: int = 0                # completed epochs
    step_in_epoch: int = 0        # steps into the current epoch
    wall_s: float = 0.0           # training seconds so far (evaluation excluded)
    history: list = field(default_factory=list)  # one record per completed epoch
    loss_sum: torch.Tensor | None = None  # this epoch's running sums, left on the device
    correct: torch.Tensor | None = None
    seen: int = 0                 # images this rank trained on this epoch
    dead_streak: torch.Tensor | None = None  # steps in a row with a dead class map

    def new_epoch(self, device):
        self.loss_sum = torch.zeros((), device=device)
        self.correct = torch.zeros((), device=device, dtype=torch.long)
        self.seen = 0



@dataclass
class Run:
    """What a config builds: everything train_epoch needs, and the state it advances."""
    cfg: TrainConfig
    rank: int
    world: int
    device: torch.device
    model: nn.Module              # the network the optimizer trains
    net: object                   # what steps call: model, DDP-wrapped and/or compiled
    pre: Preprocess
    opt: torch.optim.Optimizer
    sched: Schedule
    train_ds: object
    test_ds: object
    data_gen: torch.Generator     # augmentation draws (the same on every rank)
    model_kwargs: dict
    log: object
    state: RunState = field(default_factory=RunState)
    env: dict = field(default_factory=dict)
    last_eval: dict | None = None  # the last evaluation, reused for the result
    last_epoch_rate: float = 0.0   # images/s of the epoch (the part this process trained)
    precision: str = "fp32"        # of the training forward pass: fp32 or bf16 (autocast)
    dropout: str = "torch"         # the masks drawn: torch's, or "bits" (device.dropout_masks)
    ema: nn.Module | None = None   # the weights' moving average (cfg.ema), or None
    slow: dict | None = None       # lookahead's slow weights, by state-dict key (cfg.lookahead)
    board: object = None           # TensorBoard writer (cfg.tensorboard, main rank), or None

    @property
    def scored(self) -> nn.Module:
        """The network that is evaluated and saved as the run's weights."""
        return self.model if self.ema is None else self.ema

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def out(self) -> Path:
        return Path(self.cfg.out)

    @property
    def steps_per_epoch(self) -> int:
        return self.sched.steps_per_epoch


# ---------------------------------------------------------------- build and restore
def load_data(cfg: TrainConfig, device, log=print):
    """The training and evaluation splits, resident on the device as uint8."""
    arch = ARCHS[model_info(cfg.model)["dataset"]]
    size = cfg.image_size or arch["input_size"]
    # a folder's pictures are decoded to the network's channels and size
    image = dict(in_chans=arch["in_chans"], size=size, skip_bad=cfg.skip_bad_images, log=log)
    train_ds = load_dataset(cfg.dataset, cfg.train_split, cfg.data_dir, **image)
    test_ds = load_dataset(cfg.dataset, cfg.eval_split, cfg.data_dir, **image)
    if cfg.subset:
        train_ds = train_ds.take(slice(0, cfg.subset))
    if cfg.eval_subset:
        test_ds = test_ds.take(slice(0, cfg.eval_subset))
    shape = (arch["in_chans"], size, size)
    if tuple(train_ds.images.shape[1:]) != shape:
        raise ConfigError(f"{cfg.model} takes {shape} images; {cfg.dataset} has "
                          f"{tuple(train_ds.images.shape[1:])}")
    if len(train_ds) < cfg.batch_size:
        raise ConfigError(f"batch size {cfg.batch_size} is larger than the {len(train_ds)} "
                          "training images")
    return train_ds.to(device), test_ds.to(device)


def build_run(cfg: TrainConfig, log, ddp: bool = True) -> Run:
    """Data, network, preprocessing, optimizer and schedule, in the order the RNG expects."""
    rank, world, ddp_device = dist.init(cfg.device) if ddp else (0, 1, None)
    device = ddp_device or pick_device(cfg.device)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    if cfg.batch_size % world:
        raise ConfigError(f"batch size {cfg.batch_size} does not split over {world} ranks")
    torch.manual_seed(cfg.seed + rank)  # dropout differs per rank, as it would per image
    train_ds, test_ds = load_data(cfg, device, log)
    model_kwargs = dict(drop_rate=cfg.drop_rate, init=cfg.init,
                        **({"input_size": cfg.image_size} if cfg.image_size else {}))
    model = build_model(cfg.model, num_classes=len(train_ds.classes), **model_kwargs)
    model = model.to(device)
    if cfg.bn_momentum is not None:
        set_bn_momentum(model, cfg.bn_momentum, cfg.model)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    pre = Preprocess(cfg.preprocess, model.in_chans, model.input_size).to(device)
    if cfg.whiten == "frozen":
        conv = first_conv(model)
        freeze_rows(conv.weight, whiten_rows(conv))
    opt = make_optimizer(model, cfg, device.type == "cuda")
    # drop the last partial batch, as cuda-convnet's fixed batches
    sched = Schedule(cfg, len(train_ds) // cfg.batch_size)
    net = model
    if world > 1:
        net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda"
                                      else None)
    if cfg.compile:
        net = compile_or_eager(net, log, cfg.compile_mode)
    precision = resolve_precision(device, cfg.amp)
    ema = copy.deepcopy(model).eval().requires_grad_(False) if cfg.ema else None
    slow = {k: v.clone() for k, v in model.state_dict().items()} if cfg.lookahead else None
    return Run(cfg=cfg, rank=rank, world=world, device=device, model=model, net=net, pre=pre,
               ema=ema, slow=slow,
               opt=opt, sched=sched, train_ds=train_ds, test_ds=test_ds,
               data_gen=torch.Generator(device=device).manual_seed(cfg.seed + 1),
               model_kwargs=model_kwargs, log=log, precision=precision,
               env=dict(environment(device), world_size=world))


def restore(run: Run, resume: bool) -> bool:
    """Continue from the newest valid checkpoint (resume) or start fresh: fit the
    preprocessing on the training split. Returns whether a checkpoint was restored."""
    run.state.new_epoch(run.device)
    run.state.dead_streak = torch.zeros((), device=run.device, dtype=torch.long)
    metrics = run.out / "metrics.jsonl"
    last, side = ckpt.latest_valid(run.out, log=run.log) if resume else (None, None)
    if last is None:
        if resume:
            run.log(f"--resume: no checkpoint in {run.out}; starting from scratch")
        if run.main and metrics.exists():
            metrics.unlink()
        if run.cfg.weights:
            start_from_weights(run)
        else:
            run.pre.fit(run.train_ds.images)
        if run.cfg.dirac:
            run.log(f"identity init: {dirac_init(run.model)} convs")
        if run.cfg.whiten != "off":
            n = whiten_first_conv(run.model, run.pre(run.train_ds.images[:WHITEN_IMAGES]))
            run.log(f"patch whitening: {n} filters of the first conv ({run.cfg.whiten})")
        if run.ema is not None:  # the average starts at the starting weights
            run.ema.load_state_dict(run.model.state_dict())
        if run.slow is not None:  # and so do lookahead's slow weights
            lookahead(run.slow, run.model, 0.0)
        run.dropout = dropout_masks(run.device, run.precision)
        return False
    check_resumable(side.config, run.cfg, last)
    _keep_precision(run, side, last)
    _, saved_pre = ckpt.load_weights(side, model=run.scored, map_location=run.device)
    run.pre.load_state_dict(saved_pre.state_dict())
    load_run_state(run, side, ckpt.load_state(side), last)
    if run.main:
        _truncate_log(metrics, run.state.step)
    run.log(f"resumed from {last} (epoch {run.state.epoch}, step {run.state.step})")
    return True


def _keep_precision(run: Run, side: ckpt.Sidecar, where):
    """A resumed run keeps the precision it ran in (checkpoints before it was recorded ran bf16
    on CUDA with amp, fp32 elsewhere). Asking for the other one with --amp/--no-amp is refused:
    it would change every step from here on."""
    saved = side.precision
    if run.cfg.amp is not None and resolve_precision(run.device, run.cfg.amp) != saved:
        flag = "--amp" if saved == "bf16" else "--no-amp"
        raise ConfigError(f"{where}: the run trained in {saved}; resume it in {saved} (drop the "
                          f"--amp/--no-amp flag, or give {flag}) or use another --out")
    run.precision = saved


def start_from_weights(run: Run):
    """Fine-tuning: the network starts from cfg.weights (a new class count: a fresh classifier);
    the preprocessing is refitted on this training split unless pretrained_stats."""
    from .hub import load_weights_arg, transfer
    cfg = run.cfg
    source, source_pre, side = load_weights_arg(cfg.weights, cfg.model)
    if side.model != cfg.model:
        raise ConfigError(f"--weights {cfg.weights} holds {side.model}, not {cfg.model}; "
                          f"give --model {side.model} or weights of {cfg.model}")
    fresh = transfer(run.model, source.to(run.device), where=f"--weights {cfg.weights}")
    if cfg.pretrained_stats:
        if source_pre.kind != run.pre.kind:
            raise ConfigError(f"--pretrained-stats: the weights used {source_pre.kind} "
                              f"preprocessing, this run {run.pre.kind}; set --preprocess "
                              f"{source_pre.kind} or drop --pretrained-stats")
        run.pre.load_state_dict(source_pre.state_dict())
    else:
        run.pre.fit(run.train_ds.images)
    run.log(f"started from {cfg.weights} ({side.model}); "
            + (f"new classifier: {', '.join(fresh)}" if fresh else "all layers loaded")
            + ("; its preprocessing statistics" if cfg.pretrained_stats else
               "; preprocessing refitted on this training split"))


# ---------------------------------------------------------------- checkpoints of the run state
# Every key a checkpoint holds to resume a run is written by run_state_dict and read by
# load_run_state, nowhere else (the weights and preprocessing: checkpoint.save_checkpoint).
# STATE_VERSION goes up when these keys change; checkpoints without it are version 1 (the same
# keys, from before the pair existed) and resume as they always did.
STATE_VERSION = 5  # 3: "dropout", the mask a run draws (models.Dropout); 4: "ema"; 5: "slow."


def rank_state(run: Run) -> tuple[dict, int]:
    """What this rank alone holds: its RNG states, this epoch's running sums, images seen."""
    s, part = run.state, {"rng.cpu": torch.get_rng_state()}
    if run.device.type == "cuda":
        part["rng.cuda"] = torch.cuda.get_rng_state(run.device)
    if s.step_in_epoch:
        part.update({"run.loss_sum": s.loss_sum.cpu(), "run.correct": s.correct.cpu()})
    return part, s.seen


def run_state_dict(run: Run, ranks: list) -> tuple[dict, dict]:
    """(plain values for the sidecar, tensors) of the run state; ranks: rank_state of each."""
    s = run.state
    opt_tensors, opt_plain = ckpt.optimizer_state(run.opt)
    tensors = {"rng.data": run.data_gen.get_state().cpu(), **opt_tensors}
    for r, (part, _) in enumerate(ranks):
        tensors.update({f"{k}.{r}": v for k, v in part.items()})
    meta = dict(state_version=STATE_VERSION, epoch=s.epoch, step_in_epoch=s.step_in_epoch,
                schedule=run.sched.state(), history=s.history, wall_s=s.wall_s,
                seen_in_epoch=[seen for _, seen in ranks], dead_streak=int(s.dead_streak),
                optimizer=opt_plain, precision=run.precision,
                dropout=run.dropout, ema=run.ema is not None)
    if run.ema is not None:  # the checkpoint's weights are the average: training's go here
        tensors.update({f"train.{k}": v for k, v in run.model.state_dict().items()})
    if run.slow is not None:
        tensors.update({f"slow.{k}": v for k, v in run.slow.items()})
    return meta, tensors


def load_run_state(run: Run, side: ckpt.Sidecar, tensors: dict, where):
    """The inverse of run_state_dict, for this rank."""
    saved = side.run
    version = saved.get("state_version", 1)
    if version > STATE_VERSION:
        raise ckpt.CheckpointError(f"{where}: written by a newer nin (run state version "
                                   f"{version}, this one reads up to {STATE_VERSION}); upgrade nin")
    r, device = run.rank, run.device
    run.dropout = saved.get("dropout", "torch")  # before version 3: torch's masks
    if run.ema is not None:
        run.model.load_state_dict({k[len("train."):]: v for k, v in tensors.items()
                                   if k.startswith("train.")})
    if run.slow is not None:
        for k, v in run.slow.items():
            v.copy_(tensors[f"slow.{k}"])
    ckpt.load_optimizer_state(run.opt, tensors, saved.get("optimizer"), device)
    torch.set_rng_state(tensors.get(f"rng.cpu.{r}", tensors["rng.cpu.0"]))
    if device.type == "cuda" and f"rng.cuda.{r}" in tensors:
        torch.cuda.set_rng_state(tensors[f"rng.cuda.{r}"])
    run.data_gen.set_state(tensors["rng.data"].to(run.data_gen.get_state().device))
    run.sched.load(saved["schedule"])
    s = run.state = RunState(step=side.step, epoch=saved["epoch"], wall_s=saved["wall_s"],
                             step_in_epoch=saved["step_in_epoch"], history=saved["history"])
    s.new_epoch(device)
    if s.step_in_epoch:  # resuming inside an epoch: its training accuracy counts all of it
        s.loss_sum = tensors[f"run.loss_sum.{r}"].to(device)
        s.correct = tensors[f"run.correct.{r}"].to(device)
        s.seen = saved["seen_in_epoch"][r]
    s.dead_streak = torch.tensor(saved.get("dead_streak", 0), device=device)


def save(run: Run, reason: str):
    """Checkpoint the run. Every rank takes part (its RNG and running sums are gathered);
    rank 0 writes."""
    ranks = dist.gather_objects(rank_state(run))
    if run.main:
        state, tensors = run_state_dict(run, ranks)
        meta = dict(config=run.cfg.to_dict(), model_kwargs=run.model_kwargs,
                    classes=run.train_ds.classes, reason=reason, env=run.env, **state)
        ckpt.save_checkpoint(run.out / "checkpoints", run.state.step, run.scored, run.pre, meta,
                             tensors)
    dist.barrier()


# ---------------------------------------------------------------- one epoch
def train_epoch(run: Run, stop_signal, progress: bool) -> bool:
    """Train to the end of the current epoch; False if max_steps stopped it first. Checkpoints
    every ckpt_every steps; on SIGTERM checkpoints and raises Preempted."""
    cfg, s, n_steps = run.cfg, run.state, run.steps_per_epoch
    run.model.train()
    perm = _epoch_perm(len(run.train_ds), cfg.seed, s.epoch).to(run.device)
    amp = autocast(run.device, run.precision)
    bar = _progress_bar(run, progress)
    clock, seen0 = Stopwatch(), s.seen
    try:
        while s.step_in_epoch < n_steps:
            if cfg.max_steps is not None and s.step >= cfg.max_steps:
                return False
            x, y = _next_batch(run, perm)
            for g in run.opt.param_groups:
                g["lr"] = cfg.lr * run.sched.factor(s.step) * g["lr_mult"]
            loss, logits = train_step(run.net, run.opt, x, y, amp, cfg.label_smoothing)
            if run.ema is not None:
                update_ema(run.ema, run.model, cfg.ema, s.step)
            _accumulate(run, loss, logits, y)
            s.step += 1
            if run.slow is not None and s.step % LOOKAHEAD_EVERY == 0:
                lookahead(run.slow, run.model,
                          lookahead_decay(s.step, cfg.epochs * n_steps))
            s.step_in_epoch += 1
            if s.step_in_epoch % SYNC_EVERY == 0 or s.step_in_epoch == n_steps:
                _check_health(run, logits)
                _update_bar(bar, run, seen0, clock.start)
            if stop_signal.requested(run, s.step_in_epoch % SYNC_EVERY == 0):
                s.wall_s += clock.lap()
                name = stop_signal.name or "SIGTERM"  # another rank's signal under torchrun
                save(run, name)
                raise (Interrupted if name == "Ctrl-C" else Preempted)(
                    f"{name}: checkpoint written at step {s.step} in {run.out / 'checkpoints'}; "
                    "continue with --resume")
            if cfg.ckpt_every and s.step % cfg.ckpt_every == 0 and s.step_in_epoch < n_steps:
                s.wall_s += clock.lap()  # checkpoints record the time trained so far
                save(run, f"every {cfg.ckpt_every} steps")
        return True
    finally:
        s.wall_s += clock.lap()
        run.last_epoch_rate = run.world * (s.seen - seen0) / max(clock.total(), 1e-9)
        if bar is not None:
            bar.close()


def _next_batch(run: Run, perm):
    """This rank's rows of the next global batch, preprocessed and augmented on the device."""
    cfg, i = run.cfg, run.state.step_in_epoch
    local = dist.shard(cfg.batch_size)
    idx = perm[i * cfg.batch_size:(i + 1) * cfg.batch_size][local]
    size = cfg.crop_size if run.state.epoch < cfg.crop_epochs else None
    flips = None
    if cfg.alternate_flips:  # (config: only with --flip) each image's start, mirrored in odd epochs
        flips = alternating_flips(len(run.train_ds), cfg.seed, run.device)[idx] ^ \
            bool(run.state.epoch % 2)
    x = augment(run.pre(run.train_ds.images[idx]), cfg.translate, cfg.flip, run.data_gen,
                part=local, total=cfg.batch_size, size=size, flips=flips)
    if cfg.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return x, run.train_ds.labels[idx]


@functools.lru_cache(maxsize=2)
def alternating_flips(n: int, seed: int, device) -> torch.Tensor:
    """Which of n training images are mirrored in even epochs (the rest in odd ones): a function
    of the seed alone, so a resumed run needs nothing saved."""
    gen = torch.Generator().manual_seed(seed + 2)  # +0: init and dropout, +1: augmentation
    return (torch.rand(n, generator=gen) < 0.5).to(device)


class Stopwatch:
    """Seconds since the start, and since the last lap."""

    def __init__(self):
        self.start = self._last = time.time()

    def lap(self) -> float:
        now, last = time.time(), self._last
        self._last = now
        return now - last

    def total(self) -> float:
        return time.time() - self.start


def _accumulate(run: Run, loss, logits, y):
    """Running sums on the device (no host sync per step), and the dead-map streak."""
    s = run.state
    with torch.no_grad():
        s.loss_sum += loss * len(y)
        s.correct += (logits.argmax(1) == y).sum()
        if run.model.head_type == "gap":  # a class map zero for every image: its ReLU died
            dead = (logits.float().amax(0) <= 0).any().long()
            s.dead_streak = (s.dead_streak + 1) * dead
    s.seen += len(y)


def _check_health(run: Run, logits):
    """Stop a run whose loss is not finite, or whose class maps died at the start."""
    s, n_cls = run.state, run.model.num_classes
    if dist.any_flag(not math.isfinite(s.loss_sum.item()), run.device):
        raise NonFiniteLoss(f"the loss became non-finite by step {s.step}; the last good "
                            f"checkpoint is kept in {run.out / 'checkpoints'}. Lower --lr or "
                            "use --recipe modern.")
    if dist.any_flag(s.dead_streak.item() >= DEAD_STEPS, run.device):
        dead = (logits.float().amax(0) <= 0).nonzero().flatten().tolist()
        raise DeadStartError(
            f"dead start: for {s.dead_streak.item()} steps up to step {s.step} the class "
            f"map(s) {dead} have been zero for every image: the ReLU before global average "
            "pooling died there and gets no gradient, so those classes can never be predicted "
            f"(with all maps dead the loss sits at ln {n_cls} = {math.log(n_cls):.4f}). "
            "Restart with another --seed, or with --init kaiming (or --recipe modern).")


def end_epoch(run: Run):
    """Close an epoch: its training loss and accuracy over all ranks, the schedule's rule,
    an evaluation when due, one log line, and a checkpoint."""
    cfg, s = run.cfg, run.state
    loss, correct, seen = dist.all_sum(s.loss_sum, s.correct,
                                       torch.tensor(s.seen, device=run.device))
    train_loss, train_acc = loss.item() / seen.item(), correct.item() / seen.item()
    s.epoch += 1
    s.step_in_epoch = 0
    if run.slow is not None:  # each epoch ends on the slow weights (airbench)
        lookahead(run.slow, run.model, 1.0)
    record = dict(epoch=s.epoch, step=s.step, lr=cfg.lr * run.sched.factor(s.step - 1),
                  train_loss=train_loss, train_acc=train_acc, time_s=s.wall_s - _wall_before(s),
                  images_per_s=run.last_epoch_rate, precision=run.precision,
                  threads=torch.get_num_threads())  # per epoch: a resumed run may change it
    msg = run.sched.end_epoch(train_acc)
    due = s.epoch % cfg.eval_every == 0 or s.epoch == cfg.epochs or run.sched.stop or \
        (cfg.eval_every_from is not None and s.epoch >= cfg.eval_every_from)
    if due:
        run.last_eval = evaluate(run.scored, run.pre, run.test_ds, batch_size=512, tta=cfg.tta,
                                 precision=eval_precision(run.device, cfg.amp))
        # "test_*" keys name the evaluated split (cfg.eval_split: val in pilots); kept so for
        # the logs already written
        record.update(test_loss=run.last_eval["loss"], test_error=run.last_eval["error"])
    s.history.append(record)
    s.new_epoch(run.device)
    if run.main:
        _append_log(run.out / "metrics.jsonl", record)
    if run.board is not None:
        from . import board  # matplotlib and TensorBoard: only for runs that log to it
        board.write_epoch(run.board, record)
        if due:
            board.write_maps(run.board, run.scored, run.pre, run.test_ds, s.epoch)
    run.log(f"epoch {s.epoch:3d}  loss {train_loss:.4f}  train acc {train_acc:.4f}  "
            + (f"{cfg.eval_split} error {record['test_error']:.2f}%  " if due else "")
            + f"{record['images_per_s']:.0f} img/s" + (f"  [{msg}]" if msg else ""))
    if due:
        save(run, "epoch end")


def _wall_before(s: RunState) -> float:
    """Training seconds up to the end of the previous epoch."""
    return sum(h["time_s"] for h in s.history)


def stop_early(run: Run) -> RunResult:
    """max_steps reached inside (or at the start of) an epoch: checkpoint and log it."""
    s = run.state
    reason = f"max_steps {run.cfg.max_steps} reached"
    save(run, reason)
    loss, correct, seen = dist.all_sum(s.loss_sum.clone(), s.correct.clone(),
                                       torch.tensor(s.seen, device=run.device))
    if run.main and s.step_in_epoch and seen.item():
        _append_log(run.out / "metrics.jsonl",
                    dict(epoch=s.epoch + s.step_in_epoch / run.steps_per_epoch, step=s.step,
                         partial=True, train_loss=loss.item() / seen.item(),
                         train_acc=correct.item() / seen.item()))
    run.log(f"stopped at step {s.step}: {reason}; continue with --resume")
    return RunResult(config=run.cfg, finished=False, steps=s.step, history=s.history,
                     precision=run.precision, epochs_run=s.epoch, wall_s=s.wall_s, env=run.env,
                     dropout=run.dropout)


def finish(run: Run) -> RunResult:
    """The result of a finished run, written to OUT/result.json."""
    cfg, s = run.cfg, run.state
    ev = run.last_eval or evaluate(run.scored, run.pre, run.test_ds, batch_size=512,
                                   tta=cfg.tta, precision=eval_precision(run.device, cfg.amp))
    # (evaluating here: a run resumed at its very end)
    result = RunResult(config=cfg, finished=True, steps=s.step, history=s.history,
                       precision=run.precision, model_kwargs=run.model_kwargs,
                       dropout=run.dropout,
                       params=count_params(run.model), epochs_run=s.epoch, wall_s=s.wall_s,
                       final=dict(split=cfg.eval_split, n=ev["n"], error=ev["error"],
                                  loss=ev["loss"], per_class_accuracy=ev["per_class_accuracy"]),
                       env=run.env, checkpoint=str(ckpt.latest_checkpoint(run.out)))
    if run.main:
        result.write(run.out)
    run.log(f"{cfg.eval_split} error {ev['error']:.2f}% on {cfg.dataset}/{cfg.eval_split} "
            f"({ev['n']:,} images); result in {run.out / 'result.json'}")
    return result


# ---------------------------------------------------------------- the loop
def train(cfg: TrainConfig, resume: bool = False, progress: bool | None = None,
          log=print, ddp: bool = True, overwrite: bool = False) -> RunResult:
    """Train, evaluating and checkpointing every eval_every epochs; returns the RunResult
    (also written to OUT/result.json when the run reaches its end). Under torchrun (and ddp),
    trains with DistributedDataParallel; rank 0 alone logs and writes. A new run (no resume)
    into a folder that holds one is refused unless overwrite (check_fresh)."""
    main = not ddp or dist.env_rank() == 0
    if main:  # before the lock (which creates the folder) and before any data is read
        check_writable(Path(cfg.out), need_bytes=_checkpoint_bytes(cfg))
        if not resume:
            check_fresh(Path(cfg.out), overwrite)
        if cfg.tensorboard:
            from . import board
            board.require()
    else:
        log = _silent
    with run_lock(Path(cfg.out), exclusive=main), StopSignal() as stop_signal:
        run = build_run(cfg, log, ddp)
        restore(run, resume)
        set_dropout_bits(run.model, run.dropout == "bits")  # the masks restore chose
        log(f"{cfg.model} ({count_params(run.model):,} params) on {cfg.dataset}/"
            f"{cfg.train_split} ({len(run.train_ds):,} images), recipe {cfg.recipe}, "
            f"{run.device}" + (f" x {run.world} ranks" if run.world > 1 else "")
            + f", {run.precision}" + (" autocast" if run.precision == "bf16" else ""))
        use_bar = run.main and (progress if progress is not None else sys.stderr.isatty())
        if cfg.tensorboard and run.main:
            from .board import open_board
            run.board = open_board(run.out)
        try:
            while run.state.epoch < cfg.epochs and not run.sched.stop:
                if not train_epoch(run, stop_signal, use_bar):
                    return stop_early(run)
                end_epoch(run)
            return finish(run)
        finally:
            if run.board is not None:
                run.board.close()


# ---------------------------------------------------------------- helpers
def _silent(*_args, **_kw):
    pass


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
        raise ConfigError(f"{out}: cannot write the run's output there ({e.strerror}); choose "
                          "another folder with --out") from None
    free = shutil.disk_usage(out).free
    if free < need_bytes:
        raise ConfigError(f"{out}: {free / 2**20:,.0f} MiB free, but the run's checkpoints need "
                          f"about {need_bytes / 2**20:,.0f} MiB; free some space or choose "
                          "another --out")


def check_fresh(out: Path, overwrite: bool):
    """A new run into a folder that holds another would lose its metrics and result, and leave
    its checkpoints for a later --resume to pick up: refused, or with overwrite, those files go
    first."""
    old = [p for p in (out / "result.json", out / "metrics.jsonl") if p.exists()] + \
        sorted((out / "checkpoints").glob("step-*"))
    if old and not overwrite:
        raise ConfigError(f"{out} holds a run already ({', '.join(p.name for p in old[:3])}"
                          f"{', ...' if len(old) > 3 else ''}); continue it with --resume, "
                          "start over with --overwrite (its files are deleted), or choose "
                          "another --out")
    for p in old:
        p.unlink()


def _checkpoint_bytes(cfg: TrainConfig) -> int:
    """Room for the checkpoints kept at once, plus one being written: weights, momentum and the
    preprocessing (a ZCA matrix is d x d floats)."""
    arch = ARCHS[model_info(cfg.model)["dataset"]]
    params = count_params(build_model(cfg.model, num_classes=num_classes(cfg.dataset) or 1000))
    d = arch["in_chans"] * arch["input_size"] ** 2
    pre = 4 * (d * d + d) if cfg.preprocess == "gcn_zca" else 4096
    return (ckpt.KEEP + 1) * (8 * params + pre + 65536)


def _truncate_log(path: Path, step: int):
    """On resume, drop log lines written after the checkpoint we resume from."""
    if not path.exists():
        return
    keep = [json.dumps(r) for r in read_jsonl(path) if r.get("step", 0) <= step]
    ckpt.atomic_write(path, ("\n".join(keep) + "\n").encode() if keep else b"")


def _append_log(path: Path, record: dict):
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")


def _progress_bar(run: Run, show: bool):
    if not show:
        return None
    from tqdm import tqdm
    return tqdm(total=run.steps_per_epoch, initial=run.state.step_in_epoch, leave=False,
                desc=f"epoch {run.state.epoch + 1}/{run.cfg.epochs}", dynamic_ncols=True)


def _update_bar(bar, run: Run, seen0: int, t0: float):
    if bar is None:
        return
    s = run.state
    bar.update(s.step_in_epoch - bar.n)
    bar.set_postfix(loss=f"{s.loss_sum.item() / s.seen:.4f}",
                    acc=f"{s.correct.item() / s.seen:.4f}",
                    img_s=f"{run.world * (s.seen - seen0) / (time.time() - t0):.0f}")


@contextlib.contextmanager
def run_lock(out: Path, exclusive: bool = True):
    """Hold OUT/.lock while training: a second `nin train` into a folder where a run is alive
    is refused. The OS drops the lock when the process dies, however it dies."""
    if not exclusive:
        yield
        return
    import fcntl
    import os
    out.mkdir(parents=True, exist_ok=True)
    with open(out / ".lock", "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            raise ConfigError(f"{out}: another `nin train` (pid {f.read().strip() or '?'}) is "
                              "writing to this folder; wait for it to end, stop it, or choose "
                              "another --out") from None
        f.truncate(0)
        f.write(str(os.getpid()))
        f.flush()
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


class StopSignal:
    """SIGTERM (SLURM's and preemptible clouds' warning) and Ctrl-C ask the loop to checkpoint
    and stop; a second Ctrl-C stops at once. Under torchrun the ranks agree at the next sync
    point, so they stop at the same step."""

    def __init__(self):
        self.flag, self.name, self._old = False, None, {}

    def __enter__(self):
        import threading
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)

    def _handle(self, signum, frame):
        if signum == signal.SIGINT:
            if self.flag:  # the second Ctrl-C: no checkpoint, stop now
                raise KeyboardInterrupt
            print("\nCtrl-C: writing a checkpoint, then stopping (Ctrl-C again: stop at once)",
                  file=sys.stderr)
        self.flag, self.name = True, self.name or ("Ctrl-C" if signum == signal.SIGINT
                                                   else "SIGTERM")

    def requested(self, run: Run, at_sync: bool) -> bool:
        if run.world == 1:
            return self.flag
        return at_sync and dist.any_flag(self.flag, run.device)
