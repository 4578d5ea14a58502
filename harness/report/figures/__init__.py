"""The report's figures, one module per family, and `FIGURES`, the list `harness report` draws.

Each family draws PNGs `<kind>_<subject>.png` from a `FigureGroup` (see `common`): once for the
spec (the ranked differences over runs), per group of rows sharing a backbone (the seed spread,
per-class accuracy, training curves, EAM Fig. 7 and 8) or per row (confusion matrices). Adding a
family is one module and one line here.
"""

import matplotlib

matplotlib.use("Agg")  # files only, no display; before any family imports pyplot

from harness.report.figures import (  # noqa: E402
    confusion,
    curves,
    gradcam,
    per_class,
    ranked,
    seeds,
    temporal,
)
from harness.report.figures.common import FigureFamily, FigureGroup  # noqa: E402

# In drawing order: the README lists the figures in this order, per spec, per group, per row.
FIGURES: tuple[FigureFamily, ...] = (
    ranked.FAMILY,
    seeds.FAMILY,
    per_class.FAMILY,
    curves.FAMILY,
    temporal.FAMILY,
    gradcam.FAMILY,
    confusion.FAMILY,
)

__all__ = ["FIGURES", "FigureFamily", "FigureGroup"]
