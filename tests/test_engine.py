"""Metrics against hand-computed values, and the training/evaluation loops on real tiny data."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from harness.analysis.metrics import ClipScoreAccumulator, video_metrics
from harness.train.engine import NonFiniteLoss, evaluate, train_one_epoch


def test_video_metrics_by_hand():
    # 3 classes; video 0 (class 0) has two clips, video 1 (class 1) one, video 2 (class 2) one,
    # video 3 (class 2) could not be read.
    logits = torch.log(
        torch.tensor(
            [[0.6, 0.3, 0.1], [0.2, 0.7, 0.1], [0.1, 0.8, 0.1], [0.5, 0.1, 0.4], [1, 1, 1]]
        )
    )
    labels = torch.tensor([0, 0, 1, 2, 2])
    videos = torch.tensor([0, 0, 1, 2, 3])
    ok = torch.tensor([1, 1, 1, 1, 0])
    accumulator = ClipScoreAccumulator(3)
    accumulator.add(logits, labels, videos, ok)
    result = accumulator.result()
    assert result.unscored == [3]
    np.testing.assert_allclose(result.scores[0], [0.4, 0.5, 0.1], rtol=1e-6)  # mean of two clips
    metrics = video_metrics(result, 3, accumulator.clips_correct / accumulator.clips)
    assert metrics.clip_accuracy == pytest.approx(2 / 4)  # clips 0 and 2 right
    assert metrics.video_top1 == pytest.approx(1 / 3)  # only video 1 right (video 0 → class 1)
    assert metrics.video_top5 == 1.0  # 3 classes: top-3 always contains the label
    np.testing.assert_array_equal(metrics.per_class_accuracy, [0.0, 1.0, 0.0])
    assert metrics.mean_class_accuracy == pytest.approx(1 / 3)
    np.testing.assert_array_equal(metrics.confusion, [[0, 1, 0], [0, 1, 0], [1, 0, 0]])
    assert (metrics.videos_scored, metrics.videos_unscored) == (3, 1)


class _Linear(torch.nn.Module):
    def __init__(self, classes: int = 3) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(4, classes)

    def forward(self, x):
        return self.fc(x.flatten(1))


def _batches(values, labels):
    return [{"clip": values, "label": labels, "failed": ["a/broken.avi", "", ""]}]


def test_train_one_epoch_reports_loss_accuracy_times_and_replacements():
    model = _Linear()
    with torch.no_grad():  # equal logits: the loss is log 3, and argmax picks class 0
        model.fc.weight.zero_()
        model.fc.bias.zero_()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    clips, labels = torch.randn(3, 4), torch.tensor([0, 1, 2])
    stats = train_one_epoch(
        model,
        _batches(clips, labels),
        optimizer,
        device=torch.device("cpu"),
        epoch=0,
        grad_clip=1.0,
    )
    assert stats.loss == pytest.approx(np.log(3))
    assert stats.clip_accuracy == pytest.approx(1 / 3)
    assert stats.replaced == ["a/broken.avi"]
    assert model.fc.weight.abs().sum() > 0  # the step was taken
    assert stats.compute_seconds >= 0 and stats.data_seconds >= 0


def test_non_finite_loss_ends_the_trial_with_a_reason():
    model = _Linear()
    with torch.no_grad():
        model.fc.weight.fill_(float("nan"))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(NonFiniteLoss, match="epoch 4, step 0"):
        train_one_epoch(
            model,
            _batches(torch.randn(3, 4), torch.tensor([0, 1, 2])),
            optimizer,
            device=torch.device("cpu"),
            epoch=4,
        )


def test_evaluate_lists_unscored_videos():
    model = _Linear()
    batch = {
        "clip": torch.randn(4, 4),
        "label": torch.tensor([0, 1, 1, 2]),
        "video": torch.tensor([0, 1, 1, 2]),
        "ok": torch.tensor([1, 1, 1, 0]),
    }
    metrics, scores = evaluate(model, [batch], num_classes=3, device=torch.device("cpu"))
    assert scores.unscored == [2] and metrics.videos_scored == 2 and metrics.videos_unscored == 1
