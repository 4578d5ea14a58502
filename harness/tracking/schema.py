"""What a run holds, named once: the tag that finds a trial's run, the artifact files, and the
final metrics. Training and fusion write results through `log_results`; reports read them with
`per_video_scores` and `class_names`. Changing a name here changes it everywhere."""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterable

import numpy as np

from harness.analysis.metrics import VideoMetrics, VideoScores
from harness.tracking.base import RunLog, RunRecord
from registry import ConfigError

TRIAL_KEY_TAG = "trial_key"
REPORT_RUN_TAG = "harness_report"  # "1" on the run `harness report` logs a spec's report to
REPORT_FOLDER = "report"  # that run's artifacts: the report folder, as written
CONFIG_HASH_TAG = "config_hash"  # the hash of everything that shapes the trial's result
SPEC_ARTIFACT = "spec.yaml"  # the resolved spec the run was made with
TRACEBACK_ARTIFACT = "traceback.txt"  # why a run failed, when an exception ended it
UNREADABLE_ARTIFACT = "unreadable_videos.json"  # {video: why no frame of it decodes}
PER_CLASS_ARTIFACT = "per_class.csv"  # class, accuracy
CONFUSION_ARTIFACT = "confusion.csv"  # rows: true class; columns: predicted class
SCORES_ARTIFACT = "per_video_scores.json"  # {"videos": {name: {label, scores}}, "unscored": []}
WEIGHTS_FOLDER = "checkpoint"  # train.save_checkpoint logs the trained weights here:
WEIGHTS_FILE = "last.pt"
WEIGHTS_ARTIFACT = f"{WEIGHTS_FOLDER}/{WEIGHTS_FILE}"  # {"model": state_dict}, weights only
FUSED_FROM_TAGS = ("fused_rgb_run", "fused_flow_run")  # a two-stream run's two stream runs


def same_config(record: RunRecord, config_hash: str) -> bool:
    """Whether `record` was made with the configuration hashed as `config_hash`; runs logged
    before the hash existed carry none and are taken as made with it."""
    return record.tags.get(CONFIG_HASH_TAG, config_hash) == config_hash


def replaced_artifact(epoch: int) -> str:
    """The videos replaced in one training epoch because they failed to decode."""
    return f"replaced/epoch{epoch:03d}.txt"


def log_results(
    log: RunLog, metrics: VideoMetrics, scores: VideoScores, classes: list[str], names: list[str]
) -> None:
    """Final metrics and the per-class, confusion and per-video-score artifacts of one run."""
    log.log_metrics(
        {
            "clip_accuracy": metrics.clip_accuracy,
            "video_top1": metrics.video_top1,
            "video_top5": metrics.video_top5,
            "mean_class_accuracy": metrics.mean_class_accuracy,
            "videos_scored": metrics.videos_scored,
            "videos_unscored": metrics.videos_unscored,
        }
    )
    per_class = zip(classes, metrics.per_class_accuracy, strict=True)
    log.log_text(_csv(["class", "accuracy"], per_class), PER_CLASS_ARTIFACT)
    confusion = ([c, *row] for c, row in zip(classes, metrics.confusion.tolist(), strict=True))
    log.log_text(_csv(["true \\ predicted", *classes], confusion), CONFUSION_ARTIFACT)
    per_video = {
        names[v]: {"label": int(scores.labels[v]), "scores": np.round(s, 6).tolist()}
        for v, s in scores.scores.items()
    }
    unscored = [names[v] for v in scores.unscored]
    log.log_text(json.dumps({"videos": per_video, "unscored": unscored}), SCORES_ARTIFACT)


def per_video_scores(run: RunRecord) -> dict | None:
    """`{"videos": {name: {"label", "scores"}}, "unscored": [names]}`, or None if not logged;
    a damaged file is a `ConfigError` naming the run (the report cannot use it)."""
    try:
        scores = run.artifact_json(SCORES_ARTIFACT)
    except (ValueError, UnicodeDecodeError):
        scores = "damaged"
    if scores is not None and not (
        isinstance(scores, dict) and isinstance(scores.get("videos"), dict)
    ):
        raise ConfigError(
            f"run {run.run_id} (trial {run.trial_key}): its artifact {SCORES_ARTIFACT} is not the "
            "per-video scores this harness writes (damaged or edited). Delete that run in the "
            "MLflow UI and run the trial again, or restore the file."
        )
    return scores


def class_names(run: RunRecord) -> list[str]:
    """The run's classes in label order, from its per-class artifact."""
    rows = list(csv.reader(io.StringIO(run.artifact_text(PER_CLASS_ARTIFACT) or "")))
    return [row[0] for row in rows[1:]]


def _csv(header: list[str], rows: Iterable) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    for row in rows:
        writer.writerow(["" if isinstance(v, float) and math.isnan(v) else v for v in row])
    return buffer.getvalue()
