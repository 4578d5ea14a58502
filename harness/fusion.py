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
    from harness.report.runs import latest_runs
    from harness.runner import log_results

    runs = latest_runs(spec, tracker)
    fused = []
    weights = spec.eval.fusion_weights
    for pair in two_stream_pairs(spec):
        rgb, flow, done = runs.get(pair.rgb.key), runs.get(pair.flow.key), runs.get(pair.key)
        if not (rgb and flow and rgb.finished and flow.finished) or (done and done.finished):
            continue
        rgb_scores = rgb.artifact_json("per_video_scores.json")
        flow_scores = flow.artifact_json("per_video_scores.json")
        per_class = list(csv.reader(io.StringIO(rgb.artifact_text("per_class.csv"))))[1:]
        classes = [row[0] for row in per_class]
        names, scores = fuse_scores(rgb_scores, flow_scores, weights)
        metrics = video_metrics(scores, len(classes), clip_accuracy=float("nan"))
        mlflow = tracker.mlflow
        print(f"fuse  {pair.key} (RGB : flow = {weights[0]} : {weights[1]})")
        with mlflow.start_run(run_id=done.run_id if done else None,
                              experiment_id=tracker.experiment_id, run_name=pair.key):  # fmt: skip
            mlflow.set_tags({TRIAL_KEY_TAG: pair.key, "fused_rgb_run": rgb.run_id,
                             "fused_flow_run": flow.run_id,
                             "device": rgb.tags.get("device", "unknown"),
                             "git_commit": rgb.tags.get("git_commit", "unknown")})  # fmt: skip
            mlflow.log_params({**{k: str(v) for k, v in pair.fields().items()},
                               "fusion_weights": str(weights)})  # fmt: skip
            mlflow.log_metrics(_summed(rgb.metrics, flow.metrics))
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


def _summed(rgb: dict[str, float], flow: dict[str, float]) -> dict[str, float]:
    """A two-stream model's size and cost are those of its two networks together."""
    return {
        name: rgb[name] + flow[name]
        for name in ("params", "gflops_paper", "gflops_fvcore")
        if name in rgb and name in flow
    }
