"""One training step, the same for `run_trial` and `harness bench train`, and the speed settings
it runs under.

`StepSettings` are a run's `train.bf16`, `channels_last`, `fused_optimizer`, `cudnn_benchmark`,
`compile` and `deterministic`, resolved for its device: the first four default to on for a CUDA
device and off on the CPU (where fp32 in the default layout is the fastest path measured here).
`StepSettings.reference()` is the benchmark's baseline, a plain eager fp32 loop.

`Stepper.step` does forward, loss, backward, clipping and the optimiser's update without asking
the device for anything: it returns the loss and the number of correct clips as device tensors,
which the epoch loop accumulates and reads only every `train.sync_every` steps.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from harness.config.sections import TrainSection
from registry import ConfigError

CUBLAS_DETERMINISTIC = ":4096:8"  # the workspace cuBLAS needs for reproducible results


@dataclass(frozen=True)
class StepSettings:
    bf16: bool = False
    channels_last: bool = False
    fused_optimizer: bool = False
    cudnn_benchmark: bool = False
    compile: bool = False
    deterministic: bool = False
    ieee_fp32: bool = False  # no TF32: cuDNN convolves fp32 in TF32 by default on Ampere and later

    @classmethod
    def reference(cls) -> StepSettings:
        """Plain eager fp32: default memory layout, foreach optimiser, no autotuning, and IEEE
        fp32 arithmetic (no TF32 convolutions)."""
        return cls(ieee_fp32=True)

    def params(self) -> dict[str, bool]:
        """As a run logs them: `train.<name>` with the resolved value (a run's convolutions
        follow torch's TF32 default, so `ieee_fp32`, the benchmark's, is not among them)."""
        return {f"train.{name}": value for name, value in asdict(self).items()
                if name != "ieee_fp32"}  # fmt: skip


def resolve_settings(train: TrainSection, device: torch.device) -> StepSettings:
    """`train`'s speed settings for `device`: `null` means on for CUDA, off elsewhere."""
    gpu = device.type == "cuda"

    def auto(value: bool | None) -> bool:
        return gpu if value is None else value

    benchmark = train.cudnn_benchmark
    return StepSettings(
        bf16=auto(train.bf16),
        channels_last=auto(train.channels_last),
        fused_optimizer=auto(train.fused_optimizer),
        cudnn_benchmark=gpu and not train.deterministic if benchmark is None else benchmark,
        compile=train.compile,
        deterministic=train.deterministic,
        ieee_fp32=not gpu,  # what a CPU computes anyway; on a GPU, torch's TF32 default
    )


@contextlib.contextmanager
def backend_flags(settings: StepSettings, device: torch.device) -> Iterator[None]:
    """cuDNN autotuning, deterministic algorithms and (for `ieee_fp32`) no TF32, as `settings`
    ask, restored afterwards (a process that runs several trials, or the benchmark's two loops,
    must not inherit them)."""
    saved = (
        torch.backends.cudnn.benchmark,
        torch.backends.cudnn.deterministic,
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
    )
    if settings.deterministic and device.type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_DETERMINISTIC)
    torch.backends.cudnn.benchmark = settings.cudnn_benchmark
    torch.backends.cudnn.deterministic = settings.deterministic
    # an op with no deterministic kernel warns rather than fails (the global max pooling of the
    # attention modules is an amax, which has one, and the 3D max pooling of the stems, C3D and
    # non-local is separable then, `registry.max_pool3d`: tests/test_training_path.py checks
    # on a GPU)
    torch.use_deterministic_algorithms(settings.deterministic, warn_only=True)
    # torch's legacy TF32 flags, touched only for `ieee_fp32` (reading them raises after a mix
    # of torch's newer `fp32_precision` setters, which this code never calls)
    tf32 = _tf32_flags(False) if settings.ieee_fp32 else None
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = saved[:2]
        torch.use_deterministic_algorithms(saved[2], warn_only=saved[3])
        if tf32 is not None:
            _tf32_flags(*tf32)


def _tf32_flags(cudnn: bool, matmul: bool | None = None) -> tuple[bool, bool]:
    """Set whether cuDNN and cuBLAS may compute fp32 in TF32 (`matmul` None: as `cudnn`);
    returns the flags as they were."""
    before = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
    torch.backends.cudnn.allow_tf32 = cudnn
    torch.backends.cuda.matmul.allow_tf32 = cudnn if matmul is None else matmul
    return before


def autocast(settings: StepSettings, device: torch.device):
    """bf16 autocast when the settings ask for it; nothing otherwise."""
    if settings.bf16:
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def memory_format(dims: int) -> torch.memory_format:
    """Channels-last for a tensor of `dims` dimensions (5: clips, 4: images)."""
    return torch.channels_last_3d if dims == 5 else torch.channels_last


