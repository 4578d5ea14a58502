"""The `harness` command line.

    harness run SPEC [--dry-run] [--set K=V]   train, evaluate and log a spec's trials (MLflow)
    harness report SPEC|--all [--out DIR]      tables, significance and charts from MLflow
    harness coverage                           every paper table row, its spec and state
    harness ui [SPEC] [--port P]               the MLflow UI for the store, and the spec's runs page
    harness list [--json]                      what can be built
    harness profile SPEC [--latency] [--json]  Params and GFLOPs of every model in a spec's grid
    harness data synth|check|prepare|flow …    datasets
    harness bench data DATASET …               data pipeline throughput against raw decoding
    harness bench train BACKBONE [--attention A]  training clips/s, MFU, speed-up over fp32

User mistakes (unknown names, bad options, broken spec files, unusable checkpoints) print one
paragraph and exit with code 2; there is no traceback for them.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import torch

from harness.data.commands import add_data_commands, add_dataset_arguments, dataset_config
from registry import ATTENTION, BACKBONES, ConfigError, list_placements
from registry.options import options_of


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return args.command(args)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into `head` and closed early
        sys.stderr.close()
        return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="harness", description="Attention modules for video action recognition."
    )
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    listing = commands.add_parser("list", help="backbones, attention modules, placement rules")
    listing.add_argument("--json", action="store_true", help="print JSON")
    listing.set_defaults(command=_list)

    profile = commands.add_parser("profile", help="Params and GFLOPs of a spec's models")
    profile.add_argument("spec", help="experiment spec (YAML), e.g. experiments/table4.yaml")
    profile.add_argument("--latency", action="store_true", help="also measure forward latency")
    profile.add_argument("--json", action="store_true", help="print a JSON list of rows")
    profile.add_argument(
        "--device", default=None, help="device for --latency (default: cuda if present)"
    )
    profile.add_argument("--batch", type=int, default=8, help="batch size for clips/s (default 8)")
    profile.set_defaults(command=_profile)

    run = commands.add_parser("run", help="train, evaluate and log every trial of a spec")
    run.add_argument("spec", help="experiment spec (YAML), e.g. experiments/quickstart.yaml")
    run.add_argument("--dry-run", action="store_true", help="list the trials and which are done")
    run.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE",
        help="override a spec value, e.g. --set train.epochs=2 (repeatable)",
    )  # fmt: skip
    run.add_argument("--tracking-uri", help="MLflow store (default: sqlite:///mlflow.db)")
    run.add_argument("--no-progress", action="store_true", help="no progress bars")
    run.add_argument(
        "--smoke", action="store_true",
        help="the same grid shrunk to a short CPU run on synthetic data (experiment <name>_smoke)",
    )  # fmt: skip
    run.add_argument("--jobs", type=int, default=1, help="trials in parallel (local processes)")
    run.add_argument(
        "--backend", choices=("local", "dask"), default="local",
        help="dask: submit trials to the Dask cluster at --scheduler",
    )  # fmt: skip
    run.add_argument("--scheduler", help="Dask scheduler address, e.g. tcp://host:8786")
    run.add_argument(
        "--trial", action="append", default=[], metavar="KEY",
        help="run only trials whose key matches (shell pattern, e.g. '*-eam-*'; repeatable)",
    )  # fmt: skip
    run.set_defaults(command=_run)

    report = commands.add_parser("report", help="tables, significance and charts from MLflow")
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
    report.add_argument("--videos", type=int, default=3, help="test videos in Fig. 7 and 8")
    report.add_argument("--smoke", action="store_true", help="report the spec's --smoke runs")
    report.set_defaults(command=_report)

    cover = commands.add_parser("coverage", help="every paper table row, its spec and state")
    cover.add_argument("--out", type=Path, default=Path("reports/coverage.md"))
    cover.add_argument("--tracking-uri", help="MLflow store (default: sqlite:///mlflow.db)")
    cover.set_defaults(command=_coverage)

    ui = commands.add_parser("ui", help="the MLflow UI on 127.0.0.1 for the configured store")
    ui.add_argument("spec", nargs="?", help="spec whose runs page to print")
    ui.add_argument("--port", type=int, default=5000)
    ui.add_argument("--tracking-uri", help="MLflow store (default: sqlite:///mlflow.db)")
    ui.set_defaults(command=_ui)

    add_data_commands(commands)

    bench = commands.add_parser("bench", help="benchmarks")
    bench_commands = bench.add_subparsers(required=True, metavar="BENCH_COMMAND")
    data = bench_commands.add_parser("data", help="data pipeline throughput vs raw decoding")
    add_dataset_arguments(data)
    data.add_argument("--prepared", type=Path, help="the same dataset after 'harness data prepare'")
    data.add_argument("--frames", type=int, default=16, help="clip length")
    data.add_argument("--size", type=int, default=112, help="crop size")
    data.add_argument("--videos", type=int, default=48, help="videos to sample")
    data.add_argument("--clips", type=int, default=96, help="clips per measurement")
    data.add_argument("--json", action="store_true")
    data.set_defaults(command=_bench_data)
    train = bench_commands.add_parser("train", help="training throughput, MFU, vs plain fp32")
    train.add_argument("backbone", help="a registered backbone, e.g. resnet3d_50")
    train.add_argument("--attention", default="none")
    train.add_argument("--placement", default="none", help="e.g. stage_output")
    train.add_argument("--batch", type=int, default=8)
    train.add_argument("--frames", type=int, default=16)
    train.add_argument("--size", type=int, default=112)
    train.add_argument("--steps", type=int, default=10, help="measured steps per loop")
    train.add_argument("--compile", action="store_true", help="torch.compile the optimised loop")
    train.add_argument("--device", default=None, help="default: cuda if present")
    train.add_argument("--json", action="store_true")
    train.set_defaults(command=_bench_train)
    return parser


def _list(args: argparse.Namespace) -> int:
    catalogue = {
        "backbones": {
            name: {
                "dims": entry.dims,
                "description": entry.description,
                "options": _describe_options(entry.build),
                "stages": list(dict.fromkeys(p.stage for p in entry.points() if p.where != "head")),
                "insertion_points": [p.name for p in entry.points()],
            }
            for name in BACKBONES
            for entry in [BACKBONES.get(name)]
        },
        "attention": {
            name: {
                "dims": sorted(entry.classes),
                "description": entry.description,
                "options": _describe_options(entry.reference_class),
            }
            for name in ATTENTION
            for entry in [ATTENTION.get(name)]
        },
        "placements": list_placements(),
    }
    if args.json:
        print(json.dumps(catalogue, indent=2))
        return 0
    print("Backbones:")
    for name, info in catalogue["backbones"].items():
        print(f"  {name:16} {info['dims']}D  {info['description']}")
        print(f"  {'':16}     stages {', '.join(info['stages'])}{_options_line(info['options'])}")
    print("\nAttention modules:")
    for name, info in catalogue["attention"].items():
        dims = "/".join(f"{d}D" for d in info["dims"]) or "-"
        print(f"  {name:16} {dims:6} {info['description']}{_options_line(info['options'])}")
    print("\nPlacements (as 'where'; add 'stages: [res3, res4]' to select stages):")
    for name, text in catalogue["placements"].items():
        print(f"  {name:16} {text}")
    return 0


def _describe_options(fn) -> dict[str, dict[str, str]]:
    return {
        name: {"type": option.type_name, "default": repr(option.default)}
        for name, option in options_of(fn).items()
    }


def _options_line(options: dict[str, dict[str, str]]) -> str:
    if not options:
        return ""
    listed = ", ".join(f"{k}: {v['type']} = {v['default']}" for k, v in options.items())
    return f"\n  {'':16}     options: {listed}"


def _profile(args: argparse.Namespace) -> int:
    from harness.analysis.profile import format_table, profile_spec, rows_as_json
    from harness.config.spec import load_spec

    spec = load_spec(args.spec)
    device = torch.device(args.device) if args.device else None
    rows = profile_spec(spec, latency=args.latency, device=device, batch=args.batch)
    if args.json:
        print(json.dumps(rows_as_json(rows), indent=2))
    else:
        print(f"{spec.name}: {len(rows)} models\n")
        print(format_table(rows))
    return 0


def _bench_data(args: argparse.Namespace) -> int:
    from harness.data.bench import bench_data, format_bench
    from harness.data.clips import ClipProtocol

    workers = args.workers or 2
    results = bench_data(
        dataset_config(args),
        protocol=ClipProtocol(frames=args.frames, size=args.size),
        workers=workers,
        videos=args.videos,
        clips=args.clips,
        prepared_root=args.prepared,
    )
    print(json.dumps(results, indent=2) if args.json else format_bench(results))
    return 0


def _bench_train(args: argparse.Namespace) -> int:
    from harness.train.bench import bench_train, format_bench_train

    result = bench_train(
        args.backbone, attention=args.attention, placement=args.placement, batch=args.batch,
        frames=args.frames, size=args.size, steps=args.steps, compile_model=args.compile,
        device=torch.device(args.device) if args.device else None,
    )  # fmt: skip
    print(json.dumps(result, indent=2) if args.json else format_bench_train(result))
    return 0


def _run(args: argparse.Namespace) -> int:
    import time

    from harness.config.smoke import warn_dropped_weights
    from harness.config.spec import load_spec, select_trials
    from harness.execute.sweep import run_spec
    from harness.tracking import open_store, tracking_uri
    from harness.train.distributed import barrier, init_from_env

    if args.smoke:
        warn_dropped_weights(load_spec(args.spec, args.set).resolved)
    spec = select_trials(load_spec(args.spec, args.set, smoke=args.smoke), args.trial)
    uri = tracking_uri(args.tracking_uri, spec.tracking.uri)
    started = time.perf_counter()
    group = init_from_env()  # under torchrun: one DDP trial over the ranks
    if not group.main:
        barrier()  # rank 0 creates the store first: a fresh SQLite file races on its schema
    store = open_store(uri, spec.name)
    if group.main:
        barrier()
    if (args.backend == "dask") != bool(args.scheduler):
        raise ConfigError("--backend dask needs --scheduler tcp://HOST:PORT, and --scheduler "
                          "needs --backend dask.")  # fmt: skip
    if args.jobs < 1:
        raise ConfigError(f"--jobs {args.jobs}: expected 1 or more trials at a time.")
    summary = run_spec(spec, store, dry_run=args.dry_run, progress=not args.no_progress,
                       jobs=args.jobs, scheduler=args.scheduler)  # fmt: skip
    minutes = (time.perf_counter() - started) / 60
    print(
        f"\n{spec.name}: {len(summary.finished)} finished, {len(summary.skipped)} skipped "
        f"(already finished), {len(summary.failed)} failed, "
        f"{len(spec.trials) - len(summary.finished) - len(summary.skipped) - len(summary.failed)} "
        f"to do; {minutes:.1f} min; runs in {uri} (experiment {spec.name!r})"
    )
    if summary.fused:
        print(f"  two-stream results fused and logged: {len(summary.fused)}")
    for key, reason in summary.failed.items():
        print(f"  failed {key}: {reason}")
    if summary.missing:
        print(f"\nNot ready to run {spec.path} on this machine:")
        print("\n".join(f"- {line}" for line in summary.missing))
    return 1 if summary.failed else 0


def _report(args: argparse.Namespace) -> int:
    from harness.config.spec import load_spec
    from harness.report import build_report
    from harness.tracking import open_store, tracking_uri

    if args.all == bool(args.spec):
        raise ConfigError("harness report: give one spec file or --all (every experiments/*.yaml).")
    if args.all and args.out:
        raise ConfigError("harness report --all writes reports/<spec name>/; drop --out.")
    paths = sorted(Path("experiments").glob("*.yaml")) if args.all else [Path(args.spec)]
    if not paths:
        raise ConfigError("harness report --all: no experiments/*.yaml in the current folder.")
    specs = [load_spec(path, args.set, smoke=args.smoke) for path in paths]  # checked up front
    for spec in specs:
        uri = tracking_uri(args.tracking_uri, spec.tracking.uri)
        out = args.out or Path("reports") / spec.name
        report = build_report(spec, open_store(uri, spec.name), out, count=not args.no_count,
                              videos=args.videos)  # fmt: skip
        print(
            f"{spec.name}: {report.count('done')} done, {report.count('pending')} pending, "
            f"{len(report.rows) - report.count('done') - report.count('pending')} other rows; "
            f"{len(report.files)} files in {out}/ ({report.seconds:.1f} s)"
        )
        for note in report.notes:
            print(f"  not drawn: {note}")
    return 0


def _coverage(args: argparse.Namespace) -> int:
    from harness.report.coverage import coverage, coverage_markdown
    from harness.tracking import tracking_uri

    experiments = Path("experiments")
    if not (experiments / "papers").is_dir():
        raise ConfigError(
            "harness coverage: run it from the repository root (experiments/papers/)."
        )
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


def _ui(args: argparse.Namespace) -> int:
    import subprocess

    from harness.config.spec import load_spec
    from harness.tracking import open_store, tracking_uri
    from harness.tracking.mlflow_store import ui_command

    spec = load_spec(args.spec) if args.spec else None
    uri = tracking_uri(args.tracking_uri, spec.tracking.uri if spec else None)
    address = f"http://127.0.0.1:{args.port}"
    if spec is not None:
        address = open_store(uri, spec.name).runs_page(address)  # creates the store if new
    print(f"MLflow UI for {uri}: {address}  (Ctrl-C stops it)", flush=True)
    command = ui_command(uri, args.port)
    try:
        return subprocess.run(command, check=False).returncode
    except KeyboardInterrupt:
        return 0
