"""One process of a DDP (torchrun) fit: its rank and device, joining the process group, and the
collective steps the fit loop needs (wrap, sync BatchNorm buffers, broadcast)."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from ml.errors import ConfigurationError


class NotUnderTorchrunError(ConfigurationError):
    """A DDP worker started without the environment torchrun sets (names what is missing)."""


@dataclass(frozen=True)
class DistContext:
    rank: int
    world_size: int
    local_rank: int
    backend: str

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def device(self) -> str:
        return f"cuda:{self.local_rank}" if self.backend == "nccl" else "cpu"

    def wrap(self, network, device: str):
        ids = [self.local_rank] if device.startswith("cuda") else None
        return DistributedDataParallel(network, device_ids=ids)

    def sync_buffers(self, network) -> None:
        """Rank 0's BatchNorm statistics everywhere, so every rank evaluates the same model."""
        for buffer in network.buffers():
            dist.broadcast(buffer.data, src=0)

    def broadcast_floats(self, values: list[float]) -> list[float]:
        tensor = torch.tensor(values, dtype=torch.float64, device=self.device())
        dist.broadcast(tensor, src=0)
        return tensor.cpu().tolist()


def setup() -> DistContext:
    """Join the process group torchrun set up (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_*)."""
    missing = [k for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK") if k not in os.environ]
    if missing:
        raise NotUnderTorchrunError(
            f"ml.training.distributed: {missing} not set: start it through torchrun"
        )
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    ctx = DistContext(
        rank=int(os.environ["RANK"]),
        world_size=int(os.environ["WORLD_SIZE"]),
        local_rank=int(os.environ["LOCAL_RANK"]),
        backend=backend,
    )
    if backend == "nccl":
        torch.cuda.set_device(ctx.local_rank)
    dist.init_process_group(backend=backend)
    return ctx
