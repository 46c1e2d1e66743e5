"""The first epoch of the ablations' pilot (nin_cifar10, the paper's recipe: GCN + ZCA, no batch
norm, dropout 0.5; 8,000 train-val images, batch 64, one-cycle with 1 warm-up epoch over 12
epochs, fp32), step by step: the loss, how many class maps are zero for every image of the batch,
and the fraction of positive units after each conv (eval mode, the same batch).

    python probe.py INIT LR STEPS   (run from the repository root, NIN_DATA_DIR set)
"""
import os
import sys

import torch
import torch.nn as nn

from nin.config import resolve
from nin.device import autocast
from nin.training import _epoch_perm, _next_batch, build_run, train_step

init, lr, steps = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
cfg = resolve(dict(dataset="cifar10", recipe="paper", model="nin_cifar10", train_split="train-val",
                   eval_split="val", subset=8000, eval_subset=500, init=init, seed=0, lr=lr,
                   schedule="onecycle", warmup_epochs=1, epochs=12, amp=False, batch_size=64,
                   data_dir=os.environ["NIN_DATA_DIR"], out="/tmp/probe-run"))
run = build_run(cfg, lambda *a: None, ddp=False)
m, perm, amp = run.model, _epoch_perm(len(run.train_ds), 0, 0), autocast(run.device, "fp32")
convs = [c for c in m.features.modules() if isinstance(c, nn.Conv2d)]
print(f"init {init}, peak lr {lr}; step: loss, dead class maps, positive fraction after each conv")
for step in range(steps):
    run.state.step_in_epoch = step
    x, y = _next_batch(run, perm)
    for g in run.opt.param_groups:
        g["lr"] = cfg.lr * run.sched.factor(step) * g["lr_mult"]
    loss, logits = train_step(run.net, run.opt, x, y, amp)
    if step % 8 == 0 or step == steps - 1:
        alive = []
        hooks = [c.register_forward_hook(lambda mod, i, o: alive.append((o > 0).float().mean()))
                 for c in convs]
        with torch.no_grad():
            m.eval()(x)
        m.train()
        for h in hooks:
            h.remove()
        dead = int((logits.amax(0) <= 0).sum())
        print(f"{step:4d}: {loss.item():.3f} {dead:2d} " + " ".join(f"{a:.2f}" for a in alive),
              flush=True)
