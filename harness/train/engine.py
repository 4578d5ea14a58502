"""Training and evaluation loops: short, explicit, read top to bottom.

On a GPU, steps run under bf16 autocast and 5D inputs are converted to channels-last memory (the
weights stay in the default layout, so each convolution converts); on the CPU, plain fp32. A loss
that is NaN or infinite ends the trial with `NonFiniteLoss` naming the epoch and step. Samples
that failed to decode and were replaced come back from the loader in `failed` and are returned,
so the run can log how many and which.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, field

import torch
from torch import nn
from tqdm import tqdm

from harness.analysis.metrics import ClipScoreAccumulator, VideoMetrics, VideoScores, video_metrics


class NonFiniteLoss(RuntimeError):
    """The loss became NaN or infinite: the trial cannot continue."""


@dataclass
class EpochStats:
    loss: float
    clip_accuracy: float
    data_seconds: float
    compute_seconds: float
    replaced: list[str] = field(default_factory=list)  # videos that failed and were replaced


def autocast(device: torch.device):
    """bf16 autocast on CUDA; nothing on the CPU (fp32 there is the reference)."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def to_device(clip: torch.Tensor, device: torch.device) -> torch.Tensor:
    clip = clip.to(device, non_blocking=True)
    if device.type == "cuda" and clip.dim() == 5:
        clip = clip.contiguous(memory_format=torch.channels_last_3d)
    return clip


def forward(model: nn.Module, batch: dict, device: torch.device) -> torch.Tensor:
    """Logits of a batch. TSN batches (`segments` in the batch) hold `(N, S, C, H, W)`: the 2D
    model scores every segment and the scores are averaged (TSN's segmental consensus)."""
    clips = batch["clip"]
    if "segments" not in batch:
        return model(to_device(clips, device))
    n, segments = clips.shape[:2]
    logits = model(to_device(clips.flatten(0, 1), device))  # (N·S, K)
    return logits.view(n, segments, -1).mean(dim=1)  # (N, K)


def train_one_epoch(
    model: nn.Module,
    loader,
    optimizer: torch.optim.Optimizer,
    *,
    device: torch.device,
    epoch: int,
    grad_clip: float | None = None,
    progress: bool = False,
) -> EpochStats:
    model.train()
    total_loss, correct, seen = 0.0, 0, 0
    data_seconds = compute_seconds = 0.0
    replaced: list[str] = []
    bar = tqdm(loader, desc=f"epoch {epoch}", disable=not progress, leave=False)
    waited = time.perf_counter()
    for step, batch in enumerate(bar):
        started = time.perf_counter()
        data_seconds += started - waited
        labels = batch["label"].to(device)
        with autocast(device):
            logits = forward(model, batch, device)
            loss = nn.functional.cross_entropy(logits.float(), labels)
        if not math.isfinite(loss.item()):
            raise NonFiniteLoss(f"the loss became {loss.item()} at epoch {epoch}, step {step}")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if grad_clip is not None:
            nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        optimizer.step()
        total_loss += loss.item() * len(labels)
        correct += (logits.argmax(dim=1) == labels).sum().item()
        seen += len(labels)
        replaced += [name for name in batch.get("failed", []) if name]
        waited = time.perf_counter()
        compute_seconds += waited - started
        bar.set_postfix(loss=f"{total_loss / seen:.3f}", acc=f"{correct / seen:.3f}",
                        data=f"{data_seconds:.0f}s", compute=f"{compute_seconds:.0f}s")  # fmt: skip
    return EpochStats(
        total_loss / max(seen, 1), correct / max(seen, 1), data_seconds, compute_seconds, replaced
    )


@torch.no_grad()
def evaluate(
    model: nn.Module, loader, *, num_classes: int, device: torch.device, progress: bool = False
) -> tuple[VideoMetrics, VideoScores]:
    """Clip scores averaged per video (EAM's protocol); unscorable videos are listed."""
    model.eval()
    accumulator = ClipScoreAccumulator(num_classes)
    for batch in tqdm(loader, desc="evaluate", disable=not progress, leave=False):
        with autocast(device):
            logits = forward(model, batch, device)
        accumulator.add(logits, batch["label"], batch["video"], batch["ok"])
    result = accumulator.result()
    clip_accuracy = accumulator.clips_correct / max(accumulator.clips, 1)
    return video_metrics(result, num_classes, clip_accuracy), result
