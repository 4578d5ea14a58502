"""Tracking: the one interface through which trials are logged and read back (`base`), the names
of what a run holds (`schema`), provenance tags (`provenance`), where the store is (`uri`), and
MLflow as the one implementation (`mlflow_store`, the only module that imports MLflow; loaded
when a store is first opened, so commands that open none start faster). A store that cannot be
used as given raises `StoreError`, a `ConfigError`: one paragraph naming it, exit code 2."""

from harness.tracking.base import NullRunLog, RunLog, RunRecord, Store, StoreError
from harness.tracking.schema import TRIAL_KEY_TAG
from harness.tracking.uri import DEFAULT_URI, tracking_uri


def open_store(uri: str, experiment: str, *, create: bool = True) -> Store:
    """The experiment `experiment` in the store at `uri` (created when new, unless `create` is
    False: then LookupError). StoreError when the store itself cannot be used."""
    from harness.tracking.mlflow_store import MlflowStore  # MLflow takes seconds to import

    return MlflowStore(uri, experiment, create=create)


def check_store(uri: str) -> None:
    """StoreError unless the store at `uri` can be opened and read (it is created when new)."""
    from harness.tracking.mlflow_store import check_store as check

    check(uri)


__all__ = [
    "DEFAULT_URI", "NullRunLog", "RunLog", "RunRecord", "Store", "StoreError", "TRIAL_KEY_TAG",
    "check_store", "open_store", "tracking_uri",
]  # fmt: skip
