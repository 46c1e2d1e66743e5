"""Regenerate the README's results tables from results/**/result.json (see nin.report).
Usage: python scripts/results_table.py            rewrite README.md between the markers
       python scripts/results_table.py --check    exit 1 if README.md is not up to date
"""
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from nin.report import update_readme  # noqa: E402

if __name__ == "__main__":
    if "--check" in sys.argv:
        if not update_readme(ROOT, check=True):
            print("README.md results tables are out of date: run scripts/results_table.py",
                  file=sys.stderr)
            sys.exit(1)
    else:
        update_readme(ROOT)
        print("README.md results tables rebuilt")
