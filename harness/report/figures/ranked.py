"""All baseline comparisons of a spec ranked by Δ: each row's mean difference to its baseline
with its 95% t interval over runs, every run's Δ as a dot, and the Holm-corrected p beside it.
The order is by point estimate, which tests nothing between the modules: the figure says so
(the spec's `report.contrasts` test them).

A ranked interval plot rather than a critical-difference diagram (Demšar 2006): a CD diagram
ranks models over many datasets, and a spec compares them on one.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from harness.report.figures.common import FigureFamily, FigureGroup, save_figure, slug


def draw(group: FigureGroup) -> list[Path]:
    replicated = [c for c in group.comparisons if c["runs"] >= 2 and c["kind"] == "baseline"]
    if not replicated:
        if group.comparisons:
            group.notes.append(
                "ranked differences: every row has one run, so there is no interval to rank"
            )
        return []
    out = group.out / f"ranked_{slug(group.spec.name)}.png"
    title = f"Δ video top-1 against the baseline, over runs: {group.data}"
    return [ranked_chart(replicated, title, out)]


FAMILY = FigureFamily("ranked", "Differences over runs, ranked", "spec", draw)


def ranked_chart(comparisons: list[dict], title: str, out: Path) -> Path:
    """Comparisons sorted by mean Δ (largest on top), with intervals and per-run dots."""
    ordered = sorted(comparisons, key=lambda c: c["difference"], reverse=True)
    fig, ax = plt.subplots(figsize=(8, 0.6 * len(ordered) + 1.5))
    jitter = np.random.default_rng(0)
    for position, record in enumerate(ordered):
        runs = [float(d) for d in record["run_differences"].split()]
        ax.scatter(runs, position + jitter.uniform(-0.12, 0.12, len(runs)), s=18,
                   color="tab:gray", alpha=0.8, zorder=2)  # fmt: skip
        mean, low, high = record["difference"], record["ci95_low"], record["ci95_high"]
        color = "tab:red" if record["difference_shown"] else "tab:blue"
        ax.errorbar(mean, position, xerr=[[mean - low], [high - mean]], fmt="o", color=color,
                    capsize=4, zorder=3)  # fmt: skip
        ax.annotate(f"Holm p = {record['holm_p']:.2g}", (high, position), xytext=(6, -3),
                    textcoords="offset points", fontsize=8)  # fmt: skip
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_yticks(range(len(ordered)), [f"{c['model']}\nvs {c['baseline']}" for c in ordered])
    ax.invert_yaxis()
    ax.set(xlabel="Δ video top-1 (pp): model − baseline", title=title)
    ax.grid(axis="x", alpha=0.3)
    fig.text(0.01, 0.005, "Ordered by mean Δ: the order between modules is not a test "
             "(comparisons.md: contrasts).", fontsize=7, color="dimgray")  # fmt: skip
    return save_figure(fig, out)
