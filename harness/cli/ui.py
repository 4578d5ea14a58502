"""`harness ui`: the MLflow UI on 127.0.0.1 for the configured store, and a spec's runs page."""

from __future__ import annotations

import argparse
import subprocess

from harness.config.spec import load_spec
from harness.tracking import open_store, tracking_uri
from harness.tracking.uri import ui_command


def add_ui_command(commands: argparse._SubParsersAction) -> None:
    ui = commands.add_parser("ui", help="the MLflow UI on 127.0.0.1 for the configured store")
    ui.add_argument("spec", nargs="?", help="spec whose runs page to print")
    ui.add_argument("--port", type=int, default=5000)
    ui.add_argument("--tracking-uri", help="MLflow store (default: sqlite:///mlflow.db)")
    ui.set_defaults(command=_ui)


def _ui(args: argparse.Namespace) -> int:
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
