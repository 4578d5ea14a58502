"""`harness data synth|check|prepare|cache|flow`, and the arguments that locate a dataset
(shared with `harness bench data`)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from harness.cli.checks import (
    require_at_most,
    require_folder,
    require_non_negative,
    require_positive,
)
from harness.config.sections import SHORT_SIDE_LIMIT
from harness.data.cache import DEFAULT_SHORT_SIDE, build_cache, default_folder
from harness.data.check import check_dataset, failing, summary
from harness.data.datasets import DatasetConfig
from harness.data.formats import FORMATS
from harness.data.prepare import compute_flow, flow_method, prepare_frames
from harness.data.synthetic import PRESETS, check_synthetic_out, write_synthetic
from harness.folders import lies_within
from registry import ConfigError


def add_dataset_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments that locate a dataset (shared with `harness bench data`)."""
    parser.add_argument("dataset", choices=FORMATS, help="a registered dataset format")
    parser.add_argument("--root", type=Path, required=True, help="videos or frame folders")
    parser.add_argument("--split", type=int, default=1, help="official split 1, 2 or 3")
    parser.add_argument("--split-dir", type=Path, help="folder of the official split files")
    parser.add_argument("--annotations", type=Path, help="3D-ResNets-PyTorch annotation JSON")
    parser.add_argument("--train-list", type=Path, help="mmaction2 train list")
    parser.add_argument("--test-list", type=Path, help="mmaction2 val/test list")
    parser.add_argument(
        "--split-file", type=Path, help="'folder' dataset: '<class>/<video> train|test' lines"
    )
    parser.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")


def dataset_config(args: argparse.Namespace) -> DatasetConfig:
    return DatasetConfig(
        name=args.dataset,
        root=args.root,
        split=args.split,
        split_dir=args.split_dir,
        annotations=args.annotations,
        train_list=args.train_list,
        test_list=args.test_list,
        split_file=args.split_file,
    )


def add_data_commands(commands: argparse._SubParsersAction) -> None:
    data = commands.add_parser(
        "data", help="datasets: synthesise, check, prepare, cache, optical flow"
    )
    sub = data.add_subparsers(required=True, metavar="DATA_COMMAND")

    synth = sub.add_parser("synth", help="write the synthetic action dataset (UCF101 layout)")
    synth.add_argument("--preset", choices=sorted(PRESETS), default="tiny")
    synth.add_argument("--out", type=Path, required=True)
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--workers", type=int, default=None, help="processes (default: every core)")
    synth.set_defaults(command=_synth)

    check = sub.add_parser("check", help="counts and health of a dataset split")
    add_dataset_arguments(check)
    check.add_argument("--min-frames", type=int, default=16, help="fewer frames: too_short")
    check.add_argument("--json", action="store_true")
    check.set_defaults(command=_check)

    prepare = sub.add_parser("prepare", help="decode once into JPEG frames (short side 128)")
    add_dataset_arguments(prepare)
    prepare.add_argument("--out", type=Path, required=True)
    prepare.add_argument("--short-side", type=int, default=128)
    prepare.set_defaults(command=_prepare)

    cache = sub.add_parser("cache", help="decode once into a memory-mappable clip cache")
    add_dataset_arguments(cache)
    cache.add_argument(
        "--out", type=Path, help="cache folder (default: under HARNESS_CACHE, by root and side)"
    )
    cache.add_argument(
        "--short-side", type=short_side, default=DEFAULT_SHORT_SIDE,
        help=f"scale frames to this short side, or 'native' (default {DEFAULT_SHORT_SIDE})",
    )  # fmt: skip
    cache.set_defaults(command=_cache)

    flow = sub.add_parser("flow", help="TSN-style optical flow images (TV-L1 or Farneback)")
    add_dataset_arguments(flow)
    flow.add_argument("--out", type=Path, required=True)
    flow.add_argument(
        "--method", choices=("tvl1", "farneback"),
        help="TV-L1 (TSN's; the default where OpenCV's contrib build is installed) or Farneback "
        "(about 20x faster; the default without it)",
    )  # fmt: skip
    flow.set_defaults(command=_flow)


def _synth(args: argparse.Namespace) -> int:
    require_positive(args, "workers")
    require_non_negative(args, "seed")
    require_folder(args, "out")
    check_synthetic_out(args.out, args.preset, args.seed)
    start = time.perf_counter()
    root = write_synthetic(args.out, args.preset, args.seed, args.workers)
    preset = PRESETS[args.preset]
    videos = preset.classes * 25 * preset.clips_per_group
    print(
        f"wrote {videos} videos ({preset.classes} classes, {preset.frames} frames, "
        f"{preset.width}x{preset.height}) to {root} and split files to "
        f"{args.out / 'ucfTrainTestlist'} in {time.perf_counter() - start:.1f} s"
    )
    print(f"check it: harness data check synthetic --root {root} --split 1")
    return 0


