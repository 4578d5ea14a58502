"""`harness profile`: parameters, GFLOPs (both conventions) and optional latency per grid row,
with the cost ledger of the inserted attention modules: per insertion point and summed, their
parameters and multiply-adds under both conventions, and the cost per test video (per clip × the
evaluation views of the spec's protocol)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

import torch
from tabulate import tabulate

from harness.analysis.complexity import MACS_NOTE, count_parameters, measure_complexity
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
    attention_params: int = 0  # the inserted modules together
    attention_gflops_fvcore: float = 0.0
    attention_gflops_paper: float = 0.0
    modules: list[dict[str, Any]] = field(default_factory=list)  # one per insertion point
    views_per_video: int | None = None  # test clips (or TSN segments) per video; None: varies
    gflops_per_video_paper: float | None = None
    gflops_per_video_fvcore: float | None = None


def views_per_video(spec: Spec, trial: Trial) -> int | None:
    """Forward passes per test video under the spec's protocol: `eval.count` TSN segments for 2D
    backbones and evenly spaced clips for 3D ones; None for sliding windows (one clip per
    `frames` frames: it varies with each video's length)."""
    if trial.resolve().backbone.dims == 2 or spec.eval.clips == "even":
        return spec.eval.count
    return None


def profile_spec(
    spec: Spec, *, latency: bool = False, device: torch.device | None = None, batch: int = 8
) -> list[ProfileRow]:
    """Profile every model of the spec once (its trials on other splits and seeds are the same
    network); models that differ only in clip length share one built model."""
    rows = []
    built: dict[tuple, tuple[Any, torch.nn.Module]] = {}
    models = {}
    for trial in spec.trials:
        model = replace(trial, split=None, seed=None)
        models.setdefault(model.key, model)
    for trial in models.values():
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
    measured = measure_complexity(model, shape)
    flops = measured.totals
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
    _add_ledger(row, measured, views_per_video(spec, trial) if spec.dataset else None)
    if latency:
        measured = measure_latency(model, shape, device=device, batch=batch)
        row.latency_ms, row.clips_per_s = measured.ms_per_clip, measured.clips_per_s
        row.latency_device = measured.device
    return row


def _add_ledger(row: ProfileRow, measured, views: int | None) -> None:
    """The attention modules' costs, summed and per insertion point, and the cost per video."""
    row.attention_params = measured.module_sum("params")
    row.attention_gflops_fvcore = measured.module_sum("flops_fvcore") / 1e9
    row.attention_gflops_paper = measured.module_sum("flops_paper") / 1e9
    row.modules = [
        {"module": m.name, "params": m.params, "gflops_fvcore": m.flops_fvcore / 1e9,
         "gflops_paper": m.flops_paper / 1e9, "skipped_ops": list(m.skipped_ops)}
        for m in measured.modules
    ]  # fmt: skip
    row.views_per_video = views
    if views is not None:
        row.gflops_per_video_paper = row.gflops_paper * views
        row.gflops_per_video_fvcore = row.gflops_fvcore * views


def rows_as_json(rows: list[ProfileRow]) -> list[dict[str, Any]]:
    return [asdict(row) for row in rows]


def format_table(rows: list[ProfileRow]) -> str:
    """A plain-text table (the paper's printed values beside ours), the ledger of the attention
    modules per insertion point, and the counting notes. Every FLOP header names its convention
    ([paper] or [fvcore]); both count one multiply-add as one FLOP."""
    with_paper = any(row.paper for row in rows)
    with_latency = any(row.latency_ms is not None for row in rows)
    with_views = any(row.views_per_video is not None for row in rows)
    headers = ["model", "input", "Params (M)", "GFLOPs/clip [paper]", "GFLOPs/clip [fvcore]",
               "attn. Params (k)", "attn. GFLOPs [paper]", "attn. GFLOPs [fvcore]"]  # fmt: skip
    if with_views:
        headers += ["views/video", "GFLOPs/video [paper]"]
    if with_paper:
        headers += ["paper Params (M)", "paper GFLOPs"]
    if with_latency:
        headers += ["ms/clip (b=1)", "clips/s"]
    table = [_table_line(row, with_views, with_paper, with_latency) for row in rows]
    parts = [tabulate(table, headers=headers, disable_numparse=True)]
    ledger = _ledger(rows)
    if ledger:
        parts.append("attention modules per insertion point:\n" + ledger)
    parts.append("\n".join(_notes(rows, with_latency)))
    return "\n\n".join(parts)


def _table_line(row: ProfileRow, with_views: bool, with_paper: bool, with_latency: bool):
    line = [
        _model_name(row),
        "×".join(map(str, row.input_shape[1:])),
        f"{row.params / 1e6:.4f}",
        f"{row.gflops_paper:.4f}",
        f"{row.gflops_fvcore:.4f}",
        f"{row.attention_params / 1e3:.2f}",
        f"{row.attention_gflops_paper:.5f}",
        f"{row.attention_gflops_fvcore:.5f}",
    ]
    if with_views:
        views = row.views_per_video
        line += [str(views) if views else "varies",
                 f"{row.gflops_per_video_paper:.3f}" if views else ""]  # fmt: skip
    if with_paper:
        line += [_printed(row.paper.get("params_m"), 2), _printed(row.paper.get("gflops"), 3)]
    if with_latency:
        line += [f"{row.latency_ms:.1f}", f"{row.clips_per_s:.2f}"]
    return line


def _ledger(rows: list[ProfileRow]) -> str:
    """One line per inserted module of every model with attention (once per model and input:
    the seeds and splits of one model share its ledger)."""
    models: dict[tuple, ProfileRow] = {}
    for row in rows:
        models.setdefault((_model_name(row), tuple(row.input_shape)), row)
    lines = [
        [name, "×".join(map(str, shape[1:])), module["module"], str(module["params"]),
         f"{module['gflops_paper']:.6f}", f"{module['gflops_fvcore']:.6f}"]
        for (name, shape), row in models.items() for module in row.modules
    ]  # fmt: skip
    if not lines:
        return ""
    headers = ["model", "input", "module", "Params", "GFLOPs [paper]", "GFLOPs [fvcore]"]
    return tabulate(lines, headers=headers, disable_numparse=True)


def _notes(rows: list[ProfileRow], with_latency: bool) -> list[str]:
    skipped = {
        name: sorted({op for row in rows for op in row.skipped_ops[name]})
        for name in ("paper", "fvcore")
    }
    notes = [
        MACS_NOTE + " Counters that count 2 FLOPs per multiply-add print twice these numbers.",
        "[paper] convention (reproduces EAM Table 4): fvcore defaults + average pooling at one "
        "FLOP per input element; skipped ops: " + ", ".join(skipped["paper"]),
        "[fvcore] convention (fvcore defaults); skipped ops: " + ", ".join(skipped["fvcore"]),
        "attn.: the inserted attention modules together (per insertion point below); neither "
        "convention counts their sigmoids, gating products or max pooling.",
        "views/video: forward passes per test video (evenly spaced clips, or TSN segments); "
        "'varies' for sliding windows, one clip per clip length of each video.",
    ]
    if with_latency:
        notes.append(f"latency measured on {rows[0].latency_device}, eval mode, median of repeats")
    return notes


def _model_name(row: ProfileRow) -> str:
    name = f"{row.backbone} + {row.attention}" if row.attention != "none" else row.backbone
    if row.attention != "none":
        name += f" @ {row.placement}"
    extras = ", ".join(f"{k}={v}" for k, v in row.options.items())
    return f"{name} ({extras})" if extras else name


def _printed(value: object, decimals: int) -> str:
    """A paper value as the paper prints it (YAML drops trailing zeros: 9.620 → 9.62)."""
    return f"{value:.{decimals}f}" if isinstance(value, int | float) else ""
