"""MLflow tracking: one experiment per spec, one run per trial, found again by its trial key.

The default store is a local SQLite file, `sqlite:///mlflow.db` in the working directory;
`MLFLOW_TRACKING_URI`, the spec's `tracking.uri` or `--tracking-uri` point elsewhere (e.g. a
shared `mlflow server`). Opening the tracker creates the store (its schema migration) in this one
process, before any parallel work can race on a fresh file.
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path

DEFAULT_URI = "sqlite:///mlflow.db"
TRIAL_KEY_TAG = "trial_key"


def tracking_uri(cli_uri: str | None, spec_uri: str | None) -> str:
    return cli_uri or spec_uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_URI


def absolute_sqlite(uri: str) -> str:
    """`sqlite:///mlflow.db` made absolute against the working directory (other URIs as they
    are), so every process and every later call opens the same file."""
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri.startswith(prefix + "/"):
        return prefix + str(Path(uri.removeprefix(prefix)).resolve())
    return uri


class Tracker:
    """The spec's experiment in one store; looks trials up by their key."""

    def __init__(self, uri: str, experiment: str, *, create: bool = True) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            import mlflow
            from mlflow.tracking import MlflowClient
        logging.getLogger("mlflow").setLevel(logging.WARNING)
        logging.getLogger("alembic").setLevel(logging.WARNING)
        self.mlflow = mlflow
        # Absolute, because MLflow caches stores by URI string: a relative `sqlite:///mlflow.db`
        # would keep pointing at the file of whichever folder it was first opened from.
        self.uri = uri = absolute_sqlite(uri)
        user_uri = os.environ.get("MLFLOW_TRACKING_URI")
        mlflow.set_tracking_uri(uri)
        # MLflow also exports the URI to the environment; put the user's value back so that the
        # next spec in this process (`harness report --all`) resolves its own store.
        if user_uri is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = user_uri
        self.client = MlflowClient(uri)
        found = self.client.get_experiment_by_name(experiment)
        if found is None and not create:
            raise LookupError(f"no MLflow experiment {experiment!r} in {uri}")
        self.experiment_id = (
            found.experiment_id if found else self.client.create_experiment(experiment)
        )

    def latest_run(self, key: str):
        """The most recent run of trial `key`, or None."""
        runs = self.client.search_runs(
            [self.experiment_id],
            filter_string=f"tags.{TRIAL_KEY_TAG} = '{key}'",
            order_by=["attributes.start_time DESC"],
            max_results=1,
        )
        return runs[0] if runs else None

    def status(self, key: str) -> str | None:
        """FINISHED, FAILED, KILLED, RUNNING (or left RUNNING by a killed process), or None."""
        run = self.latest_run(key)
        return run.info.status if run else None