def _check(args: argparse.Namespace) -> int:
    require_positive(args, "workers", "min_frames")
    report = check_dataset(dataset_config(args), min_frames=args.min_frames, workers=args.workers)
    print(json.dumps(report, indent=1) if args.json else summary(report))
    return 1 if failing(report) else 0  # none of the split's videos on disk: 2 (DataError)


def _prepare(args: argparse.Namespace) -> int:
    require_positive(args, "workers", "short_side")
    require_at_most(args, short_side=SHORT_SIDE_LIMIT)
    require_folder(args, "out")
    start = time.perf_counter()
    config = dataset_config(args)
    _require_outside_root(args.out, config.root, "frames")
    counts = prepare_frames(config, args.out, short_side=args.short_side, workers=args.workers)
    print(
        f"{counts['written']} of {counts['videos']} videos written as JPEG frames to {args.out} "
        f"({counts['failed']} failed) in {time.perf_counter() - start:.1f} s; use --root {args.out}"
    )
    _name_failures(counts, config)
    return 0 if counts["failed"] == 0 else 1


def short_side(text: str) -> int | None:
    """`--short-side`: a positive number of pixels, or `native` (frames as decoded)."""
    if text == "native":
        return None
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected a positive number of pixels (e.g. 128) or 'native'"
        )
    return value


def _cache(args: argparse.Namespace) -> int:
    require_positive(args, "workers")
    require_at_most(args, short_side=SHORT_SIDE_LIMIT)
    require_folder(args, "out")
    start = time.perf_counter()
    config = dataset_config(args)
    _require_outside_root(args.out, config.root, "cache")
    out = args.out or default_folder(config, args.short_side)
    counts = build_cache(config, out, short_side=args.short_side, workers=args.workers)
    side = f"short side {args.short_side}" if args.short_side else "native size"
    print(
        f"{counts['decoded']} videos decoded and {counts['reused']} reused from the previous "
        f"cache ({counts['failed']} failed, {counts['kept']} of other splits kept) into {out}: "
        f"{counts['frames']} frames at {side}, "
        f"{counts['bytes'] / 1e9:.2f} GB, in {time.perf_counter() - start:.1f} s"
    )
    print(
        f"use it: dataset.layout: cache, dataset.short_side: {args.short_side or 'null'}"
        + (f", dataset.cache: {out}" if args.out else "")
    )
    _name_failures(counts, config)
    return 0 if counts["failed"] == 0 else 1


def _flow(args: argparse.Namespace) -> int:
    require_positive(args, "workers")
    require_folder(args, "out")
    start = time.perf_counter()
    config = dataset_config(args)
    _require_outside_root(args.out, config.root, "flow_tvl1")
    method = args.method or flow_method()
    if method != flow_method() == "farneback":
        raise ConfigError("--method tvl1 needs OpenCV's contrib build (cv2.optflow), which is not "
                          "installed: pip install opencv-contrib-python, or use --method "
                          "farneback.")  # fmt: skip
    counts = compute_flow(config, args.out, workers=args.workers, method=method)
    print(
        f"{method} flow for {counts['written']} of {counts['videos']} videos written to "
        f"{args.out} ({counts['failed']} failed) in {time.perf_counter() - start:.1f} s"
    )
    _name_failures(counts, config)
    return 0 if counts["failed"] == 0 else 1


def _require_outside_root(out: Path | None, root: Path, example: str) -> None:
    """What a data command writes goes beside the dataset, never into it: files written among
    the videos would mix with them (and a later run of the format would read them)."""
    if out is None:
        return
    if lies_within(out, root):
        raise ConfigError(
            f"--out {out} is inside the dataset root --root {root}: what it writes would lie "
            f"among the videos. Give a folder outside the root, e.g. --out "
            f"{root.resolve().parent / example}."
        )


def _name_failures(counts: dict, config: DatasetConfig, shown: int = 20) -> None:
    """The videos the split lists name that are not there, the videos that could not be
    decoded, and the command that says why for each."""
    if counts.get("missing"):
        print(f"note: {counts['missing']} video(s) the {config.name} split lists name are not "
              f"under {config.root} and were left out; `harness data check` with the same "
              "dataset arguments lists them.", file=sys.stderr)  # fmt: skip
    failed = counts.get("failed_videos") or []
    if failed:
        more = f" … ({len(failed)} in all)" if len(failed) > shown else ""
        print(f"error: {len(failed)} {config.name} video(s) could not be decoded: "
              f"{', '.join(failed[:shown])}{more}. `harness data check` with the same dataset "
              "arguments gives each one's reason (e.g. a truncated or non-video file): replace "
              "it, or leave it out of the split files.", file=sys.stderr)  # fmt: skip
