"""`harness run`: train, evaluate and log every trial of a spec (MLflow)."""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from pathlib import Path

from tabulate import tabulate

from harness.cli.suggested import command
from harness.config.advice import spec_warnings
from harness.config.smoke import warn_dropped_weights
from harness.config.spec import load_spec, select_trials
from harness.data.datasets import cache_dir
from harness.execute.preflight import preflight
from harness.execute.sweep import require_dataset, run_spec
from harness.folders import folder_problem, nearest_existing
from harness.tracking import open_store, tracking_uri
from harness.tracking.uri import sqlite_path, uncreated_sqlite
from harness.train.checkpoint import CHECKPOINTS
from harness.train.distributed import barrier, broadcast_from_main, init_from_env, leave
from harness.train.step import CUBLAS_DETERMINISTIC
from registry import ConfigError


def add_run_command(commands: argparse._SubParsersAction) -> None:
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
    run.add_argument(
        "--jobs", type=int, default=1,
        help="trials in parallel (local processes; on a GPU machine each claims a free GPU)",
    )  # fmt: skip
    run.add_argument(
        "--per-gpu", type=int, default=1, metavar="K",
        help="with --jobs: let K trials share one GPU (default 1: a GPU each)",
    )  # fmt: skip
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


def _check_flags(args: argparse.Namespace) -> None:
    """Flag mistakes, caught before anything joins a process group or creates a store."""
    if (args.backend == "dask") != bool(args.scheduler):
        raise ConfigError("--backend dask needs --scheduler tcp://HOST:PORT, and --scheduler "
                          "needs --backend dask.")  # fmt: skip
    if args.scheduler and not _scheduler_address(args.scheduler):
        raise ConfigError(f"--scheduler {args.scheduler!r}: expected a Dask scheduler address "
                          "such as tcp://HOST:8786 (host and port 1–65535).")  # fmt: skip
    if args.jobs < 1:
        raise ConfigError(f"--jobs {args.jobs}: expected 1 or more trials at a time.")
    if args.per_gpu < 1:
        raise ConfigError(f"--per-gpu {args.per_gpu}: expected 1 or more trials per GPU.")
    if args.per_gpu > 1 and args.jobs == 1 and not args.scheduler:
        raise ConfigError(f"--per-gpu {args.per_gpu} lets trials that run at once share a GPU, "
                          "but --jobs is 1 (one trial at a time). Add --jobs N, e.g. --jobs "
                          f"{args.per_gpu} on one GPU, or drop --per-gpu.")  # fmt: skip


def _scheduler_address(address: str) -> bool:
    """`[protocol://]host:port`, the host an IPv6 address in brackets or any name."""
    found = re.fullmatch(r"(?:[a-z]+://)?(?:\[[0-9a-fA-F:.]+\]|[^\s:/\[\]]+):(\d{1,5})", address)
    return found is not None and 1 <= int(found.group(1)) <= 65535


def _run(args: argparse.Namespace) -> int:
    _check_flags(args)
    if args.smoke:
        warn_dropped_weights(load_spec(args.spec, args.set).resolved)
    spec = load_spec(args.spec, args.set, smoke=args.smoke)
    for line in [] if args.smoke else spec_warnings(spec):  # --smoke shrinks them on purpose
        print(f"warning: {line}", file=sys.stderr)
    spec = select_trials(spec, args.trial)
    require_dataset(spec)  # before a store is made for a spec that trains nothing
    uri = tracking_uri(args.tracking_uri, spec.tracking.uri)
    _require_working_folders(written=not args.dry_run)
    started = time.perf_counter()
    if any(train and train.deterministic for train in map(spec.train_for, spec.trials)):
        # cuBLAS reads this once per process, before its first call: set it before CUDA starts
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_DETERMINISTIC)
    group = init_from_env()  # under torchrun: one DDP trial over the ranks
    try:
        checked = group.main and not args.dry_run
        _preflight_on_main(spec, group.main, checked)
        if not group.main:
            barrier()  # rank 0 creates the store first: a fresh SQLite file races on its schema
        uncreated = uncreated_sqlite(uri) if args.dry_run else None  # a dry run creates none
        store = None if uncreated else open_store(uri, spec.name)
        if group.main:
            barrier()
        summary = run_spec(spec, store, dry_run=args.dry_run, progress=not args.no_progress,
                           jobs=args.jobs, scheduler=args.scheduler, per_gpu=args.per_gpu,
                           preflighted=checked)  # fmt: skip
    finally:
        leave()
    if group.main:  # under torchrun, one summary
        _print_summary(spec, summary, uri, time.perf_counter() - started, args)
    if uncreated and group.main:
        print(f"note: there is no store at {uncreated} yet, so no trial has run there; the dry "
              "run created none.", file=sys.stderr)  # fmt: skip
    if summary.missing:
        return 2  # a dry run found this machine not ready: scripts can test for it
    if summary.interrupted:
        print("interrupted (Ctrl-C): the trials cut short are KILLED and resume when you run "
              "the same command again.", file=sys.stderr)  # fmt: skip
        return 130
    return 1 if summary.failed else 0


