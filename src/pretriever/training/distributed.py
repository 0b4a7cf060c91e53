"""Data-parallel training across processes (``torchrun --nproc_per_node N``), DDP-style.

Each process takes its share of every global batch (examples ``rank::world``), so N processes
see the same global batches one process would. In-batch negatives are gathered across processes:
each process scores its own queries against every process's documents (gradients flow through its
own documents only, the usual approximation of DPR and Contriever); gradients are then averaged
across processes before each optimizer step, so the replicas stay identical. Process 0 alone
evaluates on dev, writes checkpoints and saves the model. gloo on CPUs, NCCL on GPUs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class World:
    """This process's rank and the number of processes (1 outside torchrun)."""

    rank: int = 0
    size: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_world(device: str) -> World:
    """Join the process group torchrun (or SLURM via torchrun) set up; World() when alone."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return World()
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    return World(dist.get_rank(), dist.get_world_size())


def local_device(world: World, device: str | None) -> str | None:
    """One GPU per process under torchrun (LOCAL_RANK); otherwise ``device`` unchanged."""
    if device or world.size == 1:
        return device
    import torch

    if torch.cuda.is_available():
        return f"cuda:{int(os.environ.get('LOCAL_RANK', world.rank))}"
    return device


def gather(tensor: Any, world: World) -> Any:
    """Every process's ``tensor`` concatenated in rank order; this process's part keeps its grad."""
    if world.size == 1:
        return tensor
    import torch
    import torch.distributed as dist

    parts = [torch.empty_like(tensor) for _ in range(world.size)]
    dist.all_gather(parts, tensor.detach().contiguous())
    parts[world.rank] = tensor
    return torch.cat(parts)


def average_gradients(params: list[Any], world: World) -> None:
    """Mean of each gradient over processes (called between backward and the optimizer step)."""
    if world.size == 1:
        return
    import torch.distributed as dist

    for p in params:
        if p.grad is not None:
            dist.all_reduce(p.grad)
            p.grad /= world.size


def barrier(world: World) -> None:
    if world.size > 1:
        import torch.distributed as dist

        dist.barrier()
