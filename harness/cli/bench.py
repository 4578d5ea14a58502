"""`harness bench data` (data pipeline throughput against raw decoding) and `harness bench train`
(training clips/s, MFU, speed-up over plain fp32)."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import torch

from harness.cli.checks import (
    MAX_BATCH,
    device_flag,
    require_at_most,
    require_existing,
    require_positive,
)
from harness.cli.data import add_dataset_arguments, dataset_config
from harness.config.spec import AXIS_LIMITS
from harness.data.bench import TRAIN_RATE, bench_data, format_bench
from harness.data.cache import INDEX_FILE
from harness.data.clips import ClipProtocol
from harness.device import default_device
from harness.execute.failures import is_out_of_memory
from harness.train.bench import BENCH_CLASSES, bench_train, format_bench_train
from harness.train.inputs import loader_workers
from registry import BACKBONES, ConfigError, build_model

PREPARE_COMMAND = "`harness data prepare DATASET --root ROOT --out FOLDER` (the same videos)"
CACHE_COMMAND = "`harness data cache DATASET --root ROOT --out FOLDER`"
STEADY_STEPS = 5  # measured steps per loop below which a rate is mostly one step's noise


def add_bench_commands(commands: argparse._SubParsersAction) -> None:
    bench = commands.add_parser("bench", help="benchmarks")
    bench_commands = bench.add_subparsers(required=True, metavar="BENCH_COMMAND")

    data = bench_commands.add_parser("data", help="data pipeline throughput vs raw decoding")
    add_dataset_arguments(data)
    data.add_argument("--prepared", type=Path, help="the same dataset after 'harness data prepare'")
    data.add_argument("--cache", type=Path, help="its clip cache folder ('harness data cache')")
    data.add_argument(
        "--train-rate", type=float, default=TRAIN_RATE,
        help=f"clips/s the GPU trains at, for the projected wait (default {TRAIN_RATE:.0f})",
    )  # fmt: skip
    data.add_argument("--cores", type=int, help="cores to project to (default: this machine's)")
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
    train.add_argument(
        "--cache", type=Path, help="also train fed by the real loader from this clip cache"
    )
    train.add_argument(
        "--workers",
        type=int,
        help="threads slicing the cache (default: on a GPU cores − 1, at most 16; else 2)",
    )
    train.add_argument("--json", action="store_true")
    train.set_defaults(command=_bench_train)


def _bench_data(args: argparse.Namespace) -> int:
    require_positive(args, "frames", "size", "videos", "clips", "workers", "cores")
    require_at_most(args, frames=AXIS_LIMITS["frames"], size=AXIS_LIMITS["size"])
    require_existing(args, "prepared", "", PREPARE_COMMAND)
    require_existing(args, "cache", INDEX_FILE, CACHE_COMMAND)
    if not (math.isfinite(args.train_rate) and args.train_rate > 0):
        raise ConfigError(f"--train-rate {args.train_rate}: expected a finite number of clips/s "
                          "above 0 (what harness bench train measured, e.g. 250).")  # fmt: skip
    workers = args.workers or 2
    results = bench_data(
        dataset_config(args),
        protocol=ClipProtocol(frames=args.frames, size=args.size),
        workers=workers,
        videos=args.videos,
        clips=args.clips,
        prepared_root=args.prepared,
        cache_folder=args.cache,
        train_rate=args.train_rate,
        cores=args.cores,
    )
    print(json.dumps(results, indent=2) if args.json else format_bench(results))
    return 0


def _bench_train(args: argparse.Namespace) -> int:
    require_positive(args, "batch", "frames", "size", "steps", "workers")
    require_at_most(args, frames=AXIS_LIMITS["frames"], size=AXIS_LIMITS["size"], batch=MAX_BATCH)
    _require_fixed_input(args.backbone, args.frames, args.size)
    _require_input_fits(args)
    device = device_flag(args.device)
    require_existing(args, "cache", INDEX_FILE, CACHE_COMMAND)
    threads = args.workers or loader_workers(None, device or default_device())
    try:
        result = bench_train(
            args.backbone, attention=args.attention, placement=args.placement, batch=args.batch,
            frames=args.frames, size=args.size, steps=args.steps, compile_model=args.compile,
            device=device, cache=args.cache, threads=threads,
        )  # fmt: skip
    except RuntimeError as error:
        if not is_out_of_memory(error):
            raise
        raise ConfigError(
            f"--batch {args.batch}: out of memory training that many clips at once on "
            f"{device or default_device()}; lower --batch (default 8)."
        ) from None
    print(json.dumps(result, indent=2) if args.json else format_bench_train(result))
    if args.steps < STEADY_STEPS:
        print(f"warning: --steps {args.steps}: each loop's rate is measured over {args.steps} "
              f"step(s), so the speed-ups are mostly noise; use --steps {STEADY_STEPS} or more "
              "(default 10) for numbers to report.", file=sys.stderr)  # fmt: skip
    return 0


def _require_input_fits(args: argparse.Namespace) -> None:
    """The model takes `--frames` × `--size` clips: one forward on the meta device (no memory,
    no time), so a clip too small for its pooling is a flag mistake, not a traceback."""
    with torch.device("meta"):
        model = build_model(args.backbone, attention=args.attention, placement=args.placement,
                            num_classes=BENCH_CLASSES).eval()  # fmt: skip
        frames = (args.frames,) if BACKBONES.get(args.backbone).dims == 3 else ()
        clip = (1, 3, *frames, args.size, args.size)
        try:
            with torch.no_grad():
                model(torch.empty(clip))
        except RuntimeError as error:
            reason = str(error).splitlines()[0].rstrip(".")
            raise ConfigError(f"{args.backbone} cannot take clips of --frames {args.frames} "
                              f"--size {args.size}: {reason}. Give a larger --size (or "
                              "--frames).") from None  # fmt: skip


def _require_fixed_input(backbone: str, frames: int, size: int) -> None:
    """A backbone with a fixed input (C3D's fc6) is benchmarked on clips of that shape only."""
    fixed = BACKBONES.get(backbone).fixed_input if backbone in BACKBONES else None
    if fixed is None:
        return
    wanted = {"frames": fixed[1], "size": fixed[-1]} if len(fixed) == 4 else {"size": fixed[-1]}
    given = {"frames": frames, "size": size}
    if any(given[flag] != value for flag, value in wanted.items()):
        flags = " ".join(f"--{flag} {value}" for flag, value in wanted.items())
        raise ConfigError(f"{backbone} takes {'×'.join(map(str, fixed))} clips only, not "
                          f"--frames {frames} --size {size}: give {flags}.")  # fmt: skip
