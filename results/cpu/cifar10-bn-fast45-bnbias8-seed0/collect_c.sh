#!/bin/bash
# Issue 22: copy the bnbias8 clock run (seed 0) into the repository; finished: result.json and the
# time-to-accuracy table; unfinished: its newest checkpoint at one path (resume/).
cd /work/main
src=~/nin-runs/cifar10_fast_bnbias8/seed=0
dst=results/cpu/cifar10-bn-fast45-bnbias8-seed0
mkdir -p $dst
cp $src/metrics.jsonl $dst/
cp ~/nin-runs/cifar10_fast_bnbias8.log $dst/train.log
git rm -rq --ignore-unmatch $dst/resume; rm -rf $dst/resume
if [ -f $src/result.json ]; then
  cp $src/result.json $dst/
  runs=$(python3 -c "import json; print(' '.join(p['run'] for r in json.load(open('results/bench/time_to_accuracy_cpu.json'))['rows'] for p in r['per_seed']))")
  .venv/bin/python benchmarks/time_to_accuracy.py --from-runs $runs $dst
else
  last=$(ls $src/checkpoints/step-*.state.safetensors | sort | tail -1); last=${last%.state.safetensors}
  mkdir -p $dst/resume; cp $last.json $last.safetensors $last.state.safetensors $dst/resume/
fi
.venv/bin/python scripts/results_table.py
ls -la $dst $dst/resume 2>/dev/null
