#!/bin/bash
# Copy the finished ablation runs' result.json, metrics.jsonl and log into the repository.
cd /work/main
for d in ~/nin-runs/ablations_cifar10/model=*; do
  [ -f "$d/result.json" ] || continue
  n=$(basename "$d" | sed 's/^model=//; s/-seed=/-seed/')
  dst=results/cpu/ablations_cifar10/$n; mkdir -p $dst
  cp "$d/result.json" "$d/metrics.jsonl" $dst/
  m=${n%-seed*}; s=${n##*-seed}
  for r in 0 1; do
    f=~/nin-runs/ablations_cifar10-rank$r.log
    # this run's lines of the sweep log: from its "running" line to the next run's
    awk -v m="model=$m-seed=$s:" '/^\[sweep\]/{on = index($0, m) > 0} on' $f >> $dst/train.log.tmp
  done
  mv $dst/train.log.tmp $dst/train.log
done
ls results/cpu/ablations_cifar10/
