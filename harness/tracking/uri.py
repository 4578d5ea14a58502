"""Where the store is: the URI a command uses, made absolute for SQLite, and the command that
serves the MLflow UI for it. Nothing here imports MLflow, so commands that never open a store
(`harness list`, `--help`) do not pay for loading it."""

from __future__ import annotations

import os
import sys
from pathlib import Path

DEFAULT_URI = "sqlite:///mlflow.db"


def tracking_uri(cli_uri: str | None, spec_uri: str | None) -> str:
    """The store to use: `--tracking-uri`, else the spec's, else `MLFLOW_TRACKING_URI`, else
    the local SQLite file."""
    return cli_uri or spec_uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_URI


def absolute_sqlite(uri: str) -> str:
    """`sqlite:///mlflow.db` made absolute against the working directory (other URIs as they
    are), so every process and every later call opens the same file. MLflow caches stores by URI
    string: a relative URI would keep pointing at the file of whichever folder opened it first."""
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri.startswith(prefix + "/"):
        return prefix + str(Path(uri.removeprefix(prefix)).resolve())
    return uri


def ui_command(uri: str, port: int) -> list[str]:
    """The MLflow UI for the store at `uri`, on 127.0.0.1 only."""
    return [
        sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", absolute_sqlite(uri),
        "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
    ]  # fmt: skip
