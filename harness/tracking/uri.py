"""Where the store is: the URI a command uses, made absolute for SQLite, and the command that
serves the MLflow UI for it. Nothing here imports MLflow, so commands that never open a store
(`harness list`, `--help`) do not pay for loading it."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from urllib.parse import urlparse

from harness.folders import folder_problem, nearest_existing
from registry import ConfigError

DEFAULT_URI = "sqlite:///mlflow.db"


def tracking_uri(cli_uri: str | None, spec_uri: str | None) -> str:
    """The store to use: `--tracking-uri`, else the spec's, else `MLFLOW_TRACKING_URI` (empty:
    unset), else the local SQLite file. A given URI that is empty, does not parse, or puts an
    SQLite file under a literal `~` folder is a `ConfigError` naming where it was given."""
    given = [(cli_uri, "--tracking-uri"), (spec_uri, "tracking.uri"),
             (os.environ.get("MLFLOW_TRACKING_URI") or None, "MLFLOW_TRACKING_URI")]  # fmt: skip
    for uri, where in given:
        if uri is not None:
            return _checked(uri, where)
    return DEFAULT_URI


def _checked(uri: str, where: str) -> str:
    if not uri.strip():
        raise ConfigError(
            f"{where} is empty: expected a store such as sqlite:///mlflow.db or http://host:5000; "
            f"leave it out for the default ({DEFAULT_URI})."
        )
    try:
        urlparse(uri).port  # noqa: B018 (parsing the host and port is the check)
    except ValueError as error:
        scheme = uri.partition(":")[0]
        raise ConfigError(
            f"{where}: the {scheme} URI given cannot be read ({error}). Check its host part: an "
            "IPv6 address needs both brackets (http://[::1]:5000), a port only digits."
        ) from None  # the URI itself is not echoed: it may hold a password
    if uri.startswith("sqlite:///~"):
        raise ConfigError(
            f"{where} {uri}: SQLite paths are not expanded as a shell does, so this names a "
            "folder called '~' in the working directory. Write the full path "
            "(sqlite:////home/me/mlflow.db) or a relative one (sqlite:///mlflow.db)."
        )
    return uri


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
    """The file of an SQLite URI that does not exist yet (a store no run has been logged to, or
    a mistyped name or folder), which a command that only reads should not create: opening it
    would create the file and its missing folders. None otherwise: a store that exists, or a
    path under a file or where no folder can be made (/proc), which opening it will explain."""
    path = sqlite_path(uri)
    if path is None or path.exists():
        return None
    nearest = nearest_existing(path.parent)
    if not nearest.is_dir():
        return None
    return path if nearest == path.parent or folder_problem(nearest) is None else None


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
