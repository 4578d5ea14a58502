"""`harness list` (what can be built) and `harness profile` (Params and GFLOPs of every model in
a spec's grid)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable

from harness.analysis.profile import format_table, profile_spec, rows_as_json
from harness.cli.checks import MAX_BATCH, device_flag, require_at_most, require_positive
from harness.config.spec import load_spec
from harness.device import default_device
from harness.execute.failures import is_out_of_memory
from registry import ATTENTION, BACKBONES, ConfigError, list_placements
from registry.options import options_of


def add_catalogue_commands(commands: argparse._SubParsersAction) -> None:
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


def _list(args: argparse.Namespace) -> int:
    catalogue = _catalogue()
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


def _catalogue() -> dict:
    """Every registered backbone and attention module with its options, and the placement rules."""
    return {
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


def _describe_options(fn: Callable) -> dict[str, dict[str, str]]:
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
    require_positive(args, "batch")
    require_at_most(args, batch=MAX_BATCH)
    spec = load_spec(args.spec)
    device = device_flag(args.device)
    try:
        rows = profile_spec(spec, latency=args.latency, device=device, batch=args.batch)
    except RuntimeError as error:
        if not is_out_of_memory(error):
            raise
        raise ConfigError(
            f"--batch {args.batch}: out of memory timing that many clips at once on "
            f"{device or default_device()}; lower --batch (default 8)."
        ) from None
    if args.json:
        print(json.dumps(rows_as_json(rows), indent=2))
    else:
        print(f"{spec.name}: {len(rows)} models\n")
        print(format_table(rows))
    return 0
