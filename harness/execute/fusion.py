"""After a sweep: the two-stream result of every RGB/flow pair whose streams have both finished,
fused (`harness.analysis.fusion`) and logged as its own run with the same metrics and artifacts
as a trained trial."""

from __future__ import annotations

from harness.analysis.fusion import fuse_scores, summed_cost
from harness.analysis.metrics import video_metrics
from harness.config import Spec, TwoStream, two_stream_pairs
from harness.tracking import RunRecord, Store
from harness.tracking.schema import FUSED_FROM_TAGS, class_names, log_results, per_video_scores
from harness.train.trial import result_line


def fuse_finished(spec: Spec, store: Store) -> list[str]:
    """Log the fused run of every pair whose two streams finished and whose fusion has not."""
    pairs = two_stream_pairs(spec)
    runs = store.latest_runs([key for p in pairs for key in (p.rgb.key, p.flow.key, p.key)])
    fused = []
    for pair in pairs:
        rgb, flow, done = runs.get(pair.rgb.key), runs.get(pair.flow.key), runs.get(pair.key)
        if rgb and flow and rgb.finished and flow.finished and not (done and done.finished):
            _fuse(spec, store, pair, rgb, flow, done)
            fused.append(pair.key)
    return fused


def _fuse(spec: Spec, store: Store, pair: TwoStream, rgb: RunRecord, flow: RunRecord,
          previous: RunRecord | None) -> None:  # fmt: skip
    weights = spec.eval.fusion_weights
    classes = class_names(rgb)
    names, scores = fuse_scores(per_video_scores(rgb), per_video_scores(flow), weights)
    metrics = video_metrics(scores, len(classes), clip_accuracy=float("nan"))
    print(f"fuse  {pair.key} (RGB : flow = {weights[0]} : {weights[1]})")
    with store.open_run(pair.key, previous.run_id if previous else None) as log:
        log.set_tags({**dict(zip(FUSED_FROM_TAGS, (rgb.run_id, flow.run_id), strict=True)),
                      "device": rgb.tags.get("device", "unknown"),
                      "git_commit": rgb.tags.get("git_commit", "unknown")})  # fmt: skip
        log.log_params({**pair.fields(), "fusion_weights": weights})
        log.log_metrics(summed_cost(rgb.metrics, flow.metrics))
        log_results(log, metrics, scores, classes, names)
    print(result_line(metrics))
