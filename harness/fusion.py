"""Two-stream late fusion (Simonyan & Zisserman 2014; TSN, Wang et al. 2016; AARM Tables 1, 5–7).

A two-stream model is two trials of the same 2D model, one on RGB frames (`in_channels: 3`) and
one on stacked optical flow (`in_channels: 2·L`), trained separately. At test time their per-video
class scores are averaged with weights (`eval.fusion_weights`, RGB then flow):
`s = (w_rgb · s_rgb + w_flow · s_flow) / (w_rgb + w_flow)`. The fused result is logged as its own
MLflow run (trial key `…-two_stream-…`) with the same metrics and artifacts as a trained trial, so
reports, significance tests and the UI treat it like any other row.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from typing import Any

import numpy as np

from harness.metrics import VideoScores, video_metrics
from harness.spec import Spec, Trial
from harness.tracking import TRIAL_KEY_TAG, Tracker


@dataclass(frozen=True)
class TwoStream:
    """An RGB trial and the flow trial of the same model, split and seed."""

    rgb: Trial
    flow: Trial

    @property
    def key(self) -> str:
        return self.rgb.key.replace("in_channels=3", "two_stream")

    @property
    def split(self) -> int | None:
        return self.rgb.split

    @property
    def seed(self) -> int | None:
        return self.rgb.seed

    def fields(self) -> dict[str, Any]:
        fields = {k: v for k, v in self.rgb.fields().items() if k != "in_channels"}
        return fields | {"stream": "two-stream"}


def two_stream_pairs(spec: Spec) -> list[TwoStream]:
    """Every RGB trial with a flow trial that differs only in `in_channels`."""
    flows: dict[tuple, Trial] = {}
    for trial in spec.trials:
        if trial.stream == "flow":
            flows.setdefault(_without_channels(trial), trial)
    return [
        TwoStream(trial, flows[_without_channels(trial)])
        for trial in spec.trials
        if trial.stream == "rgb" and "in_channels" in dict(trial.options)
        and _without_channels(trial) in flows
    ]  # fmt: skip


def _without_channels(trial: Trial) -> tuple:
    options = tuple((k, v) for k, v in trial.options if k != "in_channels")
    return (trial.backbone, trial.attention, trial.placement.label, trial.num_classes,
            trial.frames, trial.size, options, trial.split, trial.seed)  # fmt: skip


def fuse_finished(spec: Spec, tracker: Tracker) -> list[str]:
    """Log the fused run of every pair whose two streams finished and whose fusion has not."""
    from harness.runner import log_results

    fused = []
    weights = spec.eval.fusion_weights
    for pair in two_stream_pairs(spec):
        rgb, flow = tracker.latest_run(pair.rgb.key), tracker.latest_run(pair.flow.key)
        if not (rgb and flow and rgb.info.status == flow.info.status == "FINISHED"):
            continue
        if tracker.status(pair.key) == "FINISHED":
            continue
        rgb_scores, flow_scores = _scores(tracker, rgb), _scores(tracker, flow)
        classes = _classes(tracker, rgb)
        names, scores = fuse_scores(rgb_scores, flow_scores, weights)
        metrics = video_metrics(scores, len(classes), clip_accuracy=float("nan"))
        mlflow = tracker.mlflow
        print(f"fuse  {pair.key} (RGB : flow = {weights[0]} : {weights[1]})")
        with mlflow.start_run(experiment_id=tracker.experiment_id, run_name=pair.key):
            mlflow.set_tags({TRIAL_KEY_TAG: pair.key, "fused_rgb_run": rgb.info.run_id,
                             "fused_flow_run": flow.info.run_id,
                             "device": rgb.data.tags.get("device", "unknown"),
                             "git_commit": rgb.data.tags.get("git_commit", "unknown")})  # fmt: skip
            mlflow.log_params({**{k: str(v) for k, v in pair.fields().items()},
                               "fusion_weights": str(weights)})  # fmt: skip
            mlflow.log_metrics(_summed(rgb, flow))
            log_results(mlflow, metrics, scores, classes, names)
        fused.append(pair.key)
    return fused


def fuse_scores(rgb: dict, flow: dict, weights: list[float]) -> tuple[list[str], VideoScores]:
    """Weighted average of two runs' per-video scores, over the videos both scored."""
    names = sorted(rgb["videos"].keys() & flow["videos"].keys())
    w_rgb, w_flow = weights
    scores, labels = {}, {}
    for index, name in enumerate(names):
        a, b = np.asarray(rgb["videos"][name]["scores"]), np.asarray(flow["videos"][name]["scores"])
        scores[index] = (w_rgb * a + w_flow * b) / (w_rgb + w_flow)
        labels[index] = rgb["videos"][name]["label"]
    only_one = sorted((rgb["videos"].keys() ^ flow["videos"].keys()) | set(rgb["unscored"]))
    names += only_one
    unscored = list(range(len(names) - len(only_one), len(names)))
    return names, VideoScores(scores, labels, unscored)


def _scores(tracker: Tracker, run) -> dict:
    return _artifact(tracker, run, "per_video_scores.json", json=True)


def _classes(tracker: Tracker, run) -> list[str]:
    text = _artifact(tracker, run, "per_class.csv")
    return [row[0] for row in list(csv.reader(io.StringIO(text)))[1:]]


def _artifact(tracker: Tracker, run, name: str, json: bool = False):
    from mlflow.artifacts import load_dict, load_text

    uri = f"{run.info.artifact_uri}/{name}"
    return load_dict(uri) if json else load_text(uri)


def _summed(rgb, flow) -> dict[str, float]:
    """A two-stream model's size and cost are those of its two networks together."""
    return {
        name: rgb.data.metrics[name] + flow.data.metrics[name]
        for name in ("params", "gflops_paper", "gflops_fvcore")
        if name in rgb.data.metrics and name in flow.data.metrics
    }
