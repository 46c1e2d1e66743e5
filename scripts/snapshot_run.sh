#!/usr/bin/env bash
# A run's record for results/, ready to commit before a session ends: its metrics.jsonl (and
# result.json once finished), its log, and its newest resumable checkpoint, which replaces the
# one in DEST/checkpoints (one path, overwritten each time). A later session, on any machine,
# continues the run from it: cp -r DEST/checkpoints DEST/metrics.jsonl RUN/ && nin sweep ...
#
#   bash scripts/snapshot_run.sh RUN DEST [LOG]     # LOG: the sweep's output, kept as train.log
#
# Checkpoints are git-ignored under results/: add them with `git add -f DEST/checkpoints`.
# The newest checkpoint whose files match their hashes is taken (scripts/newest_checkpoint.py, as
# --resume does): one cut short by a killed writer is skipped with a message. PYTHON: which
# interpreter has nin (default python3).
set -euo pipefail
run=${1:?usage: snapshot_run.sh RUN DEST [LOG]}
dest=${2:?usage: snapshot_run.sh RUN DEST [LOG]}
log=${3:-}
last=$("${PYTHON:-python3}" "$(dirname "$0")/newest_checkpoint.py" "$run")
[ -n "$last" ] || { echo "snapshot_run: no checkpoint in $run/checkpoints" >&2; exit 1; }
mkdir -p "$dest/checkpoints"
# copy first, then swap: a copy that fails leaves the previous snapshot whole
tmp=$(mktemp -d "$dest/.snapshot.XXXXXX")
cp "${last%.json}".* "$tmp/"
rm -f "$dest"/checkpoints/step-*
mv "$tmp"/* "$dest/checkpoints/"
rmdir "$tmp"
cp "$run/metrics.jsonl" "$dest/"
if [ -f "$run/result.json" ]; then cp "$run/result.json" "$dest/"; fi
if [ -n "$log" ]; then cp "$log" "$dest/train.log"; fi
echo "$dest: $(basename "$last" .json), $(wc -l < "$dest/metrics.jsonl") lines of metrics"
