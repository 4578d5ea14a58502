"""MLflow as the tracking store: one experiment per spec, one run per trial, found again by its
trial key. The only module of the harness that imports MLflow.

The default store is a local SQLite file, `sqlite:///mlflow.db` in the working directory;
`MLFLOW_TRACKING_URI`, the spec's `tracking.uri` or `--tracking-uri` point elsewhere (e.g. a
shared `mlflow server`). Opening a SQLite store creates it (its schema migration) under an
exclusive lock on `<file>.lock` beside it, so processes started together on a fresh file do not
race on the migration. Every way the store can be unusable when it is opened (an unknown scheme, a
server that does not answer, a corrupt file, a folder that cannot be written) ends as one
`StoreError` naming it. Runs are written through `MlflowClient` with explicit run ids, so no
process-wide "active run" is involved.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import sqlite3
import tempfile
import time
import warnings
from collections.abc import Iterable, Iterator, Mapping
from contextlib import closing, contextmanager, nullcontext
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

with warnings.catch_warnings():  # MLflow's import under SQLAlchemy 2.1 warns
    warnings.simplefilter("ignore", DeprecationWarning)
    from mlflow.entities import Metric, Param, RunTag
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient
    from mlflow.tracking.context.registry import resolve_tags
    from mlflow.tracking.registry import UnsupportedModelRegistryStoreURIException
    from sqlalchemy import create_engine
    from sqlalchemy.exc import DBAPIError, SQLAlchemyError
    from sqlalchemy.pool import NullPool

from harness.tracking.base import RunLog, RunRecord, Store, StoreError
from harness.tracking.schema import REPORT_FOLDER, REPORT_RUN_TAG, TRIAL_KEY_TAG
from harness.tracking.uri import absolute_sqlite, in_memory, is_server, redacted, sqlite_path

PAGE = 10_000  # runs per search page
PARAM_LIMIT = 500  # characters MLflow keeps of a param value
# The first contact with a tracking server is bounded to seconds: MLflow's defaults (7 retries,
# exponential back-off, 120 s timeout) wait about four minutes on a port nobody listens on. Only
# the opening is bounded; later requests keep MLflow's patience with a server that blips mid-run.
# Settings the user made in the environment win.
FIRST_CONTACT = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
}
WHERE = "--tracking-uri, the spec's tracking.uri or MLFLOW_TRACKING_URI"
FORMS = (
    "sqlite:///PATH/mlflow.db (a local file; the default is sqlite:///mlflow.db in the working "
    "folder), http(s)://HOST:PORT (an `mlflow server`) or a database URL such as "
    "postgresql://USER@HOST/DB"
)
UNUSABLE = (MlflowException, SQLAlchemyError, sqlite3.Error, OSError, ModuleNotFoundError)
DATABASES = ("postgresql", "mysql", "mssql")  # URL schemes (before any "+driver") of servers

logging.getLogger("mlflow").setLevel(logging.WARNING)
logging.getLogger("alembic").setLevel(logging.WARNING)


class MlflowRunLog(RunLog):
    """One MLflow run, written by id."""

    def __init__(self, client: MlflowClient, run_id: str) -> None:
        self.client, self.run_id = client, run_id

    def set_tags(self, tags: Mapping[str, str]) -> None:
        self.client.log_batch(self.run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def log_params(self, params: Mapping[str, Any]) -> None:
        entries = [Param(k, str(v)[:PARAM_LIMIT]) for k, v in params.items()]
        self.client.log_batch(self.run_id, params=entries)

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        now = int(time.time() * 1000)
        entries = [Metric(k, float(v), now, step or 0) for k, v in metrics.items()]
        self.client.log_batch(self.run_id, metrics=entries)

    def log_text(self, text: str, name: str) -> None:
        self.client.log_text(self.run_id, text, name)

    def log_file(self, path: Path, folder: str) -> None:
        self.client.log_artifact(self.run_id, str(path), folder)


class MlflowStore(Store):
    """The spec's experiment in one MLflow store; looks trials up by their key."""

    def __init__(self, uri: str, experiment: str, *, create: bool = True) -> None:
        self.uri = absolute_sqlite(uri)
        self.experiment = experiment
        with opening(self.uri):
            self.client = MlflowClient(self.uri)
            self.experiment_id = self._experiment_id(create)

    def _experiment_id(self, create: bool) -> str:
        found = self.client.get_experiment_by_name(self.experiment)
        if found is not None:
            return found.experiment_id
        if not create:
            raise LookupError(f"no MLflow experiment {self.experiment!r} in {self.uri}")
        try:
            return self.client.create_experiment(
                self.experiment, artifact_location=_artifact_location(self.uri)
            )
        except MlflowException as error:  # created meanwhile by another process on the server
            again = self.client.get_experiment_by_name(self.experiment)
            if error.error_code != "RESOURCE_ALREADY_EXISTS" or again is None:
                raise
            return again.experiment_id

    def latest_run(self, key: str) -> RunRecord | None:
        runs = self.client.search_runs(
            [self.experiment_id],
            filter_string=f"tags.{TRIAL_KEY_TAG} = '{key}'",
            order_by=["attributes.start_time DESC"],
            max_results=1,
        )
        return self._record(runs[0]) if runs else None

    def latest_runs(self, keys: Iterable[str]) -> dict[str, RunRecord]:
        wanted, found = set(keys), {}
        for run in self._all_runs():  # newest first: keep the first seen of each key
            key = run.data.tags.get(TRIAL_KEY_TAG)
            if key in wanted and key not in found:
                found[key] = self._record(run)
        return found

    @contextmanager
    def open_run(self, key: str, run_id: str | None = None) -> Iterator[RunLog]:
        if run_id is None:
            tags = resolve_tags({"mlflow.runName": key, TRIAL_KEY_TAG: key})
            run_id = self.client.create_run(self.experiment_id, tags=tags, run_name=key).info.run_id
        else:
            self.client.update_run(run_id, status="RUNNING")
        try:
            yield MlflowRunLog(self.client, run_id)
        except KeyboardInterrupt:
            self.client.set_terminated(run_id, "KILLED")
            raise
        except BaseException:
            self.client.set_terminated(run_id, "FAILED")
            raise
        self.client.set_terminated(run_id, "FINISHED")

    def mark_killed(self, run_id: str) -> None:
        self.client.set_terminated(run_id, "KILLED")

    def publish_report(self, folder: Path, tags: Mapping[str, str]) -> str:
        earlier = self._report_runs()
        name = f"report: {self.experiment}"
        tags = resolve_tags({"mlflow.runName": name, REPORT_RUN_TAG: "1", **tags})
        run_id = self.client.create_run(self.experiment_id, tags=tags, run_name=name).info.run_id
        self.client.log_artifacts(run_id, str(folder), REPORT_FOLDER)
        self.client.set_terminated(run_id, "FINISHED")
        for run in earlier:  # only once the new one is complete
            self.client.delete_run(run.info.run_id)
        return run_id

    def report_tags(self) -> dict[str, str]:
        earlier = self._report_runs()
        return dict(earlier[0].data.tags) if earlier else {}

    def _report_runs(self) -> list:
        """The report runs of this experiment, newest first (one, unless a build was cut)."""
        return list(self.client.search_runs(
            [self.experiment_id], filter_string=f"tags.{REPORT_RUN_TAG} = '1'",
            order_by=["attributes.start_time DESC"],
        ))  # fmt: skip

    def artifact_path(self, record: RunRecord, name: str) -> Path | None:
        local = _local_root(record.artifact_uri)
        if local is not None:
            path = local / name
            return path if path.is_file() else None
        target = tempfile.mkdtemp(prefix="harness-artifact-")
        try:
            return Path(self.client.download_artifacts(record.run_id, name, target))
        except (MlflowException, OSError):  # the run has no such artifact
            return None

    def metric_history(self, run_id: str, name: str) -> list[tuple[int, float]]:
        history = self.client.get_metric_history(run_id, name)
        return sorted((m.step, m.value) for m in history)

    def runs_page(self, address: str) -> str:
        """The MLflow UI's page of this experiment's runs, under the UI at `address`."""
        return f"{address}/#/experiments/{self.experiment_id}/runs"

    def _all_runs(self):
        token = None
        while True:
            page = self.client.search_runs(
                [self.experiment_id], order_by=["attributes.start_time DESC"],
                max_results=PAGE, page_token=token,
            )  # fmt: skip
            yield from page
            token = page.token
            if not token:
                return

    def _record(self, run) -> RunRecord:
        return RunRecord(
            run.data.tags.get(TRIAL_KEY_TAG, ""), run.info.run_id, run.info.status,
            dict(run.data.metrics), dict(run.data.tags),
            run.info.artifact_uri, self,
        )  # fmt: skip