def prepare_model(model: nn.Module, settings: StepSettings, device: torch.device) -> nn.Module:
    """`model` on `device`, its convolution weights channels-last when asked (the input is
    converted to match in `to_device`, so no convolution converts formats), its classifier in
    fp32 under bf16 (`float32_classifier`)."""
    model.to(device)
    if settings.channels_last:
        three_d = any(isinstance(m, nn.Conv3d) for m in model.modules())
        model.to(memory_format=memory_format(5 if three_d else 4))
    if settings.bf16:
        float32_classifier(model)
    return model


class Float32Linear(nn.Linear):
    """An `nn.Linear` computed in fp32 under autocast: its outputs keep fp32's 24 bits."""

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        with torch.autocast(features.device.type, enabled=False):
            return F.linear(features.float(), self.weight, self.bias)


def float32_classifier(model: nn.Module) -> str | None:
    """Make the model's classifier (the backbone's registered one, `classifier_path`, set by
    the registry's build) a `Float32Linear`, in place (same parameters, same state dict); its
    path, or None where there is none to make so (not an `nn.Linear`: a plugin's own head).
    Under bf16 a logit is rounded to 8 significant bits: between 8 and 16 it moves in steps of
    0.0625, so two classes' clip scores tie exactly, and evaluation's top-1 flips on near-ties,
    far more often than in fp32."""
    path = getattr(model, "classifier_path", None)
    head = model.get_submodule(path) if path else None
    if type(head) is nn.Linear:
        head.__class__ = Float32Linear
    return path if isinstance(head, Float32Linear) else None


def compiled(model: nn.Module, settings: StepSettings) -> nn.Module:
    """The module the loop calls: `torch.compile(model)` when asked (after any DDP wrap)."""
    return torch.compile(model) if settings.compile else model


def to_device(clip: torch.Tensor, device: torch.device, channels_last: bool) -> torch.Tensor:
    clip = clip.to(device, non_blocking=True)
    if channels_last and clip.dim() in (4, 5):
        return clip.contiguous(memory_format=memory_format(clip.dim()))
    return clip.contiguous()  # a batch augmented on the device comes channels-last


def forward(model: nn.Module, batch: dict, device: torch.device, channels_last: bool = False):
    """Logits of a batch. TSN batches (`segments` in the batch) hold `(N, S, C, H, W)`: the 2D
    model scores every segment and the scores are averaged (TSN's segmental consensus)."""
    clips = batch["clip"]
    if "segments" not in batch:
        return model(to_device(clips, device, channels_last))
    n, segments = clips.shape[:2]
    logits = model(to_device(clips.flatten(0, 1), device, channels_last))  # (N·S, K)
    return logits.view(n, segments, -1).mean(dim=1)  # (N, K)


@contextlib.contextmanager
def _batch_norm_check(clips: int) -> Iterator[None]:
    """Batch norm's refusal of a training batch that leaves one value per channel (a batch of
    one clip reaching a 1×1×1 feature map) as the setting it is, not a traceback."""
    try:
        yield
    except ValueError as error:
        if "Expected more than 1 value per channel when training" not in str(error):
            raise
        raise ConfigError(
            f"a training batch of {clips} clip(s) leaves batch norm one value per channel "
            f"({str(error).rsplit('input size ', 1)[-1]}): train with at least 2 clips per batch "
            "(train.batch_size in a spec, --batch for harness bench train)."
        ) from None


Mark = Callable[[str], None]  # called after the forward ("forward") and the update ("update")


@dataclass
class Stepper:
    """The training step of one model: what `run_trial` and `harness bench train` both call."""

    model: nn.Module  # what is called: the model, DDP-wrapped and/or compiled as the run asks
    optimizer: torch.optim.Optimizer
    settings: StepSettings
    device: torch.device
    grad_clip: float | None = None

    def step(self, batch: dict, mark: Mark | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """One update; returns the batch's mean loss and its count of correct clips, both still
        on the device (reading them would make the host wait)."""
        labels = batch["label"].to(self.device, non_blocking=True)
        with autocast(self.settings, self.device), _batch_norm_check(len(labels)):
            logits = forward(self.model, batch, self.device, self.settings.channels_last)
            loss = nn.functional.cross_entropy(logits.float(), labels)
        if mark is not None:
            mark("forward")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.grad_clip is not None:
            parameters = [p for group in self.optimizer.param_groups for p in group["params"]]
            nn.utils.clip_grad_norm_(parameters, self.grad_clip)
        self.optimizer.step()
        if mark is not None:
            mark("update")
        return loss.detach(), (logits.argmax(dim=1) == labels).sum()
