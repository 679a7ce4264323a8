"""Data-parallel training helpers for ``torchrun`` (gloo on CPU, NCCL on GPU).

The trainer uses explicit gradient averaging rather than wrapping modules in ``DistributedDataParallel``: the IP
calls its decoder several times per step (one pass per group of canvases, plus the guide), which DDP's
one-forward-one-backward hooks do not fit. The arithmetic is DDP's: every rank computes the mean loss of its shard
of the global batch, then the gradients of model and guide parameters are summed across ranks in one flat
all-reduce and divided by the world size, so every rank takes the same optimiser step as a single process on the
global batch would (up to the order of floating-point sums).
"""
from __future__ import annotations

import os
from typing import Iterable

import torch
import torch.distributed as dist

__all__ = ["setup", "is_main", "rank", "world_size", "check_batch_size", "shard", "average_gradients", "average_scalar",
           "broadcast_parameters", "parameter_spread", "barrier"]


def setup(device: torch.device) -> torch.device:
    """Join the ``torchrun`` process group (gloo for CPU, NCCL for CUDA); returns this rank's device."""
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        raise ValueError("--distributed needs torchrun's environment (RANK, WORLD_SIZE); launch with "
                         "`torchrun --nproc_per_node=N -m ip_pyro.cli train --distributed ...`")
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return device


def is_main() -> bool:
    return not dist.is_initialized() or dist.get_rank() == 0


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def check_batch_size(batch_size: int) -> None:
    """A one-line error when a global batch of ``batch_size`` does not split evenly over the processes."""
    if batch_size % world_size():
        raise ValueError(f"a global batch of {batch_size} does not split over {world_size()} processes; choose a "
                         "--batch-size divisible by the number of processes")


def shard(items: list) -> list:
    """This rank's contiguous share of a global batch (``len(items)`` must divide by the world size)."""
    check_batch_size(len(items))
    size, index = world_size(), rank()
    per_rank = len(items) // size
    return items[index * per_rank:(index + 1) * per_rank]


def average_gradients(parameters: Iterable[torch.Tensor]) -> None:
    """Replace every gradient by its mean over ranks (one flat all-reduce; missing gradients count as zero)."""
    size = world_size()
    if size == 1:
        return
    parameters = [p for p in parameters if p.requires_grad]
    for p in parameters:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    flat = torch.cat([p.grad.reshape(-1) for p in parameters])
    dist.all_reduce(flat)
    flat /= size
    offset = 0
    for p in parameters:
        count = p.grad.numel()
        p.grad.copy_(flat[offset:offset + count].view_as(p.grad))
        offset += count


def average_scalar(value: torch.Tensor) -> torch.Tensor:
    """The mean of a scalar tensor over ranks (NaN on any rank makes it NaN everywhere)."""
    if world_size() == 1:
        return value
    value = value.detach().clone().reshape(1)
    dist.all_reduce(value)
    return value[0] / world_size()


def broadcast_scalar(value: torch.Tensor) -> torch.Tensor:
    """Rank 0's value of a scalar tensor on every rank (for decisions all ranks must share)."""
    if world_size() == 1:
        return value
    value = value.detach().clone().reshape(1)
    dist.broadcast(value, src=0)
    return value[0]


def broadcast_parameters(modules) -> None:
    """Copy rank 0's parameters and buffers to every rank."""
    if world_size() == 1:
        return
    for module in modules:
        if module is None:
            continue
        for tensor in list(module.parameters()) + list(module.buffers()):
            dist.broadcast(tensor.data, src=0)


def parameter_spread(parameters: Iterable[torch.Tensor]) -> float:
    """The largest difference of any parameter entry between ranks (0.0 when the ranks are in sync)."""
    flat = torch.cat([p.detach().reshape(-1).float() for p in parameters])
    if world_size() == 1:
        return 0.0
    high, low = flat.clone(), flat.clone()
    dist.all_reduce(high, op=dist.ReduceOp.MAX)
    dist.all_reduce(low, op=dist.ReduceOp.MIN)
    return float((high - low).max())


def barrier() -> None:
    if world_size() > 1:
        dist.barrier()
