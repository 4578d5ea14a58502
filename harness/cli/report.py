"""`harness report` (tables, comparisons over runs and charts from MLflow) and `harness coverage`
(every paper table row, its spec and state)."""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

from harness.cli.checks import require_folder, require_non_negative
from harness.config.spec import load_spec
from harness.tracking import open_store, tracking_uri
from harness.tracking.uri import sqlite_path
from registry import ConfigError


def add_report_commands(commands: argparse._SubParsersAction) -> None:
    report = commands.add_parser(
        "report", help="tables, comparisons over runs and charts from MLflow"
    )
    report.add_argument("spec", nargs="?", help="experiment spec (YAML)")
    report.add_argument("--all", action="store_true", help="every spec in experiments/")
    report.add_argument("--out", type=Path, help="output folder (default reports/<spec name>/)")
    report.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE",
        help="the overrides the runs were made with, e.g. --set train.seeds=[0,1]",
    )  # fmt: skip
    report.add_argument("--tracking-uri", help="MLflow store (default: sqlite:///mlflow.db)")
    report.add_argument(
        "--no-count", action="store_true",
        help="leave Param./GFLOPs of rows without runs empty instead of counting them",
    )  # fmt: skip
    report.add_argument(
        "--videos", type=int, default=3, help="test videos in Fig. 7 and 8 (0: no videos)"
    )
    report.add_argument("--smoke", action="store_true", help="report the spec's --smoke runs")
    report.add_argument(
        "--min-effect", type=float, metavar="PP",
        help="the difference (percentage points) the power advice is for (default: the observed)",
    )  # fmt: skip
    report.set_defaults(command=_report)

    cover = commands.add_parser("coverage", help="every paper table row, its spec and state")
    cover.add_argument("--out", type=Path, default=Path("reports/coverage.md"))
    cover.add_argument("--tracking-uri", help="MLflow store (default: sqlite:///mlflow.db)")
    cover.set_defaults(command=_coverage)


def _report(args: argparse.Namespace) -> int:
    from harness.report import build_report  # matplotlib and seaborn: loaded only to report

    if args.all == bool(args.spec):
        raise ConfigError("harness report: give one spec file or --all (every experiments/*.yaml).")
    if args.all and args.out:
        raise ConfigError("harness report --all writes reports/<spec name>/; drop --out.")
    paths = sorted(Path("experiments").glob("*.yaml")) if args.all else [Path(args.spec)]
    if not paths:
        raise ConfigError("harness report --all: no experiments/*.yaml in the current folder.")
    require_non_negative(args, "videos")
    if args.min_effect is not None and not 0 < args.min_effect <= 100:
        raise ConfigError(
            f"--min-effect {args.min_effect}: expected a difference in percentage points "
            "between 0 and 100, e.g. --min-effect 1.0."
        )
    require_folder(args, "out")
    specs = [load_spec(path, args.set, smoke=args.smoke) for path in paths]  # checked up front
    for spec in specs:
        _keep_a_report_of_runs(tracking_uri(args.tracking_uri, spec.tracking.uri),
                               args.out or Path("reports") / spec.name)  # fmt: skip
    for spec in specs:
        uri = tracking_uri(args.tracking_uri, spec.tracking.uri)
        _say_if_new(uri)
        out = args.out or Path("reports") / spec.name
        report = build_report(spec, open_store(uri, spec.name), out, count=not args.no_count,
                              videos=args.videos, min_effect=args.min_effect)  # fmt: skip
        _print_report(spec.name, report, out)
    return 0


def _keep_a_report_of_runs(uri: str, out: Path) -> None:
    """Refuse to rebuild a report that shows finished runs from a store that does not exist (a
    mistyped --tracking-uri): every row would become pending."""
    path = sqlite_path(uri)
    table = out / "table.csv"
    if path is None or path.exists() or not table.is_file():
        return
    with table.open(newline="") as handle:
        done = sum(row.get("state") == "done" for row in csv.DictReader(handle))
    if done:
        raise ConfigError(
            f"there is no store at {path}, but {out}/ holds a report of {done} finished "
            "row(s): rebuilt from no store, every row would be pending. Name the store their "
            f"runs were logged to with --tracking-uri (or remove {out}/ to rebuild it empty)."
        )


def _say_if_new(uri: str) -> None:
    """A report of a store that does not exist yet shows every row pending: say so, since a
    mistyped --tracking-uri would otherwise look like runs not made."""
    path = sqlite_path(uri)
    if path is not None and not path.exists():
        print(
            f"note: there is no store at {path} yet, so every row is pending; if the runs were "
            "logged elsewhere, name that store with --tracking-uri.",
            file=sys.stderr,
        )


def _print_report(name: str, report, out: Path) -> None:
    """What was built, the verdict of every comparison over runs, and what was not drawn."""
    print(
        f"{name}: {report.count('done')} done, {report.count('pending')} pending, "
        f"{len(report.rows) - report.count('done') - report.count('pending')} other rows; "
        f"{len(report.files)} files in {out}/ ({report.seconds:.1f} s); logged to MLflow as "
        f"run {report.summary_run}"
    )
    for record in report.comparisons:
        print(
            f"  {record['model']} vs {record['baseline']}: {record['difference']:+.1f} pp over "
            f"{record['runs']} run{'s' * (record['runs'] != 1)}: {record['verdict']}"
        )
    for note in report.notes:
        print(f"  not drawn: {note}")


def _coverage(args: argparse.Namespace) -> int:
    from harness.report.coverage import coverage, coverage_markdown  # see _report

    experiments = Path("experiments")
    if not (experiments / "papers").is_dir():
        raise ConfigError(
            "harness coverage: run it from the repository root (experiments/papers/)."
        )
    _require_coverage_file(args.out)
    lines = coverage(experiments, args.tracking_uri)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(coverage_markdown(lines, tracking_uri(args.tracking_uri, None)))
    unmapped = [
        f"{line.paper} Table {line.table}: {line.row} ({line.spec})"
        for line in lines
        if line.state == "UNMAPPED"
    ]
    print(f"{len(lines)} table rows, {len(unmapped)} unmapped; written to {args.out}")
    for line in unmapped:
        print(f"  unmapped: {line}")
    return 1 if unmapped else 0


def _require_coverage_file(out: Path) -> None:
    """`--out` may replace only a file `harness coverage` wrote (a typo must not overwrite a
    spec or a note)."""
    from harness.report.coverage import COVERAGE_TITLE

    if out.is_dir():
        raise ConfigError(f"--out {out}: that is a folder; give the file to write, e.g. "
                          f"{out / 'coverage.md'}.")  # fmt: skip
    if out.is_file() and not _starts_with(out, COVERAGE_TITLE):
        raise ConfigError(f"--out {out}: that file was not written by harness coverage, and "
                          "would be overwritten. Give a new file, or the coverage file to "
                          "rebuild (default reports/coverage.md).")  # fmt: skip


def _starts_with(path: Path, line: str) -> bool:
    with path.open("rb") as handle:
        return handle.read(len(line.encode())) == line.encode()