def _artifact_location(uri: str) -> str | None:
    """Where a new experiment of a SQLite store keeps its artifacts: `mlruns/` beside the
    database file, not MLflow's default `./mlruns` in whatever folder the command ran from (a
    store given by an absolute path would otherwise scatter artifacts over working folders).
    None (MLflow's choice) for servers and database stores."""
    path = sqlite_path(uri)
    return (path.parent / "mlruns").as_uri() if path is not None else None


def _local_root(uri: str) -> Path | None:
    parsed = urlparse(uri)
    if parsed.scheme in ("", "file"):
        return Path(unquote(parsed.path))
    return None


def _is_sqlite(path: Path) -> bool:
    """Whether the file at `path` starts as every SQLite 3 database does."""
    with path.open("rb") as handle:
        return handle.read(16) == b"SQLite format 3\x00"


def check_store(uri: str) -> None:
    """Open the store at `uri` and read its experiments once (creating it when new), so that a
    command serving it (`harness ui`) fails with the store's `StoreError` rather than later."""
    uri = absolute_sqlite(uri)
    with opening(uri):
        MlflowClient(uri).search_experiments(max_results=1)


@contextmanager
def opening(uri: str) -> Iterator[None]:
    """The block that first opens the store at `uri` (its client and first reads and writes):
    under the creation lock for a SQLite file, with a server's first contact bounded, and with
    every way the store can be unusable turned into one `StoreError` that names it."""
    if in_memory(uri):
        raise StoreError(
            f"the tracking store {uri} is an in-memory SQLite database: every run logged there "
            f"is lost when the command ends. Expected {FORMS}. Name a file, e.g. "
            f"sqlite:///mlflow.db, or fix {WHERE}."
        )
    path = sqlite_path(uri)
    try:
        with _first_contact(uri), _sqlite_lock(path) if path else nullcontext():
            _reach(uri, path)
            yield
    except UnsupportedModelRegistryStoreURIException as error:
        raise StoreError(_unknown_scheme(uri, error.supported_uri_schemes)) from error
    except UNUSABLE as error:
        raise StoreError(_explain(uri, path, error)) from error


