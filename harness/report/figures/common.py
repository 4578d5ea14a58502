"""What every figure family shares: the family record `FIGURES` lists, the group of rows a family
draws from, and writing a PNG.

A family draws from one `FigureGroup`: every row of the spec (`per="spec"`), the rows sharing a
backbone and its settings (a baseline and its attention models; `per="group"`), or a single row
(`per="row"`). Families that need the
trained weights (EAM Fig. 7 and 8) share the group's `trained`, loaded once.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Literal

import matplotlib.pyplot as plt

from harness.config import Spec
from harness.report.figures.weights import Trained, load_trained
from harness.report.rows import ReportRow

DPI = 120


@dataclass
class FigureGroup:
    """Rows one figure is drawn from, with what every figure of them needs."""

    spec: Spec
    rows: list[ReportRow]
    data: str  # the dataset actually used, as titles name it: "synthetic (tiny)"
    out: Path  # the figures folder
    videos: int = 3  # test videos in Fig. 7 and 8
    notes: list[str] = field(default_factory=list)  # figures not drawn, and why
    outcomes: dict[str, dict[str, int]] = field(default_factory=dict)  # run id → video → 0/1
    comparisons: list[dict] = field(default_factory=list)  # over runs, `report.comparisons`

    @property
    def subject(self) -> str:
        """The group in file names: its first row's name (the baseline's, where it has one)."""
        return slug(self.rows[0].name)

    @cached_property
    def trained(self) -> Trained | None:
        """The rows that saved their weights, loaded, and the test clips Fig. 7 and 8 show; None
        (with a note saying why, once per group) where those figures cannot be drawn."""
        return load_trained(self.spec, self.rows, self.videos, self.notes)


@dataclass(frozen=True)
class FigureFamily:
    """One kind of figure: files `<kind>_<subject>.png`, headed `<title>: <subject>` in README."""

    kind: str  # "per_class", "gradcam", …
    title: str  # "Grad-CAM (EAM Fig. 8)"
    per: Literal["spec", "group", "row"]  # once per spec, per group of rows, per row with runs
    draw: Callable[[FigureGroup], list[Path]]  # the PNGs written (none when nothing to draw)


def artifact_texts(row: ReportRow, name: str) -> list[str]:
    """The text of artifact `name` of every run of the row that logged it."""
    return [t for run in row.runs if (t := run.artifact_text(name)) is not None]


def slug(text: str) -> str:
    """A file-name-safe form: `3D ResNet-10 + EAM` → `3d_resnet_10_eam`."""
    return re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_").lower() or "model"


def save_figure(fig, out: Path) -> Path:
    """Write `fig` as a PNG (creating folders) and free it."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():  # legends outside the axes can defeat tight_layout; the
        warnings.simplefilter("ignore", UserWarning)  # tight bounding box below still keeps them
        fig.tight_layout()
    fig.savefig(out, dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return out
