"""Where a run executes: the device, its precision (bf16 autocast or fp32), and the facts
recorded with results.

Precision: bf16 autocast on CUDA, and on a CPU whose cores compute bf16 natively (flags
avx512_bf16 or amx_bf16: AMD Zen 4, Intel Cooper Lake / Sapphire Rapids and newer). There a
training step runs 1.7-2.1x faster than fp32 (benchmarks/train_throughput.py). Elsewhere oneDNN
emulates bf16 and runs about 2x *slower*, so the CPU stays fp32. The weights, the optimizer state
and the loss stay fp32 either way; only the network's forward (and so its backward) is autocast.
"""
from __future__ import annotations

import functools
import os
import platform
import subprocess
import sys
from pathlib import Path

import torch

PRECISIONS = ("fp32", "bf16")


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


@functools.lru_cache(maxsize=1)
def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 in hardware, and the kernels may use it.
    torch.ops.mkldnn._is_mkldnn_bf16_supported() is no guide: it says yes on any AVX-512 CPU,
    where bf16 is emulated and slower. Kernels capped below AVX-512 (ATEN_CPU_CAPABILITY=avx2,
    ONEDNN_MAX_CPU_ISA=AVX2: how a newer machine runs an older one's code paths) emulate it too."""
    if torch.backends.cpu.get_cpu_capability() not in ("AVX512", "AMX"):
        return False
    isa = os.environ.get("ONEDNN_MAX_CPU_ISA", "ALL").upper()
    if isa != "ALL" and not isa.startswith(("AVX512_CORE_BF16", "AVX512_CORE_AMX", "AVX10")):
        return False
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
        return "avx512_bf16" in flags or "amx_bf16" in flags
    except OSError:  # not Linux: ask torch (it reads the same CPUID bit)
        probe = getattr(torch.cpu, "_is_avx512_bf16_supported", None)
        return bool(probe and probe())


def resolve_precision(device: torch.device, amp: bool | None) -> str:
    """amp None (auto): bf16 where it is fast (CUDA, a CPU with native bf16), else fp32.
    amp True forces bf16 (emulated, slow, on an older CPU); False forces fp32."""
    if amp is None:
        amp = device.type == "cuda" or (device.type == "cpu" and cpu_has_native_bf16())
    return "bf16" if amp else "fp32"


def dropout_masks(device: torch.device, precision: str) -> str:
    """The dropout masks a new run draws: "bits" (models.Dropout's random bits, cheaper) for
    bf16 on the CPU, where bernoulli_ is a large share of a step; torch's everywhere else."""
    return "bits" if device.type == "cpu" and precision == "bf16" else "torch"


def eval_precision(device: torch.device, amp: bool | None = None) -> str:
    """Evaluation: bf16 on CUDA (unless amp is False), fp32 on the CPU. Scoring is a small share
    of a CPU run's time, and fp32 reproduces the shipped weights' recorded errors exactly."""
    return "bf16" if device.type == "cuda" and amp is not False else "fp32"


def autocast(device: torch.device, precision: str = "fp32"):
    """The context a forward pass runs in: bf16 autocast, or nothing (fp32)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r}: use one of {PRECISIONS}")
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                             cwd=Path(__file__).parent, timeout=5)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def cpu_model() -> str:
    """The processor as /proc/cpuinfo names it, with its family and model numbers (which tell
    a first-generation Zen, family 23, from a Zen 4, family 25 model 17): speeds are compared
    only between runs on the same one."""
    try:
        info = dict(line.split(":", 1) for line in Path("/proc/cpuinfo").read_text().splitlines()
                    if ":" in line)  # the last processor's fields; all cores are alike here
    except OSError:
        return platform.processor() or platform.machine()
    info = {k.strip(): v.strip() for k, v in info.items()}
    return (f"{info.get('model name', platform.machine())} (family {info.get('cpu family', '?')}"
            f" model {info.get('model', '?')})")


def environment(device: torch.device) -> dict:
    """Versions, hardware and command line: recorded in every result and benchmark."""
    return dict(torch=torch.__version__, python=platform.python_version(),
                device=str(device), threads=torch.get_num_threads(),
                gpu=torch.cuda.get_device_name(device) if device.type == "cuda" else None,
                cpu=platform.processor() or platform.machine(), cpu_model=cpu_model(),
                cpu_native_bf16=cpu_has_native_bf16(), git_commit=git_commit(),
                command=" ".join(sys.argv))
