#!/usr/bin/env bash
# The lent GPU's work, prepared so that a session spends its few device minutes training, not
# debugging. Run from the project root on the GPU machine after ../shared/gpu/README.md's three
# staging commands (the data at $NIN_DATA_DIR), as the tail of the third:
#
#   bash scripts/gpu_runs.sh stage                      # here: the data in three parts
#   bash scripts/gpu_runs.sh auto SECONDS [CONFIG_GLOB] # there, at the end of the third
#
# In SECONDS from its start it: (a) runs a 50-step CUDA smoke run and the training-throughput
# benchmark (bf16, channels-last, one process, then two at once); (b) picks the largest sweep
# of CONFIG_GLOB (default configs/*/next_*.json: what the next lent GPU should run) that fits
# the time left at the measured speed of two processes at batch 64 (if none fits, the smallest);
# (c) runs its points two at a time on the one GPU (`nin sweep` ranks 0 and 1), each stopped
# with a resumable checkpoint if the time runs out; (d) packs the run folders (metrics,
# result.json, the last checkpoint: weights only once finished) and the benchmark JSON into
# $OUT/runs.tgz.part* (at most 8 files of 16 MiB come back), with probe.log and rank{0,1}.log
# beside them. Unpack with: cat runs.tgz.part* | tar xz
# Bring run folders back only through pack: the device tool refuses names with "=" (seed=0), and
# a 2026-12-04 lease lost two unfinished runs' checkpoints by copying them to $OUT by hand.
#
# Runs and benchmark files go under $NIN_GPU_RUNS_WORK (default: the project root, runs/ and
# runs/bench/). tests/test_gpu_runs.py runs it all at toy size on the CPU (NIN_GPU_RUNS_TOY=1).
set -uo pipefail
cd "$(dirname "$0")/.."
root=$PWD
export PYTHONPATH=$root/src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/nin-gpu-out}
# the runs start in $WORK: a relative data folder must not change meaning there
[ -n "${NIN_DATA_DIR:-}" ] && export NIN_DATA_DIR=$(cd "$NIN_DATA_DIR" && pwd)
WORK=${NIN_GPU_RUNS_WORK:-$root}
export NIN_BENCH_OUT=$WORK/runs/bench
mkdir -p "$OUT" "$NIN_BENCH_OUT"
t0=$(date +%s)
log() { echo "[gpu_runs $(( $(date +%s) - t0 ))s] $*"; }

toy=${NIN_GPU_RUNS_TOY:-0}
# toy: the CPU, fp32 (bf16 is emulated, slowly, on most CPUs), a handful of steps
if [ "$toy" = 1 ]; then dev=cpu; prec=fp32; steps=2; smoke=3; batches="64"
else dev=cuda; prec=bf16; steps=300; smoke=50; batches="64 128"; fi

probe() {  # smoke run, then images/s of one process and of two at once
  nvidia-smi -L 2>/dev/null || true
  python -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
  python -m nin train --model nin_cifar10 --init kaiming_zero --recipe modern --device $dev \
    --max-steps $smoke --eval-subset 500 --out "$WORK/runs/smoke" || return 1
  local b="python $root/benchmarks/train_throughput.py --device $dev --precision $prec
    --models nin_cifar10 --steps $steps"
  $b --batch $batches --name "train_throughput_${dev}_one" || return 1
  $b --batch 64 --name "train_throughput_${dev}_two0" & local p0=$!
  $b --batch 64 --name "train_throughput_${dev}_two1" & local p1=$!
  wait $p0 && wait $p1
}