@contextmanager
def _first_contact(uri: str) -> Iterator[None]:
    """MLflow's HTTP retries and timeout bounded (`FIRST_CONTACT`) while the block runs."""
    added = {} if not is_server(uri) else {
        name: value for name, value in FIRST_CONTACT.items() if name not in os.environ
    }  # fmt: skip
    os.environ.update(added)  # MLflow reads them at each request
    try:
        yield
    finally:
        for name in added:
            os.environ.pop(name, None)


@contextmanager
def _sqlite_lock(path: Path) -> Iterator[None]:
    """An exclusive lock on `<path>.lock` while the block runs: MLflow migrates a fresh SQLite
    file's schema without one, and two processes doing so at once leave it broken ("table
    _alembic_tmp_latest_metrics already exists"). The lock file stays, empty, beside the store."""
    if path.is_dir():
        raise IsADirectoryError(errno.EISDIR, "is a folder", str(path))
    if not path.parent.is_dir():
        path.parent.mkdir(parents=True, exist_ok=True)  # processes started together race here
    try:
        lock = open(path.with_name(path.name + ".lock"), "a")  # closed by the `with` below
    except OSError:
        if not path.is_file():
            raise
        yield  # a store in a folder this user cannot write: only read, nothing to create
        return
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield  # closing the file releases the lock


def _reach(uri: str, path: Path | None) -> None:
    """Open the database once before MLflow does: MLflow retries a database it cannot open or
    reach for about 100 s, logging a warning at each try, and reports a corrupt SQLite file with
    its SQL. Reads the SQLite file `path`'s table list; connects once to a database server."""
    if path is not None:
        with closing(sqlite3.connect(path)) as db:
            db.execute("SELECT name FROM sqlite_master").fetchall()
    elif urlparse(uri).scheme.partition("+")[0] in DATABASES:
        engine = create_engine(uri, poolclass=NullPool)
        try:
            with engine.connect():
                pass
        finally:
            engine.dispose()


def _unknown_scheme(uri: str, accepted: Iterable[str]) -> str:
    scheme = urlparse(uri).scheme or "(none)"
    schemes = ", ".join(f"{s}://" for s in sorted(accepted) if s)
    return (
        f"the tracking store {redacted(uri)} has the scheme {scheme!r}, which MLflow does not "
        f"know. Expected {FORMS} (schemes MLflow accepts here: {schemes}). Fix {WHERE}."
    )


