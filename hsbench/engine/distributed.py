"""torch.distributed helpers: rank/world size, process-group setup under torchrun.

One variant can train on several GPUs of one machine (or several machines)
when launched with ``torchrun --nproc-per-node N ...``: torchrun sets
``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` and ``MASTER_ADDR/PORT``, and
:func:`init_from_env` creates the process group (NCCL on CUDA, gloo on CPU).
Without torchrun every helper answers as the only process (rank 0 of 1).
"""

from __future__ import annotations

import hashlib
import os
from typing import Any

import torch
import torch.distributed as dist


def is_distributed() -> bool:
    """True when a process group is initialised with more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    """This process's global rank (0 without a process group)."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def world_size() -> int:
    """Number of processes (1 without a process group)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def local_rank() -> int:
    """This process's rank on its machine (``LOCAL_RANK`` from torchrun, else 0)."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def launch_rank() -> int:
    """The global rank the launcher gave this process (``RANK`` from torchrun or submitit; 0 without).

    Readable before the process group exists, e.g. to skip work that only rank 0 does.
    """
    return int(os.environ.get("RANK", "0"))


def is_main() -> bool:
    """True on the process that writes files and prints (rank 0)."""
    return rank() == 0


def barrier() -> None:
    """Wait for every process; a no-op without a process group."""
    if is_distributed():
        dist.barrier()


def init_from_env(device: str | torch.device | None = None) -> bool:
    """Initialise the default process group when launched by torchrun.

    Does nothing (returns False) when ``WORLD_SIZE`` is unset or 1, or a group
    already exists. The backend is NCCL when ``device`` is CUDA, else gloo.

    Returns:
        True if this call created the process group.
    """
    if not dist.is_available() or dist.is_initialized():
        return False
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    dev = torch.device(device) if device is not None else None
    use_cuda = (dev is not None and dev.type == "cuda") or (dev is None and torch.cuda.is_available())
    backend = "nccl" if use_cuda else "gloo"
    if use_cuda:
        torch.cuda.set_device(local_rank())
    dist.init_process_group(backend=backend)
    return True


def all_gather_object(obj: Any) -> list[Any]:
    """``obj`` of every process, in rank order (``[obj]`` without a process group)."""
    if not is_distributed():
        return [obj]
    out: list[Any] = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def params_digest(model: torch.nn.Module) -> str:
    """SHA-256 (hex) of the model's parameters, names and bytes in ``named_parameters`` order.

    DDP keeps the parameters of every process identical, bit for bit; buffers
    (BatchNorm running statistics) are left out because each process updates
    them from its own shard after DDP's last broadcast.
    """
    h = hashlib.sha256()
    for name, p in model.named_parameters():
        h.update(name.encode())
        h.update(p.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def check_ranks_agree(model: torch.nn.Module) -> list[str]:
    """Every process's :func:`params_digest`, after checking that they are all equal.

    Returns:
        One digest per rank (one element without a process group).

    Raises:
        RuntimeError: the processes hold different parameters (DDP did not keep them in sync).
    """
    digests = all_gather_object(params_digest(model))
    if len(set(digests)) > 1:
        shown = ", ".join(f"rank {r}: {d[:12]}" for r, d in enumerate(digests))
        raise RuntimeError(f"DDP ranks disagree on the trained parameters ({shown})")
    return digests


__all__ = [
    "is_distributed", "rank", "world_size", "local_rank", "is_main", "barrier", "init_from_env",
    "all_gather_object", "params_digest", "check_ranks_agree", "launch_rank",
]
