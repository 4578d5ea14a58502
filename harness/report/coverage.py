"""`harness coverage`: every row of every table of both papers, the spec and trial that produce
it, and how far it has got. The rows come from `experiments/papers/*.yaml` (the tables as printed);
each is matched to the spec row carrying the same label (a reference `label` or `cited` name).

States, best first: `run on real data` (finished runs in the spec's experiment on a paper
dataset), `smoke-tested` (finished runs of `harness run SPEC --smoke`), `profiled` (a model the
harness builds and counts; `harness profile SPEC`), `cited` (another paper's number, quoted),
`absent in the paper` (printed as "-"), and `UNMAPPED` (no spec row: a gap to fix).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml
from tabulate import tabulate

from harness.config import load_spec, result_keys
from harness.config.smoke import is_smoke
from harness.data.synthetic import synthetic_preset
from harness.report.rows import ReportRow, report_rows
from harness.tracking import open_store, tracking_uri
from harness.tracking.uri import uncreated_sqlite


@dataclass
class CoverageLine:
    paper: str
    table: int
    row: str
    spec: str
    trial: str
    state: str


COVERAGE_TITLE = "# Coverage: every table row of both papers"  # its first line: a file it wrote


def coverage(
    experiments: Path, uri: str | None = None, tally: dict[str, int] | None = None
) -> list[CoverageLine]:
    """Every printed row's line; `tally`, when given, is filled with the finished runs found in
    each experiment read (the spec's, and its `--smoke` one)."""
    lines = []
    tally = {} if tally is None else tally
    for catalogue in sorted((experiments / "papers").glob("*.yaml")):
        paper = yaml.safe_load(catalogue.read_text())
        for table in paper["tables"]:
            for spec_file in table["specs"]:
                spec_path = experiments / spec_file
                lines += _table_lines(paper["paper"], table, spec_path, uri, tally)
    return lines


def _table_lines(
    paper: str, table: dict, spec_path: Path, uri: str | None, tally: dict[str, int]
) -> list[CoverageLine]:
    spec = load_spec(spec_path)
    real = _rows(spec, uri, tally, smoke=False)
    smoke = {row.label: row for row in _rows(spec, uri, tally, smoke=True)}
    absent = table.get("absent", {})
    lines = []
    for printed in table["rows"]:
        if spec_path.name in absent.get(printed, []):
            lines.append(CoverageLine(paper, table["table"], printed, spec_path.name, "",
                                      "absent in the paper"))  # fmt: skip
            continue
        found = [row for row in real if row.label == printed]
        if not found:
            lines.append(CoverageLine(paper, table["table"], printed, spec_path.name, "",
                                      "UNMAPPED"))  # fmt: skip
        for row in found:
            state = _state(row, smoke.get(row.label), spec)
            lines.append(CoverageLine(paper, table["table"], printed, spec_path.name,
                                      row.key, state))  # fmt: skip
    return lines


def _rows(spec, uri: str | None, tally: dict[str, int], *, smoke: bool) -> list[ReportRow]:
    if smoke:
        spec = load_spec(spec.path, smoke=True)
    resolved = tracking_uri(uri, spec.tracking.uri)
    if uncreated_sqlite(resolved) is not None:
        return report_rows(spec, {})  # coverage only reads: a store not made yet stays unmade
    try:
        store = open_store(resolved, spec.name, create=False)
        runs = store.latest_runs(result_keys(spec))
    except LookupError:
        runs = {}
    rows = report_rows(spec, runs)
    tally[spec.name] = sum(len(row.runs) for row in rows if row.has_network)  # not fused
    return rows


def store_summary(tally: dict[str, int]) -> str:
    """What the store held, from `coverage`'s tally: the finished trial runs (fused two-stream
    results not counted again) of the `--smoke` experiments and of the specs' own."""
    smoke = {name: n for name, n in tally.items() if is_smoke(name)}
    real = {name: n for name, n in tally.items() if not is_smoke(name)}
    parts = []
    for kind, found in (("`--smoke`", smoke), ("real", real)):
        done = sum(found.values())
        experiments = sum(1 for n in found.values() if n)
        runs, named = "s" * (done != 1), "s" * (experiments != 1)
        parts.append(f"{done} finished trial run{runs} in {experiments} {kind} experiment{named}")
    return "; ".join(parts)


def _state(row: ReportRow, smoke_row: ReportRow | None, spec) -> str:
    if row.cited:
        return "cited"
    real_data = spec.dataset is not None and synthetic_preset(spec.dataset.root) is None
    if row.runs and real_data:
        return f"run on real data ({len(row.runs)}/{len(row.trials)} runs)"
    if smoke_row is not None and smoke_row.runs:
        return "smoke-tested"
    return "profiled"


def coverage_markdown(lines: list[CoverageLine], store: str, held: str) -> str:
    """coverage.md: the rows read from `store`, which held what `held` says."""
    unmapped = [line for line in lines if line.state == "UNMAPPED"]
    counts: dict[str, int] = {}
    for line in lines:
        kind = line.state.split(" (")[0]
        counts[kind] = counts.get(kind, 0) + 1
    summary = ", ".join(f"{n} {state}" for state, n in sorted(counts.items()))
    body = tabulate(
        [
            [
                line.paper,
                line.table,
                line.row,
                f"`{line.spec}`",
                f"`{line.trial}`" if line.trial else "",
                line.state,
            ]  # fmt: skip
            for line in lines
        ],
        headers=["Paper", "Table", "Row as printed", "Spec", "Trial (row key)", "State"],
        tablefmt="github",
        disable_numparse=True,
    )
    return "\n".join([
        COVERAGE_TITLE,
        "",
        "Generated by `harness coverage` from `experiments/papers/*.yaml` (the tables as printed) "
        "and the specs in `experiments/`; states come from the MLflow store it was run against. "
        "A row is one line per dataset column's spec.",
        "",
        f"Store read: `{store}` ({held}).",
        "",
        f"{len(lines)} rows: {summary}. Unmapped: {len(unmapped)}.",
        "",
        "States: `run on real data` (finished runs on the paper's dataset), `smoke-tested` "
        "(finished `harness run SPEC --smoke` runs), `profiled` (built and counted by "
        "`harness profile`; not trained yet), `cited` (another paper's number, quoted), "
        "`absent in the paper` (printed as -).",
        "",
        body,
        "",
    ])  # fmt: skip
