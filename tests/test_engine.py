"""Metrics against hand-computed values, and the training/evaluation loops on real tiny data."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from harness.analysis.metrics import ClipScoreAccumulator, video_metrics
from harness.train.engine import NonFiniteLoss, NonFiniteScores, evaluate, train_one_epoch
from harness.train.step import Stepper, StepSettings

CPU = torch.device("cpu")


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


def test_clip_scores_reach_the_host_in_one_copy_not_one_per_batch(monkeypatch):
    """Batch by batch, the scores stay where they were computed: on a GPU a copy per batch made
    the host wait for the device after every evaluation batch."""
    logits, labels = torch.randn(12, 5), torch.arange(12) % 5
    videos, ok = torch.arange(12) // 3, torch.tensor([1] * 11 + [0])
    whole = ClipScoreAccumulator(5)
    whole.add(logits, labels, videos, ok)
    expected = whole.result()
    copies, copy = [], torch.Tensor.cpu
    monkeypatch.setattr(torch.Tensor, "cpu", lambda t, *a, **k: copies.append(1) or copy(t))
    batched = ClipScoreAccumulator(5)
    for rows in torch.arange(12).split(4):
        batched.add(logits[rows], labels[rows], videos[rows], ok[rows])
    assert copies == []  # nothing read yet
    gathered = pickle.loads(pickle.dumps(batched))  # as another rank's share arrives
    assert len(copies) == 1
    assert (gathered.clips, gathered.clips_correct) == (11, whole.clips_correct)
    for video, score in expected.scores.items():
        np.testing.assert_allclose(gathered.result().scores[video], score, rtol=1e-6)
    assert gathered.result().labels == expected.labels


class _Linear(torch.nn.Module):
    def __init__(self, classes: int = 3) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(4, classes)

    def forward(self, x):
        return self.fc(x.flatten(1))


def _batches(values, labels):
    return [{"clip": values, "label": labels, "failed": ["a/broken.avi", "", ""]}]


def _stepper(model, lr=0.1, grad_clip=None) -> Stepper:
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    return Stepper(model, optimizer, StepSettings.reference(), CPU, grad_clip)


def test_train_one_epoch_reports_loss_accuracy_times_and_replacements():
    model = _Linear()
    with torch.no_grad():  # equal logits: the loss is log 3, and argmax picks class 0
        model.fc.weight.zero_()
        model.fc.bias.zero_()
    clips, labels = torch.randn(3, 4), torch.tensor([0, 1, 2])
    stats = train_one_epoch(_stepper(model, grad_clip=1.0), _batches(clips, labels), epoch=0)
    assert stats.loss == pytest.approx(np.log(3))
    assert stats.clip_accuracy == pytest.approx(1 / 3)
    assert stats.replaced == ["a/broken.avi"]
    assert model.fc.weight.abs().sum() > 0  # the step was taken
    assert stats.compute_seconds >= 0 and stats.data_seconds >= 0


def test_non_finite_loss_ends_the_trial_with_a_reason():
    model = _Linear()
    with torch.no_grad():
        model.fc.weight.fill_(float("nan"))
    with pytest.raises(NonFiniteLoss, match="epoch 4, step 0"):
        train_one_epoch(_stepper(model), _batches(torch.randn(3, 4), torch.tensor([0, 1, 2])),
                        epoch=4)  # fmt: skip


SYNCS = ("item", "tolist", "cpu", "numpy", "__bool__", "__float__", "__int__")


@pytest.fixture
def host_reads(monkeypatch) -> list[str]:
    """Every call that makes the host wait for a tensor's value (on a GPU, a synchronisation)."""
    calls: list[str] = []
    for name in SYNCS:
        original = getattr(torch.Tensor, name)

        def counted(self, *args, _original=original, _name=name, **kwargs):
            calls.append(_name)
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counted)
    return calls


def _twenty_batches(nan_at: int | None = None) -> list[dict]:
    generator = torch.Generator().manual_seed(0)
    batches = []
    for step in range(20):
        clips = torch.randn(4, 4, generator=generator)
        if step == nan_at:
            clips[0, 0] = float("nan")
        batches.append({"clip": clips, "label": torch.tensor([0, 1, 2, 0]), "failed": [""] * 4})
    return batches


def test_twenty_steps_read_the_device_at_most_once_per_window_plus_two(host_reads):
    every = 5
    stats = train_one_epoch(_stepper(_Linear(), grad_clip=1.0), _twenty_batches(), epoch=0,
                            sync_every=every)  # fmt: skip
    assert len(host_reads) <= 20 / every + 2, host_reads
    assert 0 < stats.loss < 5 and 0 <= stats.clip_accuracy <= 1


def test_a_nan_inside_a_window_is_named_by_its_step(host_reads):
    with pytest.raises(NonFiniteLoss, match="epoch 2, step 7"):
        train_one_epoch(_stepper(_Linear()), _twenty_batches(nan_at=7), epoch=2, sync_every=5)


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


def test_test_scores_that_are_not_finite_end_the_trial_before_any_accuracy_is_read(monkeypatch):
    model = _Linear()
    with torch.no_grad():
        model.fc.weight[:, 0] = float("nan")  # every clip's logits NaN: argmax would say class 0
    batch = {"clip": torch.randn(3, 4), "label": torch.tensor([0, 1, 2]),
             "video": torch.tensor([0, 1, 2]), "ok": torch.tensor([1, 1, 1])}  # fmt: skip
    with pytest.raises(NonFiniteScores, match="NaN or infinite scores for 3 of 3 test videos"):
        evaluate(model, [batch], num_classes=3, device=CPU)
    from harness.execute import failures

    def diverged(*args, **kwargs):
        evaluate(model, [batch], num_classes=3, device=CPU)

    monkeypatch.setattr(failures, "run_trial", diverged)  # a trial whose evaluation diverged
    reason = failures.run_or_reason(None, None, None, progress=False)
    assert reason.startswith("NonFiniteScores: the trained network gave NaN")
