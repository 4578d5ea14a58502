"""One trial over several processes with PyTorch DDP, launched by `torchrun`.

    torchrun --nproc-per-node 4 -m harness run SPEC --trial KEY

Every rank trains on its share of each epoch (the same seeded permutation, strided by rank) and
DDP averages the gradients, so all ranks hold the same parameters; rank 0 alone logs the one
MLflow run, writes checkpoints and evaluates. NCCL on GPUs (one per local rank), gloo on the CPU.
At the end the ranks compare parameter checksums and rank 0 logs whether they were identical.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from harness.device import default_device


@dataclass(frozen=True)
class Group:
    rank: int
    world: int
    device: torch.device

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_from_env() -> Group:
    """Join the process group `torchrun` describes in the environment (once); alone otherwise."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return current()


def current() -> Group:
    if not dist.is_initialized():
        return Group(0, 1, default_device())
    device = (
        torch.device("cuda", torch.cuda.current_device())
        if torch.cuda.is_available()
        else torch.device("cpu")
    )
    return Group(dist.get_rank(), dist.get_world_size(), device)


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def mean_over_ranks(values: list[float]) -> list[float]:
    """Each value averaged over the ranks (the per-rank epoch statistics)."""
    if not dist.is_initialized():
        return values
    tensor = torch.tensor(values, dtype=torch.float64)
    dist.all_reduce(tensor)
    return (tensor / dist.get_world_size()).tolist()


def parameter_checksums(model: torch.nn.Module) -> list[float]:
    """Every rank's sum of its parameters (float64), gathered on every rank."""
    total = torch.stack([p.detach().double().sum().cpu() for p in model.parameters()]).sum()
    if not dist.is_initialized():
        return [float(total)]
    gathered = [torch.zeros((), dtype=torch.float64) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, total)
    return [float(t) for t in gathered]


def wrap(model: torch.nn.Module, group: Group) -> torch.nn.Module:
    """The module the training loop calls: DDP around `model` when there are several ranks."""
    if group.world == 1:
        return model
    ids = [group.device.index] if group.device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)


def replica_report(model: torch.nn.Module, group: Group) -> tuple[dict, dict] | None:
    """Under DDP, `(metrics, tags)` saying whether every rank ended with the same parameters
    (a collective: every rank calls it); None for a single process."""
    if group.world == 1:
        return None
    checksums = parameter_checksums(model)
    tags = {
        "ddp_params_identical": str(len(set(checksums)) == 1).lower(),
        "ddp_param_checksums": ",".join(f"{c:.10g}" for c in checksums),
    }
    return {"ddp_world_size": group.world}, tags
