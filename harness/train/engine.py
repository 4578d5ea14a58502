"""Training and evaluation loops: short, explicit, read top to bottom.

Each training step is `Stepper.step` (`harness.train.step`, shared with `harness bench train`).
The loop never makes the host wait for the device between steps: losses and correct counts stay on
the device, and every `sync_every` steps (and at the epoch's end) one read fetches the window's
finiteness and the running totals. A loss that is NaN or infinite ends the trial with
`NonFiniteLoss` naming the epoch and step; test scores that are not finite end it with
`NonFiniteScores` before any accuracy is read from them. `data_seconds` is the time the host waited
for the loader; `compute_seconds` the rest of the epoch's wall time, the waits at those reads
included. Samples that failed to decode and were replaced come back from the loader in `failed` and
are returned, so the run can log how many and which.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from harness.analysis.metrics import ClipScoreAccumulator, VideoMetrics, VideoScores, video_metrics
from harness.data.splits import DataError
from harness.train.step import Stepper, StepSettings, autocast, forward


class NonFiniteLoss(RuntimeError):
    """The loss became NaN or infinite: the trial cannot continue."""


class NonFiniteScores(RuntimeError):
    """The trained network scored test videos NaN or infinite: no accuracy can be read from
    them (the argmax of a NaN vector is class 0, which would count as a guess)."""


@dataclass
class EpochStats:
    loss: float
    clip_accuracy: float
    data_seconds: float
    compute_seconds: float
    replaced: list[str] = field(default_factory=list)  # videos that failed and were replaced


class _Window:
    """The losses of the steps since the last read, and the epoch's running totals, on the
    device; `read` is the loop's one synchronisation per window."""

    def __init__(self, device: torch.device, epoch: int) -> None:
        self.losses: list[torch.Tensor] = []
        self.totals = torch.zeros(2, device=device)  # Σ loss·n, Σ correct
        self.seen, self.first_step, self.epoch = 0, 0, epoch

    def add(self, loss: torch.Tensor, correct: torch.Tensor, count: int) -> None:
        self.losses.append(loss)
        self.totals += torch.stack([loss.float() * count, correct.float()])
        self.seen += count

    def read(self) -> tuple[float, float, int]:
        """(Σ loss·n, Σ correct, n) so far, after checking every loss of the window is finite."""
        if not self.losses:
            return *self.totals.tolist(), self.seen
        finite = torch.isfinite(torch.stack(self.losses))
        flag_and_totals = torch.cat([finite.all().float().view(1), self.totals]).tolist()
        if not flag_and_totals[0]:
            step = self.first_step + finite.tolist().index(False)
            value = self.losses[step - self.first_step].item()
            raise NonFiniteLoss(f"the loss became {value} at epoch {self.epoch}, step {step}")
        self.first_step += len(self.losses)
        self.losses = []
        return *flag_and_totals[1:], self.seen


def train_one_epoch(
    stepper: Stepper, loader, *, epoch: int, sync_every: int = 50, progress: bool = False
) -> EpochStats:
    stepper.model.train()
    window = _Window(stepper.device, epoch)
    data_seconds, replaced = 0.0, []
    bar = tqdm(loader, desc=f"epoch {epoch}", disable=not progress, leave=False)
    started = waited = time.perf_counter()
    for batch in bar:
        data_seconds += time.perf_counter() - waited
        loss, correct = stepper.step(batch)
        window.add(loss, correct, len(batch["label"]))
        replaced += [name for name in batch.get("failed", []) if name]
        if len(window.losses) == sync_every:
            loss_sum, correct_sum, seen = window.read()
            bar.set_postfix(loss=f"{loss_sum / seen:.3f}", acc=f"{correct_sum / seen:.3f}")
        waited = time.perf_counter()
    loss_sum, correct_sum, seen = window.read()
    if seen == 0:
        raise DataError(
            f"epoch {epoch} trained on no sample: the training set is empty or no clip of it "
            "could be decoded. Check the videos with `harness data check`."
        )
    compute_seconds = time.perf_counter() - started - data_seconds
    return EpochStats(loss_sum / seen, correct_sum / seen, data_seconds, compute_seconds, replaced)


Merge = Callable[[ClipScoreAccumulator], ClipScoreAccumulator]


@torch.no_grad()
def evaluate(
    model: nn.Module, loader, *, num_classes: int, device: torch.device,
    settings: StepSettings | None = None, merge: Merge | None = None, progress: bool = False,
) -> tuple[VideoMetrics, VideoScores]:  # fmt: skip
    """Clip scores averaged per video (EAM's protocol); unscorable videos are listed. Under DDP
    each rank scores its share of the clips and `merge` gathers the shares (a collective)."""
    settings = settings or StepSettings.reference()
    model.eval()
    accumulator = ClipScoreAccumulator(num_classes)
    for batch in tqdm(loader, desc="evaluate", disable=not progress, leave=False):
        with autocast(settings, device):
            logits = forward(model, batch, device, settings.channels_last)
        accumulator.add(logits, batch["label"], batch["video"], batch["ok"])
    if merge is not None:
        accumulator = merge(accumulator)
    result = accumulator.result()
    _require_finite(result)
    clip_accuracy = accumulator.clips_correct / max(accumulator.clips, 1)
    return video_metrics(result, num_classes, clip_accuracy), result


def _require_finite(result: VideoScores) -> None:
    """Raise `NonFiniteScores` when any scored video's mean clip scores are not all finite."""
    bad = [video for video, scores in result.scores.items() if not np.isfinite(scores).all()]
    if bad:
        raise NonFiniteScores(
            f"the trained network gave NaN or infinite scores for {len(bad)} of "
            f"{len(result.scores)} test videos (its weights or BatchNorm statistics diverged); "
            "nothing was logged as its accuracy. Lower train.lr or add a warm-up, then run it "
            "again."
        )
