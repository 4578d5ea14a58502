"""The tracking interface: what a trial writes to its run, and how runs are read back.

`Store` is one experiment (one spec) in one tracking store; `RunLog` is one open run. The harness
talks to tracking only through these two classes; `harness.tracking.mlflow_store` is their one
implementation and the only module that imports MLflow.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from registry import ConfigError


class StoreError(ConfigError):
    """The tracking store cannot be used as given: an unknown URI scheme, a server that does not
    answer, a file that is not an SQLite database, a folder that cannot be written. A user's
    mistake, so the command line prints its one-paragraph message (naming the store) and exits
    with code 2 rather than a traceback."""


class RunLog(ABC):
    """One open run: tags, params, metrics (per step or final) and artifacts."""

    @abstractmethod
    def set_tags(self, tags: Mapping[str, str]) -> None: ...

    @abstractmethod
    def log_params(self, params: Mapping[str, Any]) -> None: ...

    @abstractmethod
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None: ...

    @abstractmethod
    def log_text(self, text: str, name: str) -> None:
        """An artifact file `name` (may contain folders) holding `text`."""

    @abstractmethod
    def log_file(self, path: Path, folder: str) -> None:
        """The local file `path` as an artifact under `folder`."""


class NullRunLog(RunLog):
    """Where ranks other than 0 log under DDP: nowhere. Only the interface's methods exist, so a
    misspelt call fails here as it would on the real run."""

    def set_tags(self, tags: Mapping[str, str]) -> None:
        pass

    def log_params(self, params: Mapping[str, Any]) -> None:
        pass

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        pass

    def log_text(self, text: str, name: str) -> None:
        pass

    def log_file(self, path: Path, folder: str) -> None:
        pass


@dataclass
class RunRecord:
    """The latest run of one trial as the store holds it."""

    trial_key: str
    run_id: str
    status: str  # FINISHED, FAILED, KILLED, RUNNING
    metrics: dict[str, float]
    tags: dict[str, str]
    artifact_uri: str  # where the store keeps the run's artifacts
    store: Store = field(repr=False)

    @property
    def finished(self) -> bool:
        return self.status == "FINISHED"

    def artifact_path(self, name: str) -> Path | None:
        """A local path to artifact `name`, or None when the run has no such artifact."""
        return self.store.artifact_path(self, name)

    def artifact_text(self, name: str) -> str | None:
        path = self.artifact_path(name)
        return path.read_text() if path is not None else None

    def artifact_json(self, name: str) -> Any:
        text = self.artifact_text(name)
        return json.loads(text) if text is not None else None

    def metric_history(self, name: str) -> list[tuple[int, float]]:
        """`(step, value)` pairs of a per-epoch metric, in step order."""
        return self.store.metric_history(self.run_id, name)


class Store(ABC):
    """One experiment (a spec's runs) in one tracking store."""

    uri: str
    experiment: str

    @abstractmethod
    def latest_run(self, key: str) -> RunRecord | None:
        """The most recent run of trial `key`, or None."""

    @abstractmethod
    def latest_runs(self, keys: Iterable[str]) -> dict[str, RunRecord]:
        """The most recent run of each of `keys` that has one (one paged search)."""

    @abstractmethod
    def open_run(self, key: str, run_id: str | None = None) -> AbstractContextManager[RunLog]:
        """Run `run_id` continued, or a new run for trial `key` (tagged with its key, so
        `latest_run` finds it from the start). On leaving the block it is
        FINISHED, or FAILED when an exception left it (KILLED on Ctrl-C)."""

    @abstractmethod
    def publish_report(self, folder: Path, tags: Mapping[str, str]) -> str:
        """Log the report in `folder` as this experiment's report run (tagged `tags`), replacing
        the one an earlier build logged; returns its run id. Trials never see that run."""

    @abstractmethod
    def report_tags(self) -> dict[str, str]:
        """The tags of this experiment's report run ({} when no report was logged yet)."""

    @abstractmethod
    def mark_killed(self, run_id: str) -> None:
        """End run `run_id` as KILLED (resumable): for a worker stopped before it could."""

    @abstractmethod
    def artifact_path(self, record: RunRecord, name: str) -> Path | None: ...

    @abstractmethod
    def metric_history(self, run_id: str, name: str) -> list[tuple[int, float]]: ...

    @abstractmethod
    def runs_page(self, address: str) -> str:
        """The address of this experiment's runs in the store's UI served at `address`."""

    def status(self, key: str) -> str | None:
        """FINISHED, FAILED, KILLED, RUNNING (or left RUNNING by a killed process), or None."""
        run = self.latest_run(key)
        return run.status if run else None
