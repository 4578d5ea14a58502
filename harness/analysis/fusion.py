"""Two-stream late fusion (Simonyan & Zisserman 2014; TSN, Wang et al. 2016; AARM Tables 1, 5–7).

A two-stream model is two trials of the same 2D model, one on RGB frames (`in_channels: 3`) and
one on stacked optical flow (`in_channels: 2·L`), trained separately. At test time their per-video
class scores are averaged with weights (`eval.fusion_weights`, RGB then flow):
`s = (w_rgb · s_rgb + w_flow · s_flow) / (w_rgb + w_flow)`. `harness.execute.fusion` logs the fused
result as its own run (trial key `…-two_stream-…`) with the same metrics and artifacts as a trained
trial, so reports, significance tests and the UI treat it like any other row.
"""

from __future__ import annotations

import numpy as np

from harness.analysis.metrics import VideoScores


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


def summed_cost(rgb: dict[str, float], flow: dict[str, float]) -> dict[str, float]:
    """A two-stream model's size and cost are those of its two networks together."""
    return {
        name: rgb[name] + flow[name]
        for name in (
            "params",
            "gflops_paper",
            "gflops_fvcore",
            "attention_params",
            "attention_gflops_paper",
            "attention_gflops_fvcore",
        )
        if name in rgb and name in flow
    }
