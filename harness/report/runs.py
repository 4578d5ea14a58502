"""What MLflow holds for a spec: the latest run of each trial, read in one paged search.

Artifacts are read straight from disk when the store's artifact root is local (the default
SQLite store keeps them under `./mlruns`), and downloaded otherwise, so a report over a thousand
runs does not make a thousand server round trips for their metrics.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from harness.fusion import two_stream_pairs
from harness.spec import Spec
from harness.tracking import TRIAL_KEY_TAG, Tracker

PAGE = 10_000  # runs per search page


@dataclass
class RunRecord:
    """The latest MLflow run of one trial."""

    trial_key: str
    run_id: str
    status: str
    metrics: dict[str, float]
    tags: dict[str, str]
    artifact_uri: str
    tracker: Tracker = field(repr=False)

    @property
    def finished(self) -> bool:
        return self.status == "FINISHED"

    def artifact_path(self, name: str) -> Path | None:
        """A local path to artifact `name`, or None when the run has no such artifact."""
        local = _local_root(self.artifact_uri)
        if local is not None:
            path = local / name
            return path if path.is_file() else None
        try:
            target = tempfile.mkdtemp(prefix="harness-report-")
            return Path(self.tracker.client.download_artifacts(self.run_id, name, target))
        except Exception:  # MLflow raises several types for "no such artifact"
            return None

    def artifact_text(self, name: str) -> str | None:
        path = self.artifact_path(name)
        return path.read_text() if path is not None else None

    def artifact_json(self, name: str) -> Any:
        text = self.artifact_text(name)
        return json.loads(text) if text is not None else None

    def metric_history(self, name: str) -> list[tuple[int, float]]:
        """`(step, value)` pairs of a per-epoch metric, in step order."""
        history = self.tracker.client.get_metric_history(self.run_id, name)
        return sorted((m.step, m.value) for m in history)


def latest_runs(spec: Spec, tracker: Tracker) -> dict[str, RunRecord]:
    """The latest run of every trial of `spec` that has one, by trial key."""
    wanted = {trial.key for trial in spec.trials} | {p.key for p in two_stream_pairs(spec)}
    found: dict[str, RunRecord] = {}
    token = None
    while True:
        page = tracker.client.search_runs(
            [tracker.experiment_id],
            order_by=["attributes.start_time DESC"],
            max_results=PAGE,
            page_token=token,
        )
        for run in page:
            key = run.data.tags.get(TRIAL_KEY_TAG)
            if key in wanted and key not in found:  # newest first: keep the first seen
                found[key] = RunRecord(
                    key, run.info.run_id, run.info.status, dict(run.data.metrics),
                    dict(run.data.tags), run.info.artifact_uri, tracker,
                )  # fmt: skip
        token = page.token
        if not token:
            return found


def _local_root(uri: str) -> Path | None:
    parsed = urlparse(uri)
    if parsed.scheme in ("", "file"):
        return Path(unquote(parsed.path))
    return None
