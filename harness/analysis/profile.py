"""`harness profile`: parameters, GFLOPs (both conventions) and optional latency per grid row."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from tabulate import tabulate

from harness.analysis.complexity import MACS_NOTE, count_flops, count_parameters
from harness.analysis.latency import measure_latency
from harness.config.spec import Spec, Trial


@dataclass
class ProfileRow:
    """One profiled model; the JSON output is a list of these."""

    key: str
    backbone: str
    attention: str
    placement: str
    num_classes: int
    input_shape: list[int]
    params: int
    gflops_fvcore: float
    gflops_paper: float
    skipped_ops: dict[str, list[str]]
    insertion_points: list[str]
    options: dict[str, Any] = field(default_factory=dict)
    latency_ms: float | None = None
    clips_per_s: float | None = None
    latency_device: str | None = None
    paper: dict[str, Any] = field(default_factory=dict)


def profile_spec(
    spec: Spec, *, latency: bool = False, device: torch.device | None = None, batch: int = 8
) -> list[ProfileRow]:
    """Profile every trial; trials that differ only in clip length share one built model."""
    rows = []
    built: dict[tuple, tuple[Any, torch.nn.Module]] = {}
    for trial in spec.trials:
        model_key = (
            trial.backbone,
            trial.attention,
            trial.placement,
            trial.num_classes,
            trial.options,
        )
        if model_key not in built:
            resolved = trial.resolve()
            built.clear()  # keep one model in memory at a time
            built[model_key] = (resolved, resolved.build())
        resolved, model = built[model_key]
        rows.append(_profile_one(spec, trial, resolved, model, latency, device, batch))
    return rows


def _profile_one(spec, trial: Trial, resolved, model, latency, device, batch) -> ProfileRow:
    shape = trial.input_shape(resolved)
    flops = count_flops(model, shape)
    row = ProfileRow(
        key=trial.key,
        backbone=trial.backbone,
        attention=trial.attention,
        placement=trial.placement.label,
        num_classes=trial.num_classes,
        input_shape=[1, *shape],
        params=count_parameters(model),
        gflops_fvcore=flops["fvcore"].gflops,
        gflops_paper=flops["paper"].gflops,
        skipped_ops={name: list(count.skipped_ops) for name, count in flops.items()},
        insertion_points=resolved.point_names,
        options=dict(trial.options),
        paper=spec.reference_for(trial),
    )
    if latency:
        measured = measure_latency(model, shape, device=device, batch=batch)
        row.latency_ms, row.clips_per_s = measured.ms_per_clip, measured.clips_per_s
        row.latency_device = measured.device
    return row


def rows_as_json(rows: list[ProfileRow]) -> list[dict[str, Any]]:
    return [asdict(row) for row in rows]


def format_table(rows: list[ProfileRow]) -> str:
    """A plain-text table, the paper's printed values beside ours, and the counting notes."""
    with_paper = any(row.paper for row in rows)
    with_latency = any(row.latency_ms is not None for row in rows)
    headers = ["model", "input", "Params (M)", "GFLOPs paper-conv.", "GFLOPs fvcore"]
    if with_paper:
        headers += ["paper Params (M)", "paper GFLOPs"]
    if with_latency:
        headers += ["ms/clip (b=1)", "clips/s"]
    table = []
    for row in rows:
        line = [
            _model_name(row),
            "×".join(map(str, row.input_shape[1:])),
            f"{row.params / 1e6:.4f}",
            f"{row.gflops_paper:.4f}",
            f"{row.gflops_fvcore:.4f}",
        ]
        if with_paper:
            line += [_printed(row.paper.get("params_m"), 2), _printed(row.paper.get("gflops"), 3)]
        if with_latency:
            line += [f"{row.latency_ms:.1f}", f"{row.clips_per_s:.2f}"]
        table.append(line)
    skipped = {
        name: sorted({op for row in rows for op in row.skipped_ops[name]})
        for name in ("paper", "fvcore")
    }
    notes = [
        MACS_NOTE,
        "paper convention (reproduces EAM Table 4): fvcore defaults + average pooling at one "
        "FLOP per input element; skipped ops: " + ", ".join(skipped["paper"]),
        "fvcore convention (fvcore defaults); skipped ops: " + ", ".join(skipped["fvcore"]),
    ]
    if with_latency:
        notes.append(f"latency measured on {rows[0].latency_device}, eval mode, median of repeats")
    return tabulate(table, headers=headers, disable_numparse=True) + "\n\n" + "\n".join(notes)


def _model_name(row: ProfileRow) -> str:
    name = f"{row.backbone} + {row.attention}" if row.attention != "none" else row.backbone
    if row.attention != "none":
        name += f" @ {row.placement}"
    extras = ", ".join(f"{k}={v}" for k, v in row.options.items())
    return f"{name} ({extras})" if extras else name


def _printed(value: object, decimals: int) -> str:
    """A paper value as the paper prints it (YAML drops trailing zeros: 9.620 → 9.62)."""
    return f"{value:.{decimals}f}" if isinstance(value, int | float) else ""
