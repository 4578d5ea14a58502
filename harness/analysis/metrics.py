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
    """Collects clip scores batch by batch and averages them per video."""

    def __init__(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self._sums: dict[int, np.ndarray] = {}
        self._counts: dict[int, int] = {}
        self._labels: dict[int, int] = {}
        self._failed: set[int] = set()
        self.clips_correct = 0
        self.clips = 0

    def add(
        self, logits: torch.Tensor, labels: torch.Tensor, videos: torch.Tensor, ok: torch.Tensor
    ) -> None:
        probabilities = logits.float().softmax(dim=1).cpu().numpy()
        for p, label, video, good in zip(
            probabilities, labels.tolist(), videos.tolist(), ok.tolist(), strict=True
        ):
            self._labels[video] = label
            if not good:
                self._failed.add(video)
                continue
            self._sums[video] = self._sums.get(video, 0) + p
            self._counts[video] = self._counts.get(video, 0) + 1
            self.clips += 1
            self.clips_correct += int(p.argmax() == label)

    def merge(self, other: ClipScoreAccumulator) -> None:
        """Add `other`'s clips (another rank's share of the same test set) to these."""
        for video, total in other._sums.items():
            self._sums[video] = self._sums.get(video, 0) + total
            self._counts[video] = self._counts.get(video, 0) + other._counts[video]
        self._labels.update(other._labels)
        self._failed |= other._failed
        self.clips += other.clips
        self.clips_correct += other.clips_correct

    def result(self) -> VideoScores:
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
