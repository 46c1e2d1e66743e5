#!/bin/bash
# Issue 22: finish bnbias8 seed 0 (eval every epoch), then seed 1 alone on 2 threads:
# scored every 5 epochs to epoch 35 (step 27335), then every epoch.
spec=~/nin-runs/cifar10_fast_bnbias8.json
run1=~/nin-runs/cifar10_fast_bnbias8/seed=1
go() { cd ~/nin-wt8 && OMP_NUM_THREADS=2 NIN_DATA_DIR=/work/main/.data PYTHONPATH=~/nin-wt8/src \
  /work/main/.venv/bin/python -u -m nin sweep $spec >> ~/nin-runs/cifar10_fast_bnbias8.log 2>&1; }
setspec() { python3 -c "import json; s=json.load(open('$spec')); s['grid']['seed']=$1; s['base']['eval_every']=$2; json.dump(s,open('$spec','w'),indent=1)"; }
setspec [0] 1
go
date > ~/nin-runs/clock-seed0.done
cp ~/nin-runs/cifar10_fast_bnbias8.log ~/nin-runs/cifar10_fast_bnbias8-seed0.log
: > ~/nin-runs/cifar10_fast_bnbias8.log
setspec [0,1] 5
go &
while [ ! -f $run1/checkpoints/step-00027335.json ] && [ ! -f $run1/result.json ]; do sleep 5; done
sleep 3; pkill -INT -f "nin sweep $spec"; wait
setspec [0,1] 1
go
date > ~/nin-runs/clock-seed1.done
