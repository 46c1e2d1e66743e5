"""Where a run executes: the device, bf16 autocast on CUDA, and the facts recorded with results."""
from __future__ import annotations

import platform
import subprocess
import sys
from pathlib import Path

import torch


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def autocast(device: torch.device, enabled: bool = True):
    """bf16 autocast on CUDA; fp32 elsewhere (bf16 on this CPU is slower, not faster)."""
    if device.type == "cuda" and enabled:
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return torch.autocast("cpu", enabled=False)


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                             cwd=Path(__file__).parent, timeout=5)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def environment(device: torch.device) -> dict:
    """Versions, hardware and command line: recorded in every result and benchmark."""
    return dict(torch=torch.__version__, python=platform.python_version(),
                device=str(device), threads=torch.get_num_threads(),
                gpu=torch.cuda.get_device_name(device) if device.type == "cuda" else None,
                cpu=platform.processor() or platform.machine(), git_commit=git_commit(),
                command=" ".join(sys.argv))
