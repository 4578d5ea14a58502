"""Where the store is: the URI a command uses, made absolute for SQLite, and the command that
serves the MLflow UI for it. Nothing here imports MLflow, so commands that never open a store
(`harness list`, `--help`) do not pay for loading it."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from urllib.parse import urlparse

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
    rest = uri.removeprefix(prefix)
    if uri.startswith(prefix) and not rest.startswith(("/", ":memory:")):
        return prefix + str(Path(rest).resolve())
    return uri


def sqlite_path(uri: str) -> Path | None:
    """The database file of an SQLite URI (made absolute as `absolute_sqlite` does), or None for
    other stores and for an in-memory database."""
    uri = absolute_sqlite(uri)
    prefix = "sqlite:///"
    if not uri.startswith(prefix):
        return None
    path = uri.removeprefix(prefix).partition("?")[0]
    return Path(path) if path and path != ":memory:" else None


def uncreated_sqlite(uri: str) -> Path | None:
    """The file of an SQLite URI that does not exist yet in a folder that does (a store no run
    has been logged to, or a mistyped name), which a command that only reads should not create;
    None otherwise (a store that exists, or a path that opening it will explain)."""
    path = sqlite_path(uri)
    if path is None or path.exists() or not path.parent.is_dir():
        return None
    return path


def in_memory(uri: str) -> bool:
    """Whether `uri` is an in-memory SQLite database (`sqlite://`, `sqlite:///:memory:`), whose
    runs vanish when the process ends."""
    return uri.startswith("sqlite:") and sqlite_path(uri) is None


def is_server(uri: str) -> bool:
    """Whether `uri` is an MLflow tracking server (`mlflow server`), which serves its own UI."""
    return urlparse(uri).scheme in ("http", "https")


def redacted(uri: str) -> str:
    """`uri` as it may be printed: a password in it (`postgresql://user:secret@host/db`) shown as
    `***`, so that an error message or a log does not leak it."""
    parsed = urlparse(uri)
    if parsed.password is None:
        return uri
    netloc = parsed.netloc.replace(f":{parsed.password}@", ":***@", 1)
    return parsed._replace(netloc=netloc).geturl()


def ui_command(uri: str, port: int) -> list[str]:
    """The MLflow UI for the store at `uri`, on 127.0.0.1 only."""
    return [
        sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", absolute_sqlite(uri),
        "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
    ]  # fmt: skip