pick() {  # the longest sweep of the glob $2 that fits $1 seconds at two processes' speed
  python - "$1" "$2" "$NIN_BENCH_OUT/train_throughput_${dev}_two" <<'PY'
import glob, json, sys
from nin.config import resolve
from nin.sweep import expand, load_spec
budget, pattern, bench = float(sys.argv[1]), sys.argv[2], sys.argv[3]
ips = sum(json.load(open(f"{bench}{i}.json"))["rows"][0]["images_per_s"] for i in (0, 1))
fits = []
for f in sorted(glob.glob(pattern)):
    runs = [resolve(cfg) for _, cfg in expand(load_spec(f))]
    per_rank = -(-len(runs) // 2)  # two ranks, each taking every other run
    epochs = max(cfg.epochs for cfg in runs)
    need = 1.2 * per_rank * 2 * 50000 * epochs / ips  # 1.2: evaluations, checkpoints
    print(f"{f}: {need:.0f} s at {ips:.0f} images/s (two processes), {budget:.0f} s left",
          file=sys.stderr)
    fits.append((need <= budget, per_rank * epochs if need <= budget else -need, f))
# the largest that fits; if none does, the smallest anyway: it stops with a resumable checkpoint
# that pack brings back, for the next lease (or the CPU) to finish
print(max(fits)[2] if fits else "")
PY
}

toy_config() {  # the smallest sweep, cut to a few hundred images, as a file under $WORK
  python - "$1" "$WORK/runs/toy.json" <<'PY'
import json, sys
spec = json.load(open(sys.argv[1]))
spec["out"], spec["grid"] = "runs/toy", {"seed": [0, 1]}
spec["base"].update(epochs=2, subset=256, eval_subset=128, warmup_epochs=0, ckpt_every=None)
json.dump(spec, open(sys.argv[2], "w"))
PY
  echo "$WORK/runs/toy.json"
}

pack() {  # run folders and benchmark JSON into $OUT/runs.tgz.part00, 01, ...
  local stage; stage=$(mktemp -d)
  for run in "$WORK"/runs/*/*/; do
    [ -f "$run/metrics.jsonl" ] || continue
    local rel=${run#"$WORK"/}; rel=${rel%/}
    mkdir -p "$stage/$rel/checkpoints"
    cp "$run"/*.json* "$stage/$rel/" 2>/dev/null
    local last; last=$(python "$root/scripts/newest_checkpoint.py" "$run")  # skips a damaged one
    [ -n "$last" ] && cp "${last%.json}".* "$stage/$rel/checkpoints/"
    [ -f "$run/result.json" ] && rm -f "$stage/$rel"/checkpoints/*.state.safetensors
  done
  cp "$NIN_BENCH_OUT"/train_throughput_*.json "$stage/" 2>/dev/null
  tar czf - -C "$stage" . | split -b 15M -d - "$OUT/runs.tgz.part"
  rm -rf "$stage"
  ls -l "$OUT"
}

case "${1:-}" in
  stage)  # here, before a lease: the data in three parts that each fit beside the working tree
    bash ../shared/gpu/stage-data >/dev/null
    rm -rf .stage/1/mnist  # CIFAR-10 only: with MNIST the first part is 55 MiB, over the limit
    du -sh .stage/*
    echo "send: (1) mkdir -p /root/nin-src && cp -r .stage/1/. /root/nin-src/   carry .stage/1"
    echo "      (2) cp -r .stage/2/. /root/nin-src/                              carry .stage/2"
    echo "      (3) cp -r .stage/3/. /root/nin-src/ && bash /root/nin-src/unpack /root/nin-data &&"
    echo "          export NIN_DATA_DIR=/root/nin-data && bash scripts/gpu_runs.sh auto 565"
    ;;
  auto)
    TOTAL=${2:?usage: gpu_runs.sh auto SECONDS [CONFIG_GLOB]}
    glob=${3:-configs/*/next_*.json}
    probe 2>&1 | tee "$OUT/probe.log"
    [ "${PIPESTATUS[0]}" = 0 ] || { log "probe failed"; pack; exit 1; }
    train_s=$(( TOTAL - ($(date +%s) - t0) - 60 ))  # 60 s left to pack and return
    cfg=$(pick "$train_s" "$glob")
    [ "$toy" = 1 ] && cfg=$(toy_config "$(ls $glob | head -1)")
    [ -n "$cfg" ] || { log "no sweep of $glob fits $train_s s"; pack; exit 1; }
    log "running $cfg, two seeds at once, for at most $train_s s"
    cfg=$(cd "$(dirname "$cfg")" && pwd)/$(basename "$cfg")
    pids=()
    for r in 0 1; do
      (cd "$WORK" && RANK=$r WORLD_SIZE=2 LOCAL_RANK=0 timeout -s TERM -k 30 "$train_s" \
        python -m nin sweep "$cfg" > "$OUT/rank$r.log" 2>&1) & pids+=($!)
    done
    rc=0
    for p in "${pids[@]}"; do  # 75: stopped by the time limit with a checkpoint, as planned
      wait "$p"; code=$?; [ $code = 0 ] || [ $code = 75 ] || [ $code = 124 ] || rc=$code
    done
    log "runs ended (exit $rc)"
    tail -n 3 "$OUT"/rank*.log
    pack
    exit $rc
    ;;
  probe-speed)  # after auto, same machine: what could make the next lease faster
    # eager at larger batches, four processes at once, and torch.compile (default and CUDA
    # graphs); each measurement capped so that one hung compile cannot take the lease
    b="python $root/benchmarks/train_throughput.py --device $dev --precision $prec
      --models nin_cifar10 --steps $steps"
    timeout 60 $b --batch 256 512 --name "train_throughput_${dev}_eager_large"
    for i in 0 1 2 3; do timeout 60 $b --batch 64 --name "train_throughput_${dev}_four$i" & done
    wait
    for m in default reduce-overhead; do
      timeout 150 $b --batch 64 128 --compile --compile-mode $m \
        --name "train_throughput_${dev}_compile_$m"
    done
    cp "$NIN_BENCH_OUT"/train_throughput_*.json "$OUT/"
    ;;
  *) sed -n 2,20p "$0"; exit 2 ;;
esac
