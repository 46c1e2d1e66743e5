#!/bin/bash
# Issue 22: the clock recipe with BN biases at 8x (configs/cifar10_fast_bnbias8.json), seed 0,
# alone on 2 threads once the ablation pair is done; scored every 5 epochs to 35, then every epoch.
while [ ! -f ~/nin-runs/pair.done ]; do sleep 20; done
spec=~/nin-runs/cifar10_fast_bnbias8.json
run=~/nin-runs/cifar10_fast_bnbias8/seed=0
go() { cd ~/nin-wt8 && OMP_NUM_THREADS=2 NIN_DATA_DIR=/work/main/.data PYTHONPATH=~/nin-wt8/src \
  /work/main/.venv/bin/python -u -m nin sweep $spec >> ~/nin-runs/cifar10_fast_bnbias8.log 2>&1; }
python3 -c "import json; s=json.load(open('$spec')); s['grid']['seed']=[0]; json.dump(s,open('$spec','w'),indent=1)"
if ! grep -q '"eval_every": 1' $spec; then
  go &
  while [ ! -f $run/checkpoints/step-00027335.json ] && [ ! -f $run/result.json ]; do sleep 5; done
  sleep 3; pkill -INT -f "nin sweep $spec"; wait
  python3 -c "import json; s=json.load(open('$spec')); s['base']['eval_every']=1; json.dump(s,open('$spec','w'),indent=1)"
fi
go
date > ~/nin-runs/clock.done
