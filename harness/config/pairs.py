"""Two-stream pairs: an RGB trial and the flow trial of the same 2D model (Simonyan & Zisserman
2014; TSN, Wang et al. 2016). A grid concept: which trials form a two-stream model is decided by
the spec's trials alone; fusing their scores is `harness.analysis.fusion`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from harness.config.spec import Spec
from harness.config.trial import Trial


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


def result_keys(spec: Spec) -> list[str]:
    """Every key a spec's results are logged under: its trials', then its two-stream pairs'."""
    return [trial.key for trial in spec.trials] + [pair.key for pair in two_stream_pairs(spec)]
