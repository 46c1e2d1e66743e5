#!/bin/bash
# Issue 21: the ablation sweep as two one-thread streams (the sweep's rank split: rank r takes
# every 2nd run from r), code pinned in ~/nin-wt4. Resumes where it stopped.
cd ~/nin-wt4
for r in 0 1; do
  RANK=$r WORLD_SIZE=2 OMP_NUM_THREADS=1 NIN_DATA_DIR=/work/main/.data PYTHONPATH=~/nin-wt4/src \
    /work/main/.venv/bin/python -u -m nin sweep ~/nin-runs/ablations_cifar10.json >> ~/nin-runs/ablations_cifar10-rank$r.log 2>&1 &
done
wait
