"""`harness report` (tables, comparisons over runs and charts from MLflow) and `harness coverage`
(every paper table row, its spec and state)."""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

from harness.cli.checks import require_folder, require_non_negative, require_writable
from harness.cli.suggested import command
from harness.config import result_keys
from harness.config.spec import load_spec
from harness.tracking import open_store, tracking_uri
from harness.tracking.uri import redacted, sqlite_path, uncreated_sqlite
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
        "--replace", action="store_true",
        help="rebuild even when the earlier report shows more finished runs than the store has",
    )  # fmt: skip
    report.add_argument(
        "--min-effect", type=float, metavar="PP",
        help="the smallest difference worth detecting (percentage points), for the power advice "
        "(default: the spec's report.min_effect; none: no advice)",
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
    builds = []
    for spec in specs:  # every spec's check before any report is written
        uri = tracking_uri(args.tracking_uri, spec.tracking.uri)
        out = args.out or Path("reports") / spec.name
        builds.append((spec, uri, out, _keep_a_report_of_runs(spec, uri, out, args.replace)))
    said: set[Path] = set()  # the stores not made yet that a note has named
    for spec, uri, out, runs in builds:
        uncreated = _say_if_new(uri, said)
        rebuild = command("report", spec.path, smoke=args.smoke, overrides=args.set,
                          uri=args.tracking_uri, out=args.out)  # fmt: skip
        store = None if uncreated else open_store(uri, spec.name)
        report = build_report(spec, store, out, runs=runs,
                              count=not args.no_count, videos=args.videos,
                              min_effect=args.min_effect, command=rebuild)  # fmt: skip
        _print_report(spec.name, report, out)
    return 0


def _keep_a_report_of_runs(spec, uri: str, out: Path, replace: bool) -> dict | None:
    """Refuse to rebuild a report over one that shows more finished runs than the store holds
    for this spec as given (the report in `out`, or the report run logged to the store): a
    mistyped --tracking-uri, or a --set other than the runs were made with, would turn finished
    rows pending. Returns the runs it read, for the report to use (None: it read none)."""
    if replace:
        return None
    in_folder = _runs_shown(out / "table.csv")
    path = sqlite_path(uri)
    if path is not None and not path.exists():
        if not in_folder:
            return None  # a new store: nothing to lose
        raise ConfigError(
            f"there is no store at {path}, but {out}/ holds a report of {in_folder} finished "
            "run(s): rebuilt from no store, every row would be pending. Name the store their "
            f"runs were logged to with --tracking-uri (or add --replace to rebuild it empty)."
        )
    from harness.report.rows import report_rows  # see _report

    runs, logged = _runs_in_store(spec, uri)
    found = sum(len(row.runs) for row in report_rows(spec, runs))
    store = redacted(uri)  # a password in the URI is not printed
    shown, where = max((in_folder, f"{out}/"), (logged, f"the report run logged to {store}"))
    if found < shown:
        raise ConfigError(
            f"{where} shows {shown} finished run(s), but {store} holds {found} run(s) of "
            f"'{spec.name}' made with these settings: rebuilt now, the others would show as "
            "pending. Give the --set overrides (and --tracking-uri) the runs were made with, "
            "or add --replace to rebuild the report anyway."
        )
    return runs


def _runs_in_store(spec, uri: str) -> tuple[dict, int]:
    """The latest run of each of `spec`'s trials in the existing store at `uri`, and the
    finished runs its logged report run shows (0 for a report logged before they were counted)."""
    try:
        store = open_store(uri, spec.name, create=False)
    except LookupError:  # no experiment of that name in the store
        return {}, 0
    logged = store.report_tags().get("report.runs", "0")
    return store.latest_runs(result_keys(spec)), int(logged) if logged.isdigit() else 0


def _runs_shown(table: Path) -> int:
    """The finished runs an earlier report's table.csv counts (0 when there is none)."""
    if not table.is_file():
        return 0
    with table.open(newline="") as handle:
        return sum(int(row.get("runs") or 0) for row in csv.DictReader(handle))


def _say_if_new(uri: str, said: set[Path], shows: str = "every row is pending") -> Path | None:
    """A report of a store that does not exist yet shows every row pending: say so (once per
    store: `said`), since a mistyped --tracking-uri would otherwise look like runs not made, and
    return its path (nothing creates a store there: a mistyped name leaves no empty file).
    `shows`: what the output shows for want of the store."""
    path = uncreated_sqlite(uri)
    if path is not None and path not in said:
        said.add(path)
        print(
            f"note: there is no store at {path} yet, so {shows} (no store was created, and "
            "nothing is logged to one); if the runs were logged elsewhere, name that store "
            "with --tracking-uri.",
            file=sys.stderr,
        )
    return path


def _print_report(name: str, report, out: Path) -> None:
    """What was built, the verdict of every comparison over runs, and what was not drawn."""
    print(
        f"{name}: {report.count('done')} done, {report.count('pending')} pending, "
        f"{len(report.rows) - report.count('done') - report.count('pending')} other rows; "
        f"{len(report.files)} files in {out}/ ({report.seconds:.1f} s); "
        + (f"logged to MLflow as run {report.summary_run}" if report.summary_run
           else "not logged (no store)")
    )  # fmt: skip
    for record in report.comparisons:
        print(
            f"  {record['model']} vs {record['baseline']}: {record['difference']:+.1f} pp over "
            f"{record['runs']} run{'s' * (record['runs'] != 1)}: {record['verdict']}"
        )
    for note in report.notes:
        print(f"  not drawn: {note}")


def _coverage(args: argparse.Namespace) -> int:
    from harness.report.coverage import coverage, coverage_markdown, store_summary  # see _report

    experiments = Path("experiments")
    if not (experiments / "papers").is_dir():
        raise ConfigError(
            "harness coverage: run it from the repository root (experiments/papers/)."
        )
    _require_coverage_file(args.out)
    uri = tracking_uri(args.tracking_uri, None)
    uncreated = _say_if_new(uri, set(), shows="no row shows as smoke-tested or run")
    tally: dict[str, int] = {}
    lines = coverage(experiments, args.tracking_uri, tally)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    held = "no store there yet" if uncreated else store_summary(tally)
    args.out.write_text(coverage_markdown(lines, redacted(uri), held))
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
    require_writable("--out", out, out.parent)


def _starts_with(path: Path, line: str) -> bool:
    with path.open("rb") as handle:
        return handle.read(len(line.encode())) == line.encode()