def _explain(uri: str, path: Path | None, error: BaseException) -> str:
    """One paragraph on why the store at `uri` (the SQLite file `path`, if one) is unusable."""
    shown = redacted(uri)
    if path is not None:
        return _sqlite_problem(shown, path, error)
    if isinstance(error, ModuleNotFoundError):
        return (
            f"the tracking store {shown} needs the Python module {error.name!r} (its database "
            f"driver), which is not installed. Install the driver, name an installed one in the "
            f"scheme (e.g. postgresql+psycopg2://, mysql+pymysql://), or fix {WHERE}."
        )
    if is_server(uri):
        return _server_problem(shown, error)
    local = _local_root(uri)
    if local is not None and local.is_file() and _is_sqlite(local):
        return (
            f"the tracking store {shown} is an SQLite database given as a path: MLflow reads it "
            f"as a folder. Give it as sqlite:///{local} ({WHERE})."
        )
    if local is not None and "MLFLOW_ALLOW_FILE_STORE" in _reason(error):
        return (
            f"the tracking store {shown} names a folder, not a database: MLflow 3 opens its old "
            f"file store only with MLFLOW_ALLOW_FILE_STORE=true. Expected {FORMS}. Fix {WHERE}."
        )
    return (
        f"the tracking store {shown} cannot be used: {_reason(error)}. Expected {FORMS}; "
        f"check that store, or fix {WHERE}."
    )


def _sqlite_problem(shown: str, path: Path, error: BaseException) -> str:
    if isinstance(error, OSError):
        where = Path(error.filename or path.parent)
        if isinstance(error, IsADirectoryError) and where == path:
            return (
                f"the tracking store {shown} names {path}, which is a folder. Expected the path "
                f"of an SQLite file, e.g. sqlite:///{path}/mlflow.db. Fix {WHERE}."
            )
        problem = "is a file, not a folder" if where.is_file() else f"({error.strerror or error})"
        return (
            f"the tracking store {shown} cannot be created: {where} {problem}. Expected "
            f"{path.parent} to be a folder this user can write. Choose a path in a writable "
            f"folder, or fix {WHERE}."
        )
    cause = error.orig if isinstance(error, DBAPIError) else error
    if isinstance(cause, sqlite3.DatabaseError) and not isinstance(cause, sqlite3.OperationalError):
        return (
            f"{path} (the tracking store {shown}) is not a readable SQLite database "
            f"({_reason(cause)}): the file is damaged or is not an MLflow store. Expected an "
            f"MLflow SQLite file, or none (a new store is then created). Move the file aside or "
            f"restore it from a backup, or fix {WHERE}."
        )
    return (
        f"the SQLite tracking store {path} ({shown}) cannot be used: {_reason(error)}. Expected "
        f"an MLflow store this user can read and write. Check or move the file, or fix {WHERE}."
    )


def _server_problem(shown: str, error: BaseException) -> str:
    down = [e for e in _chain(error) if isinstance(e, OSError)]  # requests' errors are OSErrors
    if down:
        root = down[-1]
        return (
            f"no MLflow server answered at {shown} ({root.strerror or _reason(root)}). Expected "
            f"a running `mlflow server` at that address: start one (e.g. `mlflow server --host "
            f"127.0.0.1 --port 5000` and --tracking-uri http://127.0.0.1:5000), or fix {WHERE} "
            f"(the default store is sqlite:///mlflow.db, a local file)."
        )
    return (
        f"the server at {shown} did not answer as an MLflow tracking server: {_reason(error)}. "
        f"Expected the address of an `mlflow server`; check it, or fix {WHERE}."
    )


def _chain(error: BaseException) -> list[BaseException]:
    """`error` and the exceptions it was raised from or while handling, outermost first."""
    chain = [error]
    while (inner := chain[-1].__cause__ or chain[-1].__context__) is not None and len(chain) < 20:
        chain.append(inner)
    return chain


def _reason(error: BaseException) -> str:
    """The error's own words on one line (MLflow's and SQLAlchemy's messages span several)."""
    if isinstance(error, MlflowException):
        text = error.message
    elif isinstance(error, DBAPIError):
        text = str(error.orig)
    else:
        text = str(error)
    return " ".join(text.split()).rstrip(".?! ")
