#!/bin/bash
# After the ablations' first pair: issue 22's fast-trainer pilots and issue 21's (e) pilots on
# val (two at a time, one thread each), shift TTA on val, then the shifts of the two networks.
while [ ! -f ~/nin-runs/first-pair.done ]; do sleep 20; done
sleep 15
cd ~/nin-wt5
PY="env PYTHONPATH=$HOME/nin-wt5/src /work/main/.venv/bin/python -u -m nin"
P=~/nin-runs/pilots22
mkdir -p $P
pilot() {  # name, extra flags
  out=$P/$1; shift
  [ -f $out/result.json ] && return
  OMP_NUM_THREADS=1 $PY train --out $out --data-dir /work/main/.data --no-progress --model nin_cifar10_bn \
    --dataset cifar10 --recipe modern --train-split train-val --eval-split val --subset 8000 --eval-subset 5000 \
    --batch-size 64 --warmup-epochs 1 --eval-every 6 --lr 0.1 --epochs 12 --crop-size 24 --crop-epochs 10 \
    --amp --seed 0 "$@" > $out.log 2>&1
}
pilot cifar10-pilot-crop24-lr0.1-bf16-bits-ema0.995 --ema 0.995 & pilot cifar10-pilot-crop24-lr0.1-bf16-bits-ls0.2 --label-smoothing 0.2 & wait
pilot cifar10-pilot-crop24-lr0.1-bf16-bits-altflip --alternate-flips & pilot nin_cifar10-modern-pilot-crop24-lr0.1 --model nin_cifar10 --init kaiming_zero & wait
pilot nin_cifar10-modern-pilot-crop24-lr0.05 --model nin_cifar10 --init kaiming_zero --lr 0.05 & pilot cifar10-pilot-crop24-lr0.1-bf16-bits-bnbias8 --bias-lr-mult 8 & wait
( for s in 0 1; do w=~/nin-runs/cifar10-pilot-crop24-lr0.1-bf16-bits-seed$s
    for t in "--no-tta" "--tta" "--tta --tta-shift 1"; do
      OMP_NUM_THREADS=1 $PY eval --weights $w --split val $t --json --data-dir /work/main/.data
    done; done > $P/tta-val.jsonl 2> $P/tta-val.err ) &
A=~/nin-runs/ablations_cifar10
OMP_NUM_THREADS=2 $PY shifts "$A/model=nin_cifar10-seed=0" "$A/model=nin_cifar10_fc-seed=0" --max-shift 8 --index 1 \
  --out ~/nin-runs/shifts-ablations --data-dir /work/main/.data > ~/nin-runs/shifts-ablations.log 2>&1
wait
echo done > $P/all.done
