"""One process, several CPU processes (gloo) or N GPUs (NCCL) with the same code.

``torchrun --nproc-per-node N -m emu3_vla.cli train ...`` sets ``WORLD_SIZE``/``RANK``; without it
training runs in one process with no process group. Small models are replicated with DDP; large
ones are sharded with FSDP2 (``torch.distributed.fsdp.fully_shard``, one unit per decoder layer).
"""

from __future__ import annotations

import dataclasses
import logging
import os
from contextlib import AbstractContextManager, nullcontext

import torch
import torch.distributed as dist

log = logging.getLogger(__name__)
FSDP_THRESHOLD = 1_000_000_000  # parameters; "auto" shards models at least this large


@dataclasses.dataclass(frozen=True)
class DistEnv:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = dataclasses.field(default_factory=lambda: torch.device("cpu"))

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def init_distributed(device: str = "auto") -> DistEnv:
    """Join the process group torchrun created (if any) and pick this process's device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() if device == "auto" else device.startswith("cuda")
    dev = torch.device(f"cuda:{local_rank}") if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(dev)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    rank = dist.get_rank() if dist.is_initialized() else 0
    return DistEnv(rank=rank, world_size=world, local_rank=local_rank, device=dev)


def shutdown(env: DistEnv) -> None:
    if env.distributed and dist.is_initialized():
        dist.destroy_process_group()


def barrier(env: DistEnv) -> None:
    if env.distributed:
        dist.barrier()


def all_reduce_sum(value: torch.Tensor, env: DistEnv) -> torch.Tensor:
    if env.distributed:
        value = value.clone()
        dist.all_reduce(value, op=dist.ReduceOp.SUM)
    return value


def choose_strategy(strategy: str, num_parameters: int) -> str:
    if strategy not in ("auto", "ddp", "fsdp"):
        raise ValueError(f"distributed.strategy must be auto, ddp or fsdp, got {strategy!r}")
    if strategy == "auto":
        return "fsdp" if num_parameters >= FSDP_THRESHOLD else "ddp"
    return strategy


def wrap_model(model: torch.nn.Module, env: DistEnv, strategy: str) -> torch.nn.Module:
    """DDP or FSDP2 for several processes; the model itself for one."""
    if not env.distributed:
        return model
    if strategy == "ddp":
        from torch.nn.parallel import DistributedDataParallel

        ids = [env.device.index] if env.device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=ids)
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    mesh = init_device_mesh(env.device.type, (env.world_size,))
    decoder = getattr(model, "base_model", model)
    layers = decoder.model.layers if hasattr(decoder, "model") else []
    for layer in layers:
        fully_shard(layer, mesh=mesh)
    fully_shard(model, mesh=mesh)
    return model


def no_gradient_sync(model: torch.nn.Module, sync: bool) -> AbstractContextManager:
    """Skip the gradient all-reduce on all but the last micro-batch of a step."""
    if sync:
        return nullcontext()
    if hasattr(model, "no_sync"):  # DDP
        return model.no_sync()
    if hasattr(model, "set_requires_gradient_sync"):  # FSDP2

        class _Toggle(AbstractContextManager):
            def __enter__(self):
                model.set_requires_gradient_sync(False)

            def __exit__(self, *exc):
                model.set_requires_gradient_sync(True)

        return _Toggle()
    return nullcontext()
