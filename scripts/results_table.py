"""Regenerate the results and benchmark tables of docs/results.md and docs/speed.md from
results/**/result.json and results/bench/*.json (see nin.report).
Usage: python scripts/results_table.py            rewrite them between their markers
       python scripts/results_table.py --check    exit 1 if they are not up to date
"""
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from nin.report import update_docs  # noqa: E402

if __name__ == "__main__":
    if "--check" in sys.argv:
        if not update_docs(ROOT, check=True):
            print("docs/results.md or docs/speed.md tables are out of date: run scripts/results_table.py",
                  file=sys.stderr)
            sys.exit(1)
    else:
        update_docs(ROOT)
        print("docs/results.md and docs/speed.md tables rebuilt")
