"""Tracking: the one interface through which trials are logged and read back (`base`), the names
of what a run holds (`schema`), provenance tags (`provenance`), where the store is (`uri`), and
MLflow as the one implementation (`mlflow_store`, the only module that imports MLflow; loaded
when a store is first opened, so commands that open none start faster)."""

from harness.tracking.base import NullRunLog, RunLog, RunRecord, Store
from harness.tracking.schema import TRIAL_KEY_TAG
from harness.tracking.uri import DEFAULT_URI, tracking_uri


def open_store(uri: str, experiment: str, *, create: bool = True) -> Store:
    """The experiment `experiment` in the store at `uri` (created when new, unless `create` is
    False: then LookupError)."""
    from harness.tracking.mlflow_store import MlflowStore  # MLflow takes seconds to import

    return MlflowStore(uri, experiment, create=create)


__all__ = [
    "DEFAULT_URI", "NullRunLog", "RunLog", "RunRecord", "Store", "TRIAL_KEY_TAG", "open_store",
    "tracking_uri",
]  # fmt: skip
