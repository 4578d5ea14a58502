"""What trains and how: the trainable parameters, the optimiser and the learning-rate schedule
of a trial's `train` section (EAM §4.2: SGD, momentum 0.9, eq. 12's warm-up and steps; AARM §4.1:
SGD; AdamW and cosine for short CPU runs)."""

from __future__ import annotations

from dataclasses import replace

import torch

from harness.config.sections import TrainSection
from harness.train.step import StepSettings
from registry import ConfigError
from registry.attention.base import may_skip_parameters
from registry.checkpoints import is_attention_key

Schedule = torch.optim.lr_scheduler.LRScheduler | torch.optim.lr_scheduler.ReduceLROnPlateau


def set_trainable(model: torch.nn.Module, trainable: str | list[str]) -> None:
    """`all`, or names: `attention` (every attention module), or parameter prefixes (`layer4`)."""
    if trainable == "all":
        return
    names = [trainable] if isinstance(trainable, str) else trainable
    for key, parameter in model.named_parameters():
        parameter.requires_grad = any(
            is_attention_key(key) if name == "attention" else key.startswith(f"{name}.")
            for name in names
        )
    if not any(p.requires_grad for p in model.parameters()):
        raise ConfigError(f"train.trainable {names} selects no parameter of this model.")


def make_optimizer(
    model: torch.nn.Module, train: TrainSection, *, fused: bool = False
) -> torch.optim.Optimizer:
    """SGD with momentum (and `dampening`, 0.9 in Hara's 2018 code that EAM follows) or AdamW
    over the trainable parameters; `fused`: one fused kernel for the whole update (a GPU
    setting, `train.fused_optimizer`), else torch's foreach default."""
    parameters = [p for p in model.parameters() if p.requires_grad]
    kernel = {"fused": True} if fused else {}
    if train.optimizer == "adamw":
        return torch.optim.AdamW(parameters, lr=train.lr, weight_decay=train.weight_decay, **kernel)
    return torch.optim.SGD(
        parameters, lr=train.lr, momentum=train.momentum, dampening=train.dampening,
        weight_decay=train.weight_decay, **kernel,
    )  # fmt: skip


def fused_kernel_fits(model: torch.nn.Module, train: TrainSection) -> bool:
    """Whether torch's fused optimiser kernel can step `model`. Its SGD with momentum creates
    every momentum buffer on the first step or none: a parameter whose first gradient comes on a
    later step stops it ("expected Tensor as element k in argument 2", torch 2.11 to 2.13, CUDA
    and CPU). AARM's STAM convolutions are such parameters where a step may take the highlight
    branch (`may_skip_parameters`, χ > 0): those runs step with the foreach kernel. AdamW's
    fused kernel starts each parameter's state on its own."""
    if train.optimizer == "adamw" or train.momentum == 0:
        return True
    return not may_skip_parameters(model)


def fitted_kernel(
    settings: StepSettings, model: torch.nn.Module, train: TrainSection
) -> StepSettings:
    """`settings` with the fused optimiser kernel off where it cannot step `model`."""
    if settings.fused_optimizer and not fused_kernel_fits(model, train):
        return replace(settings, fused_optimizer=False)
    return settings


def eam_factor(epoch: int, warmup: int, milestones: list[int], gamma: float) -> float:
    """EAM eq. 12 for 1-based epoch t = `epoch` + 1: t/warmup while warming up, then ×gamma per
    milestone passed (lr = 1e-3·t/15 for t ≤ 15; 1e-3 to 45; 1e-4 to 75; 1e-5 to 100)."""
    t = epoch + 1
    if warmup and t <= warmup:
        return t / warmup
    return gamma ** sum(1 for m in milestones if t > m)


def make_schedule(optimizer: torch.optim.Optimizer, train: TrainSection) -> Schedule:
    """`constant`, `eam` (eq. 12), `cosine` over the epochs, or `plateau` on the training loss
    (×`gamma` after `plateau_patience` epochs without a lower loss)."""
    if train.schedule == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, factor=train.gamma, patience=train.plateau_patience
        )
    if train.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(train.epochs, 1))
    if train.schedule == "eam":
        return torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda e: eam_factor(e, train.warmup_epochs, train.milestones, train.gamma)
        )
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda e: 1.0)


def step_schedule(schedule: Schedule, loss: float) -> None:
    """Advance the schedule by one epoch (a plateau schedule reads the epoch's loss)."""
    if isinstance(schedule, torch.optim.lr_scheduler.ReduceLROnPlateau):
        schedule.step(loss)
    else:
        schedule.step()
