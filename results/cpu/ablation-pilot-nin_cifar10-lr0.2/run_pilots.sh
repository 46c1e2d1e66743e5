#!/bin/bash
# Issue 21 step 1: lr pilots for the ablations' shared schedule (configs/ablations_pilots_cifar10.json), two at a time, 1 thread each.
cd ~/nin-wt4
pilot() {
  out=~/nin-runs/abl-pilots/nin_cifar10-lr$1
  OMP_NUM_THREADS=1 PYTHONPATH=~/nin-wt4/src /work/main/.venv/bin/python -u -m nin train --out $out --data-dir /work/main/.data --no-progress \
    --dataset cifar10 --recipe paper --model nin_cifar10 --train-split train-val --eval-split val --subset 8000 --eval-subset 5000 \
    --epochs 12 --batch-size 64 --init kaiming_zero --schedule onecycle --warmup-epochs 1 --no-tta --eval-every 6 --lr $1 --seed 0 > $out.log 2>&1
}
pilot 0.02 & pilot 0.05 & wait
pilot 0.1 & pilot 0.2 & wait
echo done > ~/nin-runs/abl-pilots/done
