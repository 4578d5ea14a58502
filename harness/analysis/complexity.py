"""Parameters and FLOPs with fvcore, under two named conventions.

fvcore counts one multiply-add as one "flop": every GFLOPs figure here is giga multiply-adds (MACs),
which is also what the EAM and AARM papers print.

- ``fvcore``: fvcore's defaults. Convolutions, linear layers, matrix products, BatchNorm (2 per
  element in eval mode) and 2D adaptive average pooling are counted; every other op is skipped and
  listed (3D pooling, sigmoid, element-wise products and sums, reductions).
- ``paper``: the convention that reproduces EAM Table 4 (`shared/reference/complexity-targets.md`):
  fvcore's defaults plus every average-pooling op (`avg_pool*d`, `adaptive_avg_pool*d`) at one FLOP
  per input element. Max pooling, sigmoid, gating products, residual sums and plain reductions
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

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)  # fvcore's import warns on new Pythons
    from fvcore.nn import FlopCountAnalysis
    from fvcore.nn.jit_handles import elementwise_flop_counter

CONVENTIONS = ("fvcore", "paper")
MACS_NOTE = "fvcore counts one multiply-add as one FLOP: GFLOPs are giga multiply-adds (GMACs)."
AVERAGE_POOLING_OPS = tuple(
    f"aten::{kind}avg_pool{d}d" for kind in ("", "adaptive_") for d in (1, 2, 3)
)
# Ops fvcore already counts by default among the pooling ops (its handle: one per input element).
_FVCORE_COUNTED = {"aten::adaptive_avg_pool2d"}


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


def count_flops(model: nn.Module, input_shape: tuple[int, ...]) -> dict[str, FlopCount]:
    """FLOPs of one forward pass on a `(1, *input_shape)` input, under both conventions.

    One trace serves both: the pooling ops the `paper` convention adds are counted with their own
    handle and subtracted back out for the `fvcore` total.
    """
    was_training = model.training
    model.eval()
    try:
        device = next(model.parameters()).device
        inputs = (torch.zeros(1, *input_shape, device=device),)
        analysis = FlopCountAnalysis(model, inputs)
        analysis.set_op_handle(**{op: elementwise_flop_counter(1, 0) for op in AVERAGE_POOLING_OPS})
        analysis.unsupported_ops_warnings(False)
        analysis.uncalled_modules_warnings(False)
        logging.getLogger("fvcore").setLevel(logging.ERROR)
        with torch.no_grad():
            by_operator = analysis.by_operator()
            skipped = Counter(analysis.unsupported_ops())
    finally:
        model.train(was_training)
    paper_total = int(sum(by_operator.values()))
    added = {
        op: by_operator.get(op.removeprefix("aten::"), 0)
        for op in AVERAGE_POOLING_OPS
        if op not in _FVCORE_COUNTED
    }
    used_added = sorted(
        op for op, flops in added.items() if op.removeprefix("aten::") in by_operator
    )
    return {
        "paper": FlopCount("paper", paper_total, tuple(sorted(skipped))),
        "fvcore": FlopCount(
            "fvcore",
            paper_total - int(sum(added.values())),
            tuple(sorted(set(skipped) | set(used_added))),
        ),
    }
