"""One trial over several processes with PyTorch DDP, launched by `torchrun`.

    torchrun --nproc-per-node 4 -m harness run SPEC --trial KEY

`train.batch_size` is the global batch: each of the W ranks takes batch_size / W of it (an error
names both when W does not divide it), so the paper's batch and learning rate hold whatever the
world size. Every rank trains on its share of each epoch (the same seeded permutation, strided by
rank) and DDP averages the gradients, so all ranks hold the same parameters. Evaluation is
sharded the same way and the per-video scores gathered; rank 0 alone logs the one MLflow run and
writes checkpoints. NCCL on GPUs (one per local rank), gloo on the CPU; collectives run on the
backend's device. A module that can leave parameters out of a step's graph (STAM's highlight
branch) says so with `may_skip_parameters`, and DDP then looks for unused parameters. At the end
the ranks compare parameter checksums and rank 0 logs whether they were identical.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist
from torch.utils.data import Dataset, Subset

from harness.analysis.metrics import ClipScoreAccumulator
from harness.device import default_device
from registry import ConfigError
from registry.attention.base import may_skip_parameters

# How long a rank waits at a collective for the others. What rank 0 does alone (writing a
# checkpoint, uploading the weights artifact to a tracking server) happens between collectives
# and must fit in it; everything else (FLOPs, latency, evaluation) runs on every rank.
COLLECTIVE_TIMEOUT = timedelta(minutes=30)


@dataclass(frozen=True)
class Group:
    rank: int
    world: int
    device: torch.device
    launched: bool = False  # under torchrun: a process group exists (even of one rank)

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_from_env() -> Group:
    """Join the process group `torchrun` describes in the environment (once; a torchrun of one
    rank too, so its collectives run as they would with more); alone otherwise."""
    if "RANK" in os.environ and "MASTER_ADDR" in os.environ and not dist.is_initialized():
        if not torch.cuda.is_available():
            dist.init_process_group("gloo", timeout=COLLECTIVE_TIMEOUT)
            return current()
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        gpus = torch.cuda.device_count()
        if local_rank >= gpus:
            raise ConfigError(
                f"torchrun started {os.environ.get('LOCAL_WORLD_SIZE', local_rank + 1)} ranks on "
                f"this machine but it has {gpus} GPU(s): NCCL needs one GPU per rank. Use "
                f"`torchrun --nproc-per-node {gpus}`, or CUDA_VISIBLE_DEVICES= for CPU ranks."
            )
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
        dist.init_process_group("nccl", timeout=COLLECTIVE_TIMEOUT, device_id=device)
    return current()


def leave() -> None:
    """Leave the process group, if this process joined one (NCCL wants it before exit)."""
    if dist.is_initialized():
        dist.destroy_process_group()


def current() -> Group:
    if not dist.is_initialized():
        return Group(0, 1, default_device())
    return Group(dist.get_rank(), dist.get_world_size(), default_device(), launched=True)


def broadcast_from_main(value):
    """Rank 0's `value` on every rank (a collective under torchrun; `value` itself alone)."""
    if not dist.is_initialized():
        return value
    shared = [value]
    dist.broadcast_object_list(shared, src=0)
    return shared[0]


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def collective_device() -> torch.device:
    """Where the process group's tensors must live: the rank's GPU for NCCL, else the CPU."""
    if dist.is_initialized() and dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def mean_over_ranks(values: list[float]) -> list[float]:
    """Each value averaged over the ranks (the per-rank epoch statistics)."""
    if not dist.is_initialized():
        return values
    tensor = torch.tensor(values, dtype=torch.float64, device=collective_device())
    dist.all_reduce(tensor)
    return (tensor / dist.get_world_size()).tolist()


def parameter_checksums(model: torch.nn.Module) -> list[float]:
    """Every rank's sum of its parameters (float64), gathered on every rank."""
    device = collective_device()
    total = torch.stack([p.detach().double().sum().to(device) for p in model.parameters()]).sum()
    if not dist.is_initialized():
        return [float(total)]
    gathered = [
        torch.zeros((), dtype=torch.float64, device=device) for _ in range(dist.get_world_size())
    ]
    dist.all_gather(gathered, total)
    return [float(t) for t in gathered]


def rank_batch(batch_size: int, group: Group) -> int:
    """Each rank's share of the global `train.batch_size`."""
    if batch_size % group.world:
        raise ConfigError(
            f"train.batch_size {batch_size} is the global batch, split evenly over the "
            f"{group.world} ranks of this torchrun: it must be a multiple of {group.world} "
            f"(e.g. {group.world * max(batch_size // group.world, 1)}), or change --nproc-per-node."
        )
    return batch_size // group.world


def wrap(model: torch.nn.Module, group: Group) -> torch.nn.Module:
    """The module the training loop calls: DDP around `model` under torchrun, looking for
    unused parameters only when a module may leave some out of a step."""
    if not group.launched:
        return model
    ids = [group.device.index] if group.device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(
        model, device_ids=ids, find_unused_parameters=may_skip_parameters(model)
    )


def share_buffers(model: torch.nn.Module) -> None:
    """Rank 0's buffers (BatchNorm running statistics) on every rank: DDP copies them only at
    the start of each forward, so after the last step each rank holds its own."""
    if dist.is_initialized():
        for buffer in model.buffers():
            dist.broadcast(buffer.data, src=0)


def shard(dataset: Dataset, group: Group) -> Dataset:
    """This rank's share of an evaluation set: every world-th item, from its rank on."""
    if group.world == 1:
        return dataset
    return Subset(dataset, range(group.rank, len(dataset), group.world))


def gather_scores(
    accumulator: ClipScoreAccumulator,
) -> tuple[ClipScoreAccumulator, list[int]]:
    """Every rank's clip scores merged, and how many clips each rank scored (a collective;
    every rank ends with the whole set)."""
    if not dist.is_initialized():
        return accumulator, [accumulator.clips]
    shares: list = [None] * dist.get_world_size()
    dist.all_gather_object(shares, accumulator)
    merged = ClipScoreAccumulator(accumulator.num_classes)
    for share in shares:
        merged.merge(share)
    return merged, [share.clips for share in shares]


def replica_report(model: torch.nn.Module, group: Group) -> tuple[dict, dict] | None:
    """Under DDP, `(metrics, tags)` saying whether every rank ended with the same parameters
    (a collective: every rank calls it); None for a single process."""
    if not group.launched:
        return None
    checksums = parameter_checksums(model)
    tags = {
        "ddp_params_identical": str(len(set(checksums)) == 1).lower(),
        "ddp_param_checksums": ",".join(f"{c:.10g}" for c in checksums),
    }
    return {"ddp_world_size": group.world}, tags
