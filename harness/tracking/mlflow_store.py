"""MLflow as the tracking store: one experiment per spec, one run per trial, found again by its
trial key. The only module of the harness that imports MLflow.

The default store is a local SQLite file, `sqlite:///mlflow.db` in the working directory;
`MLFLOW_TRACKING_URI`, the spec's `tracking.uri` or `--tracking-uri` point elsewhere (e.g. a
shared `mlflow server`). Opening the store creates it (its schema migration) in this one process,
before any parallel work can race on a fresh file. Runs are written through `MlflowClient` with
explicit run ids, so no process-wide "active run" is involved.
"""

from __future__ import annotations

import logging
import tempfile
import time
import warnings
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

with warnings.catch_warnings():  # MLflow's import under SQLAlchemy 2.1 warns
    warnings.simplefilter("ignore", DeprecationWarning)
    from mlflow.entities import Metric, Param, RunTag
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient
    from mlflow.tracking.context.registry import resolve_tags

from harness.tracking.base import RunLog, RunRecord, Store
from harness.tracking.schema import TRIAL_KEY_TAG
from harness.tracking.uri import absolute_sqlite

PAGE = 10_000  # runs per search page
PARAM_LIMIT = 500  # characters MLflow keeps of a param value

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
        self.client = MlflowClient(self.uri)
        found = self.client.get_experiment_by_name(experiment)
        if found is None and not create:
            raise LookupError(f"no MLflow experiment {experiment!r} in {self.uri}")
        self.experiment_id = (
            found.experiment_id if found else self.client.create_experiment(experiment)
        )

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


def _local_root(uri: str) -> Path | None:
    parsed = urlparse(uri)
    if parsed.scheme in ("", "file"):
        return Path(unquote(parsed.path))
    return None