def _preflight_on_main(spec, main: bool, checked: bool) -> None:
    """`preflight` on rank 0 when `checked` (missing data, weights or split files, said before a
    store exists). Under torchrun its verdict reaches every rank: where it refuses the spec (or
    fails: a full disk, a bug), the other ranks leave with exit 2 and without a word, rather
    than wait at a barrier whose rank 0 is gone; rank 0 raises what it met."""
    refusal = None
    if checked:
        try:
            preflight(spec)
        except Exception as error:  # noqa: BLE001 -- told to every rank, then raised as it was
            refusal = error
    if broadcast_from_main(refusal is not None) and not main:
        raise SystemExit(2)
    if refusal is not None:
        raise refusal


def _require_working_folders(*, written: bool) -> None:
    """The dataset cache and `checkpoints/` must be folders (or not exist yet), and, when the
    run will write (`written`: not a dry run), folders this user can write in or make; said
    before the store is opened or a trial starts."""
    cache = cache_dir()  # raises naming HARNESS_CACHE when it is a file
    problem = folder_problem(nearest_existing(cache)) if written else None
    if problem is not None:
        named = os.environ.get("HARNESS_CACHE")
        raise ConfigError(
            f"{'HARNESS_CACHE=' + named if named else 'The harness cache ' + str(cache)}: "
            f"nothing can be written in {nearest_existing(cache)} ({problem.strerror}), where "
            "the harness keeps its generated datasets, frame indexes and clip caches. Point "
            "HARNESS_CACHE at a folder you can write (it is created if missing)."
        )
    if CHECKPOINTS.exists() and not CHECKPOINTS.is_dir():
        raise ConfigError(
            f"{CHECKPOINTS.resolve()} is a file: harness run keeps resume points and trial claims "
            f"in a folder of that name in the folder it runs from. Move the file, or run from "
            "another folder."
        )
    problem = folder_problem(nearest_existing(CHECKPOINTS.absolute())) if written else None
    if problem is not None:
        raise ConfigError(
            f"{CHECKPOINTS.absolute()} cannot be written ({problem.strerror}): harness run keeps "
            "resume points and trial claims in a folder of that name in the folder it runs "
            "from. Run it from a folder you can write."
        )


def _print_summary(spec, summary, uri: str, seconds: float, args: argparse.Namespace) -> None:
    minutes = seconds / 60
    print(
        f"\n{spec.name}: {len(summary.finished)} finished, {len(summary.skipped)} skipped "
        f"(already finished), {len(summary.failed)} failed, "
        f"{len(spec.trials) - len(summary.finished) - len(summary.skipped) - len(summary.failed)} "
        f"to do; {minutes:.1f} min; runs in {uri} (experiment {spec.name!r})"
    )
    if summary.ran:
        print("\n" + _closing_table(summary))
    if summary.fused:
        print(f"  two-stream results fused and logged: {len(summary.fused)}")
    for key, reason in summary.failed.items():
        print(f"  failed {key}: {reason}")
    if summary.missing:
        print(f"\nNot ready to run {spec.path} on this machine:")
        print("\n".join(f"- {line}" for line in summary.missing))
    elif summary.ran:
        print("\n" + _where_things_are(uri))
        chosen = {"smoke": args.smoke, "uri": args.tracking_uri}  # ui shows the whole experiment
        report = command("report", spec.path, overrides=args.set, **chosen)
        print(f"\nnext: {report}   (tables and charts: reports/{spec.name}/)\n      "
              f"{command('ui', spec.path, **chosen)}   (the runs in the MLflow UI)")  # fmt: skip


def _closing_table(summary) -> str:
    """The trials this sweep ran: key, how they ended, video top-1 and minutes."""
    rows = [
        [key, outcome.kind if outcome.kind != "failed" else "FAILED",
         "" if outcome.top1 is None else f"{outcome.top1:.3f}", f"{outcome.seconds / 60:.1f}"]
        for key, outcome in summary.ran.items()
    ]  # fmt: skip
    return tabulate(rows, headers=["trial", "state", "top-1", "min"], tablefmt="simple",
                    disable_numparse=True)  # fmt: skip


def _where_things_are(uri: str) -> str:
    """The store, its artifacts, the resume checkpoints and the dataset cache, with sizes."""
    database = sqlite_path(uri)
    places = [
        ("store", database if database is not None else uri),
        ("artifacts (weights, scores)", database.parent / "mlruns" if database else None),
        ("resume checkpoints", CHECKPOINTS),
        ("dataset cache", cache_dir()),
    ]
    lines = ["where things are:"]
    for label, place in places:
        if isinstance(place, Path):
            lines.append(f"  {label:28} {place.resolve()}  ({_size(place) / 2**20:.0f} MB)")
        elif place is not None:
            lines.append(f"  {label:28} {place}")
    return "\n".join(lines)


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.is_dir() else 0
