"""`harness run`: every trial of a spec trained, evaluated and logged, safe to run again.

A trial whose latest run is FINISHED is skipped. Any other (FAILED, KILLED, or RUNNING left behind
by a killed process) runs again in the same run, resuming from its last epoch checkpoint. A trial
that fails (bad data, NaN loss, out of memory) does not stop the others; the summary lists
finished, skipped and failed trials. Trials run one after another, in local processes or on a
Dask cluster (`harness.execute.backends`); the store already exists (the caller opened it), so
parallel workers never race on its schema.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field

import torch

from harness.config import Spec, SpecError, Trial
from harness.data.splits import DataError
from harness.execute.backends import run_dask, run_local
from harness.execute.fusion import fuse_finished
from harness.execute.preflight import preflight, readiness
from harness.tracking import Store, open_store
from harness.train import distributed
from harness.train.engine import NonFiniteLoss
from harness.train.trial import run_trial

# What ends one trial without stopping the others (bad data, NaN loss, out of memory).
TRIAL_FAILURES = (
    NonFiniteLoss, DataError, OSError, torch.cuda.OutOfMemoryError, RuntimeError, ValueError,
)  # fmt: skip


@dataclass
class Summary:
    finished: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    fused: list[str] = field(default_factory=list)  # two-stream results logged this time
    missing: list[str] = field(default_factory=list)  # what a dry run found missing


def run_spec(
    spec: Spec, store: Store, *, dry_run: bool = False, progress: bool = True, jobs: int = 1,
    scheduler: str | None = None,
) -> Summary:  # fmt: skip
    """Run every unfinished trial: one after another, in `jobs` local processes (joblib), or
    on the Dask cluster at `scheduler`."""
    if spec.dataset is None:
        raise SpecError(f"{spec.path}: key 'dataset' is missing: this spec can only be profiled.")
    summary = Summary()
    if not dry_run:
        preflight(spec)
    todo = _todo(spec, store, summary, dry_run=dry_run)
    if dry_run:
        summary.missing = readiness(spec)
        if not summary.missing:
            preflight(spec)
        return summary
    for key, failure in _execute(spec, store, todo, progress, jobs, scheduler):
        if failure is None:
            summary.finished.append(key)
        else:
            summary.failed[key] = failure
            print(f"FAIL  {key}: {failure}")
    if distributed.current().main:
        summary.fused += fuse_finished(spec, store)
    return summary


def _todo(spec: Spec, store: Store, summary: Summary, *, dry_run: bool) -> list[tuple]:
    """`(trial, how it resumes)` for every unfinished trial; finished ones are skipped."""
    todo = []
    for trial in spec.trials:
        status = store.status(trial.key)
        if status == "FINISHED":
            summary.skipped.append(trial.key)
            print(f"skip  {trial.key} (finished)")
        elif dry_run:
            print(f"todo  {trial.key} ({(status or 'not started').lower()})")
        else:
            todo.append((trial, f" (resuming a {status.lower()} run)" if status else ""))
    return todo


def _execute(spec, store, todo, progress, jobs, scheduler) -> list[tuple[str, str | None]]:
    if jobs == 1 and not scheduler:
        outcomes = []
        for trial, resuming in todo:  # each announced as it starts, its results under it
            print(f"run   {trial.key}{resuming}")
            outcomes.append((trial.key, run_guarded(spec, trial, store, progress=progress)))
        return outcomes
    for trial, resuming in todo:
        print(f"queue {trial.key}{resuming}")
    trials = [trial for trial, _ in todo]
    job = functools.partial(trial_in_worker, spec, store.uri, os.getcwd())
    if scheduler:
        return run_dask(job, trials, scheduler, slots=max(jobs, 1))
    return run_local(job, trials, jobs)


def run_guarded(spec: Spec, trial: Trial, store: Store, *, progress: bool) -> str | None:
    """Run one trial; None when it finished, else why it failed (the others carry on)."""
    try:
        run_trial(spec, trial, store, progress=progress)
        return None
    except TRIAL_FAILURES as error:
        return f"{type(error).__name__}: {error}"


def trial_in_worker(
    spec: Spec, uri: str, folder: str, trial: Trial, slot: int, slots: int
) -> str | None:
    """One trial in a worker process: its device (a GPU, or a share of the CPU cores), in the
    launching folder (on a cluster, a path the workers share), logging to the store at `uri`
    (created before fan-out)."""
    os.chdir(folder)
    if torch.cuda.is_available():
        torch.cuda.set_device(slot % torch.cuda.device_count())
    else:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // slots))
    return run_guarded(spec, trial, open_store(uri, spec.name), progress=False)
