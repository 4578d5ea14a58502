"""Parameters and FLOPs with fvcore, under two named conventions.

fvcore counts one multiply-add as one "flop": every GFLOPs figure here is giga multiply-adds (MACs),
which is also what the EAM and AARM papers print.

- ``fvcore``: fvcore's defaults. Convolutions, linear layers, matrix products, BatchNorm (2 per
  element in eval mode) and 2D adaptive average pooling are counted; every other op is skipped and
  listed (3D pooling, sigmoid, element-wise products and sums, reductions).
- ``paper``: the convention that reproduces EAM Table 4 (`shared/reference/complexity-targets.md`):
  fvcore's defaults plus every average-pooling op (`avg_pool*d`, `adaptive_avg_pool*d`, and EAM's
  mean-plus-max descriptor, `GlobalAvgMaxPool`) at one FLOP per input element. Max pooling,
  sigmoid, gating products, residual sums and plain reductions
  (`mean`, `amax`) stay free. Counting `mean` reductions too would put CBAM's 64-frame row 0.012 G
  above the paper, beyond the table's stated tolerance, so reductions are left out.

Counts are taken in eval mode (train mode counts BatchNorm differently, 0.5–0.8 % more), on one
clip of the given input shape.
"""

from __future__ import annotations

import logging
import warnings
from collections import Counter
from dataclasses import dataclass

import torch
from torch import nn

from registry.checkpoints import NEW_MODULE_SEGMENTS

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)  # fvcore's import warns on new Pythons
    from fvcore.nn import FlopCountAnalysis
    from fvcore.nn.jit_handles import elementwise_flop_counter

CONVENTIONS = ("fvcore", "paper")
MACS_NOTE = "fvcore counts one multiply-add as one FLOP: GFLOPs are giga multiply-adds (GMACs)."
AVERAGE_POOLING_OPS = (
    *(f"aten::{kind}avg_pool{d}d" for kind in ("", "adaptive_") for d in (1, 2, 3)),
    "prim::PythonOp.GlobalAvgMaxPool",  # EAM's mean plus max as one autograd function
)
# Ops fvcore already counts by default among the pooling ops (its handle: one per input element).
_FVCORE_COUNTED = {"aten::adaptive_avg_pool2d"}
_ADDED_OPS = tuple(op for op in AVERAGE_POOLING_OPS if op not in _FVCORE_COUNTED)  # paper only
_ADDED_NAMES = {op.split("::", 1)[1]: op for op in _ADDED_OPS}  # as fvcore's counters name them


@dataclass(frozen=True)
class FlopCount:
    """Total multiply-adds under one convention, and the op types it left uncounted."""

    convention: str
    flops: int
    skipped_ops: tuple[str, ...]

    @property
    def gflops(self) -> float:
        return self.flops / 1e9


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@dataclass(frozen=True)
class ModuleCost:
    """One inserted attention module (one insertion point): its parameters and multiply-adds
    under both conventions, and the op types neither counts inside it (its sigmoids, products)."""

    name: str  # its path in the model: `stage_attention.res2`, `layer1.0.attention`, …
    params: int
    flops_fvcore: int
    flops_paper: int
    skipped_ops: tuple[str, ...]


@dataclass(frozen=True)
class Complexity:
    """A model's totals under both conventions and its attention modules' share of them."""

    totals: dict[str, FlopCount]
    modules: tuple[ModuleCost, ...]  # model order; empty without attention

    def module_sum(self, attribute: str) -> int:
        return sum(getattr(cost, attribute) for cost in self.modules)


def count_flops(model: nn.Module, input_shape: tuple[int, ...]) -> dict[str, FlopCount]:
    """FLOPs of one forward pass on a `(1, *input_shape)` input, under both conventions."""
    return measure_complexity(model, input_shape).totals


def measure_complexity(model: nn.Module, input_shape: tuple[int, ...]) -> Complexity:
    """Totals under both conventions and the cost of every inserted attention module, from one
    trace of one `(1, *input_shape)` clip: the pooling ops the `paper` convention adds are
    counted with their own handle and subtracted back out for the `fvcore` figures."""
    was_training = model.training
    model.eval()
    try:
        device = next(model.parameters()).device
        analysis = FlopCountAnalysis(model, (torch.zeros(1, *input_shape, device=device),))
        analysis.set_op_handle(**{op: elementwise_flop_counter(1, 0) for op in AVERAGE_POOLING_OPS})
        analysis.unsupported_ops_warnings(False)
        analysis.uncalled_modules_warnings(False)
        logging.getLogger("fvcore").setLevel(logging.ERROR)
        with torch.no_grad():
            by_module = analysis.by_module_and_operator()
            skipped = Counter(analysis.unsupported_ops())
            modules = tuple(
                _module_cost(model, name, by_module.get(name, {}), analysis)
                for name in attention_units(model)
            )
    finally:
        model.train(was_training)
    totals = _totals(by_module.get("", {}), skipped)
    return Complexity(totals, tuple(m for m in modules if m.params or m.flops_paper))


def attention_units(model: nn.Module) -> list[str]:
    """The paths of the inserted attention modules, one per insertion point: the first path
    segment the registry gives new modules (`attention`, `stage_attention`, `head_attention`),
    or, where that is a container of modules keyed by insertion point, each of its entries."""
    units: dict[str, None] = {}
    for name, _ in model.named_modules():
        parts = name.split(".")
        hits = [i for i, part in enumerate(parts) if part in NEW_MODULE_SEGMENTS]
        if not hits:
            continue
        unit = ".".join(parts[: hits[0] + 1])
        if isinstance(model.get_submodule(unit), nn.ModuleDict):
            if len(parts) <= hits[0] + 1:
                continue
            unit = ".".join(parts[: hits[0] + 2])
        units[unit] = None
    return list(units)


def _module_cost(model: nn.Module, name: str, operators: Counter, analysis) -> ModuleCost:
    paper = int(sum(operators.values()))
    added = int(sum(flops for op, flops in operators.items() if op in _ADDED_NAMES))
    return ModuleCost(
        name=name,
        params=count_parameters(model.get_submodule(name)),
        flops_fvcore=paper - added,
        flops_paper=paper,
        skipped_ops=tuple(sorted(analysis.unsupported_ops(name))),
    )


def _totals(operators: Counter, skipped: Counter) -> dict[str, FlopCount]:
    paper_total = int(sum(operators.values()))
    added = {name: operators.get(name, 0) for name in _ADDED_NAMES}
    used_added = sorted(op for name, op in _ADDED_NAMES.items() if name in operators)
    return {
        "paper": FlopCount("paper", paper_total, tuple(sorted(skipped))),
        "fvcore": FlopCount(
            "fvcore",
            paper_total - int(sum(added.values())),
            tuple(sorted(set(skipped) | set(used_added))),
        ),
    }
