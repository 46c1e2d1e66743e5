"""torch.distributed glue: set up from torchrun's environment, shard batches, reduce counts.

`torchrun --nproc_per_node=N -m nin train ...` sets RANK / WORLD_SIZE / LOCAL_RANK; with them the
trainer wraps the model in DistributedDataParallel, every rank draws the same global batch (same
seeded permutation and augmentation draws) and trains on its slice of it, so the global batch
size and learning rate are the configured ones. Only rank 0 writes logs and checkpoints.
"""
from __future__ import annotations

import gc
import os

import torch
import torch.distributed as dist


def env_world() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def init(device_kind: str = "auto") -> tuple[int, int, torch.device | None]:
    """(rank, world size, device) after init_process_group when launched by torchrun, else
    (0, 1, None). CUDA ranks use nccl on cuda:LOCAL_RANK, CPU ranks gloo."""
    if env_world() <= 1:
        return 0, 1, None
    local = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = torch.cuda.is_available() and device_kind in ("auto", "cuda")
    device = torch.device(f"cuda:{local}") if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo")
    return dist.get_rank(), dist.get_world_size(), device


def active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if active() else 0


def world() -> int:
    return dist.get_world_size() if active() else 1


def shard(n: int) -> slice:
    """This rank's contiguous slice of a global batch of n (n divisible by the world size)."""
    w, r = world(), rank()
    return slice(r * n // w, (r + 1) * n // w)


def all_sum(*tensors: torch.Tensor) -> list[torch.Tensor]:
    """Sum tensors over ranks (in place; returned for convenience)."""
    if active():
        for t in tensors:
            dist.all_reduce(t)
    return list(tensors)


def any_flag(flag: bool, device) -> bool:
    """True on every rank when it is true on any: ranks stop together, never hang."""
    if not active():
        return flag
    t = torch.tensor([int(flag)], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def gather_objects(obj) -> list:
    if not active():
        return [obj]
    out = [None] * world()
    dist.all_gather_object(out, obj)
    return out


def barrier():
    if active():
        dist.barrier()


def cleanup():
    """Tear the process group down while Python is fully alive. Left to interpreter exit, a
    gloo group whose worker threads still hold work can abort the process after training has
    finished (SIGABRT, "terminate called without an active exception"; seen once in CI; see
    pytorch/pytorch#179291). DDP's reducer holds the group, so collect it first."""
    if active():
        gc.collect()
        dist.destroy_process_group()


def env_rank() -> int:
    """This process's rank as torchrun sets it (0 outside torchrun), before init."""
    return int(os.environ.get("RANK", "0"))
