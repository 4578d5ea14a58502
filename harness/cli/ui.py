"""`harness ui`: the MLflow UI on 127.0.0.1 for the configured store, and a spec's runs page.

The port and the store are checked before the UI starts: MLflow's UI on a port another program
holds exits 0 after its start-up, leaving the printed address served by that other program. The
UI runs in its own process group, stopped whole when `harness ui` is (`serve`)."""

from __future__ import annotations

import argparse
import errno
import importlib.util
import os
import signal
import socket
import subprocess
import time

from harness.config.spec import Spec, load_spec
from harness.tracking import check_store, open_store, tracking_uri
from harness.tracking.uri import is_server, redacted, ui_command, uncreated_sqlite
from registry import ConfigError


def add_ui_command(commands: argparse._SubParsersAction) -> None:
    ui = commands.add_parser("ui", help="the MLflow UI on 127.0.0.1 for the configured store")
    ui.add_argument("spec", nargs="?", help="spec whose runs page to print")
    ui.add_argument("--smoke", action="store_true", help="the runs page of the spec's --smoke runs")
    ui.add_argument("--port", default="5000", metavar="PORT",
                    help="port on 127.0.0.1, 1-65535 (default 5000)")  # fmt: skip
    ui.add_argument("--tracking-uri", help="MLflow store (default: sqlite:///mlflow.db)")
    ui.set_defaults(command=_ui)


def _ui(args: argparse.Namespace) -> int:
    spec = load_spec(args.spec, smoke=args.smoke) if args.spec else None
    uri = tracking_uri(args.tracking_uri, spec.tracking.uri if spec else None)
    if is_server(uri):  # an `mlflow server` serves its own UI: nothing to start here
        address = _page(uri, spec, redacted(uri).rstrip("/"))
        print(f"MLflow UI for {redacted(uri)}, served by that server: {address}")
        return 0
    port = _free_port(args.port)
    _require_mlflow_server(uri)
    _require_a_store(uri)
    address = _page(uri, spec, f"http://127.0.0.1:{port}")
    print(f"MLflow UI for {redacted(uri)}: {address}  (Ctrl-C stops it)", flush=True)
    return serve(ui_command(uri, port))


def _require_mlflow_server(uri: str) -> None:
    """The UI is MLflow's web server, which `mlflow-skinny` (the client alone) lacks."""
    if importlib.util.find_spec("flask") is None:
        raise ConfigError(
            f"harness ui needs MLflow's web server, which this Python lacks (Flask is not "
            f"installed: `mlflow-skinny` has the tracking client only). Install the full package "
            f"with `pip install mlflow`; meanwhile `harness report` reads the runs in "
            f"{redacted(uri)} without the UI."
        )


def _require_a_store(uri: str) -> None:
    """A UI of an SQLite file that does not exist would create an empty store there (often a
    mistyped name) and show no runs: refused instead."""
    path = uncreated_sqlite(uri)
    if path is not None:
        raise ConfigError(
            f"there is no store at {path}: no run has been logged there, so the UI would show "
            "nothing (and create an empty store). Run `harness run SPEC` first, or name the "
            "store the runs were logged to with --tracking-uri (or the spec's tracking.uri)."
        )


class _Stopped(Exception):
    """SIGTERM, SIGHUP or SIGINT reached `harness ui`."""


def serve(command: list[str]) -> int:
    """Run the UI in its own process group until it ends or `harness ui` is told to stop
    (Ctrl-C, `kill`, a closed terminal, a process manager); then stop the whole group, the
    MLflow server and its workers, so the port is free again. Exit 0 when stopped."""
    child = subprocess.Popen(command, start_new_session=True)

    def stop(signum, frame):
        raise _Stopped(signum)

    stopping = (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)
    previous = {number: signal.signal(number, stop) for number in stopping}
    try:
        return child.wait()
    except _Stopped:
        return 0
    finally:
        _stop_group(child)
        for number, handler in previous.items():
            signal.signal(number, handler)


def _stop_group(child: subprocess.Popen, grace: float = 10.0) -> None:
    """SIGTERM to the UI's process group, SIGKILL to whatever is left after `grace` seconds."""
    for group_signal in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(child.pid, group_signal)
        except ProcessLookupError:
            return  # the group is gone
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and _group_alive(child):
            time.sleep(0.1)
        if not _group_alive(child):
            return


def _group_alive(child: subprocess.Popen) -> bool:
    child.poll()  # reap the leader once it exits
    try:
        os.killpg(child.pid, 0)
    except ProcessLookupError:
        return False
    return True


def _page(uri: str, spec: Spec | None, address: str) -> str:
    """The spec's runs page under the UI at `address` (or `address` with no spec), the store
    opened first (created if new) so that an unusable one is reported before the UI starts."""
    if spec is None:
        check_store(uri)
        return address
    return open_store(uri, spec.name).runs_page(address)


def _free_port(text: str) -> int:
    """`--port` as a port the UI can listen on: a number from 1 to 65535 that no other program
    holds on 127.0.0.1 (bound as the UI's server binds, with SO_REUSEADDR, so a port left in
    TIME_WAIT by an earlier UI still counts as free)."""
    port = int(text) if text.strip().isdigit() else 0
    if not 1 <= port <= 65535:
        raise ConfigError(
            f"--port {text!r} is not a port the MLflow UI can listen on: expected a number from "
            f"1 to 65535, e.g. --port 5000."
        )
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError as error:
            raise ConfigError(_port_taken(port, error)) from None
    return port


def _port_taken(port: int, error: OSError) -> str:
    if error.errno == errno.EADDRINUSE:
        return (
            f"--port {port}: 127.0.0.1:{port} is already in use by another program (perhaps an "
            f"MLflow UI started earlier, at http://127.0.0.1:{port}), so the UI cannot listen "
            f"there. Choose a free port with --port, or stop that program."
        )
    return (
        f"--port {port}: the MLflow UI cannot listen on 127.0.0.1:{port} ({error.strerror}). "
        f"Expected a port this user may open (ports below 1024 need administrator rights); "
        f"choose another with --port, e.g. --port 5000."
    )
