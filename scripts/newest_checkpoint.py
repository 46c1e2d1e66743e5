"""Print the newest whole checkpoint (sidecar path) of a run folder, as --resume picks it
(nin.checkpoint.latest_valid): a damaged newer one is reported on stderr and skipped; an empty
line when there is none. For the shell scripts that copy a run's checkpoint (snapshot_run.sh,
gpu_runs.sh pack).

    python scripts/newest_checkpoint.py RUN
"""
import sys

from nin.checkpoint import latest_valid

if __name__ == "__main__":
    path, _ = latest_valid(sys.argv[1], log=lambda m: print(m, file=sys.stderr))
    print(path or "")
