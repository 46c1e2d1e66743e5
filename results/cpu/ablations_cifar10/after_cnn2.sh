#!/bin/bash
# Issue 21, this session's second half: as each sweep stream reaches the seed-1 run it would
# start next, stop it (Ctrl-C: resumable) and give its core to (e) or the translations.
# Stream 0 (after cnn_cifar10_fc_dropout) -> `nin shifts` for the three CNNs, 1 thread.
# Stream 1 (after nin_cifar10 seed 1)      -> (e), the paper network's augmented run, 1 thread.
# Code for both pinned at ceac117 (~/nin-wt7).
PY=/work/main/.venv/bin/python
R=~/nin-runs/ablations_cifar10
stop_rank() {  # wait for pattern in stream r's log, then Ctrl-C that stream's python
  local r=$1 pat=$2
  until grep -q "$pat" ~/nin-runs/ablations_cifar10-rank$r.log; do sleep 20; done
  for p in $(pgrep -f "python -u -m nin sweep /root/nin-runs/ablations_cifar10.json"); do
    tr '\0' '\n' < /proc/$p/environ | grep -qx "RANK=$r" && kill -INT $p && echo "$(date) stopped rank $r ($p)"
  done
  sleep 30
}
lane0() {
  stop_rank 1 "model=nin_cifar10_fc_dropout-seed=1: running"
  cd ~/nin-wt7 && OMP_NUM_THREADS=1 NIN_DATA_DIR=/work/main/.data PYTHONPATH=~/nin-wt7/src \
    $PY -u -m nin sweep ~/nin-runs/paper_network_fast_cifar10.json >> ~/nin-runs/paper_network_fast_cifar10.log 2>&1
  echo "$(date) (e) ended rc=$?"
}
lane1() {
  stop_rank 0 "model=nin_cifar10_fc-seed=1: running"
  cd ~/nin-wt7 && OMP_NUM_THREADS=1 NIN_DATA_DIR=/work/main/.data PYTHONPATH=~/nin-wt7/src \
    $PY -u -m nin shifts $R/model=nin_cifar10-seed=0 $R/model=nin_cifar10_fc-seed=0 \
      $R/model=nin_cifar10_fc_dropout-seed=0 $R/model=nin_cifar10_nodropout-seed=0 \
      $R/model=cnn_cifar10_gap-seed=0 $R/model=cnn_cifar10_fc-seed=0 \
      $R/model=cnn_cifar10_fc_dropout-seed=0 \
      --index 1 --precision bf16 --out ~/nin-runs/shifts_cifar10 >> ~/nin-runs/shifts_cifar10.log 2>&1
  echo "$(date) shifts ended rc=$?"
}
lane0 & lane1 & wait
