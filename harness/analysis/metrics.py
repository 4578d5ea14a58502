"""Video-level metrics from clip scores: the EAM protocol averages clip scores per video.

Everything is computed from per-video score vectors, which are also what is saved for later
significance tests (paired bootstrap, McNemar).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class VideoScores:
    """Mean clip scores per scored video; `unscored` names the videos nothing could be read of."""

    scores: dict[int, np.ndarray]  # video index → (num_classes,) mean softmax over its clips
    labels: dict[int, int]
    unscored: list[int]


class ClipScoreAccumulator:
    """Collects clip scores batch by batch and averages them per video.

    A batch's scores stay on the device that computed them until they are read, or until
    `SETTLE_EVERY` batches are held: one copy to the host per that many batches, not a
    host-device sync after every batch (which left the GPU idle between evaluation batches)."""

    SETTLE_EVERY = 64

    def __init__(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self._sums: dict[int, np.ndarray] = {}
        self._counts: dict[int, int] = {}
        self._labels: dict[int, int] = {}
        self._failed: set[int] = set()
        self._correct = 0
        self._scored = 0
        self._pending: list[tuple] = []  # (scores on the device, labels, videos, ok) per batch

    def add(
        self, logits: torch.Tensor, labels: torch.Tensor, videos: torch.Tensor, ok: torch.Tensor
    ) -> None:
        # the labels, videos and flags come from the loader, on the host: no sync to read them
        held = (labels.tolist(), videos.tolist(), ok.tolist())
        self._pending.append((logits.detach().float().softmax(dim=1), *held))
        if len(self._pending) >= self.SETTLE_EVERY:
            self._settle()

    @property
    def clips(self) -> int:
        """Clips scored (clips that could not be read are not)."""
        self._settle()
        return self._scored

    @property
    def clips_correct(self) -> int:
        self._settle()
        return self._correct

    def _settle(self) -> None:
        """The held batches copied to the host (one copy) and added per video."""
        if not self._pending:
            return
        columns = list(zip(*self._pending, strict=True))
        self._pending = []
        probabilities = torch.cat(columns[0]).cpu().numpy()
        labels, videos, ok = ([i for batch in column for i in batch] for column in columns[1:])
        for p, label, video, good in zip(probabilities, labels, videos, ok, strict=True):
            self._labels[video] = label
            if not good:
                self._failed.add(video)
                continue
            self._sums[video] = self._sums.get(video, 0) + p
            self._counts[video] = self._counts.get(video, 0) + 1
            self._scored += 1
            self._correct += int(p.argmax() == label)

    def __getstate__(self) -> dict:
        """Pickled (gathered from another rank) with every batch on the host."""
        self._settle()
        return self.__dict__

    def merge(self, other: ClipScoreAccumulator) -> None:
        """Add `other`'s clips (another rank's share of the same test set) to these."""
        self._settle()
        other._settle()
        for video, total in other._sums.items():
            self._sums[video] = self._sums.get(video, 0) + total
            self._counts[video] = self._counts.get(video, 0) + other._counts[video]
        self._labels.update(other._labels)
        self._failed |= other._failed
        self._scored += other._scored
        self._correct += other._correct

    def result(self) -> VideoScores:
        self._settle()
        scores = {v: s / self._counts[v] for v, s in self._sums.items()}
        unscored = sorted(v for v in self._labels if v not in scores)
        return VideoScores(scores, {v: self._labels[v] for v in scores}, unscored)


@dataclass
class VideoMetrics:
    clip_accuracy: float
    video_top1: float
    video_top5: float
    mean_class_accuracy: float
    per_class_accuracy: np.ndarray  # (num_classes,), NaN for classes without test videos
    confusion: np.ndarray  # (num_classes, num_classes), rows = true class
    videos_scored: int
    videos_unscored: int


def video_metrics(result: VideoScores, num_classes: int, clip_accuracy: float) -> VideoMetrics:
    videos = sorted(result.scores)
    if not videos:
        empty = np.full(num_classes, np.nan)
        return VideoMetrics(
            clip_accuracy,
            0.0,
            0.0,
            0.0,
            empty,
            np.zeros((num_classes,) * 2, int),
            0,
            len(result.unscored),
        )
    scores = np.stack([result.scores[v] for v in videos])
    labels = np.array([result.labels[v] for v in videos])
    top1 = scores.argmax(axis=1)
    k = min(5, num_classes)
    top5 = np.argsort(-scores, axis=1)[:, :k]
    confusion = np.zeros((num_classes, num_classes), int)
    np.add.at(confusion, (labels, top1), 1)
    totals = confusion.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        per_class = np.where(totals > 0, np.diag(confusion) / totals, np.nan)
    return VideoMetrics(
        clip_accuracy=clip_accuracy,
        video_top1=float((top1 == labels).mean()),
        video_top5=float((top5 == labels[:, None]).any(axis=1).mean()),
        mean_class_accuracy=float(np.nanmean(per_class)),
        per_class_accuracy=per_class,
        confusion=confusion,
        videos_scored=len(videos),
        videos_unscored=len(result.unscored),
    )
