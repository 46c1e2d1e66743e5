"""Shared pieces of the benchmarks: the matmul peak measured in the same run, timing, output.
Benchmarks print a table and write JSON into results/bench/; they are not tests."""
import json
import os
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
OUT = Path(os.environ.get("NIN_BENCH_OUT") or ROOT / "results" / "bench")  # scripts redirect it

from nin.device import environment  # noqa: E402,F401 - one home for the run facts
from nin.files import atomic_write  # noqa: E402


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_peak(device, dtype=None, n=None, seconds=2.0) -> float:
    """Measured dense matmul throughput in FLOP/s: bf16 on CUDA, fp32 on the CPU."""
    dtype = dtype or (torch.bfloat16 if device.type == "cuda" else torch.float32)
    n = n or (8192 if device.type == "cuda" else 2048)
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    sync(device)
    reps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        a @ b
        reps += 1
        if device.type == "cuda" and reps % 10:
            continue
        sync(device)
    sync(device)
    return 2 * n ** 3 * reps / (time.perf_counter() - t0)


def write(name: str, record: dict) -> Path:
    OUT.mkdir(parents=True, exist_ok=True)
    path = atomic_write(OUT / f"{name}.json", json.dumps(record, indent=1).encode())
    print(f"wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
    return path


def table(rows: list[dict], cols: list[str]):
    widths = [max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in cols]
    print("  ".join(c.rjust(w) for c, w in zip(cols, widths)))
    for r in rows:
        print("  ".join(str(r.get(c, "")).rjust(w) for c, w in zip(cols, widths)))
