"""A spec's table rows: one per grid model, its runs over splits and seeds, and the paper's values.

A row is every trial of one model (same fields, any split and seed). Its state says how much of
it has run: `done`, `k/n runs`, `pending` (no finished run yet), or `cited` for another paper's
method the spec only quotes.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any

from harness.config import Spec, Trial, TwoStream, two_stream_pairs
from harness.tracking import RunRecord
from harness.tracking.schema import same_config
from registry import ATTENTION, BACKBONES
from registry.options import options_of

ATTENTION_FIELDS = ("attention", "placement")  # plus the attention module's own options


@dataclass
class ReportRow:
    """One model of the spec (all its splits and seeds), or a cited method."""

    label: str  # as in the paper's table: "+ SE" under its backbone's row
    key: str  # the trial key without split and seed; "" for cited rows
    fields: dict[str, Any]
    trials: list[Trial]
    runs: list[RunRecord] = field(default_factory=list)  # finished runs only
    reference: dict[str, Any] = field(default_factory=dict)
    cited: bool = False
    unfinished: list[str] = field(default_factory=list)  # states of trials not finished
    name: str = ""  # standalone name for legends: "3D ResNet-50 + SE"

    @property
    def state(self) -> str:
        if self.cited:
            return "cited"
        if not self.runs:
            return "pending"
        if len(self.runs) < len(self.trials):
            return f"{len(self.runs)}/{len(self.trials)} runs"
        return "done"

    @cached_property
    def _trials_by_key(self) -> dict[str, Any]:  # read once the row is complete
        return {trial.key: trial for trial in self.trials}

    def trial_of(self, run: RunRecord):
        """The trial (a Trial, or a TwoStream for a fused row) that `run` is the run of."""
        return self._trials_by_key[run.trial_key]

    def runs_on(self, split: int) -> list[RunRecord]:
        return [r for r in self.runs if self.trial_of(r).split == split]

    @property
    def has_network(self) -> bool:
        """False for cited rows and fused two-stream rows, which have no network of their own
        to build (a fused row averages its two streams' scores)."""
        return not self.cited and self.fields.get("stream") != "two-stream"


def report_rows(spec: Spec, runs: dict[str, RunRecord]) -> list[ReportRow]:
    """The spec's rows in grid order, then its cited rows."""
    rows: dict[str, ReportRow] = {}
    for trial in spec.trials:
        _add(rows, spec, replace(trial, split=None, seed=None), trial, runs)
    for pair in two_stream_pairs(spec):
        model = TwoStream(replace(pair.rgb, split=None, seed=None),
                          replace(pair.flow, split=None, seed=None))  # fmt: skip
        _add(rows, spec, model, pair, runs)
    ordered = list(rows.values())
    _label(spec, ordered)
    cited = [
        ReportRow(r.label, "", {}, [], reference=dict(r.values), cited=True, name=r.label)
        for r in spec.cited
    ]
    return ordered + cited


def _add(rows: dict[str, ReportRow], spec: Spec, model, trial, runs) -> None:
    """File `trial` (a Trial or a TwoStream) under its model's row, with its run if finished."""
    row = rows.setdefault(
        model.key, ReportRow("", model.key, model.fields(), [], reference=spec.reference_for(model))
    )
    row.trials.append(trial)
    run = runs.get(trial.key)
    if run is not None and run.finished and _made_as_specified(spec, trial, run):
        row.runs.append(run)
    elif run is not None and run.finished:
        row.unfinished.append("finished under another configuration")
    else:
        row.unfinished.append(run.status.lower() if run is not None else "not started")


def _made_as_specified(spec: Spec, trial, run: RunRecord) -> bool:
    """A trial's run counts only if made with the spec's configuration as given now (with its
    `--set` overrides); fused two-stream runs count when their two stream runs do."""
    if not isinstance(trial, Trial) or spec.dataset is None:
        return True
    return same_config(run, spec.config_hash(trial))


def baseline_of(row: ReportRow, rows: list[ReportRow]) -> ReportRow | None:
    """The row with the same backbone and settings but no attention module, if the spec has it."""
    if row.cited or row.fields.get("attention") == "none":
        return None
    wanted = _backbone_fields(row)
    for other in rows:
        if not other.cited and other.fields.get("attention") == "none":
            if _backbone_fields(other) == wanted:
                return other
    return None


def group_of(row: ReportRow) -> tuple:
    """Rows sharing a backbone and its settings form one group (one chart, one baseline)."""
    return tuple(sorted((k, str(v)) for k, v in _backbone_fields(row).items()))


def _backbone_fields(row: ReportRow) -> dict[str, Any]:
    attention = row.fields.get("attention", "none")
    own = set(options_of(ATTENTION.get(attention).reference_class)) if attention != "none" else ()
    return {
        k: v for k, v in row.fields.items() if k not in ATTENTION_FIELDS and k not in own
    }  # fmt: skip


def _label(spec: Spec, rows: list[ReportRow]) -> None:
    """Paper-style names: the backbone on its baseline row, `+ SE` under it."""
    varying = _varying_fields(rows)
    previous_group = None
    for row in rows:
        printed = spec.label_for(row.trials[0])
        group = group_of(row)
        backbone = _backbone_label(row, varying)
        attention = row.fields.get("attention", "none")
        if attention == "none":
            row.name = row.label = backbone
        else:
            module = ATTENTION.get(attention).display_name + _details(row, varying)
            row.name = f"{backbone} + {module}"
            row.label = f"+ {module}" if group == previous_group else row.name
        row.label = printed or row.label
        previous_group = group


def _varying_fields(rows: list[ReportRow]) -> set[str]:
    names = {k for row in rows for k in row.fields}
    return {
        k for k in names if len({str(row.fields.get(k)) for row in rows}) > 1
    }  # fmt: skip


def _backbone_label(row: ReportRow, varying: set[str]) -> str:
    name = BACKBONES.get(row.fields["backbone"]).display_name
    if "stream" in varying:
        name += {"rgb": " RGB", "flow": " flow", "two-stream": " two-stream"}[row.fields["stream"]]
    extras = [
        f"{row.fields['frames']}f" if key == "frames" else f"{key}={row.fields[key]}"
        for key in sorted(_backbone_fields(row))
        if key in varying and key not in ("backbone", "stream", "in_channels")
    ]
    return f"{name} ({', '.join(extras)})" if extras else name


def _details(row: ReportRow, varying: set[str]) -> str:
    backbone = _backbone_fields(row)
    extras = [
        f"{key}={row.fields[key]}"
        for key in sorted(row.fields)
        if key in varying and key not in backbone and key != "attention"
    ]
    return f" ({', '.join(extras)})" if extras else ""
